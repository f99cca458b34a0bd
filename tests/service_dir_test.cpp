#include <doctest/doctest.h>

#include <sys/stat.h>
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
