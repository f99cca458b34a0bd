// The built-in probes against real targets, run as monitoring plugins would run them (--once):
// pcheck on real processes, memcheck on meminfo files, content on a local HTTP server that
// serves bodies of known length, slow answers and truncated answers.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <csignal>
#include <thread>
#include <vector>

#include "harness.hpp"

using vt::json;

namespace {
struct Once {
  int code;
  json result;
};

Once run_probe(const std::string& probe, std::vector<std::string> args) {
  args.insert(args.begin(), BUILD_DIR "/probes/" + probe);
  args.push_back("--once");
  vt::Result r = vt::run_command(args);
  json j = json::parse(r.out, nullptr, false);
  INFO(r.out);
  return {r.code, j.is_discarded() ? json::object() : j};
}

std::string detail(const Once& o) {
  return o.result.value("detail", "");
}

// A child process with a recognisable command line, killed when the test ends.
struct Sleeper {
  pid_t pid;
  explicit Sleeper(const char* seconds) {
    pid = fork();
    if (pid == 0) {
      execl("/bin/sleep", "sleep", seconds, nullptr);
      _exit(127);
    }
    vt::eventually(
        [&] { return vt::read_file("/proc/" + std::to_string(pid) + "/comm") == "sleep\n"; });
  }
  ~Sleeper() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  }
};

// A one-connection-at-a-time HTTP server on an ephemeral loopback port.
class HttpServer {
 public:
  HttpServer() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    socklen_t len = sizeof a;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 16);
    thread_ = std::thread([this] { serve(); });
  }
  ~HttpServer() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string req;
      char buf[4096];
      while (req.find("\r\n\r\n") == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (poll(&q, 1, 2000) <= 0) break;
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
        if (req.size() >= 4 && req.rfind("GET ", 0) != 0) break;  // not HTTP (a TLS hello)
      }
      std::string path = req.rfind("GET ", 0) == 0 ? req.substr(4, req.find(' ', 4) - 4) : "";
      answer(c, path);
      close(c);
    }
  }
  void send_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      ssize_t n = write(c, s.data() + off, s.size() - off);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  void answer(int c, const std::string& path) {
    auto reply = [&](int status, const std::string& body) {
      send_all(c, "HTTP/1.1 " + std::to_string(status) + " X\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body);
    };
    if (path == "/ok") return reply(200, std::string(1234, 'a'));
    if (path == "/short") return reply(200, std::string(1000, 'a'));
    if (path == "/error") return reply(500, "oops");
    if (path == "/text") return reply(200, "status: all systems nominal");
    if (path == "/truncated") {
      send_all(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
      return;
    }
    if (path == "/slow") {
      for (int i = 0; i < 40 && !stop_; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      return reply(200, "late");
    }
    reply(404, "no");
  }

  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string meminfo(long total, long available, long swap_total, long swap_free,
                    bool with_available = true) {
  std::string s = "MemTotal:       " + std::to_string(total) + " kB\nMemFree:        1000 kB\n";
  if (with_available) s += "MemAvailable:   " + std::to_string(available) + " kB\n";
  s += "Buffers:        " + std::to_string(with_available ? 0 : available / 2) +
       " kB\nCached:         " + std::to_string(with_available ? 0 : available / 2 - 1000) +
       " kB\n";
  s += "SwapTotal:      " + std::to_string(swap_total) +
       " kB\nSwapFree:       " + std::to_string(swap_free) + " kB\n";
  return s;
}
}  // namespace

TEST_CASE("pcheck finds real processes by name, command line and pidfile") {
  Sleeper s("1234.5678");
  auto o = run_probe("pcheck", {"--cmdline", "^sleep 1234\\.5678$"});
  CHECK(o.code == 0);
  CHECK(o.result["status"] == "ok");
  CHECK(detail(o) ==
        "1 process matching /^sleep 1234\\.5678$/ (pid " + std::to_string(s.pid) + ")");
  CHECK(o.result["metrics"]["count"]["value"] == 1);

  o = run_probe("pcheck", {"--name", "sleep", "--cmdline", "1234\\.5678"});
  CHECK(o.code == 0);
  o = run_probe("pcheck", {"--name", "sleep", "--cmdline", "1234\\.5678", "--min", "2"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("at least 2 wanted") != std::string::npos);
  o = run_probe("pcheck", {"--cmdline", "1234\\.5678", "--max", "0", "--min", "0"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("at most 0 allowed") != std::string::npos);
  o = run_probe("pcheck", {"--name", "no-such-process-name"});
  CHECK(o.code == 2);
  CHECK(detail(o) == "no process named no-such-process-name");

  vt::Node dir;
  dir.write("app.pid", std::to_string(s.pid) + "\n");
  o = run_probe("pcheck", {"--pidfile", dir.path("app.pid")});
  CHECK(o.code == 0);
  o = run_probe("pcheck", {"--pidfile", dir.path("app.pid"), "--name", "bash"});
  CHECK(o.code == 2);  // the pid is alive, but not the process named
  dir.write("stale.pid", "999999999\n");
  o = run_probe("pcheck", {"--pidfile", dir.path("stale.pid")});
  CHECK(o.code == 2);
  CHECK(detail(o).find("no process alive for pid 999999999") != std::string::npos);
  o = run_probe("pcheck", {"--pidfile", dir.path("missing.pid")});
  CHECK(o.code == 2);
  CHECK(detail(o).find("is missing or empty") != std::string::npos);
  CHECK(vt::run_command({BUILD_DIR "/probes/pcheck", "--once"}).code == 3);  // nothing to look for
  CHECK(vt::run_command({BUILD_DIR "/probes/pcheck", "--cmdline", "(", "--once"}).code == 3);
}

TEST_CASE("pcheck speaks jsonl without --once") {
  Sleeper s("1234.9876");
  vt::Node dir;
  dir.write("in", "{\"check\":1}\n{\"check\":2}\n");
  auto r = vt::run_command(
      {"/bin/sh", "-c",
       std::string(BUILD_DIR) + "/probes/pcheck --cmdline 1234.9876 < " + dir.path("in")});
  CHECK(r.code == 0);
  auto lines = r.out;
  CHECK(lines.find("{\"check\":1,") == 0);
  CHECK(lines.find("\n{\"check\":2,") != std::string::npos);
}

TEST_CASE("memcheck: levels, swap, and machines without swap") {
  vt::Node d;
  auto check = [&](const std::string& info, std::vector<std::string> args) {
    d.write("meminfo", info);
    args.push_back("--meminfo");
    args.push_back(d.path("meminfo"));
    return run_probe("memcheck", args);
  };
  auto o = check(meminfo(1000000, 500000, 1000000, 900000),
                 {"--min-available", "10%", "--min-swap-free", "20%"});
  CHECK(o.code == 0);
  CHECK(detail(o).find("available memory 50.0%") == 0);
  CHECK(detail(o).find("free swap 90.0%") != std::string::npos);
  CHECK(o.result["metrics"]["mem_available"]["value"] == doctest::Approx(50.0));
  CHECK(o.result["metrics"]["swap_free"]["crit"] == 20.0);

  o = check(meminfo(1000000, 50000, 0, 0), {"--min-available", "10%"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("available memory 5.0% is below 10.0%") == 0);
  o = check(meminfo(1000000, 150000, 0, 0), {"--min-available", "10%", "--warn-available", "20%"});
  CHECK(o.code == 1);
  CHECK(detail(o).find("below the warning level 20.0%") != std::string::npos);

  o = check(meminfo(1000000, 500000, 1000000, 100000), {"--min-swap-free", "20%"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("free swap 10.0% is below 20.0%") == 0);
  o = check(meminfo(1000000, 500000, 1000000, 300000),
            {"--min-swap-free", "20%", "--warn-swap-free", "40%"});
  CHECK(o.code == 1);

  o = check(meminfo(1000000, 500000, 0, 0), {"--min-swap-free", "20%"});
  CHECK(o.code == 0);  // no swap is not a lack of swap headroom...
  CHECK(detail(o).find("no swap configured") != std::string::npos);
  o = check(meminfo(1000000, 500000, 0, 0), {"--require-swap"});
  CHECK(o.code == 2);  // ...unless asked for

  o = check(meminfo(1000000, 400000, 0, 0, false), {"--min-available", "30%"});
  CHECK(o.code == 0);  // free + buffers + cached where MemAvailable is missing
  CHECK(detail(o).find("available memory 40.0%") == 0);

  o = run_probe("memcheck", {"--meminfo", d.path("nothing-here")});
  CHECK(o.code == 2);
  CHECK(detail(o).find("cannot read") == 0);
  CHECK(vt::run_command({BUILD_DIR "/probes/memcheck", "--min-available", "150%", "--once"}).code ==
        3);
  o = run_probe("memcheck", {});
  CHECK(o.result["status"].is_string());  // this machine's own /proc/meminfo
}

TEST_CASE("content: exact length, status, pattern, and distinct failures") {
  HttpServer http;
  auto o = run_probe("content", {"--url", http.url("/ok"), "--bytes", "1234"});
  CHECK(o.code == 0);
  CHECK(detail(o).find("HTTP 200, 1234 bytes in ") == 0);
  CHECK(o.result["metrics"]["size"]["value"] == 1234);

  o = run_probe("content", {"--url", http.url("/short"), "--bytes", "1234"});
  CHECK(o.code == 2);
  CHECK(detail(o) == "body is 1000 bytes, expected exactly 1234");

  o = run_probe("content", {"--url", http.url("/error")});
  CHECK(o.code == 2);
  CHECK(detail(o) == "HTTP 500, expected 200");
  o = run_probe("content", {"--url", http.url("/error"), "--status", "500"});
  CHECK(o.code == 0);

  o = run_probe("content", {"--url", http.url("/text"), "--pattern", "all systems (go|nominal)"});
  CHECK(o.code == 0);
  o = run_probe("content", {"--url", http.url("/text"), "--pattern", "^down"});
  CHECK(o.code == 2);
  CHECK(detail(o) == "body does not match /^down/");

  o = run_probe("content", {"--url", http.url("/slow"), "--timeout", "300ms"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("timed out after 300ms") == 0);

  o = run_probe("content", {"--url", http.url("/truncated"), "--bytes", "100"});
  CHECK(o.code == 2);
  CHECK(detail(o) == "response truncated: got 10 bytes of 100 announced");

  o = run_probe("content", {"--url", "https://127.0.0.1:" + std::to_string(http.port()) + "/ok"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("TLS error: ") == 0);

  int closed_port;
  {
    HttpServer gone;
    closed_port = gone.port();
  }
  o = run_probe("content", {"--url", "http://127.0.0.1:" + std::to_string(closed_port) + "/"});
  CHECK(o.code == 2);
  CHECK(detail(o).find("cannot connect to http://127.0.0.1:") == 0);
  CHECK(vt::run_command({BUILD_DIR "/probes/content", "--once"}).code == 3);  // --url is required
}
