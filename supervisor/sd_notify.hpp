// Tells the service manager that started the supervisor when it is ready, when it stops, and that
// its event loop still turns, without libsystemd:
//  - systemd (Type=notify): datagrams to $NOTIFY_SOCKET, a path or an abstract socket ("@name"):
//    READY=1 once, STOPPING=1, and WATCHDOG=1 every half of $WATCHDOG_USEC from a timer on the
//    event loop, so a frozen loop stops the pings and systemd kills and restarts the node;
//  - s6 (notification-fd): a newline on the fd named by $VACATAIRE_NOTIFY_FD when ready.
// The variables are read once and removed from the environment, so services never inherit them
// (a service speaking sd_notify must not speak for the supervisor). Sends never block: a lost
// datagram is logged and the next ping tries again.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>
#include <sys/un.h>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include <ev++.h>

namespace vac {

// $NOTIFY_SOCKET decoded: an absolute path or "@abstract"; false with a reason otherwise.
bool parse_notify_socket(std::string_view text, sockaddr_un& addr, socklen_t& len,
                         std::string& err);

// The watchdog ping period (half of $WATCHDOG_USEC), or nothing when the watchdog is off, not
// meant for this process ($WATCHDOG_PID names another), or the value is malformed (err says why).
std::optional<std::chrono::microseconds> watchdog_period(const char* usec, const char* pid,
                                                         pid_t self, std::string& err);

class ManagerNotifier {
 public:
  ManagerNotifier();  // reads and unsets NOTIFY_SOCKET, WATCHDOG_USEC/PID, VACATAIRE_NOTIFY_FD
  ~ManagerNotifier();
  ManagerNotifier(const ManagerNotifier&) = delete;
  ManagerNotifier& operator=(const ManagerNotifier&) = delete;

  void ready(std::string_view status);  // READY=1 (once) and starts the watchdog pings
  void stopping();                      // STOPPING=1; the pings go on until the loop ends

  bool notifying() const { return fd_ >= 0; }
  std::optional<std::chrono::microseconds> watchdog() const { return period_; }

 private:
  bool send(std::string_view message);
  void on_watchdog(ev::timer&, int);

  int fd_ = -1;  // our datagram socket, when $NOTIFY_SOCKET is set
  sockaddr_un addr_{};
  socklen_t addr_len_ = 0;
  int ready_fd_ = -1;  // s6's notification fd
  std::optional<std::chrono::microseconds> period_;
  ev::timer watchdog_;
  bool ready_ = false;
  bool failing_ = false;  // the last send failed (logged once)
};

}  // namespace vac
