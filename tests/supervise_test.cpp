// `vacataire run` with real processes: restarts, backoff, dependency order, readiness, stop
// timeouts, process groups, crash recovery of the supervisor itself.
#include <doctest/doctest.h>

#include <unistd.h>
#include <algorithm>
#include <csignal>

#include "common/text.hpp"
#include "harness.hpp"

using vt::json;

namespace {
pid_t pid_of(vt::Node& n, const std::string& name) {
  json s = n.service_status(name);
  return s["pid"].is_number() ? s["pid"].get<pid_t>() : 0;
}
}  // namespace

TEST_CASE("a service inherits only its standard fds") {
  vt::Node n;
  n.service("plain", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("plain", "up"));
  std::string fds =
      vt::run_command({"/bin/ls", "/proc/" + std::to_string(pid_of(n, "plain")) + "/fd"}).out;
  CHECK(fds == "0\n1\n2\n");
  CHECK(n.stop() == 0);
}

TEST_CASE("a crashed service is restarted at once and counted") {
  vt::Node n;
  n.service("svc", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("svc", "up"));
  pid_t first = pid_of(n, "svc");
  REQUIRE(first > 0);
  kill(first, SIGKILL);
  REQUIRE(n.wait_service("svc", [&](const json& s) {
    return s["state"] == "up" && s["pid"].is_number() && s["pid"] != first;
  }));
  json s = n.service_status("svc");
  CHECK(s["restarts"] == 1);
  CHECK(s["last_exit"].get<std::string>().rfind("signal 9", 0) == 0);
  CHECK_FALSE(vt::process_exists(first));
  CHECK(n.stop() == 0);
}

TEST_CASE("a crash loop backs off exponentially to the cap and never spins") {
  vt::Node n;  // backoff 50ms, cap 400ms, stable after 1s
  n.service("loop", "echo started >> ../../starts; exit 3");
  n.start();
  std::vector<double> delays;
  REQUIRE(n.wait_service("loop", [&](const json& s) {
    if (s.contains("backoff_s")) {
      double d = s["backoff_s"];
      if (delays.empty() || delays.back() != d) delays.push_back(d);
    }
    return s["restarts"].get<int>() >= 6;
  }));
  REQUIRE(delays.size() >= 3);
  for (size_t i = 1; i < delays.size(); ++i) CHECK(delays[i] >= delays[i - 1]);
  CHECK(delays.back() == doctest::Approx(0.4));
  for (double d : delays) CHECK(d <= 0.4);
  CHECK(n.service_status("loop")["last_exit"] == "exit 3");
  // Starts are paced by the backoff: 0 + 50 + 100 + 200 + 400 ms for six starts, so six
  // starts cannot have happened in less than 0.75 s of supervisor uptime.
  json st = n.status();
  std::string starts_log = vt::read_file(n.path("starts"));
  auto starts = std::count(starts_log.begin(), starts_log.end(), '\n');
  CHECK(starts >= 6);
  CHECK(st["node"]["uptime_s"].get<double>() >= 0.75);
  CHECK(n.stop() == 0);
}

TEST_CASE("services start in dependency order after readiness and stop in reverse") {
  vt::Node n;
  std::string body = R"(trap 'echo stop $NAME >> ../../order; exit 0' TERM
echo start $NAME >> ../../order
echo >&3
sleep 1000 & wait)";
  n.service("db", body, {{"env/NAME", "db"}, {"notification-fd", "3"}});
  n.service("app", body, {{"env/NAME", "app"}, {"notification-fd", "3"}, {"depends", "db"}});
  n.service("web", body, {{"env/NAME", "web"}, {"notification-fd", "3"}, {"depends", "app"}});
  n.start();
  REQUIRE(n.wait_state("web", "up"));
  CHECK(vt::read_file(n.path("order")) == "start db\nstart app\nstart web\n");
  CHECK(n.stop() == 0);
  CHECK(vt::read_file(n.path("order")) ==
        "start db\nstart app\nstart web\nstop web\nstop app\nstop db\n");
}

TEST_CASE("readiness by notification-fd holds back dependents until the newline") {
  vt::Node n;
  n.service("slow", "while [ ! -e ../../go ]; do sleep 0.01; done; echo >&5; exec sleep 1000",
            {{"notification-fd", "5"}});
  n.service("after", "exec sleep 1000", {{"depends", "slow"}});
  n.start();
  REQUIRE(n.wait_state("slow", "starting"));
  CHECK(n.service_status("after")["state"] == "down");
  CHECK(n.service_status("slow")["ready"] == false);
  vt::write_file(n.path("go"), "");
  REQUIRE(n.wait_state("slow", "up"));
  REQUIRE(n.wait_state("after", "up"));
  CHECK(n.log().find("slow: up (notification-fd)") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("readiness by a ready script that is polled until it exits 0") {
  vt::Node n;
  n.service("polled", "exec sleep 1000",
            {{"ready", "#!/bin/sh\necho try >> ../../tries\n[ -e ../../go ]\n"}});
  n.service("after", "exec sleep 1000", {{"depends", "polled"}});
  n.start();
  REQUIRE(n.wait_state("polled", "starting"));
  // Polled more than once while not ready, and the dependent waits.
  REQUIRE(vt::eventually([&] { return vt::read_file(n.path("tries")).size() >= 8; }));
  CHECK(n.service_status("after")["state"] == "down");
  vt::write_file(n.path("go"), "");
  REQUIRE(n.wait_state("polled", "up"));
  REQUIRE(n.wait_state("after", "up"));
  CHECK(n.stop() == 0);
}

TEST_CASE("a service ignoring SIGTERM is killed after timeout-stop") {
  vt::Node n;
  n.service("stubborn", "trap '' TERM\necho >&3\nwhile :; do sleep 0.05; done",
            {{"timeout-stop", "300ms"}, {"notification-fd", "3"}});
  n.start();
  REQUIRE(n.wait_state("stubborn", "up"));
  REQUIRE(n.cli({"svc", "down", "stubborn"}).code == 0);
  REQUIRE(n.wait_state("stubborn", "stopping", 2));
  REQUIRE(n.wait_state("stubborn", "down", 5));
  CHECK(n.service_status("stubborn")["last_exit"].get<std::string>().rfind("signal 9", 0) == 0);
  CHECK(n.log().find("after the stop signal (timeout-stop); sending SIGKILL") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("a down-signal replaces SIGTERM") {
  vt::Node n;
  n.service(
      "quits",
      "trap 'echo got QUIT >> ../../sig; exit 0' QUIT\necho >&3\nwhile :; do sleep 0.05; done",
      {{"down-signal", "QUIT"}, {"notification-fd", "3"}});
  n.start();
  REQUIRE(n.wait_state("quits", "up"));
  CHECK(n.stop() == 0);
  CHECK(vt::read_file(n.path("sig")) == "got QUIT\n");
  CHECK(n.log().find("sending SIGKILL") == std::string::npos);
}

TEST_CASE("grandchildren die with the service's process group") {
  vt::Node n;
  n.service("parent", "sleep 1000 &\necho $! > ../../grandchild\nexec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("parent", "up"));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("grandchild")).empty(); }));
  pid_t gc = std::stoi(vt::read_file(n.path("grandchild")));
  CHECK(vt::process_exists(gc));
  SUBCASE("when the service is stopped") {
    REQUIRE(n.cli({"svc", "down", "parent"}).code == 0);
    REQUIRE(n.wait_state("parent", "down"));
  }
  SUBCASE("when the service's main process dies") {
    kill(pid_of(n, "parent"), SIGKILL);
    REQUIRE(n.wait_service("parent", [](const json& s) { return s["restarts"] == 1; }));
  }
  CHECK_FALSE(vt::process_exists(gc));
  CHECK(n.stop() == 0);
}

TEST_CASE("orphans re-parented to the supervisor are reaped") {
  vt::Node n;
  // The double fork leaves a short-lived orphan whose parent is gone at once.
  n.service("forker", "(sleep 0.05 & echo $! > ../../orphan)\nexec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("forker", "up"));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("orphan")).empty(); }));
  pid_t orphan = std::stoi(vt::read_file(n.path("orphan")));
  // Not even a zombie may be left: /proc/PID disappears only once someone reaps it.
  REQUIRE(vt::eventually(
      [&] { return access(("/proc/" + std::to_string(orphan)).c_str(), F_OK) != 0; }));
  CHECK(n.wait_log("reaped orphan pid " + std::to_string(orphan)));
  CHECK(n.stop() == 0);
}

TEST_CASE("a supervisor killed -9 leaves groups that the next one stops before starting") {
  vt::Node n;
  n.service("svc", "sleep 1000 &\nexec sleep 1000");
  n.service("other", "exec sleep 1000", {{"log/run", "#!/bin/sh\nexec cat > /dev/null\n"}});
  n.start();
  REQUIRE(n.wait_state("svc", "up"));
  REQUIRE(n.wait_state("other", "up"));
  REQUIRE(n.wait_service("other", [](const json& s) { return s["logger_pid"].is_number(); }));
  pid_t old_svc = pid_of(n, "svc");
  pid_t old_logger = n.service_status("other")["logger_pid"];
  n.kill9();
  CHECK(vt::process_exists(old_svc));  // services outlive their supervisor...
  CHECK(vt::process_exists(old_logger));
  n.start();  // ...until the next one starts
  REQUIRE(n.wait_state("svc", "up"));
  CHECK_FALSE(vt::process_exists(old_svc));
  CHECK_FALSE(vt::process_exists(old_logger));
  CHECK(pid_of(n, "svc") != old_svc);
  CHECK(n.log().find("left by a previous instance") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("service output goes to the supervisor log, prefixed and capped") {
  vt::Node n;
  n.service("talker",
            "echo hello from talker\necho oops >&2\nhead -c 10000 /dev/zero | tr '\\0' "
            "x\necho\nexec sleep 1000");
  n.start();
  REQUIRE(n.wait_log("talker: hello from talker"));
  REQUIRE(n.wait_log("talker: oops"));
  REQUIRE(n.wait_log("[line truncated]"));
  CHECK(n.log().find(std::string(5000, 'x')) == std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("log/run receives the service's output and outlives its restarts") {
  vt::Node n;
  n.service("logged", "echo line $$\nexec sleep 1000",
            {{"log/run", "#!/bin/sh\nexec cat >> ../../../captured\n"}});
  n.start();
  REQUIRE(n.wait_state("logged", "up"));
  pid_t first = pid_of(n, "logged");
  REQUIRE(vt::eventually([&] {
    return vt::read_file(n.path("captured")).find("line " + std::to_string(first)) !=
           std::string::npos;
  }));
  pid_t logger = n.service_status("logged")["logger_pid"];
  kill(first, SIGKILL);
  REQUIRE(n.wait_service("logged",
                         [&](const json& s) { return s["restarts"] == 1 && s["state"] == "up"; }));
  pid_t second = pid_of(n, "logged");
  REQUIRE(vt::eventually([&] {
    return vt::read_file(n.path("captured")).find("line " + std::to_string(second)) !=
           std::string::npos;
  }));
  CHECK(n.service_status("logged")["logger_pid"] == logger);
  CHECK(n.log().find("logged: line") == std::string::npos);
  CHECK(n.stop() == 0);
  CHECK_FALSE(vt::process_exists(logger));
}

TEST_CASE("finish gets the exit code and signal, and env/ sets the environment") {
  vt::Node n;
  n.service(
      "f", "echo \"$GREETING\" > ../../env\nexit 7",
      {{"finish", "#!/bin/sh\necho \"$1 $2\" >> ../../finish\n"}, {"env/GREETING", "bonjour"}});
  n.start();
  REQUIRE(vt::eventually(
      [&] { return vt::read_file(n.path("finish")).find("7 0\n") != std::string::npos; }));
  CHECK(vt::read_file(n.path("env")) == "bonjour\n");
  REQUIRE(n.cli({"svc", "down", "f"}).code == 0);
  CHECK(n.stop() == 0);

  vt::Node k;
  k.service("g", "exec sleep 1000", {{"finish", "#!/bin/sh\necho \"$1 $2\" >> ../../finish\n"}});
  k.start();
  REQUIRE(k.wait_state("g", "up"));
  kill(pid_of(k, "g"), SIGKILL);
  REQUIRE(vt::eventually([&] { return vt::read_file(k.path("finish")) == "256 9\n"; }));
  CHECK(k.stop() == 0);
}

TEST_CASE("a service with a down file waits for svc up") {
  vt::Node n;
  n.service("manual", "exec sleep 1000", {{"down", ""}});
  n.start();
  REQUIRE(n.wait_state("manual", "down"));
  CHECK(n.service_status("manual")["want"] == "down");
  REQUIRE(n.cli({"svc", "up", "manual"}).code == 0);
  REQUIRE(n.wait_state("manual", "up"));
  CHECK(n.stop() == 0);
}

TEST_CASE("SIGHUP adds new services and stops removed ones") {
  vt::Node n;
  n.service("stay", "exec sleep 1000");
  n.service("go", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("go", "up"));
  pid_t gone = pid_of(n, "go");
  n.service("new", "exec sleep 1000");
  REQUIRE(n.cli({"check-config"}).code == 0);
  std::rename(n.path("services.d/go").c_str(), n.path("removed-go").c_str());
  kill(n.pid(), SIGHUP);
  REQUIRE(n.wait_state("new", "up"));
  REQUIRE(vt::eventually([&] { return !vt::process_exists(gone); }));
  CHECK_FALSE(n.status()["services"].contains("go"));
  CHECK(n.service_status("stay")["restarts"] == 0);
  CHECK(n.stop() == 0);
}

TEST_CASE("a broken services directory at reload keeps the running set") {
  vt::Node n;
  n.service("stay", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("stay", "up"));
  n.service("broken", "true", {{"depends", "nowhere"}});
  kill(n.pid(), SIGHUP);
  REQUIRE(n.wait_log("services not reloaded"));
  CHECK(n.log().find("depends on unknown service \"nowhere\"") != std::string::npos);
  CHECK_FALSE(n.status()["services"].contains("broken"));
  CHECK(n.service_status("stay")["state"] == "up");
  CHECK(n.stop() == 0);
}

TEST_CASE("a run file that cannot be executed backs off instead of spinning") {
  vt::Node n;
  n.write("services.d/noshebang/run",
          "\x7f"
          "ELF garbage",
          0755);
  n.start();
  REQUIRE(n.wait_service("noshebang", [](const json& s) { return s["restarts"].get<int>() >= 3; }));
  json s = n.service_status("noshebang");
  CHECK(s["last_exit"].get<std::string>().find("cannot start") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("--log-format json: one object per line, service output included") {
  vt::Node n;
  n.service("talker", "echo hello in json\nexec sleep 1000");
  n.run_args = {"--log-format", "json"};
  n.start();
  REQUIRE(n.wait_log("hello in json"));
  CHECK(n.stop() == 0);
  int lines = 0;
  bool service_line = false;
  for (auto& line : vac::split_lines(n.log())) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    REQUIRE_MESSAGE(j.is_object(), line);
    for (auto key : {"ts", "level", "component", "msg"}) CHECK(j.contains(key));
    service_line |= j["component"] == "talker" && j["msg"] == "hello in json";
    ++lines;
  }
  CHECK(lines > 3);
  CHECK(service_line);
}
