// The load-balancer endpoints: first what each one says for a given status document (pure),
// then a real single node serving them from linkd, how they fail closed when the supervisor
// freezes or dies, and what a hostile client can and cannot do to them.
#include <doctest/doctest.h>

#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <vector>

#include "common/link_messages.hpp"
#include "endpoints.hpp"
#include "harness.hpp"
#include "http_client.hpp"

using vt::json;

namespace {
json doc(const std::string& state, bool healthy = true, const std::string& peer = "up") {
  return {{"node",
           {{"name", "web1"},
            {"role", "master"},
            {"state", state},
            {"epoch", 3},
            {"healthy", healthy}}},
          {"peer", {{"state", peer}}},
          {"services", {{"app", {{"state", "up"}, {"want", "up"}, {"ready", true}}}}},
          {"probes",
           {{"content", {{"state", "passing"}, {"critical", true}}},
            {"gateway", {{"state", "failing"}, {"critical", false}}}}}};
}
}  // namespace

TEST_CASE("/active: active, healthy and every wanted service ready; fail closed otherwise") {
  auto a = vac::endpoint_answer("/active", doc("active"), true);
  CHECK(a.code == 200);
  CHECK(a.body["state"] == "active");
  CHECK(a.body["node"] == "web1");
  CHECK(vac::endpoint_answer("/active", doc("active"), false).code == 503);
  CHECK(vac::endpoint_answer("/active", doc("active"), false).body["reason"] ==
        "the supervisor is not responding");
  CHECK(vac::endpoint_answer("/active", doc("passive"), true).code == 503);
  CHECK(vac::endpoint_answer("/active", doc("starting"), true).code == 503);
  CHECK(vac::endpoint_answer("/active", doc("active", false), true).code == 503);
  json d = doc("active");
  d["services"]["app"]["ready"] = false;
  a = vac::endpoint_answer("/active", d, true);
  CHECK(a.code == 503);
  CHECK(a.body["reason"] == "service app is not ready");
  d["services"]["app"]["want"] = "down";  // an operator's svc down is not the node's failure
  CHECK(vac::endpoint_answer("/active", d, true).code == 200);
}

TEST_CASE(
    "/standby: passive, healthy and hearing its peer; the reason when it could not take over") {
  CHECK(vac::endpoint_answer("/standby", doc("passive"), true).code == 200);
  CHECK(vac::endpoint_answer("/standby", doc("active"), true).code == 503);
  auto a = vac::endpoint_answer("/standby", doc("passive", true, "lost"), true);
  CHECK(a.code == 503);
  CHECK(a.body["reason"] == "peer link is lost");
  json d = doc("passive", false);
  d["probes"]["memory"] = {{"state", "failing"}, {"critical", true}};
  CHECK(vac::standby_blocker(d) == "critical probe memory is failing");
  CHECK(vac::standby_blocker(doc("passive", true, "none")) == "no peer is configured");
  CHECK(vac::standby_blocker(doc("failed")) == "state is failed");
  CHECK(vac::endpoint_answer("/standby", doc("passive"), false).code == 503);
}

TEST_CASE("/health: any role, no critical probe failing; /status the document; others 404") {
  CHECK(vac::endpoint_answer("/health", doc("passive"), true).code ==
        200);  // gateway: non-critical
  json d = doc("active");
  d["probes"]["content"]["state"] = "failing";
  auto a = vac::endpoint_answer("/health", d, true);
  CHECK(a.code == 503);
  CHECK(a.body["reason"] == "critical probe content is failing");
  CHECK(vac::endpoint_answer("/health", doc("failed"), false).code == 503);
  a = vac::endpoint_answer("/status", doc("active"), true);
  CHECK(a.code == 200);
  CHECK(a.body == doc("active"));
  CHECK(vac::endpoint_answer("/status", doc("active"), false).code == 503);
  CHECK(vac::endpoint_answer("/nope", doc("active"), true).code == 404);
  CHECK(vac::endpoint_answer("/active/", doc("active"), true).code == 404);
}

TEST_CASE("a broken status document reads as not true, never as an exception") {
  for (json bad : {json(), json::array({1, 2}), json("x"),
                   json{{"node", 5}, {"services", "x"}, {"probes", {{"p", 3}}}},
                   json{{"node", {{"state", 7}, {"healthy", "yes"}}}, {"peer", nullptr}}}) {
    for (const char* path : {"/active", "/standby", "/health"})
      CHECK(vac::endpoint_answer(path, bad, true).code ==
            503 - 303 * (std::string(path) == "/health"));
    CHECK(vac::agent_reply(bad, true, "down").rfind("down #", 0) == 0);
  }
}

TEST_CASE("agent-check: up ready on the active node, drain on a planned handover, down or maint") {
  CHECK(vac::agent_reply(doc("active"), true, "down") == "up ready\n");
  CHECK(vac::agent_reply(doc("active"), false, "down") ==
        "down #the supervisor is not responding\n");
  CHECK(vac::agent_reply(doc("passive"), true, "down") == "down #state is passive\n");
  CHECK(vac::agent_reply(doc("passive"), true, "maint") == "maint #state is passive\n");
  json d = doc("stopping");
  d["node"]["target"] = "passive";
  CHECK(vac::agent_reply(d, true, "down") == "drain\n");
  d["node"]["target"] = "failed";  // stopping because it failed: not a handover
  CHECK(vac::agent_reply(d, true, "down") == "down #state is stopping\n");
  d = doc("active");
  d["services"] = {{"a\nb", {{"want", "up"}, {"ready", false}}}};
  CHECK(vac::agent_reply(d, true, "down") == "down #service a b is not ready\n");  // one line
}

namespace {
struct SingleNode {
  vt::Node n;
  int http = vt::free_port(SOCK_STREAM), agent = vt::free_port(SOCK_STREAM);
  SingleNode() {
    n.service("app", "exec sleep 100000");
    n.configure({{"endpoints",
                  {{"http", "127.0.0.1:" + std::to_string(http)},
                   {"agent_check", "127.0.0.1:" + std::to_string(agent)}}}});
    n.start();
    REQUIRE_MESSAGE(vt::eventually([&] { return vt::http(http, "GET", "/active").code == 200; }),
                    n.log());
  }
};
}  // namespace

TEST_CASE("a single node serves every endpoint from linkd: GET, HEAD, OPTIONS, 404, 405") {
  SingleNode s;
  auto r = vt::http(s.http, "GET", "/active");
  CHECK(r.head.find("Content-Type: application/json") != std::string::npos);
  json body = json::parse(r.body);
  CHECK(body["state"] == "active");
  CHECK(body["node"] == "t1");
  r = vt::http(s.http, "HEAD", "/active");
  CHECK(r.code == 200);
  CHECK(r.body.empty());
  // What HAProxy's `option httpchk` sends by default.
  r = vt::http_raw(s.http, "OPTIONS /active HTTP/1.0\r\n\r\n");
  CHECK(r.code == 200);
  CHECK(r.head.find("Allow: GET, HEAD, OPTIONS") != std::string::npos);
  r = vt::http(s.http, "GET", "/standby");
  CHECK(r.code == 503);
  CHECK(json::parse(r.body)["reason"] == "state is active");
  CHECK(vt::http(s.http, "GET", "/health").code == 200);
  r = vt::http(s.http, "GET", "/status");
  CHECK(r.code == 200);
  json st = json::parse(r.body);
  CHECK(st["node"]["name"] == "t1");
  CHECK(st["services"]["app"]["state"] == "up");
  CHECK(st["node"]["standby"]["blocker"] == "state is active");
  r = vt::http(s.http, "GET", "/metrics");
  CHECK(r.code == 200);
  CHECK(r.body.find("vacataire_node_state{state=\"active\"} 1\n") != std::string::npos);
  CHECK(vt::http(s.http, "GET", "/nope").code == 404);
  r = vt::http(s.http, "POST", "/active");
  CHECK(r.code == 405);
  CHECK(r.head.find("Allow: GET, HEAD, OPTIONS") != std::string::npos);
  CHECK(vt::http(s.http, "DELETE", "/status").code == 405);
  CHECK(vt::agent_line(s.agent) == "up ready\n");
  // The operator stops the service: no longer a node to send traffic to.
  CHECK(s.n.cli({"svc", "down", "app"}).code == 0);
  CHECK(vt::eventually([&] { return vt::http(s.http, "GET", "/active").code == 200; }));
  CHECK(s.n.stop() == 0);
  CHECK(vt::tcp_connect(s.http) < 0);  // linkd ends with the supervisor: the port closes
}

TEST_CASE(
    "fail closed: a frozen supervisor turns /active 503 within its lease, a dead one closes the "
    "port") {
  SingleNode s;
  kill(s.n.pid(), SIGSTOP);
  // Default lease without a peer: max(1s / 2, 3 ticks) = 500 ms.
  bool closed = vt::eventually([&] { return vt::http(s.http, "GET", "/active").code == 503; }, 5);
  std::string agent = vt::agent_line(s.agent);
  auto health = vt::http(s.http, "GET", "/health").code;
  kill(s.n.pid(), SIGCONT);
  CHECK(closed);
  CHECK(agent == "down #the supervisor is not responding\n");
  CHECK(health == 503);
  CHECK(vt::eventually([&] { return vt::http(s.http, "GET", "/active").code == 200; }, 5));
  s.n.kill9();
  CHECK(vt::eventually([&] { return vt::tcp_connect(s.http, 1) < 0; }, 5));
  CHECK(vt::eventually([&] { return vt::tcp_connect(s.agent, 1) < 0; }, 5));
}

TEST_CASE(
    "hostile clients: huge headers, garbage, floods and slowloris do not take the endpoints") {
  SingleNode s;
  // Headers past the request memory bound are refused, and the server carries on.
  std::string huge =
      "GET /active HTTP/1.1\r\nHost: x\r\nX-A: " + std::string(100000, 'a') + "\r\n\r\n";
  auto r = vt::http_raw(s.http, huge);
  CHECK((r.code == 431 || r.code == 413 || r.code == 0));
  CHECK(vt::http(s.http, "GET", "/active").code == 200);
  // Garbage instead of a request line.
  r = vt::http_raw(s.http, std::string("\x01\x02\xff garbage\r\n\r\n", 16));
  CHECK(r.code != 200);
  CHECK(vt::http(s.http, "GET", "/active").code == 200);
  // Garbage and a megabyte at the agent port: the answer is the same one line.
  CHECK(vt::agent_line(s.agent, std::string(1 << 20, '\x7f')) == "up ready\n");
  CHECK(vt::agent_line(s.agent, "help\nshow stat\n") == "up ready\n");

  // A flood of idle connections from one address: that address is capped, another still gets in.
  std::vector<int> held;
  for (int i = 0; i < 100; ++i) {
    int fd = vt::tcp_connect(s.http, 1);
    if (fd >= 0) held.push_back(fd);
  }
  CHECK(vt::http(s.http, "GET", "/active").code == 0);  // over its per-address bound
  CHECK(vt::http(s.http, "GET", "/active", "127.0.0.2").code == 200);
  CHECK(vt::agent_line(s.agent) == "up ready\n");
  // Idle ones are closed after the idle timeout; then the flooding address is served again.
  CHECK(vt::eventually([&] { return vt::http(s.http, "GET", "/active").code == 200; }, 15));
  for (int fd : held) close(fd);

  // Slowloris: a request trickling in a byte at a time is cut at the connection's lifetime.
  int slow = vt::tcp_connect(s.http, 1);
  REQUIRE(slow >= 0);
  std::string request = "GET /active HTTP/1.1\r\nHost: x\r\n" + std::string(4000, 'X');
  auto start = std::chrono::steady_clock::now();
  bool cut = false;
  for (size_t i = 0; i < request.size() && !cut; ++i) {
    if (send(slow, &request[i], 1, MSG_NOSIGNAL) != 1) cut = true;
    char c;
    if (recv(slow, &c, 1, MSG_DONTWAIT) == 0) cut = true;  // the server closed it
    usleep(200000);
    if (std::chrono::steady_clock::now() - start > std::chrono::seconds(20)) break;
  }
  close(slow);
  CHECK(cut);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
  CHECK(s.n.stop() == 0);
}

TEST_CASE("the config line carries the agent's word for an inactive node, and refuses others") {
  vac::LinkdSettings s;
  s.node = "web1";
  s.endpoints.agent_check = "127.0.0.1:7482";
  std::string err;
  auto c = vac::decode_to_linkd(vac::encode_config_line(s), err);
  REQUIRE_MESSAGE(c, err);
  CHECK(c->settings.endpoints.agent_inactive == "down");
  s.endpoints.agent_inactive = "maint";
  c = vac::decode_to_linkd(vac::encode_config_line(s), err);
  REQUIRE_MESSAGE(c, err);
  CHECK(c->settings.endpoints.agent_inactive == "maint");
  s.endpoints.agent_inactive = "sleep";
  CHECK_FALSE(vac::decode_to_linkd(vac::encode_config_line(s), err));
  CHECK(err.find("agent_inactive") != std::string::npos);
  // No peer and no endpoints: linkd would have nothing to do.
  s.endpoints = {};
  CHECK_FALSE(vac::decode_to_linkd(vac::encode_config_line(s), err));
  CHECK(err.find("must hold at least one link (or endpoints be set)") != std::string::npos);
}

TEST_CASE("endpoints.agent_inactive in vacataire.json: down or maint, anything else named") {
  vac::Config c;
  std::vector<std::string> errors;
  CHECK(vac::parse_config(
      R"({"endpoints": {"agent_check": "127.0.0.1:7482", "agent_inactive": "maint"}})", "v.json", c,
      errors));
  CHECK(c.endpoint_agent_inactive == "maint");
  vac::Config d;
  CHECK(d.endpoint_agent_inactive == "down");
  CHECK_FALSE(
      vac::parse_config(R"({"endpoints": {"agent_inactive": "sleep"}})", "v.json", d, errors));
  REQUIRE_FALSE(errors.empty());
  CHECK(errors.back().find("endpoints.agent_inactive") != std::string::npos);
}
