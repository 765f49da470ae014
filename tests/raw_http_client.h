// A raw HTTP/1.1 client on one socket, for what curl cannot do: stop at a
// chosen point, send a byte at a time, run hundreds of requests from threads.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace moeserve::test {

class Conn {
  public:
    explicit Conn(int port) {
        fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(static_cast<uint16_t>(port));
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (fd_ >= 0 && connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) close();
        if (fd_ >= 0) {
            const int one = 1;
            setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        }
    }
    ~Conn() { close(); }
    Conn(const Conn&) = delete;
    Conn& operator=(const Conn&) = delete;
    Conn(Conn&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }

    bool ok() const { return fd_ >= 0; }
    void close() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }
    bool send_all(const std::string& s) {
        size_t off = 0;
        while (fd_ >= 0 && off < s.size()) {
            const ssize_t n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
            if (n <= 0) return false;
            off += static_cast<size_t>(n);
        }
        return fd_ >= 0;
    }
    // Appends what arrives within `timeout` to `out`; false once the peer has
    // closed (or the socket failed).
    bool read_for(std::string& out, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (fd_ >= 0) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now()).count();
            if (left <= 0) return true;
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, static_cast<int>(left)) <= 0) continue;
            char buf[16384];
            const ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) return false;
            out.append(buf, static_cast<size_t>(n));
        }
        return false;
    }
    // Reads until `needle` appears in `out`, the peer closes, or `timeout`.
    bool read_until(std::string& out, const std::string& needle, std::chrono::milliseconds timeout) {
        const auto end = std::chrono::steady_clock::now() + timeout;
        while (out.find(needle) == std::string::npos && std::chrono::steady_clock::now() < end)
            if (!read_for(out, std::chrono::milliseconds(20))) return out.find(needle) != std::string::npos;
        return out.find(needle) != std::string::npos;
    }
    // True when the server has closed this connection (EOF or reset).
    bool closed_by_peer() {
        pollfd p{fd_, POLLIN, 0};
        if (fd_ < 0 || poll(&p, 1, 0) <= 0) return false;
        char c;
        return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) <= 0;
    }

  private:
    int fd_ = -1;
};

inline std::string request_text(const std::string& method, const std::string& path, const std::string& body = "",
                                const std::vector<std::string>& headers = {}) {
    std::string r = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n";
    if (!body.empty() || method == "POST")
        r += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& h : headers) r += h + "\r\n";
    return r + "\r\n" + body;
}

struct Reply {
    int status = 0;  // 0: no complete status line
    std::string headers;
    std::string body;  // de-chunked
    bool has_header(const std::string& name) const {
        std::string lower = headers;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return lower.find("\r\n" + name + ":") != std::string::npos;
    }
    nlohmann::ordered_json json_body() const { return nlohmann::ordered_json::parse(body, nullptr, false); }
};

inline Reply parse_reply(const std::string& raw) {
    Reply r;
    const size_t head_end = raw.find("\r\n\r\n");
    if (raw.rfind("HTTP/1.1 ", 0) != 0 || head_end == std::string::npos) return r;
    r.status = std::atoi(raw.c_str() + 9);
    r.headers = raw.substr(0, head_end + 2);
    std::string body = raw.substr(head_end + 4);
    if (!r.has_header("transfer-encoding")) {
        r.body = std::move(body);
        return r;
    }
    size_t pos = 0;
    while (pos < body.size()) {
        const size_t eol = body.find("\r\n", pos);
        if (eol == std::string::npos) break;
        const size_t n = std::strtoul(body.c_str() + pos, nullptr, 16);
        if (n == 0 || eol + 2 + n > body.size()) break;
        r.body.append(body, eol + 2, n);
        pos = eol + 2 + n + 2;
    }
    return r;
}

// One request on a fresh connection ("Connection: close"), read to the end.
inline Reply roundtrip(int port, const std::string& request,
                       std::chrono::milliseconds timeout = std::chrono::seconds(120)) {
    Conn c(port);
    std::string raw;
    if (!c.send_all(request)) return {};
    const auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end && c.read_for(raw, std::chrono::milliseconds(100))) {
    }
    return parse_reply(raw);
}

inline Reply post(int port, const std::string& path, const std::string& body,
                  const std::vector<std::string>& headers = {}) {
    return roundtrip(port, request_text("POST", path, body, headers));
}
inline Reply get(int port, const std::string& path, const std::vector<std::string>& headers = {}) {
    return roundtrip(port, request_text("GET", path, "", headers));
}

}  // namespace moeserve::test
