// SIGHUP reload (reload.hpp): what may change at run time, decided purely, then real nodes and
// real pairs on loopback reloaded while they run. Every wait is on an event: a status field, a
// log line, a port.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <fstream>

#include "harness.hpp"
#include "http_client.hpp"
#include "reload.hpp"
#include "wire.hpp"

using vt::json;

namespace {
using vt::free_port;

std::string loop(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// ---- the pure plan ----

vac::Config paired() {
  vac::Config c;
  c.file = "/etc/vacataire/vacataire.json";
  c.node_name = "web1";
  c.peer = vac::PeerConfig{};
  c.peer->name = "web2";
  c.peer->links = {{"127.0.0.1:7001", "127.0.0.1:7002"}, {"127.0.0.2:7001", "127.0.0.2:7002"}};
  c.peer->key_file = "/etc/vacataire/peer.key";
  c.peer->heartbeat = std::chrono::milliseconds(20);
  return c;
}

bool mentions(const std::vector<std::string>& lines, const std::string& text) {
  for (auto& l : lines)
    if (l.find(text) != std::string::npos) return true;
  return false;
}

const vac::Key kKey(32, 1), kOtherKey(32, 2);

TEST_CASE("plan: what is fixed at run time is refused whole, naming the key") {
  vac::Config now = paired();
  struct Case {
    const char* key;
    std::function<void(vac::Config&)> change;
  };
  std::vector<Case> cases = {
      {"node.name", [](vac::Config& c) { c.node_name = "web3"; }},
      {"node.role", [](vac::Config& c) { c.role = "standby"; }},
      {"node.state_dir", [](vac::Config& c) { c.state_dir = "/srv/state"; }},
      {"control_socket", [](vac::Config& c) { c.control_socket = "/run/other.sock"; }},
      {"peer.name", [](vac::Config& c) { c.peer->name = "web9"; }},
      {"peer: the peer section was removed", [](vac::Config& c) { c.peer.reset(); }},
      {"failover.failback", [](vac::Config& c) { c.failover.failback = "auto"; }},
      {"failover.witness", [](vac::Config& c) { c.failover.witness = "gw"; }},
  };
  for (auto& k : cases) {
    CAPTURE(k.key);
    vac::Config next = now;
    next.peer->heartbeat = std::chrono::milliseconds(50);  // applies alone, not with the rest
    k.change(next);
    auto plan = vac::plan_reload(now, kKey, next, kKey, false);
    REQUIRE(plan.refused.size() == 1);
    CHECK(plan.refused[0].find(k.key) != std::string::npos);
    CHECK(plan.refused[0].find("Restart the supervisor") != std::string::npos);
  }
}

TEST_CASE("plan: the peer section and endpoints restart linkd; nothing changed leaves it") {
  vac::Config now = paired();
  CHECK_FALSE(vac::plan_reload(now, kKey, now, kKey, true).restart_link);
  vac::Config next = now;
  next.peer->heartbeat = std::chrono::milliseconds(50);
  next.peer->dead_after = std::chrono::seconds(2);
  auto plan = vac::plan_reload(now, kKey, next, kKey, true);
  CHECK(plan.refused.empty());
  CHECK(plan.restart_link);
  CHECK(mentions(plan.link_changes, "heartbeat 20ms -> 50ms"));
  CHECK(mentions(plan.link_changes, "dead_after 1s -> 2s"));
  next = now;
  next.endpoint_http = "127.0.0.1:8008";
  plan = vac::plan_reload(now, kKey, next, kKey, true);
  CHECK(plan.restart_link);
  CHECK(mentions(plan.link_changes, "endpoints.http (none) -> 127.0.0.1:8008"));
  // The key's content counts, not its path; the key itself is never written out.
  plan = vac::plan_reload(now, kKey, now, kOtherKey, false);
  CHECK(plan.refused.empty());
  CHECK(plan.restart_link);
  CHECK(plan.link_changes == std::vector<std::string>{"key changed"});
}

TEST_CASE("plan: a key or every link changed is refused while the peer is up, applied without") {
  vac::Config now = paired();
  auto up = vac::plan_reload(now, kKey, now, kOtherKey, true);
  REQUIRE(up.refused.size() == 1);
  CHECK(up.refused[0].find("peer.key_file") != std::string::npos);
  CHECK(up.refused[0].find("stop the standby") != std::string::npos);
  CHECK(vac::plan_reload(now, kKey, now, kOtherKey, false).refused.empty());

  vac::Config one = now;  // one link of two: the pair keeps talking over the other
  one.peer->links[1].listen = "127.0.0.3:7001";
  auto plan = vac::plan_reload(now, kKey, one, kKey, true);
  CHECK(plan.refused.empty());
  CHECK(mentions(plan.link_changes, "link 2 127.0.0.2:7001 <-> 127.0.0.2:7002 -> 127.0.0.3:7001"));

  vac::Config all = one;
  all.peer->links[0].peer = "127.0.0.1:7009";
  plan = vac::plan_reload(now, kKey, all, kKey, true);
  REQUIRE(plan.refused.size() == 1);
  CHECK(plan.refused[0].find("every link changes at once") != std::string::npos);
  CHECK(plan.refused[0].find("one link at a time") != std::string::npos);
  CHECK(vac::plan_reload(now, kKey, all, kKey, false).refused.empty());

  // Links are matched by position: dropping the first shifts the second into its place.
  vac::Config shifted = now;
  shifted.peer->links.erase(shifted.peer->links.begin());
  CHECK(vac::plan_reload(now, kKey, shifted, kKey, true).refused.size() == 1);
  vac::Config dropped = now;  // dropping the last keeps the first in place
  dropped.peer->links.pop_back();
  CHECK(vac::plan_reload(now, kKey, dropped, kKey, true).refused.empty());
}

TEST_CASE("a new address something else holds is found before linkd is replaced") {
  int held = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(held, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(held, 1) == 0);
  socklen_t len = sizeof a;
  getsockname(held, reinterpret_cast<sockaddr*>(&a), &len);
  vac::Config now = paired(), next = now;
  next.endpoint_http = loop(ntohs(a.sin_port));
  auto errors = vac::check_new_addresses(now, next);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("endpoints.http: cannot bind " + next.endpoint_http) != std::string::npos);
  // The running linkd holds its own addresses: those are not tried.
  now.endpoint_http = next.endpoint_http;
  CHECK(vac::check_new_addresses(now, next).empty());
  close(held);
  next.endpoint_http = loop(free_port(SOCK_STREAM));
  CHECK(vac::check_new_addresses(now, next).empty());
}

// ---- real nodes ----

void hup(vt::Node& n) {
  kill(n.pid(), SIGHUP);
}

json reload_status(vt::Node& n) {
  json st = n.status();
  return st.contains("supervisor") ? st["supervisor"]["reload"] : json();
}

// Waits for the count-th reload's outcome.
std::string reload_result(vt::Node& n, int count) {
  std::string result;
  vt::eventually([&] {
    json r = reload_status(n);
    if (!r.is_object() || r.value("count", 0) < count) return false;
    result = r.value("result", "");
    return true;
  });
  return result;
}

json linkd_pid(vt::Node& n) {
  return n.status()["peer"]["linkd_pid"];
}

// The pids of vacataire-linkd processes whose parent is pid.
std::vector<pid_t> linkd_children(pid_t parent) {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    pid_t p = static_cast<pid_t>(std::atoi(e->d_name));
    if (p <= 0) continue;
    std::string stat = vt::read_file("/proc/" + std::to_string(p) + "/stat");
    size_t close_paren = stat.rfind(')');
    if (close_paren == std::string::npos || stat.find("(vacataire-link") == std::string::npos)
      continue;
    if (std::atoi(stat.c_str() + close_paren + 4) == parent) out.push_back(p);
  }
  if (d) closedir(d);
  return out;
}

struct TestPair {
  vt::Node a, b;  // a: web1, the master; b: web2, the standby
  std::vector<int> ports_a = {free_port(SOCK_DGRAM), free_port(SOCK_DGRAM)},
                   ports_b = {free_port(SOCK_DGRAM), free_port(SOCK_DGRAM)};
  std::string key = vac::new_key_hex() + "\n";

  explicit TestPair(int links = 1) {
    ports_a.resize(links), ports_b.resize(links);
    setup(a, "web1", "master", "web2", ports_a, ports_b);
    setup(b, "web2", "standby", "web1", ports_b, ports_a);
  }
  static json links_of(const std::vector<int>& mine, const std::vector<int>& theirs) {
    json links = json::array();
    for (size_t i = 0; i < mine.size(); ++i)
      links.push_back({{"listen", loop(mine[i])}, {"peer", loop(theirs[i])}});
    return links;
  }
  void setup(vt::Node& n, const std::string& name, const std::string& role, const std::string& peer,
             const std::vector<int>& mine, const std::vector<int>& theirs) {
    n.write("peer.key", key, 0600);
    n.service("app", "exec sleep 100000");
    // dead_after leaves a new linkd room to start and confirm a session under ASan on a loaded
    // machine; the heartbeat is short, so "no failover" is many heartbeats long.
    n.configure({{"node", {{"name", name}, {"role", role}}},
                 {"peer",
                  {{"name", peer},
                   {"links", links_of(mine, theirs)},
                   {"key_file", "peer.key"},
                   {"heartbeat", "20ms"},
                   {"dead_after", "600ms"}}},
                 {"failover", {{"startup_grace", "500ms"}}}});
  }
  static std::string state(vt::Node& n) { return n.status()["node"].value("state", "?"); }
  bool states(const std::string& sa, const std::string& sb, double timeout = 10) {
    bool ok = vt::eventually([&] { return state(a) == sa && state(b) == sb; }, timeout);
    if (!ok) MESSAGE("web1 log:\n", a.log(), "\nweb2 log:\n", b.log());
    return ok;
  }
  void start() {
    a.start();
    b.start();
    REQUIRE(states("active", "passive"));
    REQUIRE(vt::eventually([&] { return a.status()["peer"]["state"] == "up"; }));
    mark_a = a.log().size(), mark_b = b.log().size();
  }
  size_t mark_a = 0, mark_b = 0;  // the logs' length once the pair has settled
  // The new linkd of n has exchanged n datagrams with the peer: with a 20ms heartbeat, 50 is a
  // second of the pair talking after the restart, well past dead_after.
  static bool talked(vt::Node& n, int datagrams = 50) {
    return vt::eventually([&] {
      json d = n.status()["peer"]["datagrams"];
      return d.is_object() && d.value("ok", 0) >= datagrams;
    });
  }
  // Neither node moved since start(): a active and b passive all along, the epoch as it was.
  void no_failover(uint64_t epoch) {
    CHECK(state(a) == "active");
    CHECK(state(b) == "passive");
    CHECK(a.status()["node"]["epoch"] == epoch);
    for (vt::Node* n : {&a, &b}) {
      std::string log = n->log().substr(n == &a ? mark_a : mark_b);
      CHECK(log.find("-> stopping") == std::string::npos);
      CHECK(log.find("-> starting") == std::string::npos);
      CHECK(log.find("lost: silent on every link") == std::string::npos);
    }
  }
};

TEST_CASE("reload of heartbeat and dead_after on the active node: linkd replaced, no failover") {
  TestPair p;
  p.start();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  json before = linkd_pid(p.a);
  REQUIRE(before.is_number());
  // A linkd a second old (its first stats): replaced at once, not paced.
  REQUIRE(TestPair::talked(p.a, 1));
  json fence = p.a.status()["supervisor"]["guard_fence_s"];
  p.a.configure({{"peer", {{"heartbeat", "30ms"}, {"dead_after", "700ms"}}}});
  hup(p.a);
  REQUIRE(reload_result(p.a, 1) == "applied");
  CHECK(
      p.a.wait_log("reload: peer link restarted: heartbeat 20ms -> 30ms, dead_after 600ms -> "
                   "700ms"));
  REQUIRE(vt::eventually([&] {
    json now = linkd_pid(p.a);
    return now.is_number() && now != before;
  }));
  CHECK_FALSE(vt::process_exists(before.get<pid_t>()));
  CHECK(p.a.status()["peer"]["linkd_reloads"] == 1);
  CHECK(p.a.status()["peer"]["linkd_restarts"] == 0);  // planned: no crash counted
  // The guard's fence follows: lease + (dead_after - heartbeat) / 2, with web2's dead_after
  // (600ms, shorter than web1's new 700ms: web2 counts it from web1's last heartbeat), so
  // 350ms + (600ms - 30ms) / 2.
  CHECK(fence.is_number());
  CHECK(vt::eventually([&] {
    return p.a.status()["supervisor"]["guard_fence_s"].get<double>() == doctest::Approx(0.635);
  }));
  // Both nodes say their timings differ, in status and in the log.
  json why_a = p.a.status()["peer"]["timing_mismatch"];
  REQUIRE(why_a.is_string());
  CHECK(why_a.get<std::string>() ==
        "peer web2 runs heartbeat 20ms, dead_after 600ms; this node runs heartbeat 30ms, "
        "dead_after 700ms: set the same on both nodes; the guard's fence is shortened to 635ms");
  CHECK(p.a.status()["peer"]["timing"] == json{{"heartbeat_s", 0.02}, {"dead_after_s", 0.6}});
  CHECK(p.a.cli({"status"}).out.find("  timing: peer web2 runs heartbeat 20ms") !=
        std::string::npos);
  REQUIRE(vt::eventually([&] { return p.b.status()["peer"]["timing_mismatch"].is_string(); }));
  CHECK(
      p.b.wait_log("peer web1 runs heartbeat 30ms, dead_after 700ms; this node runs heartbeat "
                   "20ms, dead_after 600ms: set the same on both nodes"));
  CHECK(p.b.status()["supervisor"]["guard_fence_s"].get<double>() == doctest::Approx(0.59));
  REQUIRE(TestPair::talked(p.a));
  REQUIRE(TestPair::talked(p.b, 1));
  p.no_failover(epoch);
  CHECK(linkd_children(p.a.pid()).size() == 1);
  std::string log = p.a.log();
  size_t at = log.find("reload: peer link restarted");
  MESSAGE("new linkd ready ",
          vt::log_ms(log, "linkd: ready on", at) - vt::log_ms(log, "reload:", at),
          " ms after the reload (heartbeat 30ms, dead_after 700ms)");
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("an unchanged SIGHUP leaves linkd alone; a storm of changed ones replaces it paced") {
  TestPair p;
  p.start();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  json first = linkd_pid(p.a);
  hup(p.a);
  REQUIRE(reload_result(p.a, 1) == "applied");
  CHECK(linkd_pid(p.a) == first);
  CHECK(p.a.status()["peer"]["linkd_reloads"] == 0);
  CHECK(p.a.log().find("peer link restarted") == std::string::npos);

  // 100 SIGHUPs of one changed file: one replacement, however many reloads they make.
  p.a.configure({{"peer", {{"heartbeat", "25ms"}}}});
  for (int i = 0; i < 100; ++i) hup(p.a);
  REQUIRE(p.a.wait_log("peer link restarted: heartbeat 20ms -> 25ms"));
  REQUIRE(vt::eventually([&] {
    json now = linkd_pid(p.a);
    return now.is_number() && now != first;
  }));
  CHECK(p.a.status()["peer"]["linkd_reloads"] == 1);
  CHECK(linkd_children(p.a.pid()).size() == 1);

  // 100 SIGHUPs, the heartbeat flipping between two values: never two linkd at once, and the
  // pair stays together.
  size_t most = 0;
  for (int i = 0; i < 100; ++i) {
    p.a.configure({{"peer", {{"heartbeat", i % 2 ? "20ms" : "25ms"}}}});
    hup(p.a);
    if (i % 10 != 0) continue;
    auto now = linkd_children(p.a.pid());
    if (now.size() > 1)  // which, and in what state: a zombie not yet reaped, or two running
      for (pid_t l : now)
        MESSAGE("linkd child ", l, ": ", vt::read_file("/proc/" + std::to_string(l) + "/stat"));
    most = std::max(most, now.size());
  }
  p.a.configure({{"endpoints", {{"agent_inactive", "maint"}}}});  // a last, distinct change
  hup(p.a);
  REQUIRE(p.a.wait_log("endpoints.agent_inactive down -> maint", 20));
  REQUIRE(vt::eventually([&] {
    json st = p.a.status();
    return st["peer"]["linkd_pid"].is_number() && st["supervisor"]["reload"]["result"] == "applied";
  }));
  most = std::max(most, linkd_children(p.a.pid()).size());
  CHECK(most == 1);
  json reloads = p.a.status()["peer"]["linkd_reloads"];
  MESSAGE("linkd replaced ", reloads, " times for ", p.a.status()["supervisor"]["reload"]["count"],
          " reloads");
  REQUIRE(TestPair::talked(p.a));
  CHECK(linkd_children(p.a.pid()).size() == 1);
  p.no_failover(epoch);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a reload during a handover waits for the handshake before it replaces linkd") {
  TestPair p;
  // web1's service takes two seconds to stop: its handover stays under way that long.
  p.a.service("app", "trap 'sleep 2; exit 0' TERM\nwhile :; do sleep 0.05; done",
              {{"timeout-stop", "10"}});
  p.start();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  json first = linkd_pid(p.a);
  CHECK(p.a.cli({"release"}).code == 0);
  REQUIRE(vt::eventually([&] { return TestPair::state(p.a) == "stopping"; }));
  p.a.configure({{"peer", {{"heartbeat", "30ms"}}}});
  hup(p.a);
  REQUIRE(reload_result(p.a, 1) == "applied");
  REQUIRE(p.a.wait_log("restart waits for the handshake with the peer to end"));
  json st = p.a.status();
  if (st["node"]["state"] == "stopping") CHECK(st["peer"]["linkd_pid"] == first);
  // The handover completes over the old linkd; the new one comes after.
  REQUIRE(p.states("passive", "active"));
  REQUIRE(vt::eventually([&] {
    json now = linkd_pid(p.a);
    return now.is_number() && now != first;
  }));
  CHECK(p.b.status()["node"]["epoch"] == epoch + 1);
  REQUIRE(TestPair::talked(p.a));
  CHECK(TestPair::state(p.a) == "passive");
  CHECK(TestPair::state(p.b) == "active");
  CHECK(p.b.log().find("lost: silent on every link") == std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a SIGHUP while linkd is starting replaces it once it had its chance, not before") {
  vt::Node n;  // its peer never answers: the linkd never hears it
  n.service("app", "exec sleep 100000");
  n.write("peer.key", vac::new_key_hex() + "\n", 0600);
  n.configure(
      {{"peer",
        {{"name", "ghost"},
         {"links",
          {{{"listen", loop(free_port(SOCK_DGRAM))}, {"peer", loop(free_port(SOCK_DGRAM))}}}},
         {"key_file", "peer.key"},
         {"heartbeat", "20ms"},
         {"dead_after", "1s"}}}});
  n.start();
  json first;
  REQUIRE(vt::eventually([&] { return (first = linkd_pid(n)).is_number(); }));
  n.configure({{"peer", {{"heartbeat", "40ms"}}}});
  hup(n);
  REQUIRE(reload_result(n, 1) == "applied");
  auto t0 = std::chrono::steady_clock::now();
  size_t most = 0;
  REQUIRE(vt::eventually([&] {
    most = std::max(most, linkd_children(n.pid()).size());
    json now = linkd_pid(n);
    return now.is_number() && now != first;
  }));
  double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  MESSAGE("replaced after ", waited, " s");
  CHECK(most == 1);
  // Not heard, so not replaced before half of dead_after from its start (less the time the
  // reload and the first status took, which only makes this looser).
  CHECK(waited >= 0.2);
  CHECK(n.status()["peer"]["linkd_restarts"] == 0);
  CHECK(n.stop() == 0);
}

TEST_CASE("a reload that changes node.name is refused whole; the old config stays") {
  vt::Node n;
  n.service("app", "exec sleep 100000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  n.configure({{"node", {{"name", "renamed"}}}});
  n.service("extra", "exec sleep 100000");
  hup(n);
  REQUIRE(reload_result(n, 1) == "refused");
  CHECK(n.wait_log("node.name: \"t1\" -> \"renamed\""));
  CHECK(n.wait_log("Restart the supervisor"));
  json st = n.status();
  CHECK(st["node"]["name"] == "t1");
  CHECK_FALSE(st["services"].contains("extra"));  // nothing of the reload applied
  CHECK(st["supervisor"]["reload"]["errors"][0].get<std::string>().find("node.name") !=
        std::string::npos);
  CHECK(n.cli({"status"}).out.find("last reload refused: ") != std::string::npos);

  // What linkd itself would refuse at every start is refused by the reload's checks.
  n.configure({{"node", {{"name", "t1"}}}, {"user", "root"}});
  hup(n);
  REQUIRE(reload_result(n, 2) == "refused");
  CHECK(n.wait_log("user: \"root\" has uid or gid 0"));
  CHECK_FALSE(n.status()["services"].contains("extra"));
  n.configure({{"user", nullptr}});
  hup(n);
  REQUIRE(reload_result(n, 3) == "applied");
  CHECK(n.wait_service("extra", [](const json& s) { return s.value("state", "") == "up"; }));
  CHECK(n.stop() == 0);
}

TEST_CASE("check-config refuses what linkd would refuse at every start") {
  vt::Node n;
  n.write("peer.key", vac::new_key_hex() + "\n", 0600);
  std::string listen = loop(free_port(SOCK_DGRAM));
  n.configure({{"peer",
                {{"name", "ghost"},
                 {"links",
                  {{{"listen", listen}, {"peer", loop(free_port(SOCK_DGRAM))}},
                   {{"listen", listen}, {"peer", loop(free_port(SOCK_DGRAM))}}}},
                 {"key_file", "peer.key"}}},
               {"user", "root"}});
  auto r = n.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("peer.links[1].listen: " + listen + " is also peer.links[0].listen") !=
        std::string::npos);
  CHECK(r.out.find("user: \"root\" has uid or gid 0") != std::string::npos);
}

TEST_CASE("endpoints added, moved and refused on a running node without a peer") {
  vt::Node n;
  n.service("app", "exec sleep 100000");
  n.start();
  REQUIRE(n.wait_state("app", "up"));
  CHECK(n.status()["peer"]["linkd_pid"].is_null());
  int port = free_port(SOCK_STREAM);
  n.configure({{"endpoints", {{"http", loop(port)}}}});
  hup(n);
  REQUIRE(reload_result(n, 1) == "applied");
  REQUIRE(vt::eventually([&] { return vt::http(port, "GET", "/active").code == 200; }));
  json linkd = n.status()["peer"]["linkd_pid"];
  CHECK(linkd.is_number());

  // A port something else listens on: refused before linkd is touched, the old port serves.
  int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(taken, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(taken, 1) == 0);
  socklen_t len = sizeof a;
  getsockname(taken, reinterpret_cast<sockaddr*>(&a), &len);
  int taken_port = ntohs(a.sin_port);
  n.configure({{"endpoints", {{"http", loop(taken_port)}}}});
  hup(n);
  REQUIRE(reload_result(n, 2) == "refused");
  CHECK(n.wait_log("endpoints.http: cannot bind " + loop(taken_port)));
  CHECK(n.status()["peer"]["linkd_pid"] == linkd);
  CHECK(vt::http(port, "GET", "/active").code == 200);
  close(taken);

  int moved = free_port(SOCK_STREAM);
  n.configure({{"endpoints", {{"http", loop(moved)}}}});
  hup(n);
  REQUIRE(reload_result(n, 3) == "applied");
  REQUIRE(vt::eventually([&] { return vt::http(moved, "GET", "/active").code == 200; }));
  CHECK(vt::http(port, "GET", "/active").code == 0);  // the old port is closed

  // Endpoints removed: linkd has nothing left to do and stops.
  n.configure({{"endpoints", nullptr}});
  hup(n);
  REQUIRE(reload_result(n, 4) == "applied");
  REQUIRE(vt::eventually([&] { return n.status()["peer"]["linkd_pid"].is_null(); }));
  CHECK(linkd_children(n.pid()).empty());
  CHECK(n.stop() == 0);
}

TEST_CASE("an endpoint linkd could not bind: its error in status; a SIGHUP retries it") {
  int taken = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(taken, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(listen(taken, 1) == 0);
  socklen_t len = sizeof a;
  getsockname(taken, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  vt::Node n;
  n.service("app", "exec sleep 100000");
  n.configure({{"endpoints", {{"http", loop(port)}}}});
  n.start();
  REQUIRE(n.wait_log("endpoints.http: cannot listen on " + loop(port)));
  REQUIRE(vt::eventually([&] { return n.status()["peer"].contains("linkd_error"); }));
  CHECK(n.status()["peer"]["linkd_error"].get<std::string>().find("cannot listen on " +
                                                                  loop(port)) != std::string::npos);
  CHECK(n.cli({"status"}).out.find("linkd: endpoints.http: cannot listen on") != std::string::npos);
  json linkd = linkd_pid(n);

  close(taken);  // the operator frees the port and reloads the unchanged file
  hup(n);
  REQUIRE(reload_result(n, 1) == "applied");
  CHECK(n.wait_log("peer link restarted: retrying after linkd's error"));
  REQUIRE(vt::eventually([&] { return vt::http(port, "GET", "/active").code == 200; }));
  CHECK(linkd_pid(n) != linkd);
  CHECK_FALSE(n.status()["peer"].contains("linkd_error"));
  // Now whole, an unchanged SIGHUP leaves it alone.
  linkd = linkd_pid(n);
  hup(n);
  REQUIRE(reload_result(n, 2) == "applied");
  CHECK(linkd_pid(n) == linkd);
  CHECK(n.stop() == 0);
}

TEST_CASE("a new key is refused while the peer is up, applied once it is down") {
  TestPair p;
  p.start();
  json linkd = linkd_pid(p.a);
  std::string key = vac::new_key_hex() + "\n";
  p.a.write("peer.key", key, 0600);
  hup(p.a);
  REQUIRE(reload_result(p.a, 1) == "refused");
  CHECK(p.a.wait_log("peer.key_file: the key changed while peer web2 is up"));
  CHECK(linkd_pid(p.a) == linkd);
  // A key file that went bad is refused as check-config refuses it; linkd keeps its key.
  chmod(p.a.path("peer.key").c_str(), 0644);
  hup(p.a);
  REQUIRE(reload_result(p.a, 2) == "refused");
  CHECK(p.a.wait_log("is readable by group or others (chmod 600"));
  CHECK(linkd_pid(p.a) == linkd);
  chmod(p.a.path("peer.key").c_str(), 0600);

  // The safe procedure: stop the standby, reload the active node, update and start the standby.
  CHECK(p.b.stop() == 0);
  REQUIRE(vt::eventually([&] { return p.a.status()["peer"]["state"] != "up"; }));
  hup(p.a);
  REQUIRE(reload_result(p.a, 3) == "applied");
  CHECK(p.a.wait_log("peer link restarted: key changed"));
  CHECK(p.a.log().find(key.substr(0, 16)) == std::string::npos);
  p.b.write("peer.key", key, 0600);
  p.b.start();
  REQUIRE(p.states("active", "passive"));
  REQUIRE(vt::eventually([&] { return p.a.status()["peer"]["state"] == "up"; }));
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("one link of two changed applies with the peer up; both at once are refused") {
  TestPair p(2);
  p.start();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  // web1 moves its end of link 2; web2 follows: the pair talks over link 1 in between.
  int moved = free_port(SOCK_DGRAM);
  p.a.configure({{"peer", {{"links", TestPair::links_of({p.ports_a[0], moved}, p.ports_b)}}}});
  hup(p.a);
  REQUIRE(reload_result(p.a, 1) == "applied");
  CHECK(p.a.wait_log("link 2 " + loop(p.ports_a[1]) + " <-> " + loop(p.ports_b[1]) + " -> " +
                     loop(moved)));
  p.b.configure({{"peer", {{"links", TestPair::links_of(p.ports_b, {p.ports_a[0], moved})}}}});
  hup(p.b);
  REQUIRE(reload_result(p.b, 1) == "applied");
  REQUIRE(TestPair::talked(p.a));
  REQUIRE(TestPair::talked(p.b));
  // Both links carry the pair again.
  REQUIRE(vt::eventually([&] {
    json links = p.a.status()["peer"]["links"];
    int up = 0;
    for (auto& l : links) up += l.value("up", false);
    return up == 2;
  }));
  p.no_failover(epoch);

  int x = free_port(SOCK_DGRAM), y = free_port(SOCK_DGRAM);
  p.a.configure({{"peer", {{"links", TestPair::links_of({x, y}, p.ports_b)}}}});
  hup(p.a);
  REQUIRE(reload_result(p.a, 2) == "refused");
  CHECK(p.a.wait_log("peer.links: every link changes at once while peer web2 is up"));
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a linkd that ignores SIGTERM is killed; new settings it cannot start with are undone") {
  TestPair p(2);
  for (vt::Node* n : {&p.a, &p.b}) n->configure({{"peer", {{"dead_after", "2s"}}}});
  p.start();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  json old = linkd_pid(p.a);
  REQUIRE(old.is_number());
  kill(old.get<pid_t>(), SIGSTOP);  // it will not stop when told to
  int moved = free_port(SOCK_DGRAM);
  p.a.configure({{"peer", {{"links", TestPair::links_of({p.ports_a[0], moved}, p.ports_b)}}}});
  hup(p.a);
  // The address was free when the reload checked it; it is taken before the new linkd binds it
  // (the old one is killed dead_after / 4 after it was told to stop).
  REQUIRE(p.a.wait_log("reload: peer link restarted: link 2"));
  int thief = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in at{};
  at.sin_family = AF_INET;
  at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  at.sin_port = htons(static_cast<uint16_t>(moved));
  REQUIRE(bind(thief, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
  REQUIRE(p.a.wait_log("did not stop when told to; killing it"));
  REQUIRE(reload_result(p.a, 1) != "");
  REQUIRE(vt::eventually([&] { return reload_status(p.a)["result"] == "reverted"; }));
  CHECK(p.a.wait_log("linkd could not start with the new settings"));
  CHECK(reload_status(p.a)["errors"][0].get<std::string>().find("cannot bind " + loop(moved)) !=
        std::string::npos);
  // Back on the previous links: both carry the pair, nobody failed over.
  REQUIRE(vt::eventually([&] {
    json links = p.a.status()["peer"]["links"];
    int up = 0;
    for (auto& l : links) up += l.value("up", false) && l.value("listen", "") != loop(moved);
    return up == 2;
  }));
  CHECK_FALSE(vt::process_exists(old.get<pid_t>()));
  CHECK(linkd_children(p.a.pid()).size() == 1);
  p.no_failover(epoch);
  close(thief);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

}  // namespace
