// The pair behind a real HAProxy, both servers non-backup, checked with `option httpchk` on
// linkd's /active (OPTIONS, HTTP/1.0: HAProxy's default) and `http-check expect status 200`.
// What HAProxy itself thinks is read from its stats socket (`show stat`): exactly one server
// UP, and the other one after a failover, a failback, a power loss, a frozen or killed
// supervisor.
#include <doctest/doctest.h>

#include <dirent.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <sstream>

#include "harness.hpp"
#include "http_client.hpp"
#include "wire.hpp"

using vt::json;

namespace {
using vt::free_port;

std::string loop(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

struct LbPair {
  vt::Node a, b;  // a: web1, the master; b: web2, the standby
  int link_a = free_port(SOCK_DGRAM), link_b = free_port(SOCK_DGRAM);
  int app_a = free_port(SOCK_STREAM), app_b = free_port(SOCK_STREAM);
  int http_a = free_port(SOCK_STREAM), http_b = free_port(SOCK_STREAM);
  int agent_a = free_port(SOCK_STREAM), agent_b = free_port(SOCK_STREAM);
  int front = free_port(SOCK_STREAM);
  pid_t haproxy = 0;

  LbPair() {
    std::string key = vac::new_key_hex() + "\n";
    setup(a, "web1", "master", "web2", link_a, link_b, app_a, http_a, agent_a, key);
    setup(b, "web2", "standby", "web1", link_b, link_a, app_b, http_b, agent_b, key);
  }
  ~LbPair() {
    if (haproxy > 0) {
      kill(haproxy, SIGKILL);
      waitpid(haproxy, nullptr, 0);
    }
  }
  void setup(vt::Node& n, const std::string& name, const std::string& role, const std::string& peer,
             int listen, int peer_port, int app, int http, int agent, const std::string& key) {
    n.write("peer.key", key, 0600);
    n.write("body", "pong from " + name + "\n");
    n.service("app", "exec python3 " SOURCE_DIR "/services.d/app/app.py",
              {{"env/APP_PORT", std::to_string(app)},
               {"env/APP_BODY_FILE", n.path("body")},
               {"ready", "#!/bin/sh\nexec bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
                             std::to_string(app) + "' 2>/dev/null\n"},
               {"timeout-stop", "2"}});
    n.configure(
        {{"node", {{"name", name}, {"role", role}}},
         {"peer",
          {{"name", peer},
           {"links", {{{"listen", loop(listen)}, {"peer", loop(peer_port)}}}},
           {"key_file", "peer.key"},
           // A lease (dead_after / 2) of 200 ms: under ASan on a loaded 2-core machine the
           // supervisor can miss a tighter one, and linkd then rightly fails closed.
           {"heartbeat", "50ms"},
           {"dead_after", "400ms"}}},
         {"failover", {{"startup_grace", "500ms"}}},
         {"endpoints",
          {{"http", loop(http)}, {"agent_check", loop(agent)}, {"agent_inactive", "maint"}}},
         {"probes",
          {{"content",
            {{"exec",
              {"content", "--url", "http://" + loop(app) + "/app/ping", "--bytes",
               std::to_string(("pong from " + name + "\n").size()), "--timeout", "500ms"}},
             {"interval", "50ms"},
             {"timeout", "1s"},
             {"fall", 2},
             {"rise", 1},
             {"scope", "active"}}}}}});
  }
  std::string stats_socket() { return a.path("haproxy.sock"); }
  // with_agent: HAProxy also asks each node's agent-check, which says maint when not active.
  void start_haproxy(bool with_agent = false) {
    auto agent = [&](int port) {
      return with_agent ? " agent-check agent-port " + std::to_string(port) + " agent-inter 100ms"
                        : std::string();
    };
    std::string cfg = a.path("haproxy.cfg");
    vt::write_file(
        cfg, "global\n  maxconn 200\n  stats socket " + stats_socket() +
                 " level admin\n"
                 "defaults\n  mode http\n  timeout connect 500ms\n  timeout client 5s\n"
                 "  timeout server 5s\n  timeout check 500ms\n"
                 "frontend fe\n  bind " +
                 loop(front) +
                 "\n  default_backend be\n"
                 "backend be\n  option httpchk /active\n  http-check expect status 200\n"
                 "  default-server inter 100ms fall 2 rise 1 on-marked-down shutdown-sessions\n"
                 "  server web1 " +
                 loop(app_a) + " check port " + std::to_string(http_a) +
                 "\n"
                 "  server web2 " +
                 loop(app_b) + " check port " + std::to_string(http_b) + agent(agent_b) + "\n");
    haproxy = fork();
    if (haproxy == 0) {
      execlp("haproxy", "haproxy", "-db", "-f", cfg.c_str(), nullptr);
      _exit(127);
    }
    REQUIRE(vt::eventually([&] { return !servers().empty(); }));
  }
  // HAProxy's own view, from `show stat` on its stats socket: server name -> status (UP, DOWN...).
  std::map<std::string, std::string> servers() {
    std::map<std::string, std::string> out;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stats_socket().c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return close(fd), out;
    std::string cmd = "show stat\n";
    if (write(fd, cmd.data(), cmd.size()) < 0) return close(fd), out;
    std::string csv = vt::read_all(fd);
    close(fd);
    std::istringstream in(csv);
    std::string line;
    int status_col = -1, agent_col = -1;
    while (std::getline(in, line)) {
      std::vector<std::string> f;
      std::istringstream cells(line);
      for (std::string c; std::getline(cells, c, ',');) f.push_back(c);
      if (line.rfind("# ", 0) == 0) {
        for (size_t i = 0; i < f.size(); ++i)
          if (f[i] == "status")
            status_col = static_cast<int>(i);
          else if (f[i] == "agent_status")
            agent_col = static_cast<int>(i);
      } else if (status_col > 0 && f.size() > size_t(status_col) && f[0] == "be" &&
                 (f[1] == "web1" || f[1] == "web2")) {
        out[f[1]] = f[status_col];
        if (agent_col > 0 && f.size() > size_t(agent_col))
          out[f[1] + ".agent"] = f[agent_col] + " " + f[agent_col + 4];
      }
    }
    return out;
  }
  // Exactly `up` is UP and the other server is `other_state` (DOWN, MAINT...), as HAProxy sees it.
  bool only_up(const std::string& up, double timeout = 20,
               const std::string& other_state = "DOWN") {
    std::map<std::string, std::string> s;
    bool ok = vt::eventually(
        [&] {
          s = servers();
          std::string other = up == "web1" ? "web2" : "web1";
          // other_state "": anything but UP (an agent may have put it in MAINT, or not yet).
          return s[up] == "UP" && (other_state.empty() ? !s[other].empty() && s[other] != "UP"
                                                       : s[other].rfind(other_state, 0) == 0);
        },
        timeout);
    if (!ok)
      MESSAGE("haproxy: web1 ", s["web1"], " (agent ", s["web1.agent"], "), web2 ", s["web2"],
              " (agent ", s["web2.agent"], ")\nweb1 log:\n", tail(a.log()), "\nweb2 log:\n",
              tail(b.log()));
    return ok;
  }
  std::string through_lb() {
    auto r = vt::http(front, "GET", "/app/ping");
    return r.code == 200 ? r.body : "";
  }
  static std::string state(vt::Node& n) { return n.status()["node"].value("state", "?"); }
  // The endpoint answers 503 with this reason, soon. A 503 alone may be another reason on the
  // way (a peer link suspect before lost) or linkd failing closed while the supervisor misses
  // its lease on a loaded machine; the reason is what the test is about.
  static bool says_why(int port, const std::string& path, const std::string& reason) {
    std::string last;
    bool ok = vt::eventually([&] {
      auto r = vt::http(port, "GET", path);
      last = std::to_string(r.code) + " " + r.body;
      json j = json::parse(r.body, nullptr, false);
      return r.code == 503 && j.is_object() && j.value("reason", "") == reason;
    });
    if (!ok) MESSAGE(path, " last answered ", last);
    return ok;
  }
  static std::string tail(const std::string& log) {
    return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
  }
  void start_pair() {
    a.start();
    b.start();
    REQUIRE(vt::eventually([&] { return state(a) == "active" && state(b) == "passive"; }));
    // web1's content probe past its start period: a break of the app from here counts at once.
    if (a.status()["probes"].contains("content"))
      REQUIRE(a.wait_probe("content", [](const json& c) { return c["state"] == "passing"; }));
  }
  static void kill_tree(vt::Node& n) {  // the supervisor, linkd, probes and the services' groups
    std::vector<pid_t> groups;
    if (DIR* d = opendir(n.path("state/groups").c_str())) {
      while (dirent* e = readdir(d))
        if (std::atoi(e->d_name) > 1) groups.push_back(std::atoi(e->d_name));
      closedir(d);
    }
    n.kill9();
    for (pid_t g : groups) kill(-g, SIGKILL);
  }
};
}  // namespace

TEST_CASE("HAProxy on /active: exactly one server UP, through failover and failback") {
  LbPair p;
  p.start_pair();
  p.start_haproxy();
  REQUIRE(p.only_up("web1"));
  // Not a moment's luck: it stays that way.
  for (int i = 0; i < 20; ++i) {
    auto s = p.servers();
    CHECK(s["web1"] == "UP");
    CHECK(s["web2"].rfind("DOWN", 0) == 0);
  }
  CHECK(p.through_lb() == "pong from web1\n");
  CHECK(vt::http(p.http_b, "GET", "/standby").code == 200);
  CHECK(vt::http(p.http_a, "GET", "/standby").code == 503);
  // A pair's /metrics has the peer-link families too, and promtool accepts them.
  std::string page = vt::http(p.http_a, "GET", "/metrics").body;
  std::string link = "{listen=\"" + loop(p.link_a) + "\",peer=\"" + loop(p.link_b) + "\"}";
  CHECK(page.find("vacataire_peer_up{peer=\"web2\"} 1\n") != std::string::npos);
  CHECK(page.find("vacataire_peer_link_up" + link + " 1\n") != std::string::npos);
  CHECK(page.find("vacataire_peer_link_kernel_drops_total" + link + " 0\n") != std::string::npos);
  CHECK(page.find("vacataire_peer_link_rtt_seconds" + link) != std::string::npos);
  CHECK(page.find("vacataire_peer_datagrams_total{verdict=\"ok\"}") != std::string::npos);
  p.a.write("metrics.txt", page);
  auto lint =
      vt::run_command({"/bin/sh", "-c", "promtool check metrics < " + p.a.path("metrics.txt")});
  CHECK_MESSAGE(lint.code == 0, lint.out);

  vt::write_file(p.a.path("body"), "pong\n");  // the app breaks; the content probe sees it
  REQUIRE(p.only_up("web2"));
  CHECK(LbPair::state(p.a) == "failed");
  CHECK(vt::eventually([&] { return p.through_lb() == "pong from web2\n"; }));
  CHECK(p.says_why(p.http_a, "/active", "state is failed"));

  vt::write_file(p.a.path("body"), "pong from web1\n");
  CHECK(p.a.cli({"recover", "--failback"}).code == 0);
  REQUIRE(p.only_up("web1"));
  CHECK(vt::eventually([&] { return p.through_lb() == "pong from web1\n"; }));
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("HAProxy on /active: power loss of the master puts the standby UP") {
  LbPair p;
  p.start_pair();
  p.start_haproxy();
  REQUIRE(p.only_up("web1"));
  LbPair::kill_tree(p.a);
  REQUIRE(p.only_up("web2"));
  CHECK(vt::eventually([&] { return p.through_lb() == "pong from web2\n"; }));
  CHECK(p.b.stop() == 0);
}

TEST_CASE("HAProxy on /active: a frozen supervisor's server goes DOWN; a killed one's too") {
  LbPair p;
  p.start_pair();
  p.start_haproxy();
  REQUIRE(p.only_up("web1"));
  // Frozen: linkd still answers, but from a lease that ran out: 503.
  kill(p.a.pid(), SIGSTOP);
  bool down = vt::eventually([&] { return p.servers()["web1"].rfind("DOWN", 0) == 0; });
  auto r = vt::http(p.http_a, "GET", "/active");
  kill(p.a.pid(), SIGCONT);
  CHECK(down);
  CHECK(r.code == 503);
  CHECK(json::parse(r.body)["reason"] == "the supervisor is not responding");
  // Whichever serves once the pair has settled (the peer may have taken over meanwhile)...
  vt::Node* active = nullptr;
  REQUIRE(vt::eventually([&] {
    std::string sa = LbPair::state(p.a), sb = LbPair::state(p.b);
    active = sa == "active" && sb == "passive"   ? &p.a
             : sb == "active" && sa == "passive" ? &p.b
                                                 : nullptr;
    return active != nullptr;
  }));
  bool a_serves = active == &p.a;
  REQUIRE(p.only_up(a_serves ? "web1" : "web2"));
  // ... killed alone: linkd ends with it, the check port closes; the other takes over.
  active->kill9();
  REQUIRE(p.only_up(a_serves ? "web2" : "web1"));
  vt::Node& survivor = a_serves ? p.b : p.a;
  CHECK(survivor.stop() == 0);
}

TEST_CASE("a standby that could not take over: /standby 503 and a line in status saying why") {
  LbPair p;
  p.b.write("gateway-up", "");
  p.b.configure({{"failover", {{"witness", "gateway"}}},
                 {"probes",
                  {{"gateway",
                    {{"exec", {"/bin/sh", "-c", "test -e gateway-up || exit 2"}},
                     {"protocol", "exit"},
                     {"interval", "50ms"},
                     {"fall", 1},
                     {"rise", 1},
                     {"critical", false}}},
                   {"disk",
                    {{"exec", {"/bin/sh", "-c", "test ! -e disk-full || exit 2"}},
                     {"protocol", "exit"},
                     {"interval", "50ms"},
                     {"fall", 1},
                     {"rise", 1}}}}}});
  p.start_pair();
  REQUIRE(vt::eventually([&] { return vt::http(p.http_b, "GET", "/standby").code == 200; }));
  CHECK(p.b.cli({"status"}).out.find("cannot take over") == std::string::npos);

  p.b.write("disk-full", "");  // a node-scope critical probe fails on the standby
  CHECK(p.says_why(p.http_b, "/standby", "critical probe disk is failing"));
  CHECK(p.b.cli({"status"}).out.find("cannot take over: critical probe disk is failing") !=
        std::string::npos);
  CHECK(vt::http(p.http_b, "GET", "/health").code == 503);
  std::remove(p.b.path("disk-full").c_str());
  REQUIRE(vt::eventually([&] { return vt::http(p.http_b, "GET", "/standby").code == 200; }));

  // The master vanishes while the standby cannot see its witness: it waits, and says so.
  std::remove(p.b.path("gateway-up").c_str());
  REQUIRE(p.b.wait_probe("gateway", [](const json& g) { return g["state"] == "failing"; }));
  LbPair::kill_tree(p.a);
  CHECK(p.says_why(p.http_b, "/standby", "peer link is lost"));
  CHECK(p.b.cli({"status"}).out.find("cannot take over: peer link is lost") != std::string::npos);
  CHECK(p.b.stop() == 0);
}

TEST_CASE(
    "HAProxy with agent-check too: the standby in MAINT, lifted by `up ready` when it serves") {
  LbPair p;
  p.start_pair();
  p.start_haproxy(true);
  REQUIRE(p.only_up("web1", 20, "MAINT"));  // the agent's maint on the standby
  CHECK(vt::eventually([&] { return vt::agent_line(p.agent_b) == "maint #state is passive\n"; }));
  vt::write_file(p.a.path("body"), "pong\n");  // fail over
  REQUIRE(p.only_up("web2", 20, ""));          // web2 left its maintenance: the agent said up ready
  CHECK(vt::eventually([&] { return vt::agent_line(p.agent_a) == "maint #state is failed\n"; }));
  CHECK(vt::eventually([&] { return p.through_lb() == "pong from web2\n"; }));
  vt::write_file(p.a.path("body"), "pong from web1\n");
  CHECK(p.a.cli({"recover", "--failback"}).code == 0);
  REQUIRE(p.only_up("web1", 20, ""));
  CHECK(vt::eventually([&] { return p.through_lb() == "pong from web1\n"; }));
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE(
    "an endpoints port already taken: the peer link runs without the endpoints, and says so") {
  LbPair p;
  int squatter = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  sa.sin_port = htons(static_cast<uint16_t>(p.http_a));
  REQUIRE(bind(squatter, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(listen(squatter, 1) == 0);
  p.start_pair();  // web1 active, web2 passive: they hear each other
  CHECK(p.a.wait_log("endpoints.http: cannot listen on " + loop(p.http_a)));
  CHECK(p.a.log().find("the endpoints are not served") != std::string::npos);
  CHECK(p.b.status()["peer"]["state"] == "up");
  CHECK(vt::http(p.http_b, "GET", "/standby").code == 200);
  close(squatter);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}
