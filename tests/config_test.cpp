#include <doctest/doctest.h>

#include "common/config.hpp"

using namespace vac;
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
  CHECK(has(e, "endpoints.http: bad address \"0.0.0.0:99999\": port must be a number"));
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
