// The probe runner in a real supervisor: both protocols, hysteresis and node health, and every
// way a probe can misbehave.
#include <doctest/doctest.h>

#include <unistd.h>
#include <csignal>

#include "common/text.hpp"
#include "harness.hpp"

using vt::json;

namespace {
// A jsonl probe in shell: the body turns $n (the check number) into one answer line.
std::string jsonl_probe(const std::string& answer) {
  return "#!/bin/sh\nwhile read -r line; do\n  n=${line#*:}; n=${n%\\}}\n  " + answer + "\ndone\n";
}
const std::string kOk =
    R"(echo "{\"check\":$n,\"status\":\"ok\",\"detail\":\"fine $n\",\"metrics\":{\"x\":{\"value\":$n}}}")";

json probe(const std::string& exec, json extra = json::object()) {
  json p = {{"exec", json::array({exec})},
            {"interval", "50ms"},
            {"timeout", "1s"},
            {"fall", 2},
            {"rise", 1}};
  p.merge_patch(extra);
  return p;
}

std::string detail(const json& p) {
  return p["detail"].is_string() ? p["detail"].get<std::string>() : "";
}
bool detail_has(const json& p, const std::string& text) {
  return detail(p).find(text) != std::string::npos;
}
}  // namespace

TEST_CASE("jsonl: one persistent process answers numbered checks") {
  vt::Node n;
  n.write("ok.sh", jsonl_probe(kOk), 0755);
  n.configure({{"probes", {{"ok", probe("./ok.sh")}}}});
  n.start();
  REQUIRE(n.wait_probe("ok", [](const json& p) { return p["checks"].get<int>() >= 5; }));
  json p = n.probe_status("ok");
  CHECK(p["state"] == "passing");
  CHECK(p["last"] == "ok");
  CHECK(p["protocol"] == "jsonl");
  pid_t pid = p["pid"];
  int checks = p["checks"];
  // The probe answered the very check it was asked: its detail carries the number.
  CHECK(detail(p) == "fine " + std::to_string(checks));
  CHECK(p["metrics"]["x"]["value"] == checks);
  REQUIRE(n.wait_probe("ok", [&](const json& q) { return q["checks"].get<int>() >= checks + 3; }));
  CHECK(n.probe_status("ok")["pid"] == pid);
  CHECK(n.probe_status("ok")["restarts"] == 0);
  CHECK(n.status()["node"]["healthy"] == true);
  CHECK(n.stop() == 0);
  CHECK_FALSE(vt::process_exists(pid));
}

TEST_CASE("exit: exit codes, first line and perfdata, as monitoring plugins do") {
  vt::Node n;
  n.write("code", "0");
  n.write("plugin.sh",
          "#!/bin/sh\nc=$(cat code)\necho \"state $c | t=5ms;10;20;0;100 'q a'=3\"\necho second "
          "line\nexit $c\n",
          0755);
  n.configure(
      {{"probes", {{"plugin", probe("./plugin.sh", {{"protocol", "exit"}, {"fall", 1}})}}}});
  n.start();
  auto expect = [&](const char* code, const char* last, const std::string& text) {
    vt::write_file(n.path("code"), code);
    CHECK_MESSAGE(
        n.wait_probe("plugin",
                     [&](const json& p) { return p["last"] == last && detail(p) == text; }),
        "exit ", code, ": ", n.probe_status("plugin").dump());
  };
  expect("0", "ok", "state 0");
  json p = n.probe_status("plugin");
  CHECK(p["metrics"]["t"]["value"] == 5.0);
  CHECK(p["metrics"]["t"]["uom"] == "ms");
  CHECK(p["metrics"]["t"]["warn"] == 10.0);
  CHECK(p["metrics"]["t"]["max"] == 100.0);
  CHECK(p["metrics"]["q a"]["value"] == 3.0);
  CHECK(p["pid"].is_null());
  expect("1", "warn", "state 1");
  CHECK(n.probe_status("plugin")["state"] == "passing");
  expect("2", "fail", "state 2");
  CHECK(n.wait_probe("plugin", [](const json& q) { return q["state"] == "failing"; }));
  expect("3", "fail", "UNKNOWN: state 3");
  expect("5", "fail", "exit 5: state 5");
  CHECK(n.stop() == 0);
}

TEST_CASE("hysteresis and node health: critical probes only") {
  vt::Node n;
  n.write("verdict", "ok");
  n.write("flip.sh", jsonl_probe(R"(s=$(cat verdict); echo "{\"check\":$n,\"status\":\"$s\"}")"),
          0755);
  n.write("bad.sh",
          jsonl_probe(R"(echo "{\"check\":$n,\"status\":\"fail\",\"detail\":\"always\"}")"), 0755);
  n.configure({{"probes",
                {{"flip", probe("./flip.sh", {{"fall", 3}, {"rise", 2}})},
                 {"report", probe("./bad.sh", {{"critical", false}})}}}});
  n.start();
  REQUIRE(n.wait_probe("flip", [](const json& p) { return p["state"] == "passing"; }));
  REQUIRE(n.wait_probe("report", [](const json& p) { return p["state"] == "failing"; }));
  CHECK(n.status()["node"]["healthy"] == true);  // a non-critical probe only reports

  vt::write_file(n.path("verdict"), "fail");
  REQUIRE(n.wait_probe("flip", [](const json& p) { return p["last"] == "fail"; }));
  REQUIRE(n.wait_probe("flip", [](const json& p) { return p["state"] == "failing"; }));
  json st = n.status();
  CHECK(st["node"]["healthy"] == false);
  CHECK(st["node"]["reason"].get<std::string>().find("critical probe flip is failing") !=
        std::string::npos);
  CHECK(st["probes"]["flip"]["consecutive_fail"].get<int>() >= 3);
  CHECK(n.wait_log("node unhealthy: critical probe flip is failing"));

  vt::write_file(n.path("verdict"), "warn");
  REQUIRE(n.wait_probe("flip", [](const json& p) { return p["state"] == "passing"; }));
  CHECK(n.probe_status("flip")["consecutive_pass"].get<int>() >= 2);
  CHECK(n.status()["node"]["healthy"] == true);
  auto r = n.cli({"status"});
  CHECK(r.out.find("report  failing (non-critical)  fail") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("a probe that does not answer in time is killed with its whole group") {
  vt::Node n;
  n.write(
      "hang.sh",
      "#!/bin/sh\nsleep 1000 &\necho $! > grandchild\nwhile read -r line; do sleep 1000; done\n",
      0755);
  n.configure({{"probes", {{"hang", probe("./hang.sh", {{"timeout", "200ms"}})}}}});
  n.start();
  REQUIRE(n.wait_probe("hang", [](const json& p) { return p["last"] == "fail"; }));
  // "; restarting in ..." may follow, when the status is read while the restart waits.
  CHECK(detail(n.probe_status("hang")).rfind("no answer within 200ms; probe killed", 0) == 0);
  REQUIRE(vt::eventually([&] { return !vt::read_file(n.path("grandchild")).empty(); }));
  pid_t gc = std::stoi(vt::read_file(n.path("grandchild")));
  REQUIRE(n.wait_probe("hang", [](const json& p) { return p["restarts"].get<int>() >= 1; }));
  CHECK(vt::eventually([&] { return !vt::process_exists(gc); }));
  CHECK(n.stop() == 0);
}

TEST_CASE("bad answers become fails with a precise detail, and the probe is restarted") {
  vt::Node n;
  n.write("big.sh", jsonl_probe("head -c 10000 /dev/zero | tr '\\0' a; echo"), 0755);
  n.write("flood.sh", jsonl_probe("head -c 3000000 /dev/zero"), 0755);
  n.write("garbage.sh", jsonl_probe("echo hello"), 0755);
  n.write("badstatus.sh", jsonl_probe(R"(echo "{\"check\":$n,\"status\":\"great\"}")"), 0755);
  n.write("wrongid.sh", jsonl_probe(R"(echo "{\"check\":999,\"status\":\"ok\"}")"), 0755);
  n.write("exits.sh", "#!/bin/sh\nread -r line\nexit 4\n", 0755);
  n.write("chatty.sh",
          jsonl_probe(R"(yes noise | head -n 500 >&2; echo "{\"check\":$n,\"status\":\"ok\"}")"),
          0755);
  n.configure({{"probes",
                {{"big", probe("./big.sh")},
                 {"flood", probe("./flood.sh")},
                 {"garbage", probe("./garbage.sh")},
                 {"badstatus", probe("./badstatus.sh")},
                 {"wrongid", probe("./wrongid.sh")},
                 {"exits", probe("./exits.sh")},
                 {"chatty", probe("./chatty.sh")}}}});
  n.start();
  auto expect = [&](const std::string& name, const std::string& text) {
    CHECK_MESSAGE(
        n.wait_probe(name,
                     [&](const json& p) { return p["last"] == "fail" && detail_has(p, text); }),
        name, ": ", n.probe_status(name).dump());
    CHECK(n.wait_probe(name, [](const json& p) { return p["restarts"].get<int>() >= 1; }));
  };
  expect("big", "result line longer than 4096 bytes");
  expect("flood", "result line longer than 4096 bytes");
  expect("garbage", "malformed result line (not valid JSON): \"hello\"");
  expect("badstatus", "malformed result line (status \"great\" is not ok, warn or fail)");
  expect("wrongid", "answered check 999 when check");
  expect("exits", "probe exited (exit 4)");
  CHECK(n.wait_probe("exits", [](const json& p) { return p["state"] == "failing"; }));
  // A probe that floods stderr is logged within bounds and still answers.
  REQUIRE(n.wait_probe("chatty", [](const json& p) { return p["checks"].get<int>() >= 3; }));
  CHECK(n.probe_status("chatty")["state"] == "passing");
  CHECK(n.wait_log("more lines of stderr this check"));
  std::string log = n.log();
  size_t noise = 0;
  for (size_t at = log.find("probe chatty: noise"); at != std::string::npos;
       at = log.find("probe chatty: noise", at + 1))
    ++noise;
  CHECK(noise <= 20 * (n.probe_status("chatty")["checks"].get<size_t>() + 2));
  CHECK(n.stop() == 0);
}

TEST_CASE("a crash-looping persistent probe backs off") {
  vt::Node n;
  n.write("crash.sh", "#!/bin/sh\nexit 1\n", 0755);
  n.configure({{"probes", {{"crash", probe("./crash.sh")}}},
               {"restart", {{"backoff", "1s"}, {"backoff_max", "2s"}, {"stable_after", "5s"}}}});
  n.start();
  // 0 (floor: 1s after the start), 1s, 2s, 2s...
  REQUIRE(n.wait_probe(
      "crash", [](const json& p) { return detail_has(p, "restarting in 2s"); }, 20));
  json p = n.probe_status("crash");
  // Checks every 50ms, but the process was restarted far less often than checked.
  CHECK(p["restarts"].get<int>() < p["checks"].get<int>());
  CHECK(p["restarts"].get<int>() >= 3);
  CHECK(detail_has(p, "probe exited (exit 1)"));
  CHECK(n.stop() == 0);
}

// One validation path (preflight.hpp): run refuses, before starting anything, a probe whose
// program check-config would refuse.
TEST_CASE("probes that cannot be started are refused by run, saying why") {
  vt::Node n;
  n.write("notexec.sh", "#!/bin/sh\necho hi\n", 0644);
  n.configure({{"probes",
                {{"missing", probe("./no-such-probe")},
                 {"notexec", probe("./notexec.sh", {{"protocol", "exit"}})},
                 {"unknown", probe("no-such-builtin-or-command")}}}});
  auto r = n.cli({"run"});
  CHECK(r.code == 3);
  CHECK(r.out.find("no-such-probe: No such file") != std::string::npos);
  CHECK(r.out.find("notexec.sh is not an executable file") != std::string::npos);
  CHECK(r.out.find("\"no-such-builtin-or-command\" is neither a built-in probe") !=
        std::string::npos);
}

TEST_CASE("exit probes: a grandchild holding the pipe does not hold the check, and dies") {
  vt::Node n;
  n.write("bg.sh", "#!/bin/sh\nsleep 1000 &\necho $! > grandchild\necho 'OK went well'\nexit 0\n",
          0755);
  n.write("slow.sh", "#!/bin/sh\nexec sleep 1000\n", 0755);
  n.configure(
      {{"probes",
        {{"bg", probe("./bg.sh", {{"protocol", "exit"}, {"timeout", "5s"}, {"interval", "5s"}})},
         {"slow", probe("./slow.sh", {{"protocol", "exit"}, {"timeout", "100ms"}})}}}});
  n.start();
  REQUIRE(n.wait_probe("bg", [](const json& p) { return p["last"] == "ok"; }));
  json p = n.probe_status("bg");
  CHECK(detail(p) == "OK went well");
  CHECK(p["latency_ms"].get<double>() < 2000);  // well before the 5s timeout
  pid_t gc = std::stoi(vt::read_file(n.path("grandchild")));
  CHECK(vt::eventually([&] { return !vt::process_exists(gc); }));
  CHECK(n.wait_probe("slow", [](const json& q) {
    return q["last"] == "fail" && detail(q) == "no answer within 100ms; probe killed";
  }));
  CHECK(n.stop() == 0);
}

TEST_CASE("vacataire probe NAME runs a check now") {
  vt::Node n;
  n.write("ok.sh", jsonl_probe(kOk), 0755);
  n.write("bad.sh",
          jsonl_probe(R"(echo "{\"check\":$n,\"status\":\"fail\",\"detail\":\"broken\"}")"), 0755);
  n.configure({{"probes",
                {{"ok", probe("./ok.sh", {{"interval", "1h"}})},
                 {"bad", probe("./bad.sh", {{"interval", "1h"}})}}}});
  n.start();
  REQUIRE(n.wait_probe("ok", [](const json& p) { return p["checks"] == 1; }));
  auto r = n.cli({"probe", "ok"});
  CHECK(r.code == 0);
  CHECK(r.out.find("ok: ok (") != std::string::npos);
  CHECK(r.out.find("fine 2") != std::string::npos);
  CHECK(n.probe_status("ok")["checks"] == 2);
  r = n.cli({"probe", "bad", "--json"});
  CHECK(r.code == 6);
  json j = json::parse(r.out);
  CHECK(j["status"] == "fail");
  CHECK(j["detail"] == "broken");
  r = n.cli({"probe", "bda"});
  CHECK(r.code == 1);
  CHECK(r.out.find("no probe named \"bda\" (did you mean \"bad\"?)") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("the example probes in shell, Python and C++ work under the supervisor") {
  vt::Node n;
  n.write("fresh", "");
  n.configure(
      {{"probes",
        {{"shell",
          probe(SOURCE_DIR "/probes/examples/check_file.sh",
                {{"protocol", "exit"},
                 {"exec", {SOURCE_DIR "/probes/examples/check_file.sh", "fresh", "3600"}}})},
         {"shellmissing",
          probe("x", {{"protocol", "exit"},
                      {"exec", {SOURCE_DIR "/probes/examples/check_file.sh", "absent"}}})},
         {"python",
          probe("x", {{"exec", {SOURCE_DIR "/probes/examples/disk_free.py", "/", "0", "0"}},
                      {"timeout", "5s"}})},  // Python may start slowly on a loaded machine
         {"cpp", probe(BUILD_DIR "/probes/examples/always_ok")}}}});
  n.start();
  CHECK(n.wait_probe(
      "shell", [](const json& p) { return p["last"] == "ok" && detail_has(p, "OK: fresh is"); }));
  CHECK(n.probe_status("shell")["metrics"]["age"]["warn"] == 3600.0);
  CHECK(n.wait_probe("shellmissing", [](const json& p) {
    return p["last"] == "fail" && detail(p) == "CRITICAL: absent is missing";
  }));
  CHECK(n.wait_probe(
      "python", [](const json& p) { return p["last"] == "ok" && detail_has(p, "% free on /"); }));
  CHECK(n.probe_status("python")["metrics"]["free"]["uom"] == "%");
  CHECK(
      n.wait_probe("cpp", [](const json& p) { return p["last"] == "ok" && detail(p) == "fine"; }));
  CHECK(n.stop() == 0);
}

TEST_CASE("SIGHUP restarts only the probes whose config changed") {
  vt::Node n;
  n.write("ok.sh", jsonl_probe(kOk), 0755);
  n.configure(
      {{"probes",
        {{"same", probe("./ok.sh")}, {"changed", probe("./ok.sh")}, {"gone", probe("./ok.sh")}}}});
  n.start();
  REQUIRE(n.wait_probe("gone", [](const json& p) { return p["pid"].is_number(); }));
  REQUIRE(n.wait_probe("changed", [](const json& p) { return p["pid"].is_number(); }));
  pid_t same = n.probe_status("same")["pid"], gone = n.probe_status("gone")["pid"];
  n.configure({{"probes",
                {{"changed", probe("./ok.sh", {{"fall", 5}})},
                 {"gone", nullptr},
                 {"new", probe("./ok.sh")}}}});
  kill(n.pid(), SIGHUP);
  REQUIRE(n.wait_probe("new", [](const json& p) { return p["last"] == "ok"; }));
  CHECK(n.probe_status("same")["pid"] == same);
  CHECK_FALSE(n.status()["probes"].contains("gone"));
  CHECK(vt::eventually([&] { return !vt::process_exists(gone); }));
  CHECK(n.stop() == 0);
}

TEST_CASE("only root or control_group may run a probe on demand") {
  vt::Node n;
  n.write("ok.sh", jsonl_probe(kOk), 0755);
  n.configure({{"probes", {{"ok", probe("./ok.sh")}}}});
  n.start();
  auto r = vt::run_command({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                            VACATAIRE_BIN, "probe", "ok", "-c", n.config_path()});
  CHECK(r.code == 5);
  CHECK(r.out.find("permission denied") != std::string::npos);
  CHECK(n.stop() == 0);
}

TEST_CASE("check-config finds probes whose program is missing") {
  vt::Node n;
  n.write("ok.sh", jsonl_probe(kOk), 0755);
  n.configure({{"probes",
                {{"fine", probe("./ok.sh")},
                 {"builtin", probe("memcheck")},
                 {"typo", probe("memchek")},
                 {"gone", probe("./gone.sh")}}}});
  auto r = n.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("probes.typo.exec: \"memchek\" is neither a built-in probe") !=
        std::string::npos);
  CHECK(r.out.find("probes.gone.exec: " + n.dir + "/./gone.sh: No such file or directory") !=
        std::string::npos);
  CHECK(r.out.find("probes.fine") == std::string::npos);
  CHECK(r.out.find("probes.builtin") == std::string::npos);
}

// Bytes a probe prints are never trusted as text: lines that are not UTF-8, and French text
// whose multi-byte character straddles the cut made for messages, give a readable fail and
// the supervisor lives on (it used to abort on json::dump of such a detail).
TEST_CASE("lines that are not UTF-8, or text cut inside a character, never stop the supervisor") {
  vt::Node n;
  // 119 ASCII bytes, then "é" (2 bytes) across the 120-byte cut of the quoted line.
  std::string pad(119, 'x');
  n.write("latin1.sh", jsonl_probe("printf 'r\\351sultat \\377\\376 pas de JSON\\n'"), 0755);
  n.write("cut.sh", jsonl_probe("printf '" + pad + "\\303\\251t\\303\\251 pas du JSON\\n'"), 0755);
  n.write(
      "detail.sh",
      jsonl_probe(R"(printf '{"check":%s,"status":"fail","detail":"d\303\251j\303\240 vu"}\n' $n)"),
      0755);
  n.write("plugin.sh", "#!/bin/sh\nprintf 'CRIT \\351t\\351 | \\377lbl=5\\377;1;2\\n'\nexit 2\n",
          0755);
  n.configure({{"probes",
                {{"latin1", probe("./latin1.sh")},
                 {"cut", probe("./cut.sh")},
                 {"detail", probe("./detail.sh")},
                 {"plugin", probe("./plugin.sh", {{"protocol", "exit"}})}}}});
  n.run_args = {"--log-format", "json"};  // every log line goes through JSON too
  n.start();
  CHECK(n.wait_probe("latin1", [](const json& p) {
    return p["last"] == "fail" && detail_has(p, "malformed result line (not valid JSON)");
  }));
  CHECK(n.wait_probe("cut", [](const json& p) {
    return p["last"] == "fail" && detail_has(p, "malformed result line") && detail_has(p, "...");
  }));
  CHECK(n.wait_probe("detail", [](const json& p) {
    return p["last"] == "fail" && detail(p) == "d\xc3\xa9j\xc3\xa0 vu";
  }));
  CHECK(n.wait_probe("plugin", [](const json& p) {
    return p["last"] == "fail" && detail(p) ==
                                      "CRIT \xef\xbf\xbd"
                                      "t\xef\xbf\xbd";
  }));
  // Status, in both forms, and the log still work; the supervisor is the same process.
  pid_t pid = n.pid();
  json st = n.status();
  REQUIRE_FALSE(st.empty());
  CHECK(st["probes"]["plugin"]["metrics"].contains("\xef\xbf\xbdlbl"));
  CHECK(n.cli({"status"}).code == 0);
  CHECK(vt::process_exists(pid));
  for (auto& line : vac::split_lines(n.log())) {
    if (line.empty()) continue;
    json j = json::parse(line, nullptr, false);
    CHECK_MESSAGE(j.is_object(), line);
  }
  CHECK(n.stop() == 0);
}
