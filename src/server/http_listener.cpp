#include "server/http_listener.h"

#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

namespace moeserve {
namespace {

using Clock = std::chrono::steady_clock;

thread_local bool tl_request_over_limit = false;

void endpoint_name(int fd, bool peer, std::string& ip, int& port) {
    sockaddr_storage sa{};
    socklen_t len = sizeof(sa);
    const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&sa), &len)
                        : getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len);
    if (rc != 0) return;
    char host[NI_MAXHOST] = {}, serv[NI_MAXSERV] = {};
    if (getnameinfo(reinterpret_cast<sockaddr*>(&sa), len, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
        return;
    ip = host;
    port = std::atoi(serv);
}

// One accepted connection as httplib's Stream: buffered reads, and the
// receive rules of ConnectionLimits for the request being read.
class LimitedSocketStream final : public httplib::Stream {
  public:
    LimitedSocketStream(int fd, const ConnectionLimits& limits, std::chrono::milliseconds keep_alive_timeout,
                        int idle_end_fd, int all_end_fd)
        : fd_(fd),
          limits_(limits),
          keep_alive_timeout_(keep_alive_timeout),
          idle_end_fd_(idle_end_fd),
          all_end_fd_(all_end_fd) {}

    // Waits for the first byte of the next request (keep-alive); false when
    // the client closed or stayed idle too long, or the server is stopping.
    // The request's receive clock starts here.
    bool wait_for_request() {
        if (buf_pos_ == buf_len_ && wait(POLLIN, Clock::now() + keep_alive_timeout_, true) != Wait::ready) return false;
        receiving_ = true;
        slow_ = false;
        tl_request_over_limit = false;
        request_start_ = Clock::now();
        request_bytes_ = buf_len_ - buf_pos_;
        return true;
    }

    bool dropped_as_slow() const { return slow_; }
    size_t request_bytes() const { return request_bytes_; }
    double request_seconds() const { return std::chrono::duration<double>(Clock::now() - request_start_).count(); }

    bool is_readable() const override {
        if (buf_pos_ < buf_len_) return true;
        return wait(POLLIN, read_deadline(), receiving_) == Wait::ready;
    }

    bool is_writable() const override {
        if (wait(POLLOUT, Clock::now() + limits_.write_timeout, false) != Wait::ready) return false;
        // As httplib: a client that closed its side is gone (data to read means alive).
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 0) <= 0) return true;
        char c;
        return recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) > 0;
    }

    ssize_t read(char* ptr, size_t size) override {
        if (buf_pos_ == buf_len_) {
            if (receiving_ && request_bytes_ >= limits_.max_request_bytes) {
                tl_request_over_limit = true;
                return -1;
            }
            const Wait w = wait(POLLIN, read_deadline(), receiving_);
            if (w != Wait::ready) {
                if (w == Wait::timeout && receiving_ && Clock::now() >= receive_deadline()) slow_ = true;
                return -1;
            }
            ssize_t n;
            do n = recv(fd_, buf_, sizeof(buf_), 0);
            while (n < 0 && errno == EINTR);
            if (n <= 0) return n;
            buf_pos_ = 0;
            buf_len_ = static_cast<size_t>(n);
            if (receiving_) request_bytes_ += buf_len_;
        }
        const size_t n = std::min(size, buf_len_ - buf_pos_);
        std::memcpy(ptr, buf_ + buf_pos_, n);
        buf_pos_ += n;
        return static_cast<ssize_t>(n);
    }

    ssize_t write(const char* ptr, size_t size) override {
        receiving_ = false;  // the answer has begun: the request is in
        if (wait(POLLOUT, Clock::now() + limits_.write_timeout, false) != Wait::ready) return -1;
        ssize_t n;
        do n = send(fd_, ptr, size, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        return n;
    }

    void get_remote_ip_and_port(std::string& ip, int& port) const override { endpoint_name(fd_, true, ip, port); }
    void get_local_ip_and_port(std::string& ip, int& port) const override { endpoint_name(fd_, false, ip, port); }
    socket_t socket() const override { return fd_; }

  private:
    enum class Wait { ready, timeout, ended };

    Clock::time_point receive_deadline() const {
        const auto earned =
            std::chrono::milliseconds(request_bytes_ * 1000 / std::max<size_t>(1, limits_.min_bytes_per_s));
        return request_start_ + limits_.request_grace + earned;
    }
    Clock::time_point read_deadline() const {
        const auto d = Clock::now() + limits_.read_timeout;
        return receiving_ ? std::min(d, receive_deadline()) : d;
    }

    // Polls the socket for `events` until `deadline`. The server's end
    // signals interrupt the wait: end_all always, end_idle when `idle` (the
    // connection is between requests or still receiving one).
    Wait wait(short events, Clock::time_point deadline, bool idle) const {
        for (;;) {
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
            if (left.count() <= 0) return Wait::timeout;
            pollfd p[3] = {{fd_, events, 0}, {all_end_fd_, POLLIN, 0}, {idle_end_fd_, POLLIN, 0}};
            const int timeout_ms = static_cast<int>(std::min<int64_t>(left.count(), 1'000'000));
            const int rc = poll(p, idle ? 3 : 2, timeout_ms);
            if (rc < 0) {
                if (errno == EINTR) continue;
                return Wait::ended;
            }
            if (p[1].revents || (idle && p[2].revents)) return Wait::ended;
            if (p[0].revents) return Wait::ready;  // errors and hang-ups too: recv/send report them
        }
    }

    const int fd_;
    const ConnectionLimits& limits_;
    const std::chrono::milliseconds keep_alive_timeout_;
    const int idle_end_fd_, all_end_fd_;
    char buf_[4096];
    size_t buf_pos_ = 0, buf_len_ = 0;
    bool receiving_ = false;  // between wait_for_request() and the first write
    bool slow_ = false;
    Clock::time_point request_start_{};
    size_t request_bytes_ = 0;
};

}  // namespace

bool request_over_size_limit() {
    return tl_request_over_limit;
}

HttpListener::HttpListener(const ConnectionLimits& limits)
    : limits_(limits), idle_end_fd_(eventfd(0, EFD_CLOEXEC)), all_end_fd_(eventfd(0, EFD_CLOEXEC)) {
    if (idle_end_fd_ < 0 || all_end_fd_ < 0)
        throw std::runtime_error(std::string("cannot create the HTTP listener's eventfd: ") + std::strerror(errno));
}

HttpListener::~HttpListener() {
    close(idle_end_fd_);
    close(all_end_fd_);
}

bool HttpListener::raise_listen_backlog() {
    return svr_sock_ != INVALID_SOCKET && ::listen(svr_sock_, SOMAXCONN) == 0;
}

void HttpListener::end_idle_connections() {
    const uint64_t one = 1;
    [[maybe_unused]] auto rc = ::write(idle_end_fd_, &one, sizeof(one));
}

void HttpListener::end_all_connections() {
    end_idle_connections();
    const uint64_t one = 1;
    [[maybe_unused]] auto rc = ::write(all_end_fd_, &one, sizeof(one));
}

bool HttpListener::process_and_close_socket(socket_t sock) {
    bool ok = false;
    {
        LimitedSocketStream strm(sock, limits_, std::chrono::seconds(keep_alive_timeout_sec_), idle_end_fd_,
                                 all_end_fd_);
        for (size_t n = 1; n <= keep_alive_max_count_; ++n) {
            if (svr_sock_ == INVALID_SOCKET || !strm.wait_for_request()) break;  // stopped, closed or idle
            bool closed = false;
            ok = process_request(strm, n == keep_alive_max_count_, closed, nullptr);
            if (strm.dropped_as_slow()) {
                slow_dropped_.fetch_add(1);
                std::string ip;
                int port = 0;
                strm.get_remote_ip_and_port(ip, port);
                std::fprintf(stderr,
                             "srv  dropped a slow client %s:%d: %zu bytes of a request in %.1f s (a request must "
                             "arrive within %.0f s, then at %zu KiB/s or more)\n",
                             ip.c_str(), port, strm.request_bytes(), strm.request_seconds(),
                             limits_.request_grace.count() / 1000.0, limits_.min_bytes_per_s / 1024);
                break;
            }
            if (!ok || closed) break;
        }
    }
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
}

}  // namespace moeserve
