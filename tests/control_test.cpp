// The control socket and the CLI: each svc command, who may use them, exit codes, and the
// human and JSON forms of status.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>

#include "common/text.hpp"
#include "control.hpp"
#include "harness.hpp"

using vt::json;

namespace {
// Runs a control call as uid/gid 65534 (nobody/nogroup) in a child process and returns the
// reply's code (0 when ok).
int call_as_nobody(const std::string& socket, const json& request) {
  std::string err;
  auto decoded = vac::decode_control_request(request.dump(), err);
  REQUIRE_MESSAGE(decoded, err);
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(100);
    vac::ControlReply reply;
    if (vac::control_call(socket, *decoded, reply, err) != 0) _exit(101);
    _exit(reply.ok ? 0 : reply.code);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
}  // namespace

TEST_CASE("svc up, down, restart and kill") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.service("web", "exec sleep 1000", {{"depends", "app"}});
  n.start();
  REQUIRE(n.wait_state("web", "up"));

  auto r = n.cli({"svc", "down", "app"});
  CHECK(r.code == 0);
  CHECK(r.out.find("app: down (with its dependents: web)") != std::string::npos);
  REQUIRE(n.wait_state("app", "down"));
  CHECK(n.service_status("web")["state"] == "down");

  r = n.cli({"svc", "up", "web"});
  CHECK(r.code == 0);
  CHECK(r.out.find("with its dependencies: app") != std::string::npos);
  REQUIRE(n.wait_state("web", "up"));
  CHECK(n.service_status("app")["state"] == "up");

  pid_t before = n.service_status("app")["pid"];
  CHECK(n.cli({"svc", "restart", "app"}).code == 0);
  REQUIRE(n.wait_service("app",
                         [&](const json& s) { return s["state"] == "up" && s["pid"] != before; }));
  CHECK(n.service_status("app")["restarts"] == 0);  // asked for: not a crash
  CHECK(n.service_status("app")["last_exit"].get<std::string>().rfind("signal 15", 0) == 0);

  before = n.service_status("web")["pid"];
  CHECK(n.cli({"svc", "kill", "web"}).code == 0);
  REQUIRE(n.wait_service("web",
                         [&](const json& s) { return s["state"] == "up" && s["pid"] != before; }));
  CHECK(n.service_status("web")["restarts"] == 1);

  r = n.cli({"svc", "up", "wbe"});
  CHECK(r.code == 1);
  CHECK(r.out.find("no service named \"wbe\" (did you mean \"web\"?)") != std::string::npos);
  CHECK(n.cli({"svc", "down", "web"}).code == 0);
  REQUIRE(n.wait_state("web", "down"));
  r = n.cli({"svc", "kill", "web"});
  CHECK(r.code == 1);
  CHECK(r.out.find("web is not running") != std::string::npos);
  CHECK(n.cli({"svc", "frobnicate", "web"}).code == 2);
  CHECK(n.stop() == 0);
}

TEST_CASE("a non-root caller may read status but not change anything") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  std::string sock = n.path("control.sock");
  CHECK(call_as_nobody(sock, {{"cmd", "status"}}) == 0);
  CHECK(call_as_nobody(sock, {{"cmd", "svc"}, {"action", "down"}, {"name", "app"}}) == 5);
  CHECK(call_as_nobody(sock, {{"cmd", "svc"}, {"action", "kill"}, {"name", "app"}}) == 5);
  CHECK(n.service_status("app")["state"] == "up");
  CHECK(n.service_status("app")["restarts"] == 0);
  CHECK(n.wait_log("refused `svc` from uid 65534"));
  CHECK(n.stop() == 0);
}

TEST_CASE("control_group lets its members use mutating commands") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.configure({{"control_group", "nogroup"}});
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  CHECK(call_as_nobody(n.path("control.sock"),
                       {{"cmd", "svc"}, {"action", "down"}, {"name", "app"}}) == 0);
  REQUIRE(n.wait_state("app", "down"));
  CHECK(n.stop() == 0);
}

TEST_CASE("status: a human table and stable JSON") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.service("idle", "exec sleep 1000", {{"down", ""}});
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  auto r = n.cli({"status"});
  CHECK(r.code == 0);
  CHECK(r.out.find("node t1 (master)  state active  healthy yes") != std::string::npos);
  CHECK(r.out.find("SERVICE  STATE  PID") != std::string::npos);
  CHECK(r.out.find("\napp      up     ") != std::string::npos);
  CHECK(r.out.find("\nidle     down   -") != std::string::npos);
  r = n.cli({"status", "--json"});
  CHECK(r.code == 0);
  json st = json::parse(r.out);
  for (auto key : {"name", "role", "state", "epoch", "healthy"}) CHECK(st["node"].contains(key));
  CHECK(st["peer"]["state"] == "none");
  for (auto key : {"state", "pid", "restarts"}) CHECK(st["services"]["app"].contains(key));
  CHECK(st["services"]["idle"]["pid"].is_null());
  CHECK(st["probes"].is_object());
  CHECK(n.stop() == 0);
}

TEST_CASE("exit codes: unreachable supervisor, bad config, usage") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  auto r = n.cli({"status"});
  CHECK(r.code == 4);
  CHECK(r.out.find("no supervisor answers on") != std::string::npos);
  CHECK(n.cli({"check-config"}).code == 0);
  n.write("vacataire.json", "{\"node\": {\"nmae\": \"x\"}}");
  r = n.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("node.nmae: unknown key (did you mean \"name\"?)") != std::string::npos);
  CHECK(r.out.find("nothing was started") != std::string::npos);
  r = n.cli({"run"});
  CHECK(r.code == 3);
  CHECK(vt::run_command({VACATAIRE_BIN, "no-such-command"}).code == 2);
  CHECK(vt::run_command({VACATAIRE_BIN, "--help"}).code == 0);
}

TEST_CASE("check-config reports broken services with their files") {
  vt::Node n;
  n.service("web", "true", {{"depends", "app"}});
  auto r = n.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("depends on unknown service \"app\"") != std::string::npos);
}

TEST_CASE("a second supervisor on the same state directory and socket refuses to start") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  auto r = n.cli({"run"});
  CHECK(r.code == 1);
  CHECK(r.out.find(vac::cat("is in use by another supervisor (pid ", n.pid(), ")")) !=
        std::string::npos);
  CHECK(n.service_status("app")["restarts"] == 0);
  CHECK(n.stop() == 0);
}

namespace {
int connect_to(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// Reads until a newline, end of stream or the deadline; "" on timeout.
std::string read_reply(int fd, double timeout_s = 10) {
  std::string text;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<int>(timeout_s * 1000));
  char buf[4096];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) return text.empty() ? "<eof>" : text;
    text.append(buf, static_cast<size_t>(n));
    if (text.back() == '\n') return text;
  }
  return "";
}

// Sends raw bytes as a client would and returns the reply line.
std::string raw_request(const std::string& socket, const std::string& bytes) {
  int fd = connect_to(socket);
  REQUIRE(fd >= 0);
  size_t sent = 0;
  while (sent < bytes.size()) {
    ssize_t n = send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;  // the server may refuse a huge line before reading all of it
    sent += static_cast<size_t>(n);
  }
  std::string reply = read_reply(fd);
  close(fd);
  return reply;
}
}  // namespace

TEST_CASE("the control codec: typed requests, refusals that name the field, never a throw") {
  std::string err;
  auto r = vac::decode_control_request(R"({"cmd":"svc","action":"up","name":"web"})", err);
  REQUIRE(r);
  CHECK(r->cmd == vac::ControlRequest::Cmd::svc);
  CHECK(r->action == "up");
  CHECK(r->name == "web");
  std::string line = vac::encode_control_request(*r);
  CHECK(line.back() == '\n');
  line.pop_back();
  CHECK(*vac::decode_control_request(line, err) == *r);

  struct Bad {
    std::string line, reason;
  } bad[] = {
      {R"({"cmd":"svc","action":5,"name":"web"})", "field \"action\" must be a string"},
      {R"({"cmd":"svc","action":"up","name":["web"]})", "field \"name\" must be a string"},
      {R"({"cmd":"svc","action":"up"})", "missing field \"name\""},
      {R"({"cmd":"svc","action":"explode","name":"web"})", "unknown svc action \"explode\""},
      {R"({"cmd":5})", "field \"cmd\" must be a string"},
      {R"({"cmd":"format-disk"})", "unknown command \"format-disk\""},
      {R"({"cmd":"recover","failback":"yes"})", "field \"failback\" must be true or false"},
      {R"({"cmd":"maintenance"})", "missing field \"on\""},
      {R"({"cmd":"probe","name":""})", "field \"name\" must not be empty"},
      {R"(["cmd","status"])", "expected a JSON object"},
      {R"({"cmd":"status")", "not valid JSON"},
      {"{\"cmd\":\"st\xff\"}", "not valid UTF-8"},
      {std::string(vac::kMaxControlRequest + 1, ' '), "request too long"},
  };
  for (auto& b : bad) {
    CAPTURE(b.line);
    err.clear();
    std::optional<vac::ControlRequest> got;
    CHECK_NOTHROW(got = vac::decode_control_request(b.line, err));
    CHECK_FALSE(got);
    CHECK(err.find(b.reason) != std::string::npos);
  }

  auto reply = vac::decode_control_reply(R"({"ok":false,"code":"5","error":7})", err);
  CHECK_FALSE(reply);
  CHECK(err.find("field \"code\" must be an integer") != std::string::npos);
  reply = vac::decode_control_reply(R"({"ok":false,"code":9999,"error":"x"})", err);
  REQUIRE(reply);
  CHECK(reply->code == 1);  // never an exit code out of range
}

TEST_CASE("raw clients sending garbage get a refusal; the supervisor keeps serving") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  pid_t app = n.service_status("app")["pid"];
  std::string sock = n.path("control.sock");
  struct Case {
    std::string bytes, reason;
  } cases[] = {
      {"{\"cmd\":\"svc\",\"action\":5,\"name\":\"app\"}\n",
       "field \\\"action\\\" must be a string"},
      {"{\"cmd\":\"svc\",\"action\":\"down\",\"name\":5}\n", "field \\\"name\\\" must be a string"},
      {"{\"cmd\":\"maintenance\",\"on\":\"off\"}\n", "field \\\"on\\\" must be true or false"},
      {"\x01\x02\x03garbage\n", "not valid JSON"},
      {"{\"cmd\":\"status\xc3\x28\"}\n", "not valid UTF-8"},
      {std::string(1 << 20, 'x') + "\n", "request too long"},
      {"null\n", "expected a JSON object"},
  };
  for (auto& c : cases) {
    CAPTURE(c.reason);
    std::string reply = raw_request(sock, c.bytes);
    CHECK(reply.find("\"ok\":false") != std::string::npos);
    CHECK(reply.find("\"code\":2") != std::string::npos);
    CHECK(reply.find(c.reason) != std::string::npos);
  }
  // A request in pieces and a request followed by the end of the stream both work.
  int fd = connect_to(sock);
  REQUIRE(fd >= 0);
  CHECK(write(fd, "{\"cmd\":", 7) == 7);
  CHECK(write(fd, "\"status\"}\n", 10) == 10);
  shutdown(fd, SHUT_WR);
  CHECK(read_reply(fd).find("\"ok\":true") != std::string::npos);
  close(fd);
  CHECK(n.service_status("app")["pid"] == app);  // nothing was done by the garbage
  CHECK(n.cli({"status"}).code == 0);
  CHECK(n.stop() == 0);
}

TEST_CASE("a client that says nothing is closed after the request deadline") {
  vt::Node n;
  n.start();
  int fd = connect_to(n.path("control.sock"));
  REQUIRE(fd >= 0);
  auto start = std::chrono::steady_clock::now();
  std::string r = read_reply(fd, 15);
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  CHECK(r == "<eof>");   // closed by the supervisor, no reply: there was no request
  CHECK(waited >= 1.0);  // the deadline (2s), not at once
  CHECK(waited < 15);
  close(fd);
  CHECK(n.stop() == 0);
}

TEST_CASE("an unprivileged flood of connections does not lock root out") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  std::string sock = n.path("control.sock");
  // As nobody: open as many connections as possible and keep them open, re-opening those the
  // supervisor closes, until told to stop (or 60 s pass).
  int ready[2];
  REQUIRE(pipe(ready) == 0);
  pid_t flooder = fork();
  if (flooder == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(100);
    std::vector<int> fds;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool told = false;
    while (std::chrono::steady_clock::now() < until) {
      while (fds.size() < 500) {
        int fd = connect_to(sock);
        if (fd < 0) break;
        fds.push_back(fd);
      }
      if (!told) told = write(ready[1], "r", 1) == 1;
      // Drop the ones the supervisor closed, to open new ones.
      std::erase_if(fds, [](int fd) {
        pollfd p{fd, POLLIN, 0};
        if (poll(&p, 1, 0) == 1) {
          char c;
          if (recv(fd, &c, 1, MSG_DONTWAIT) <= 0) return close(fd), true;
        }
        return false;
      });
      usleep(10000);
    }
    _exit(0);
  }
  close(ready[1]);
  char c;
  REQUIRE(read(ready[0], &c, 1) == 1);
  close(ready[0]);
  for (int i = 0; i < 5; ++i) {
    auto r = n.cli({"status"});
    CHECK_MESSAGE(r.code == 0, r.out);
  }
  pid_t before = n.service_status("app")["pid"];
  auto r = n.cli({"svc", "restart", "app"});
  CHECK_MESSAGE(r.code == 0, r.out);
  CHECK(n.wait_service("app", [&](const json& s) { return s["pid"] != before; }));
  CHECK(n.wait_log("too many control connections from uid 65534"));
  kill(flooder, SIGKILL);
  waitpid(flooder, nullptr, 0);
  CHECK(n.stop() == 0);
}

TEST_CASE("the CLI reports a connection broken by the supervisor in words") {
  vt::Node n;
  // A fake supervisor that accepts and closes at once, without replying.
  int srv = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", n.path("control.sock").c_str());
  REQUIRE(bind(srv, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(listen(srv, 8) == 0);
  pid_t closer = fork();
  if (closer == 0) {
    for (int i = 0; i < 2; ++i) {
      int c = accept(srv, nullptr, nullptr);
      if (i == 1) {  // the second one gets its request read, then half a reply
        char buf[512];
        (void)!read(c, buf, sizeof buf);
        (void)!write(c, "{\"ok\":tr", 8);
      }
      close(c);
    }
    _exit(0);
  }
  auto r = n.cli({"svc", "down", "app"});
  CHECK(r.code == 4);
  CHECK(r.out.find("the connection to the supervisor broke") != std::string::npos);
  r = n.cli({"status"});
  CHECK(r.code == 4);
  CHECK(r.out.find("in the middle of the reply") != std::string::npos);
  waitpid(closer, nullptr, 0);
  close(srv);
}

TEST_CASE("a second supervisor sharing the state directory leaves the first one's services") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  pid_t app = n.service_status("app")["pid"];
  // Same state directory, another control socket: only the lock can tell.
  n.write("second.json", json({{"node", {{"name", "t2"}, {"state_dir", "state"}}},
                               {"services_dir", "services.d"},
                               {"control_socket", "second.sock"}})
                             .dump());
  auto r = vt::run_command({VACATAIRE_BIN, "run", "-c", n.path("second.json")});
  CHECK(r.code == 1);
  CHECK(r.out.find(vac::cat("state directory ", n.path("state"),
                            " is in use by another supervisor (pid ", n.pid(), ")")) !=
        std::string::npos);
  CHECK(r.out.find("stopping process group") == std::string::npos);
  CHECK(vt::process_exists(app));
  CHECK(n.service_status("app")["pid"] == app);
  CHECK(n.service_status("app")["restarts"] == 0);
  CHECK(vt::read_file(n.path("state/lock")) == vac::cat(n.pid(), "\n"));
  CHECK(n.stop() == 0);
  // Once the first is gone, the lock is free.
  n.start();
  CHECK(n.wait_state("app", "up"));
  CHECK(n.stop() == 0);
}

TEST_CASE("a relative -c works for run exactly as for check-config") {
  vt::Node n;
  n.write("probes/check", "#!/bin/sh\necho ok\n", 0755);
  n.service("app", "exec sleep 1000");
  n.configure({{"probes", {{"local", {{"exec", {"probes/check"}}, {"protocol", "exit"}}}}}});
  auto in_dir = [&](const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"/bin/sh", "-c", "cd \"$0\" && exec \"$@\"", n.dir,
                                     VACATAIRE_BIN};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  };
  auto r = vt::run_command(in_dir({"check-config", "-c", "vacataire.json"}));
  CHECK_MESSAGE(r.code == 0, r.out);
  CHECK(r.out.find(n.config_path() + ": ok") != std::string::npos);
  r = vt::run_command(in_dir({"check-config", "-c", "./vacataire.json"}));
  CHECK_MESSAGE(r.code == 0, r.out);
  n.run_args = {};
  pid_t pid = fork();
  if (pid == 0) {
    setpgid(0, 0);
    int log = open(n.path("supervisor.log").c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    dup2(log, 1);
    dup2(log, 2);
    if (chdir(n.dir.c_str()) != 0) _exit(127);
    execl(VACATAIRE_BIN, VACATAIRE_BIN, "run", "-c", "vacataire.json", nullptr);
    _exit(127);
  }
  CHECK(n.wait_state("app", "up"));
  CHECK(n.wait_probe("local", [](const json& p) { return p["state"] == "passing"; }));
  // SIGHUP reloads the same file, by its absolute name.
  kill(pid, SIGHUP);
  CHECK(n.wait_log("reloaded " + n.config_path()));
  kill(pid, SIGTERM);
  int status = 0;
  CHECK(vt::eventually([&] { return waitpid(pid, &status, WNOHANG) == pid; }, 20));
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
