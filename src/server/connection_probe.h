// Tells whether an HTTP client has gone away while its request waits (in
// the queue, or for a non-streaming result). cpp-httplib 0.11 does not give
// handlers the socket, so the probe finds it among the process's open
// sockets by the connection's two endpoints, then polls it for a hang-up.
#pragma once

#include <string>

namespace moeserve {

class ConnectionProbe {
  public:
    ConnectionProbe(const std::string& remote_addr, int remote_port, int local_port);
    // True once the peer has closed its side or the connection broke.
    bool closed() const;

  private:
    int fd_ = -1;  // -1: not found (then closed() is always false)
};

}  // namespace moeserve
