// A deliberately small HTTP/TCP client for the endpoint tests: raw bytes out, raw bytes in,
// so a test can send what a load balancer sends (OPTIONS with HTTP/1.0) and what a hostile
// client sends (huge headers, garbage), and see exactly what came back. Loopback only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>
#include <cstdlib>
#include <string>

namespace vt {

// A blocking TCP connection to 127.0.0.1:port from the loopback address from, with send and
// receive timeouts; -1 when the port does not answer.
inline int tcp_connect(int port, double timeout_s = 3, const char* from = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{static_cast<time_t>(timeout_s),
             static_cast<suseconds_t>((timeout_s - static_cast<long>(timeout_s)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (from) {
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, from, &local.sin_addr);
    bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local);
  }
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Everything the peer sends until it closes (or the timeout): "" when nothing came.
inline std::string read_all(int fd, size_t max = 1 << 20) {
  std::string out;
  char buf[4096];
  ssize_t n;
  while (out.size() < max && (n = read(fd, buf, sizeof buf)) > 0)
    out.append(buf, static_cast<size_t>(n));
  return out;
}

struct HttpReply {
  int code = 0;  // 0: no answer
  std::string head, body;
};

inline HttpReply http_raw(int port, const std::string& request, const char* from = nullptr) {
  HttpReply r;
  int fd = tcp_connect(port, 3, from);
  if (fd < 0) return r;
  if (write(fd, request.data(), request.size()) < 0) {
  }
  std::string all = read_all(fd);
  close(fd);
  size_t end = all.find("\r\n\r\n");
  if (all.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return r;
  r.code = std::atoi(all.c_str() + 9);
  r.head = all.substr(0, end);
  r.body = all.substr(end + 4);
  return r;
}

inline HttpReply http(int port, const std::string& method, const std::string& path,
                      const char* from = nullptr) {
  return http_raw(port, method + " " + path + " HTTP/1.1\r\nHost: vt\r\nConnection: close\r\n\r\n",
                  from);
}

// HAProxy's agent-check: connect, read the one line.
inline std::string agent_line(int port, const std::string& send = "") {
  int fd = tcp_connect(port);
  if (fd < 0) return "";
  if (!send.empty() && write(fd, send.data(), send.size()) < 0) {
  }
  std::string all = read_all(fd, 4096);
  close(fd);
  return all;
}

}  // namespace vt
