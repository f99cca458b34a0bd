// The service manager's side of the supervisor: the $NOTIFY_SOCKET datagrams systemd reads
// (READY=1, STOPPING=1, WATCHDOG=1 from the event loop) and s6's readiness fd, first against the
// module alone, then against a real `vacataire run`, frozen and thawed.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdlib>
#include <functional>
#include <string>

#include "harness.hpp"
#include "sd_notify.hpp"

namespace {

using Clock = std::chrono::steady_clock;

// A datagram socket standing in for systemd's, on a path or an abstract name ("@...").
struct ManagerSocket {
  int fd = -1;
  std::string name;
  explicit ManagerSocket(std::string address) : name(std::move(address)) {
    fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    socklen_t len = 0;
    std::string err;
    REQUIRE(vac::parse_notify_socket(name, a, len, err));
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), len) == 0);
  }
  ~ManagerSocket() {
    close(fd);
    if (name[0] == '/') unlink(name.c_str());
  }
  // The next datagram within timeout_s, or "" when none came.
  std::string next(double timeout_s) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) != 1) return "";
    char buf[4096];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }
  // Reads datagrams until one contains what, within timeout_s.
  bool wait_for(const std::string& what, double timeout_s) {
    auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < deadline) {
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (next(left).find(what) != std::string::npos) return true;
    }
    return false;
  }
  // How many datagrams containing what arrive within seconds (a bounded observation).
  int count(const std::string& what, double seconds) {
    int n = 0;
    auto deadline = Clock::now() + std::chrono::duration<double>(seconds);
    while (Clock::now() < deadline) {
      double left = std::chrono::duration<double>(deadline - Clock::now()).count();
      if (next(left).find(what) != std::string::npos) ++n;
    }
    return n;
  }
};

// Runs the default loop until cond holds or timeout_s passes.
bool loop_until(const std::function<bool()>& cond, double timeout_s) {
  auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  while (!cond() && Clock::now() < deadline) ev::get_default_loop().run(ev::ONCE | ev::NOWAIT);
  return cond();
}

}  // namespace

TEST_CASE("NOTIFY_SOCKET: absolute paths and abstract names, nothing else") {
  sockaddr_un a{};
  socklen_t len = 0;
  std::string err;
  CHECK(vac::parse_notify_socket("/run/systemd/notify", a, len, err));
  CHECK(std::string(a.sun_path) == "/run/systemd/notify");
  CHECK(len == offsetof(sockaddr_un, sun_path) + 20);  // with its terminating NUL
  CHECK(vac::parse_notify_socket("@sd-notify", a, len, err));
  CHECK(a.sun_path[0] == '\0');
  CHECK(std::string(a.sun_path + 1, 9) == "sd-notify");
  CHECK(len == offsetof(sockaddr_un, sun_path) + 10);  // no NUL after an abstract name
  for (const char* bad : {"", "@", "relative/path", "notify"}) {
    err.clear();
    CHECK_FALSE(vac::parse_notify_socket(bad, a, len, err));
    CHECK(err.find("NOTIFY_SOCKET") != std::string::npos);
  }
  CHECK_FALSE(vac::parse_notify_socket("/" + std::string(200, 'x'), a, len, err));
  CHECK(err.find("longer") != std::string::npos);
}

TEST_CASE("WATCHDOG_USEC: half the period, for this process only, malformed values refused") {
  std::string err;
  CHECK_FALSE(vac::watchdog_period(nullptr, nullptr, 10, err));
  CHECK_FALSE(vac::watchdog_period("", nullptr, 10, err));
  CHECK(vac::watchdog_period("3000000", nullptr, 10, err) == std::chrono::microseconds(1500000));
  CHECK(vac::watchdog_period("3000000", "10", 10, err) == std::chrono::microseconds(1500000));
  CHECK_FALSE(vac::watchdog_period("3000000", "11", 10, err));  // our parent's watchdog
  CHECK(err.empty());
  for (const char* bad : {"abc", "-5", "12x", "1000", "99999999999999999999"}) {
    err.clear();
    CHECK_FALSE(vac::watchdog_period(bad, nullptr, 10, err));
    CHECK(err.find("WATCHDOG_USEC") != std::string::npos);
  }
  err.clear();
  CHECK_FALSE(vac::watchdog_period("3000000", "pid", 10, err));
  CHECK(err.find("WATCHDOG_PID") != std::string::npos);
}

TEST_CASE("the notifier says READY=1 once, pings the watchdog from the loop, and says STOPPING=1") {
  ManagerSocket manager("@vacataire-sd-notify-test-" + std::to_string(getpid()));
  setenv("NOTIFY_SOCKET", manager.name.c_str(), 1);
  setenv("WATCHDOG_USEC", "100000", 1);
  {
    vac::ManagerNotifier n;
    // Read once and removed: services must not inherit them.
    CHECK(std::getenv("NOTIFY_SOCKET") == nullptr);
    CHECK(std::getenv("WATCHDOG_USEC") == nullptr);
    REQUIRE(n.notifying());
    REQUIRE(n.watchdog() == std::chrono::microseconds(50000));

    n.ready("node t1, 0 services");
    std::string first = manager.next(5);
    CHECK(first.find("READY=1\n") == 0);
    CHECK(first.find("STATUS=node t1, 0 services") != std::string::npos);
    n.ready("again");                        // once only
    CHECK(manager.next(1) == "WATCHDOG=1");  // the first ping comes with readiness

    int pings = 0;
    CHECK(loop_until(
        [&] {
          pollfd p{manager.fd, POLLIN, 0};
          if (poll(&p, 1, 0) == 1) pings += manager.next(0) == "WATCHDOG=1";
          return pings >= 3;
        },
        10));
    n.stopping();
    CHECK(manager.wait_for("STOPPING=1", 5));
  }
}

TEST_CASE("without NOTIFY_SOCKET the notifier is silent; a bad one is reported, not fatal") {
  unsetenv("NOTIFY_SOCKET");
  setenv("WATCHDOG_USEC", "100000", 1);
  {
    vac::ManagerNotifier n;
    CHECK_FALSE(n.notifying());
    CHECK_FALSE(n.watchdog());  // a watchdog nobody can be told about
    n.ready("x");
    n.stopping();
  }
  setenv("NOTIFY_SOCKET", "relative", 1);
  vac::ManagerNotifier bad;
  CHECK_FALSE(bad.notifying());
  bad.ready("x");
}

TEST_CASE("s6 readiness: a newline on VACATAIRE_NOTIFY_FD, then the fd is closed") {
  int fds[2];
  REQUIRE(pipe(fds) == 0);
  int wfd = fcntl(fds[1], F_DUPFD, 20);  // well above the standard fds, without CLOEXEC
  close(fds[1]);
  setenv("VACATAIRE_NOTIFY_FD", std::to_string(wfd).c_str(), 1);
  {
    vac::ManagerNotifier n;
    CHECK(std::getenv("VACATAIRE_NOTIFY_FD") == nullptr);
    CHECK((fcntl(wfd, F_GETFD) & FD_CLOEXEC) != 0);  // never inherited by a service
    n.ready("x");
  }
  char buf[8];
  CHECK(read(fds[0], buf, sizeof buf) == 1);
  CHECK(buf[0] == '\n');
  CHECK(read(fds[0], buf, sizeof buf) == 0);  // closed: s6 saw all it needs
  close(fds[0]);
}

TEST_CASE("vacataire run: READY=1 once listening, WATCHDOG=1 while the loop turns, none frozen") {
  vt::Node n;
  // A service that records whether it inherited the manager's variables.
  n.service("env", "env > " + n.path("env.out") + "; exec sleep 1000");
  ManagerSocket manager(n.path("notify.sock"));
  setenv("NOTIFY_SOCKET", manager.name.c_str(), 1);
  setenv("WATCHDOG_USEC", "400000", 1);
  n.start();
  unsetenv("NOTIFY_SOCKET");
  unsetenv("WATCHDOG_USEC");

  REQUIRE(manager.wait_for("READY=1", 20));
  CHECK_FALSE(n.status().empty());  // the control socket listened before READY=1
  CHECK(manager.wait_for("WATCHDOG=1", 5));
  REQUIRE(n.wait_state("env", "up"));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("env.out")).empty(); }));
  std::string env = vt::read_file(n.path("env.out"));
  CHECK(env.find("NOTIFY_SOCKET") == std::string::npos);
  CHECK(env.find("WATCHDOG_USEC") == std::string::npos);

  // Frozen, it pings no more (systemd would kill it after WatchdogSec); thawed, it pings again.
  manager.count("WATCHDOG=1", 0.3);  // drain what was sent before the freeze
  REQUIRE(kill(n.pid(), SIGSTOP) == 0);
  manager.count("WATCHDOG=1", 0.05);  // a ping in flight as it stopped
  CHECK(manager.count("WATCHDOG=1", 1.0) == 0);
  REQUIRE(kill(n.pid(), SIGCONT) == 0);
  CHECK(manager.wait_for("WATCHDOG=1", 5));
  CHECK(manager.count("WATCHDOG=1", 1.0) >= 2);

  kill(n.pid(), SIGTERM);
  CHECK(manager.wait_for("STOPPING=1", 10));
  CHECK(n.stop() == 0);
}
