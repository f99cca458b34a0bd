// The control socket and the CLI: each svc command, who may use them, exit codes, and the
// human and JSON forms of status.
#include <doctest/doctest.h>

#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>

#include "control.hpp"
#include "harness.hpp"

using vt::json;

namespace {
// Runs a control call as uid/gid 65534 (nobody/nogroup) in a child process and returns the
// reply's code (0 when ok).
int call_as_nobody(const std::string& socket, const json& request) {
  pid_t pid = fork();
  if (pid == 0) {
    if (setgroups(0, nullptr) != 0 || setresgid(65534, 65534, 65534) != 0 ||
        setresuid(65534, 65534, 65534) != 0)
      _exit(100);
    json reply;
    std::string err;
    if (vac::control_call(socket, request, reply, err) != 0) _exit(101);
    _exit(reply.value("ok", false) ? 0 : reply.value("code", 102));
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

TEST_CASE("a second supervisor on the same control socket refuses to start") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  auto r = n.cli({"run"});
  CHECK(r.code == 1);
  CHECK(r.out.find("another supervisor is already running") != std::string::npos);
  CHECK(n.service_status("app")["restarts"] == 0);
  CHECK(n.stop() == 0);
}
