// `vacataire run` with real processes: restarts, backoff, dependency order, readiness, stop
// timeouts, process groups, crash recovery of the supervisor itself.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>

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

// A descriptor open for writing held for the supervisor's life would make the state
// directory's file system refuse `mount -o remount,ro` (EBUSY): an operator could not freeze it.
TEST_CASE("the supervisor holds nothing in its state directory open for writing") {
  vt::Node n;
  n.service("plain", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("plain", "up"));
  std::string proc = "/proc/" + std::to_string(n.pid());
  int in_state = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    char target[4096];
    ssize_t len = readlink((proc + "/fd/" + std::to_string(fd)).c_str(), target, sizeof target);
    if (len <= 0) continue;
    std::string path(target, static_cast<size_t>(len));
    if (path.rfind(n.path("state") + "/", 0) != 0) continue;
    ++in_state;
    std::string info = vt::read_file(proc + "/fdinfo/" + std::to_string(fd));
    auto at = info.find("flags:");
    REQUIRE(at != std::string::npos);
    long flags = std::strtol(info.c_str() + at + 6, nullptr, 8);
    CHECK_MESSAGE((flags & O_ACCMODE) == O_RDONLY, path, " is open for writing (fd ", fd, ")");
  }
  CHECK(in_state >= 1);  // the lock, at least: this test looks where it should
  CHECK(vt::read_file(n.path("state/lock")) == std::to_string(n.pid()) + "\n");
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

// Two starts of one service are at least a second apart (runit's pacing), whatever the backoff
// and stable_after say; the exponential part above the floor is backoff_test's.
TEST_CASE("a crash loop never restarts a service more than once a second") {
  vt::Node n;
  SUBCASE("with the test's short backoff") {}
  // The config refuses stable_after under 250ms (vacataire.json(5)); at the floor every death of
  // a service that exits at once still looks young, and the lowest backoff is far under a second.
  SUBCASE("with the lowest backoff and stable_after the config accepts") {
    n.configure(
        {{"restart", {{"backoff", "10ms"}, {"backoff_max", "250ms"}, {"stable_after", "250ms"}}}});
  }
  n.service("loop", "date +%s.%N >> ../../starts; exit 3");
  n.start();
  REQUIRE(n.wait_service(
      "loop", [&](const json& s) { return s["restarts"].get<int>() >= 3; }, 20));
  json s = n.service_status("loop");
  CHECK(s["last_exit"] == "exit 3");
  if (s.contains("backoff_s")) CHECK(s["backoff_s"].get<double>() <= 1.0);
  std::vector<double> starts;
  for (auto& line : vac::split_lines(vt::read_file(n.path("starts"))))
    if (!line.empty()) starts.push_back(std::stod(std::string(line)));
  REQUIRE(starts.size() >= 3);
  for (size_t i = 1; i < starts.size(); ++i) CHECK(starts[i] - starts[i - 1] >= 0.95);
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

TEST_CASE("groups left behind by a supervisor killed -9 are stopped by the next one") {
  vt::Node n;
  n.service("svc", "sleep 1000 &\necho $! > ../../grandchild\nexec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("svc", "up"));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("grandchild")).empty(); }));
  pid_t gc = std::stoi(vt::read_file(n.path("grandchild")));
  pid_t old_svc = pid_of(n, "svc");
  // With its guard frozen, a supervisor killed -9 leaves the grandchild behind (its leader
  // still dies: the parent-death signal).
  pid_t guard = n.status()["supervisor"]["guard_pid"];
  REQUIRE(guard > 0);
  kill(guard, SIGSTOP);
  n.kill9();
  REQUIRE(vt::eventually([&] { return !vt::process_exists(old_svc); }, 5));
  CHECK(vt::process_exists(gc));
  n.start();  // the next one stops it before starting anything
  REQUIRE(n.wait_state("svc", "up"));
  CHECK_FALSE(vt::process_exists(gc));
  CHECK(n.log().find("left by a previous instance") != std::string::npos);
  kill(guard, SIGCONT);  // it sees its supervisor gone, finds nothing left, removes its cgroups
  CHECK(vt::eventually([&] { return !vt::process_exists(guard); }, 5));
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

// ---- containment: services never outlive their supervisor's guard ----

namespace {
// The pids a run script wrote to a file, one per line.
std::vector<pid_t> pids_in(vt::Node& n, const std::string& file) {
  std::vector<pid_t> out;
  for (auto& line : vac::split_lines(vt::read_file(n.path(file))))
    if (!line.empty()) out.push_back(std::stoi(std::string(line)));
  return out;
}

// A leader, a grandchild in its group, and a daemon that left the group (setsid, double fork).
void contained_services(vt::Node& n) {
  n.service("leader", "echo $$ >> ../../pids\nexec sleep 1000");
  n.service("family",
            "sleep 1000 &\necho $! >> ../../pids\necho $$ >> ../../pids\nexec sleep 1000");
  n.service(
      "daemon",
      "setsid sh -c 'echo $$ > ../../daemon; exec sleep 1000' < /dev/null > /dev/null 2>&1 &\n"
      "echo $$ >> ../../pids\nexec sleep 1000");
}
}  // namespace

// The bound (vacataire(8), CONTAINMENT): every service process is gone within 1 s of the
// supervisor's death; the guard reacts to the end of its pipe, so it is typically a few ms.
TEST_CASE("a supervisor killed -9 takes every service process with it, within the bound") {
  vt::Node n;
  bool no_cgroup = false;
  SUBCASE("with cgroups where the kernel offers them") {}
  SUBCASE("with process groups only") {
    no_cgroup = true;
    setenv("VACATAIRE_CGROUP", "none", 1);
  }
  contained_services(n);
  n.start();
  unsetenv("VACATAIRE_CGROUP");
  for (auto name : {"leader", "family", "daemon"}) REQUIRE(n.wait_state(name, "up"));
  REQUIRE(vt::eventually([&] { return pids_in(n, "pids").size() == 4; }));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("daemon")).empty(); }));
  std::vector<pid_t> pids = pids_in(n, "pids");
  pid_t daemon = std::stoi(vt::read_file(n.path("daemon")));
  json sup = n.status()["supervisor"];
  bool cgroups = sup["cgroup"].is_string();
  CHECK(sup["guard_pid"].is_number());
  if (no_cgroup) CHECK_FALSE(cgroups);
  for (pid_t p : pids) REQUIRE(vt::process_exists(p));

  auto t0 = std::chrono::steady_clock::now();
  n.kill9();
  bool gone = vt::eventually(
      [&] {
        for (pid_t p : pids)
          if (vt::process_exists(p)) return false;
        return !cgroups || !vt::process_exists(daemon);
      },
      1.0);
  double ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("every service process gone " << ms << " ms after kill -9 of the supervisor ("
                                        << std::string(cgroups ? "cgroups" : "process groups")
                                        << ")");
  CHECK(gone);
  if (cgroups) {
    CHECK_FALSE(vt::process_exists(daemon));
    // The guard removed the cgroups it had been told of.
    std::string base = sup["cgroup"];
    CHECK(vt::eventually([&] { return access(base.c_str(), F_OK) != 0; }, 5));
  } else {
    // The documented limit without cgroup v2: a process that left its group escapes.
    CHECK(vt::process_exists(daemon));
    kill(daemon, SIGKILL);
  }
}

TEST_CASE("svc down and shutdown stop a daemon that left its process group (cgroup v2)") {
  vt::Node n;
  contained_services(n);
  n.start();
  REQUIRE(n.wait_state("daemon", "up"));
  if (!n.status()["supervisor"]["cgroup"].is_string()) {
    MESSAGE("no usable cgroup v2 here: a double-forked daemon is not contained");
    REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("daemon")).empty(); }));
    kill(std::stoi(vt::read_file(n.path("daemon"))), SIGKILL);
    n.stop();
    return;
  }
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("daemon")).empty(); }));
  pid_t first = std::stoi(vt::read_file(n.path("daemon")));
  CHECK(n.service_status("daemon")["cgroup"].is_string());
  REQUIRE(n.cli({"svc", "down", "daemon"}).code == 0);
  REQUIRE(n.wait_state("daemon", "down"));
  CHECK_FALSE(vt::process_exists(first));
  REQUIRE(n.cli({"svc", "up", "daemon"}).code == 0);
  REQUIRE(vt::eventually([&] {
    std::string t = vt::read_file(n.path("daemon"));
    return !t.empty() && std::stoi(t) != first;
  }));
  pid_t second = std::stoi(vt::read_file(n.path("daemon")));
  CHECK(vt::process_exists(second));
  CHECK(n.stop() == 0);
  CHECK_FALSE(vt::process_exists(second));
}

TEST_CASE("a supervisor dying of a fatal signal kills its services first") {
  vt::Node n;
  int sig = SIGABRT;
  SUBCASE("SIGABRT") {
    sig = SIGABRT;
  }
  SUBCASE("SIGSEGV") {
    sig = SIGSEGV;
  }
  SUBCASE("SIGBUS") {
    sig = SIGBUS;
  }
  contained_services(n);
  n.start();
  for (auto name : {"leader", "family", "daemon"}) REQUIRE(n.wait_state(name, "up"));
  REQUIRE(vt::eventually([&] { return pids_in(n, "pids").size() == 4; }));
  std::vector<pid_t> pids = pids_in(n, "pids");
  kill(n.pid(), sig);
  int status = 0;
  waitpid(n.pid(), &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(n.log().find("vacataire: fatal signal " + std::to_string(sig) + ": killed ") !=
        std::string::npos);
  // Killed before the supervisor died: only the reaping by init is left.
  CHECK(vt::eventually(
      [&] {
        for (pid_t p : pids)
          if (vt::process_exists(p)) return false;
        return true;
      },
      5));
  n.kill9();  // forget it (already dead)
}

TEST_CASE("the guard restarts if it dies, and knows every group again") {
  vt::Node n;
  contained_services(n);
  n.start();
  for (auto name : {"leader", "family", "daemon"}) REQUIRE(n.wait_state(name, "up"));
  REQUIRE(vt::eventually([&] { return pids_in(n, "pids").size() == 4; }));
  pid_t guard = n.status()["supervisor"]["guard_pid"];
  kill(guard, SIGKILL);
  REQUIRE(vt::eventually([&] {
    json s = n.status()["supervisor"];
    return s["guard_pid"].is_number() && s["guard_pid"] != guard;
  }));
  CHECK(n.status()["supervisor"]["guard_restarts"] == 1);
  std::vector<pid_t> pids = pids_in(n, "pids");
  n.kill9();
  CHECK(vt::eventually(
      [&] {
        for (pid_t p : pids)
          if (vt::process_exists(p)) return false;
        return true;
      },
      2));
}

// ---- spawning: a set-up failure never leaves a process behind ----

TEST_CASE("a set-up failure between fork and exec: backoff with the error, and no copy runs") {
  vt::Node n;
  // notification-fd 1000 is valid, but above this supervisor's fd limit (lowered below): the
  // child cannot move the pipe there. Such a child used to exec anyway, untracked.
  n.service("svc", "echo $$ >> ../../ran\nexec sleep 1000",
            {{"notification-fd", "1000"}, {"down", ""}});
  n.start();
  rlimit low{512, 512};
  REQUIRE(prlimit(n.pid(), RLIMIT_NOFILE, &low, nullptr) == 0);
  REQUIRE(n.cli({"svc", "up", "svc"}).code == 0);
  REQUIRE(n.wait_service(
      "svc", [](const json& s) { return s["restarts"].get<int>() >= 2; }, 20));
  json s = n.service_status("svc");
  CHECK(s["last_exit"].get<std::string>().find("cannot start") != std::string::npos);
  CHECK(s["last_exit"].get<std::string>().find("moving fd 1000") != std::string::npos);
  CHECK(s["pid"].is_null());
  REQUIRE(n.wait_state("svc", "backoff"));
  CHECK(vt::read_file(n.path("ran")).empty());  // never ran, not once
  CHECK(n.log().find("moving fd 1000: Bad file descriptor") != std::string::npos);
  CHECK(n.stop() == 0);
  CHECK(vt::read_file(n.path("ran")).empty());
}

// ---- an owner going away while its children run ----

TEST_CASE("removing by SIGHUP a service whose ready check is still running") {
  vt::Node n;
  n.service("slow", "exec sleep 1000",
            {{"ready", "#!/bin/sh\necho $$ >> ../../ready_pids\nexec sleep 1000\n"}});
  n.service("stay", "exec sleep 1000");
  n.start();
  REQUIRE(n.wait_state("stay", "up"));
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("ready_pids")).empty(); }));
  pid_t ready = pids_in(n, "ready_pids").front();
  REQUIRE(n.service_status("slow")["state"] == "starting");
  REQUIRE(vt::run_command({"/bin/rm", "-rf", n.path("services.d/slow")}).code == 0);
  kill(n.pid(), SIGHUP);
  REQUIRE(n.wait_log("slow: removed from the services directory"));
  REQUIRE(vt::eventually([&] { return !n.status()["services"].contains("slow"); }));
  for (pid_t p : pids_in(n, "ready_pids"))
    CHECK(vt::eventually([&] { return !vt::process_exists(p); }));
  CHECK_FALSE(vt::process_exists(ready));
  CHECK(n.service_status("stay")["state"] == "up");  // and the supervisor is fine
  CHECK(n.stop() == 0);
}

// ---- the loop never blocks ----

TEST_CASE("a stalled reader of the supervisor's stderr never freezes the loop") {
  vt::Node n;
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  n.stderr_fd = p[1];  // nobody ever reads p[0]
  n.service("flood", "while :; do echo 'flooding the log with a line of text'; done");
  n.write("ok.sh", "#!/bin/sh\nexit 0\n", 0755);
  n.configure({{"probes",
                {{"alive",
                  {{"exec", {"./ok.sh"}},
                   {"protocol", "exit"},
                   {"interval", "100ms"},
                   {"timeout", "2s"}}}}}});
  n.start();
  close(p[1]);
  REQUIRE(n.wait_state("flood", "up"));
  // The pipe (64 KiB) and the writer's queue fill up; lines are then dropped and counted.
  REQUIRE(vt::eventually(
      [&] { return n.status()["supervisor"]["log_dropped_lines"].get<uint64_t>() > 1000; }, 20));
  // Probes keep running, status keeps answering, the CLI too.
  long long checks = n.probe_status("alive")["checks"];
  CHECK(vt::eventually(
      [&] { return n.probe_status("alive")["checks"].get<long long>() > checks + 3; }));
  vt::Result r = n.cli({"status"});
  CHECK(r.code == 0);
  CHECK(r.out.find("log lines dropped") != std::string::npos);
  CHECK(n.status()["supervisor"]["log_queued_bytes"].get<uint64_t>() <= 256 * 1024);
  // And SIGTERM still stops everything.
  pid_t flood = pid_of(n, "flood");
  CHECK(n.stop() == 0);
  CHECK_FALSE(vt::process_exists(flood));
  close(p[0]);
}
