#include "gguf/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
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

MappedFile MappedFile::copy_of(std::span<const uint8_t> bytes) {
    MappedFile f;
    f.copy_.assign(bytes.begin(), bytes.end());
    f.data_ = f.copy_.data();
    f.size_ = f.copy_.size();
    return f;
}

MappedFile::MappedFile(MappedFile&& other) noexcept { *this = std::move(other); }

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

MappedFile::~MappedFile() { release(); }

void MappedFile::release() {
    if (mapped_ && data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    mapped_ = false;
    data_ = nullptr;
    size_ = 0;
    copy_.clear();
}

}  // namespace moeserve
