#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <functional>

#include "common/config.hpp"
#include "harness.hpp"

using namespace vac;
using vt::json;
using namespace std::chrono_literals;

namespace {
std::vector<std::string> errors_of(const std::string& text) {
  Config c;
  std::vector<std::string> errors;
  CHECK_FALSE(parse_config(text, "/etc/vacataire/vacataire.json", c, errors));
  return errors;
}
bool has(const std::vector<std::string>& errors, const std::string& text) {
  for (auto& e : errors)
    if (e.find(text) != std::string::npos) return true;
  return false;
}
}  // namespace

// The complete example of DESIGN.md: every name in it is part of the interface.
const char* kDesignExample = R"({
  "node": {"name": "web1", "role": "master", "state_dir": "/var/lib/vacataire"},
  "services_dir": "/etc/vacataire/services.d",
  "control_socket": "/run/vacataire/control.sock",
  "peer": {
    "name": "web2",
    "links": [{"listen": "10.0.0.1:7480", "peer": "10.0.0.2:7480"},
              {"listen": "192.168.9.1:7480", "peer": "192.168.9.2:7480"}],
    "key_file": "/etc/vacataire/peer.key",
    "heartbeat": "200ms", "dead_after": "1s"
  },
  "failover": {"failback": "manual", "startup_grace": "3s", "isolation_after": "3s",
               "witness": "gateway"},
  "probes": {
    "tomcat":  {"exec": ["pcheck", "--name", "java"], "interval": "1s", "timeout": "500ms",
                "fall": 3, "rise": 2},
    "memory":  {"exec": ["memcheck", "--min-available", "10%", "--min-swap-free", "20%"],
                "interval": "5s"},
    "content": {"exec": ["content", "--url", "http://127.0.0.1/app/ping", "--bytes", "1234"],
                "interval": "2s"},
    "disk":    {"exec": ["/usr/lib/nagios/plugins/check_disk", "-w", "20%", "-c", "10%", "-p", "/"],
                "protocol": "exit", "interval": "30s"},
    "gateway": {"exec": ["/usr/lib/nagios/plugins/check_tcp", "-H", "10.0.0.254", "-p", "80"],
                "protocol": "exit", "critical": false}
  },
  "endpoints": {"http": "0.0.0.0:7481", "agent_check": "0.0.0.0:7482"},
  "notify_dir": "/etc/vacataire/notify.d",
  "user": "vacataire"
})";

TEST_CASE("the example of the design parses with every value kept") {
  Config c;
  std::vector<std::string> errors;
  REQUIRE_MESSAGE(parse_config(kDesignExample, "/etc/vacataire/vacataire.json", c, errors),
                  (errors.empty() ? "" : errors[0]));
  CHECK(c.node_name == "web1");
  CHECK(c.role == "master");
  REQUIRE(c.peer);
  CHECK(c.peer->links.size() == 2);
  CHECK(c.peer->heartbeat == 200ms);
  CHECK(c.peer->dead_after == 1s);
  CHECK(c.failover.witness == "gateway");
  CHECK(c.probes.size() == 5);
  CHECK(c.probes["tomcat"].timeout == 500ms);
  CHECK(c.probes["tomcat"].fall == 3);
  CHECK(c.probes["disk"].protocol == "exit");
  CHECK(c.probes["gateway"].critical == false);
  CHECK(c.probes["memory"].interval == 5s);
  CHECK(c.endpoint_http == "0.0.0.0:7481");
  CHECK(c.user == "vacataire");
}

TEST_CASE("relative paths are taken from the config file's directory") {
  Config c;
  std::vector<std::string> errors;
  REQUIRE(parse_config(R"({"node": {"state_dir": "state"}, "services_dir": "services.d"})",
                       "/srv/node/vacataire.json", c, errors));
  CHECK(c.state_dir == "/srv/node/state");
  CHECK(c.services_dir == "/srv/node/services.d");
  CHECK(c.control_socket == "/run/vacataire/control.sock");
}

TEST_CASE("unknown keys name their path and the closest known key") {
  auto e = errors_of(R"({"node": {"nmae": "web1"}, "servics_dir": "x"})");
  CHECK(has(e, "vacataire.json: node.nmae: unknown key (did you mean \"name\"?)"));
  CHECK(has(e, "servics_dir: unknown key (did you mean \"services_dir\"?)"));
  e = errors_of(R"({"probes": {"p": {"exec": ["x"], "intervall": "1s"}}})");
  CHECK(has(e, "probes.p.intervall: unknown key (did you mean \"interval\"?)"));
  e = errors_of(R"({"zzzzzz": 1})");
  CHECK(has(e, "zzzzzz: unknown key"));
  CHECK_FALSE(has(e, "did you mean"));
}

TEST_CASE("syntax errors carry line and column") {
  auto e = errors_of("{\n  \"node\": {\"name\": \"web1\",}\n}\n");
  REQUIRE(e.size() == 1);
  CHECK(e[0].rfind("/etc/vacataire/vacataire.json:2:", 0) == 0);
  CHECK(has(e, "syntax error"));
  e = errors_of("{\"a\": tru}");
  CHECK(e[0].rfind("/etc/vacataire/vacataire.json:1:", 0) == 0);
}

TEST_CASE("bad durations and values are explained") {
  auto e = errors_of(
      R"({"peer": {"name": "b", "links": [{"listen": "127.0.0.1:1", "peer": "127.0.0.1:2"}],
                         "key_file": "k", "heartbeat": "200", "dead_after": "1 parsec"}})");
  CHECK(has(e, "peer.heartbeat: bad duration \"200\": missing unit"));
  CHECK(has(e, "peer.dead_after: bad duration \"1 parsec\""));
  e = errors_of(R"({"node": {"role": "boss"}})");
  CHECK(has(e, "node.role: must be one of \"master\", \"standby\", not \"boss\""));
  e = errors_of(R"({"probes": {"p": {"exec": ["x"], "fall": 0, "rise": "2"}}})");
  CHECK(has(e, "probes.p.fall: must be between 1 and 1000"));
  CHECK(has(e, "probes.p.rise: expected a whole number, got a string"));
  e = errors_of(R"({"probes": {"p": {"exec": []}}})");
  CHECK(has(e, "probes.p.exec: expected a non-empty array of strings"));
  e = errors_of(R"({"probes": {"p": {"interval": "1s"}}})");
  CHECK(has(e, "probes.p.exec: missing"));
  e = errors_of(R"({"endpoints": {"http": "0.0.0.0:99999"}})");
  CHECK(has(e, "endpoints.http: bad address \"0.0.0.0:99999\": the port must be a number from 1"));
  e = errors_of(R"({"failover": {"witness": "gw"}})");
  CHECK(has(e, "failover.witness: no probe named \"gw\""));
  e = errors_of(R"({"node": "web1"})");
  CHECK(has(e, "node: expected an object, got a string"));
  e = errors_of(R"({"peer": {"name": "b", "links": [], "key_file": "k"}})");
  CHECK(has(e, "peer.links: expected a non-empty array"));
  e = errors_of(R"({"peer": {"name": "b", "links": [{"listen": "x"}], "key_file": "k"}})");
  CHECK(has(e, "peer.links[0].peer: missing"));
  CHECK(has(e, "peer.links[0].listen: bad address \"x\""));
  e = errors_of(
      R"({"peer": {"name": "b", "links": [{"listen": "127.0.0.1:1", "peer": "127.0.0.1:2"}],
                         "key_file": "k", "heartbeat": "1s", "dead_after": "500ms"}})");
  CHECK(has(e, "peer.dead_after: must be longer than heartbeat"));
  e = errors_of(R"({"node": {"name": "a"}, "node": {"name": "b"}})");
  CHECK(has(e, "duplicate key \"node\""));
  e = errors_of(R"([1, 2])");
  CHECK(has(e, "expected a JSON object at the top level"));
}

TEST_CASE("the peer cannot have this node's name, the host name included") {
  auto e = errors_of(
      R"({"node": {"name": "a"}, "peer": {"name": "a", "links": [{"listen": "127.0.0.1:1",
          "peer": "127.0.0.1:2"}], "key_file": "k"}})");
  CHECK(has(e, "peer.name: the peer cannot have this node's own name"));
  char host[256] = {};
  REQUIRE(gethostname(host, sizeof host - 1) == 0);
  e = errors_of(std::string(R"({"peer": {"name": ")") + host +
                R"(", "links": [{"listen": "127.0.0.1:1", "peer": "127.0.0.1:2"}],
                "key_file": "k"}})");
  CHECK(has(e, "peer.name: the peer cannot have this node's own name (the host name"));
}

TEST_CASE("every problem is reported, not just the first") {
  auto e = errors_of(R"({"node": {"role": "x", "name": 3}, "restart": {"backoff": "1"}})");
  CHECK(e.size() == 3);
}

TEST_CASE("a missing config file is reported with its path") {
  Config c;
  std::vector<std::string> errors;
  CHECK_FALSE(load_config("/nonexistent/vacataire.json", c, errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("cannot read config /nonexistent/vacataire.json") != std::string::npos);
}

TEST_CASE("addresses: v4, v6, ports") {
  std::string host, err;
  int port = 0;
  CHECK(parse_address("127.0.0.1:7480", host, port, err));
  CHECK(host == "127.0.0.1");
  CHECK(port == 7480);
  CHECK(parse_address("[::1]:80", host, port, err));
  CHECK(host == "::1");
  CHECK_FALSE(parse_address("::1:80x", host, port, err));
  CHECK_FALSE(parse_address("[::1]80", host, port, err));
  CHECK_FALSE(parse_address("7480", host, port, err));
}

TEST_CASE("addresses: the host is numeric and the port 1-65535, as linkd needs them") {
  Address a;
  std::string err;
  CHECK(parse_address(std::string_view("10.0.0.1:1"), a, err));
  CHECK(a.sa.ss_family == AF_INET);
  CHECK(parse_address(std::string_view("[fe80::1]:65535"), a, err));
  CHECK(a.sa.ss_family == AF_INET6);
  CHECK(a.port == 65535);
  for (const char* bad :
       {"127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:80x",
        "127.0.0.1:", "localhost:80", "web2.example:7480", "::1:80", "[::1]80", "[127.0.0.1]:80",
        "999.1.1.1:80", "127.0.0.1:000000080", ":80"}) {
    CAPTURE(bad);
    CHECK_FALSE(parse_address(std::string_view(bad), a, err));
    CHECK(err.find("bad address") == 0);
  }
  CHECK_FALSE(parse_address(std::string_view("localhost:80"), a, err));
  CHECK(err.find("numeric") != std::string::npos);
  std::string nul("127.0.0.1\0:80", 13);
  CHECK_FALSE(parse_address(std::string_view(nul), a, err));
}

TEST_CASE("every path is absolute, relative ones taken from the config file's directory") {
  Config c;
  std::vector<std::string> errors;
  REQUIRE(parse_config(
      R"({"node": {"state_dir": "state"}, "services_dir": "./services.d",
          "control_socket": "run/control.sock", "probes_dir": "probes", "notify_dir": "n",
          "peer": {"name": "b", "links": [{"listen": "127.0.0.1:1", "peer": "127.0.0.1:2"}],
                   "key_file": "peer.key"},
          "probes": {"a": {"exec": ["bin/check", "x"]}, "b": {"exec": ["pcheck"]},
                     "c": {"exec": ["/usr/bin/true"]}}})",
      "/srv/node/vacataire.json", c, errors));
  CHECK(c.state_dir == "/srv/node/state");
  CHECK(c.services_dir == "/srv/node/./services.d");
  CHECK(c.control_socket == "/srv/node/run/control.sock");
  CHECK(c.probes_dir == "/srv/node/probes");
  CHECK(c.notify_dir == "/srv/node/n");
  CHECK(c.peer->key_file == "/srv/node/peer.key");
  CHECK(c.probes["a"].exec[0] == "/srv/node/bin/check");
  CHECK(c.probes["b"].exec[0] == "pcheck");  // a bare name: built-ins, then PATH, at run time
  CHECK(c.probes["c"].exec[0] == "/usr/bin/true");

  // A relative config file name is made absolute against the current directory.
  char cwd[4096];
  REQUIRE(getcwd(cwd, sizeof cwd));
  REQUIRE(parse_config("{}", "conf/vacataire.json", c, errors));
  CHECK(c.file == std::string(cwd) + "/conf/vacataire.json");
  CHECK(c.state_dir == "/var/lib/vacataire");
  CHECK(absolute_path("./x.json") == std::string(cwd) + "/x.json");
  CHECK(absolute_path("/etc/x.json") == "/etc/x.json");
}

TEST_CASE("restart durations that would disable backoff are refused, with the floor") {
  auto e = errors_of(R"({"restart": {"stable_after": "0s"}})");
  CHECK(has(e, "restart.stable_after: must be at least 250ms"));
  e = errors_of(R"({"restart": {"backoff": "0s", "backoff_max": "100ms"}})");
  CHECK(has(e, "restart.backoff: must be at least 10ms"));
  CHECK(has(e, "restart.backoff_max: must be at least 250ms"));
  e = errors_of(R"({"restart": {"backoff": "2s", "backoff_max": "1s"}})");
  CHECK(has(e, "restart.backoff_max: must not be shorter than restart.backoff"));
  Config c;
  std::vector<std::string> errors;
  CHECK(parse_config(R"({"restart": {"backoff": "10ms", "backoff_max": "250ms",
                                     "stable_after": "250ms"}})",
                     "/x/v.json", c, errors));
}

TEST_CASE("hostile bytes in the config file are errors, never exceptions") {
  std::vector<std::string> texts = {
      std::string("{\"node\": {\"name\": \"caf\xc3\x28\"}}"),  // invalid UTF-8 in a string
      std::string("{\"node\": {\"name\": \"a\0b\"}}", 24),     // a NUL byte
      "{\"restart\": {\"budget\": 1e999}}",                    // a number that overflows
      "{\"restart\": {\"budget\": 18446744073709551615}}",
      "{\"restart\": {\"budget\": -9223372036854775809}}",
      std::string(100000, '['),
      "{\"probes\": {\"p\": {\"exec\": [\"x\", 5]}}}",
      "{\"peer\": {\"links\": [5, {\"listen\": 7}]}}",
      "\xef\xbb\xbf{}",
  };
  for (auto& t : texts) {
    Config c;
    std::vector<std::string> errors;
    bool ok = true;
    CHECK_NOTHROW(ok = parse_config(t, "/etc/v.json", c, errors));
    CHECK(ok == errors.empty());
    for (auto& e : errors) CHECK(e.rfind("/etc/v.json", 0) == 0);
  }
}

TEST_CASE("the config file itself: FIFOs, huge files and symlink loops are refused by name") {
  vt::Node n;
  Config c;
  std::vector<std::string> errors;
  REQUIRE(mkfifo(n.path("fifo.json").c_str(), 0644) == 0);
  CHECK_FALSE(load_config(n.path("fifo.json"), c, errors));  // must not hang
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("fifo.json: is a FIFO") != std::string::npos);
  errors.clear();
  n.write("huge.json", "{\"x\": \"" + std::string(kMaxConfigBytes, 'a') + "\"}");
  CHECK_FALSE(load_config(n.path("huge.json"), c, errors));
  CHECK(errors[0].find("is too large") != std::string::npos);
  errors.clear();
  REQUIRE(symlink("loop.json", n.path("loop.json").c_str()) == 0);
  CHECK_FALSE(load_config(n.path("loop.json"), c, errors));
  CHECK(errors[0].find("loop.json: a symlink loop") != std::string::npos);
}

namespace {
struct BadNode {
  const char* what;
  std::function<void(vt::Node&)> setup;
  std::string reason;
};

json peer_with_key(const std::string& key_file) {
  return {{"peer",
           {{"name", "t2"},
            {"links", {{{"listen", "127.0.0.1:17480"}, {"peer", "127.0.0.1:17481"}}}},
            {"key_file", key_file}}}};
}
const std::string kKey = std::string(128, 'a') + "\n";
}  // namespace

// One validation path: on each bad node, `check-config` and `run` both refuse, with exit code 3
// and the same reason; neither hangs (a FIFO) or crashes (bytes that are not UTF-8).
TEST_CASE("check-config and run refuse the same bad configurations for the same reason") {
  std::vector<BadNode> cases = {
      {"a probe program that is nowhere",
       [](vt::Node& n) {
         n.configure({{"probes", {{"p", {{"exec", {"no-such-probe-x"}}}}}}});
       },
       "is neither a built-in probe"},
      {"a probe program that is not executable",
       [](vt::Node& n) {
         n.write("check.sh", "#!/bin/sh\n", 0644);
         n.configure({{"probes", {{"p", {{"exec", {"./check.sh"}}, {"protocol", "exit"}}}}}});
       },
       "check.sh is not an executable file"},
      {"a state_dir that is a file",
       [](vt::Node& n) {
         n.write("statefile", "x");
         n.configure({{"node", {{"state_dir", "statefile"}}}});
       },
       ""},
      {"an over-long control socket path",
       [](vt::Node& n) {
         n.configure({{"control_socket", std::string(120, 's')}});
       },
       "a Unix socket path holds at most 107"},
      {"a symlink loop as state_dir",
       [](vt::Node& n) {
         REQUIRE(symlink("loop", n.path("loop").c_str()) == 0);
         n.configure({{"node", {{"state_dir", "loop"}}}});
       },
       "a symlink loop"},
      {"a symlink loop as services_dir",
       [](vt::Node& n) {
         REQUIRE(symlink("sloop", n.path("sloop").c_str()) == 0);
         n.configure({{"services_dir", "sloop"}});
       },
       "sloop: a symlink loop"},
      {"a FIFO as key file",
       [](vt::Node& n) {
         REQUIRE(mkfifo(n.path("peer.key").c_str(), 0600) == 0);
         n.configure(peer_with_key("peer.key"));
       },
       "peer.key: is a FIFO"},
      {"a key file readable by others",
       [](vt::Node& n) {
         n.write("peer.key", kKey, 0644);
         n.configure(peer_with_key("peer.key"));
       },
       "is readable by group or others"},
      {"a key file that is a symlink",
       [](vt::Node& n) {
         n.write("real.key", kKey, 0600);
         REQUIRE(symlink("real.key", n.path("peer.key").c_str()) == 0);
         n.configure(peer_with_key("peer.key"));
       },
       "peer.key: is a symbolic link"},
      {"a key file owned by someone else",
       [](vt::Node& n) {
         n.write("peer.key", kKey, 0600);
         REQUIRE(chown(n.path("peer.key").c_str(), 65534, 65534) == 0);
         n.configure(peer_with_key("peer.key"));
       },
       "is owned by uid 65534"},
      {"a key file that is not a key",
       [](vt::Node& n) {
         n.write("peer.key", "not hex at all\n", 0600);
         n.configure(peer_with_key("peer.key"));
       },
       "the key is not hexadecimal"},
      {"a huge key file",
       [](vt::Node& n) {
         n.write("peer.key", std::string(1 << 20, 'a'), 0600);
         n.configure(peer_with_key("peer.key"));
       },
       "peer.key: is too large"},
      {"a link address that is a name",
       [](vt::Node& n) {
         n.write("peer.key", kKey, 0600);
         json c = peer_with_key("peer.key");
         c["peer"]["links"][0]["peer"] = "web2.example:7480";
         n.configure(c);
       },
       "names are not looked up"},
      {"a link port 0",
       [](vt::Node& n) {
         n.write("peer.key", kKey, 0600);
         json c = peer_with_key("peer.key");
         c["peer"]["links"][0]["listen"] = "127.0.0.1:0";
         n.configure(c);
       },
       "the port must be a number from 1 to 65535"},
      {"stable_after 0s",
       [](vt::Node& n) {
         n.configure({{"restart", {{"stable_after", "0s"}}}});
       },
       "restart.stable_after: must be at least 250ms"},
      {"an unknown control_group",
       [](vt::Node& n) {
         n.configure({{"control_group", "no-such-group-x"}});
       },
       "control_group: no group named \"no-such-group-x\""},
      {"a depends knob that is not UTF-8",
       [](vt::Node& n) {
         n.service("app", "exec sleep 1000", {{"depends", "caf\xc3\x28\n"}});
       },
       "app/depends: is not valid UTF-8"},
      {"a down-signal knob with a NUL byte",
       [](vt::Node& n) {
         n.service("app", "exec sleep 1000", {{"down-signal", std::string("TERM\0x", 6)}});
       },
       "app/down-signal: contains a NUL byte"},
      {"a huge knob file",
       [](vt::Node& n) {
         n.service("app", "exec sleep 1000", {{"timeout-stop", std::string(1 << 20, '1')}});
       },
       "app/timeout-stop: is too large"},
      {"a FIFO as knob file",
       [](vt::Node& n) {
         n.service("app", "exec sleep 1000");
         REQUIRE(mkfifo(n.path("services.d/app/notification-fd").c_str(), 0644) == 0);
       },
       "app/notification-fd: is a FIFO"},
  };
  cases[2].reason = "statefile exists and is not a directory";
  for (auto& c : cases) {
    CAPTURE(c.what);
    vt::Node n;
    c.setup(n);
    auto check = n.cli({"check-config"});
    CHECK(check.code == 3);
    CHECK_MESSAGE(check.out.find(c.reason) != std::string::npos, check.out);
    auto run = n.cli({"run"});
    CHECK(run.code == 3);
    CHECK_MESSAGE(run.out.find(c.reason) != std::string::npos, run.out);
    CHECK(run.out.find("nothing was started") != std::string::npos);
  }
}
