#include "gguf/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace moeserve {

MappedFile MappedFile::map(const std::string& path) {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        int err = errno;
        ::close(fd);
        throw std::runtime_error(path + ": cannot stat: " + std::strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        ::close(fd);
        throw std::runtime_error(path + ": not a regular file");
    }
    MappedFile f;
    f.size_ = static_cast<uint64_t>(st.st_size);
    if (f.size_ > 0) {
        void* p = ::mmap(nullptr, f.size_, PROT_READ, MAP_SHARED, fd, 0);
        if (p == MAP_FAILED) {
            int err = errno;
            ::close(fd);
            throw std::runtime_error(path + ": cannot mmap: " + std::strerror(err));
        }
        f.data_ = static_cast<const uint8_t*>(p);
        f.mapped_ = true;
    }
    ::close(fd);  // the mapping stays valid
    return f;
}

std::optional<LoadMode> load_mode_from_name(const std::string& name) {
    if (name == "mmap") return LoadMode::mmap;
    if (name == "mlock") return LoadMode::mlock;
    // Direct I/O only changes how the bytes reach memory; reading them is what matters here.
    if (name == "none" || name == "dio") return LoadMode::read;
    return std::nullopt;
}

MappedFile MappedFile::load(const std::string& path, LoadMode mode) {
    if (mode != LoadMode::read) {
        MappedFile f = map(path);
        // As llama.cpp: a refused lock (RLIMIT_MEMLOCK, too little RAM) is a warning; the mapping still works.
        if (mode == LoadMode::mlock && f.size_ > 0 && ::mlock(f.data_, f.size_) != 0)
            std::fprintf(stderr, "warning: failed to mlock %llu-byte buffer of %s: %s (try raising ulimit -l)\n",
                         static_cast<unsigned long long>(f.size_), path.c_str(), std::strerror(errno));
        return f;
    }
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        const int err = errno;
        ::close(fd);
        throw std::runtime_error(path +
                                 (err ? ": cannot stat: " + std::string(std::strerror(err)) : ": not a regular file"));
    }
    MappedFile f;
    f.copy_.resize(static_cast<size_t>(st.st_size));
    size_t done = 0;
    while (done < f.copy_.size()) {
        const ssize_t n = ::read(fd, f.copy_.data() + done, std::min<size_t>(f.copy_.size() - done, size_t{1} << 30));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            const int err = n < 0 ? errno : 0;
            ::close(fd);
            throw std::runtime_error(path + ": cannot read: " + (err ? std::strerror(err) : "the file ended early"));
        }
        done += static_cast<size_t>(n);
    }
    ::close(fd);
    f.data_ = f.copy_.data();
    f.size_ = f.copy_.size();
    return f;
}

MappedFile MappedFile::copy_of(std::span<const uint8_t> bytes) {
    MappedFile f;
    f.copy_.assign(bytes.begin(), bytes.end());
    f.data_ = f.copy_.data();
    f.size_ = f.copy_.size();
    return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept {
    *this = std::move(other);
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this == &other) return *this;
    release();
    mapped_ = std::exchange(other.mapped_, false);
    size_ = std::exchange(other.size_, 0);
    copy_ = std::move(other.copy_);
    data_ = mapped_ ? other.data_ : copy_.data();
    other.data_ = nullptr;
    return *this;
}

MappedFile::~MappedFile() {
    release();
}

void MappedFile::release() {
    if (mapped_ && data_) ::munmap(const_cast<uint8_t*>(data_), size_);  // also ends an mlock
    mapped_ = false;
    data_ = nullptr;
    size_ = 0;
    copy_.clear();
}

}  // namespace moeserve
