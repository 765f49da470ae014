// cpp-httplib's Server with a connection loop of our own (an override of
// process_and_close_socket, the hook httplib's SSLServer uses), for what the
// library version in Debian 12 (0.11.4) lacks:
//
//   - A request must arrive at a minimum rate. httplib's read timeout applies
//     to each read, so a client that sends one header byte a second (slowloris)
//     would hold a worker thread for hours. Here a request gets `request_grace`
//     and after that must average `min_bytes_per_s`; a client that falls behind
//     is disconnected. No request may exceed `max_request_bytes` (httplib
//     limits neither the header block nor a chunked body).
//   - httplib listens with a backlog of 5 connections: in a burst, further
//     clients' handshakes are dropped and retried a second or more later.
//     raise_listen_backlog() (after binding) lifts it to SOMAXCONN.
//   - end_idle_connections() (after httplib's stop()) closes connections that
//     are idle between requests or still sending one, so shutting down waits
//     only for requests being answered; end_all_connections() closes the rest.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace moeserve {

struct ConnectionLimits {
    std::chrono::milliseconds request_grace{10'000};     // any request may take this long to arrive
    size_t min_bytes_per_s = 64 * 1024;                  // the average rate it must keep after that
    size_t max_request_bytes = (64u + 1u) << 20;         // request line, headers and body
    std::chrono::milliseconds read_timeout{3'600'000};   // one read that gets nothing (--timeout)
    std::chrono::milliseconds write_timeout{3'600'000};  // one write that cannot proceed (--timeout)
    // Keep-alive (idle time before a request, requests per connection) is
    // httplib's own setting, which its Keep-Alive header announces.
};

class HttpListener : public httplib::Server {
  public:
    explicit HttpListener(const ConnectionLimits& limits);
    ~HttpListener() override;

    bool raise_listen_backlog();
    void end_idle_connections();
    void end_all_connections();

    uint64_t slow_clients_dropped() const { return slow_dropped_.load(); }

  private:
    bool process_and_close_socket(socket_t sock) override;

    ConnectionLimits limits_;
    int idle_end_fd_ = -1;  // eventfd, readable once end_idle_connections() ran
    int all_end_fd_ = -1;   // eventfd, readable once end_all_connections() ran
    std::atomic<uint64_t> slow_dropped_{0};
};

// True when the request being read on this thread went over max_request_bytes
// (httplib reports that as a plain 400 for a chunked body).
bool request_over_size_limit();

}  // namespace moeserve
