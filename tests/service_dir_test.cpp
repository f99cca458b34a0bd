#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>
#include <csignal>

#include "harness.hpp"
#include "service_dir.hpp"

using namespace vac;
using namespace std::chrono_literals;

namespace {
bool has(const std::vector<std::string>& errors, const std::string& text) {
  for (auto& e : errors)
    if (e.find(text) != std::string::npos) return true;
  return false;
}
std::string all(const std::vector<std::string>& errors) {
  std::string s;
  for (auto& e : errors) s += e + "\n";
  return s;
}
}  // namespace

TEST_CASE("every knob of a service directory is read") {
  vt::Node n;
  n.service("db", "exec sleep 1000");
  n.service("app", "exec sleep 1000",
            {{"depends", "db\n# a comment\n\n"},
             {"notification-fd", "4\n"},
             {"timeout-stop", "2.5\n"},
             {"timeout-finish", "500ms"},
             {"down-signal", "SIGQUIT\n"},
             {"down", ""},
             {"finish", "#!/bin/sh\n"},
             {"env/GREETING", "hello world  \nsecond line ignored\n"},
             {"env/HOME", ""},
             {"log/run", "#!/bin/sh\nexec cat\n"}});
  std::vector<std::string> errors;
  auto specs = load_services(n.path("services.d"), errors);
  REQUIRE_MESSAGE(errors.empty(), all(errors));
  REQUIRE(specs.size() == 2);
  CHECK(specs[0].name == "db");  // start order
  const ServiceSpec& app = specs[1];
  CHECK(app.depends == std::vector<std::string>{"db"});
  CHECK(app.notification_fd == 4);
  CHECK(app.timeout_stop == 2500ms);
  CHECK(app.timeout_finish == 500ms);
  CHECK(app.stop_signal == SIGQUIT);
  CHECK(app.down);
  CHECK(app.has_finish);
  CHECK_FALSE(app.has_ready);
  CHECK(app.has_log);
  CHECK(app.env.at("GREETING") == "hello world");
  CHECK(app.unset_env == std::vector<std::string>{"HOME"});
  CHECK_FALSE(specs[0].down);
}

TEST_CASE("broken service directories name the file at fault") {
  vt::Node n;
  n.write("services.d/norun/README", "no run here");
  n.service("noexec", "exec sleep 1000");
  chmod(n.path("services.d/noexec/run").c_str(), 0644);
  n.service("badfd", "true", {{"notification-fd", "1"}});
  n.service("badtimeout", "true", {{"timeout-stop", "soon"}});
  n.service("badsignal", "true", {{"down-signal", "FOO"}});
  n.service("badfinish", "true", {{"finish", "#!/bin/sh\n"}});
  chmod(n.path("services.d/badfinish/finish").c_str(), 0644);
  n.service("unreadable", "true");
  mkdir(n.path("services.d/unreadable/depends").c_str(), 0755);  // a directory, not a file
  n.service("nolog", "true");
  mkdir(n.path("services.d/nolog/log").c_str(), 0755);
  std::vector<std::string> errors;
  load_services(n.path("services.d"), errors);
  std::string d = n.path("services.d");
  CHECK_MESSAGE(has(errors, d + "/norun/run: missing"), all(errors));
  CHECK(has(errors, d + "/noexec/run: not executable"));
  CHECK(has(errors, d + "/badfd/notification-fd: expected a file descriptor number from 3"));
  CHECK(has(errors, d + "/badtimeout/timeout-stop: bad duration \"soon\""));
  CHECK(has(errors, d + "/badsignal/down-signal: unknown signal \"FOO\""));
  CHECK(has(errors, d + "/badfinish/finish: not an executable file"));
  CHECK(has(errors, d + "/unreadable/depends: is a directory, not a file"));
  CHECK(has(errors, d + "/nolog/log/run: missing or not executable"));
}

TEST_CASE("unknown dependencies and cycles are config errors") {
  vt::Node n;
  n.service("web", "true", {{"depends", "ap\n"}});
  n.service("app", "true");
  std::vector<std::string> errors;
  load_services(n.path("services.d"), errors);
  CHECK(has(errors, "service \"web\" depends on unknown service \"ap\" (did you mean \"app\"?)"));

  vt::Node m;
  m.service("a", "true", {{"depends", "b"}});
  m.service("b", "true", {{"depends", "a"}});
  errors.clear();
  load_services(m.path("services.d"), errors);
  CHECK(has(errors, "dependency cycle: a -> b -> a"));
}

TEST_CASE("a missing services directory is an error naming it") {
  std::vector<std::string> errors;
  load_services("/nonexistent/services.d", errors);
  CHECK(has(errors, "cannot open services directory /nonexistent/services.d"));
}

TEST_CASE("knob bytes: not UTF-8, NUL, wrong values give an error naming the file") {
  ServiceSpec s;
  std::vector<std::string> errors;
  const std::string p = "/s/app/";
  CHECK_FALSE(apply_knob("depends", "web\n\xff\xfe\n", p + "depends", s, errors));
  CHECK(has(errors, "/s/app/depends: is not valid UTF-8 text"));
  CHECK_FALSE(apply_knob("down-signal", std::string("TERM\0", 5), p + "down-signal", s, errors));
  CHECK(has(errors, "/s/app/down-signal: contains a NUL byte"));
  CHECK_FALSE(apply_knob("depends", "../etc\n", p + "depends", s, errors));
  CHECK(has(errors, "/s/app/depends: \"../etc\": a service name cannot start with '.'"));
  CHECK_FALSE(apply_knob("depends", "a/b\n", p + "depends", s, errors));
  CHECK_FALSE(
      apply_knob("notification-fd", "99999999999999999999", p + "notification-fd", s, errors));
  CHECK(has(errors, "/s/app/notification-fd: expected a file descriptor number from 3 to 1023"));
  CHECK_FALSE(apply_knob("timeout-stop", "1e9", p + "timeout-stop", s, errors));
  CHECK_FALSE(apply_knob("timeout-stop", "-1", p + "timeout-stop", s, errors));
  CHECK_FALSE(apply_knob("env/X", "caf\xc3\x28", p + "env/X", s, errors));
  CHECK(has(errors, "/s/app/env/X: is not valid UTF-8 text"));
  CHECK(s.depends.empty());
  errors.clear();
  // runit's envdir: NUL bytes in a value become newlines; an empty file unsets.
  CHECK(apply_knob("env/X", std::string("a\0b  \nignored", 13), p + "env/X", s, errors));
  CHECK(s.env["X"] == "a\nb");
  CHECK(apply_knob("env/Y", "", p + "env/Y", s, errors));
  CHECK(s.unset_env == std::vector<std::string>{"Y"});
  CHECK(apply_knob("depends", "caf\xc3\xa9\n", p + "depends", s, errors));  // UTF-8 is fine
  CHECK(s.depends == std::vector<std::string>{"caf\xc3\xa9"});
  CHECK(errors.empty());
}

TEST_CASE("knob files of the wrong type: FIFO, directory, huge, dangling symlink, loop") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  std::string d = n.path("services.d/app");
  REQUIRE(mkfifo((d + "/depends").c_str(), 0644) == 0);
  n.write("services.d/app/timeout-stop", std::string(kMaxKnobBytes + 1, '1'));
  REQUIRE(symlink("nowhere", (d + "/down-signal").c_str()) == 0);
  REQUIRE(symlink("timeout-finish", (d + "/timeout-finish").c_str()) == 0);
  REQUIRE(mkdir((d + "/env").c_str(), 0755) == 0);
  REQUIRE(mkdir((d + "/env/DIR").c_str(), 0755) == 0);
  std::vector<std::string> errors;
  load_services(n.path("services.d"), errors);  // must return: a FIFO is not waited on
  CHECK_MESSAGE(has(errors, d + "/depends: is a FIFO"), all(errors));
  CHECK(has(errors, d + "/timeout-stop: is too large"));
  CHECK(has(errors, d + "/down-signal: No such file or directory"));
  CHECK(has(errors, d + "/timeout-finish: a symlink loop"));
  CHECK(has(errors, d + "/env/DIR: is a directory, not a file"));
}

TEST_CASE("a service directory named with bytes that are not UTF-8 is refused by name") {
  vt::Node n;
  n.service("caf\xc3\x28", "exec sleep 1000");
  std::vector<std::string> errors;
  auto specs = load_services(n.path("services.d"), errors);
  CHECK(has(errors, "a service name must be valid UTF-8"));
  CHECK(specs.empty());
}

// The class of the issue: bad bytes in a knob file made check-config abort (134) and a SIGHUP
// kill the running supervisor. Both now report and carry on.
TEST_CASE("bad knob bytes: check-config exits 3 and SIGHUP keeps the supervisor running") {
  vt::Node n;
  n.service("app", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  pid_t app = n.service_status("app")["pid"];
  size_t reloads = 0;
  for (auto& [knob, bytes] : std::vector<std::pair<std::string, std::string>>{
           {"depends", "caf\xc3\x28\n"},
           {"down-signal", "\xff\xfe"},
           {"depends", std::string("a\0b", 3)},
           {"notification-fd", std::string(100000, '9')}}) {
    CAPTURE(knob);
    n.write("services.d/app/" + knob, bytes);
    auto r = n.cli({"check-config"});
    CHECK(r.code == 3);
    CHECK(r.out.find(n.path("services.d/app/" + knob)) != std::string::npos);
    kill(n.pid(), SIGHUP);
    ++reloads;
    CHECK(vt::eventually([&] {
      std::string log = n.log();
      size_t count = 0;
      for (size_t at = 0; (at = log.find("services not reloaded", at)) != std::string::npos; ++at)
        ++count;
      return count == reloads;
    }));
    CHECK(n.log().find(n.path("services.d/app/" + knob)) != std::string::npos);
    CHECK(vt::process_exists(n.pid()));
    CHECK(n.service_status("app")["pid"] == app);
    unlink(n.path("services.d/app/" + knob).c_str());
  }
  CHECK(n.stop() == 0);
}
