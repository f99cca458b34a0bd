#include "sd_notify.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "common/log.hpp"
#include "common/text.hpp"

namespace vac {

bool parse_notify_socket(std::string_view text, sockaddr_un& addr, socklen_t& len,
                         std::string& err) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (text.size() < 2 || (text[0] != '/' && text[0] != '@'))
    return err = cat("NOTIFY_SOCKET=", quote(text), ": expected an absolute path or @name"), false;
  if (text.size() >= sizeof addr.sun_path)
    return err = cat("NOTIFY_SOCKET=", quote(text), ": longer than a socket address allows"), false;
  if (text.find('\0') != std::string_view::npos)
    return err = "NOTIFY_SOCKET holds a NUL byte", false;
  std::memcpy(addr.sun_path, text.data(), text.size());
  if (text[0] == '@') {
    // An abstract address: a leading NUL, and the length counts exactly the name's bytes.
    addr.sun_path[0] = '\0';
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size());
  } else {
    len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + text.size() + 1);
  }
  return true;
}

std::optional<std::chrono::microseconds> watchdog_period(const char* usec, const char* pid,
                                                         pid_t self, std::string& err) {
  if (!usec || !*usec) return std::nullopt;
  if (pid && *pid) {
    char* end = nullptr;
    errno = 0;
    long long p = std::strtoll(pid, &end, 10);
    if (errno || *end || p <= 0) {
      err = cat("WATCHDOG_PID=", quote(pid), " is not a process id; watchdog off");
      return std::nullopt;
    }
    if (p != self) return std::nullopt;  // meant for the process that started us
  }
  char* end = nullptr;
  errno = 0;
  unsigned long long us = std::strtoull(usec, &end, 10);
  // Pings at half the period; below 2 ms there is no period a loop could keep.
  if (errno || *end || usec[0] == '-' || us < 2000 || us > 86400ull * 1000000) {
    err = cat("WATCHDOG_USEC=", quote(usec),
              " is not a number of microseconds from 2000 to one day; watchdog off");
    return std::nullopt;
  }
  return std::chrono::microseconds(static_cast<long long>(us / 2));
}

ManagerNotifier::ManagerNotifier() {
  std::string err;
  const char* socket_path = std::getenv("NOTIFY_SOCKET");
  if (socket_path && *socket_path) {
    if (!parse_notify_socket(socket_path, addr_, addr_len_, err)) {
      log_warn("notify", err, "; not telling the service manager");
    } else {
      fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (fd_ < 0) log_warn("notify", sys_error("socket for NOTIFY_SOCKET"));
    }
  }
  if (fd_ >= 0) {
    period_ =
        watchdog_period(std::getenv("WATCHDOG_USEC"), std::getenv("WATCHDOG_PID"), getpid(), err);
    if (!period_ && !err.empty()) log_warn("notify", err);
  }
  if (const char* fd = std::getenv("VACATAIRE_NOTIFY_FD"); fd && *fd) {
    char* end = nullptr;
    long n = std::strtol(fd, &end, 10);
    if (*end || n < 3 || n > 1 << 20 || fcntl(static_cast<int>(n), F_GETFD) < 0) {
      log_warn("notify", "VACATAIRE_NOTIFY_FD=", quote(fd),
               " is not an open descriptor above 2; readiness not reported");
    } else {
      ready_fd_ = static_cast<int>(n);
      fcntl(ready_fd_, F_SETFD, FD_CLOEXEC);  // never a service's
    }
  }
  for (const char* name : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "VACATAIRE_NOTIFY_FD"})
    unsetenv(name);
  watchdog_.set<ManagerNotifier, &ManagerNotifier::on_watchdog>(this);
}

ManagerNotifier::~ManagerNotifier() {
  watchdog_.stop();
  if (fd_ >= 0) close(fd_);
  if (ready_fd_ >= 0) close(ready_fd_);
}

bool ManagerNotifier::send(std::string_view message) {
  if (fd_ < 0) return false;
  ssize_t n = sendto(fd_, message.data(), message.size(), MSG_NOSIGNAL | MSG_DONTWAIT,
                     reinterpret_cast<const sockaddr*>(&addr_), addr_len_);
  if (n == static_cast<ssize_t>(message.size())) {
    if (failing_) log_info("notify", "NOTIFY_SOCKET reachable again");
    failing_ = false;
    return true;
  }
  // Once per outage, not once per ping.
  if (!failing_) log_warn("notify", sys_error("send to NOTIFY_SOCKET"));
  failing_ = true;
  return false;
}

void ManagerNotifier::ready(std::string_view status) {
  if (ready_) return;
  ready_ = true;
  send(cat("READY=1\nSTATUS=", status));
  if (ready_fd_ >= 0) {
    // s6 reads up to the newline; the fd has done its job, and holding it would say nothing.
    if (write(ready_fd_, "\n", 1) != 1) log_warn("notify", sys_error("VACATAIRE_NOTIFY_FD"));
    close(ready_fd_);
    ready_fd_ = -1;
  }
  if (period_) {
    double seconds = static_cast<double>(period_->count()) / 1e6;
    log_info("notify", "watchdog: pinging the service manager every ", seconds, "s");
    send("WATCHDOG=1");
    watchdog_.start(seconds, seconds);
  }
}

void ManagerNotifier::stopping() {
  send("STOPPING=1\nSTATUS=stopping services");
}

void ManagerNotifier::on_watchdog(ev::timer&, int) {
  send("WATCHDOG=1");
}

}  // namespace vac
