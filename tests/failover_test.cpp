// Two real nodes on loopback, each with its own ports, state dir and services.d running a
// real HTTP app, and HAProxy in front (check inter 100ms) as the load balancer that only
// asks whether the port answers. Everything is asserted through HAProxy and `status`.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>

#include "harness.hpp"
#include "wire.hpp"

using vt::json;

namespace {
using vt::free_port;

std::string loop(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

struct Pair {
  vt::Node a, b;  // a: web1, the master; b: web2, the standby
  int link_a = free_port(SOCK_DGRAM), link_b = free_port(SOCK_DGRAM);
  int app_a = free_port(SOCK_STREAM), app_b = free_port(SOCK_STREAM),
      front = free_port(SOCK_STREAM);
  pid_t haproxy = 0;

  Pair() {
    std::string key = vac::new_key_hex() + "\n";
    setup(a, "web1", "master", "web2", link_a, link_b, app_a, key);
    setup(b, "web2", "standby", "web1", link_b, link_a, app_b, key);
  }
  ~Pair() {
    if (haproxy > 0) {
      kill(haproxy, SIGKILL);
      waitpid(haproxy, nullptr, 0);
    }
  }
  void setup(vt::Node& n, const std::string& name, const std::string& role, const std::string& peer,
             int listen, int peer_port, int app, const std::string& key) {
    n.write("peer.key", key, 0600);
    n.write("body", "pong from " + name + "\n");
    n.service("app", "exec python3 " SOURCE_DIR "/services.d/app/app.py",
              {{"env/APP_PORT", std::to_string(app)},
               {"env/APP_BODY_FILE", n.path("body")},
               {"ready", "#!/bin/sh\nexec bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
                             std::to_string(app) + "' 2>/dev/null\n"},
               {"timeout-stop", "2"}});
    n.configure({{"node", {{"name", name}, {"role", role}}},
                 {"peer",
                  {{"name", peer},
                   {"links", {{{"listen", loop(listen)}, {"peer", loop(peer_port)}}}},
                   {"key_file", "peer.key"},
                   {"heartbeat", "20ms"},
                   {"dead_after", "150ms"}}},
                 {"failover", {{"startup_grace", "500ms"}}},
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
  void start_haproxy() {
    std::string cfg = a.path("haproxy.cfg");
    vt::write_file(cfg,
                   "global\n  maxconn 200\ndefaults\n  mode http\n  timeout connect 500ms\n"
                   "  timeout client 5s\n  timeout server 5s\n  retries 0\n"
                   "frontend fe\n  bind " +
                       loop(front) +
                       "\n  default_backend be\n"
                       "backend be\n  option httpchk GET /app/ping\n"
                       "  server web1 " +
                       loop(app_a) +
                       " check inter 100ms fall 1 rise 1\n"
                       "  server web2 " +
                       loop(app_b) + " check inter 100ms fall 1 rise 1\n");
    haproxy = fork();
    if (haproxy == 0) {
      execlp("haproxy", "haproxy", "-db", "-f", cfg.c_str(), nullptr);
      _exit(127);
    }
  }
  // What answers through HAProxy: the body, or "" when nothing does.
  std::string through_lb() {
    auto r = vt::run_command(
        {"/usr/bin/curl", "-s", "--max-time", "1", "http://" + loop(front) + "/app/ping"}, 5);
    return r.code == 0 ? r.out : "";
  }
  bool lb_answers(const std::string& who, double timeout = 10) {
    return vt::eventually([&] { return through_lb() == "pong from " + who + "\n"; }, timeout);
  }
  // Both supervisors, and the roles settled: web1 active, web2 passive.
  void start_pair() {
    a.start();
    b.start();
    REQUIRE(states("active", "passive"));
  }
  static std::string state(vt::Node& n) { return n.status()["node"].value("state", "?"); }
  bool states(const std::string& sa, const std::string& sb, double timeout = 10) {
    bool ok = vt::eventually([&] { return state(a) == sa && state(b) == sb; }, timeout);
    if (!ok) MESSAGE("web1 log:\n", tail(a.log()), "\nweb2 log:\n", tail(b.log()));
    return ok;
  }
  static std::string tail(const std::string& log) {
    return log.size() > 3000 ? log.substr(log.size() - 3000) : log;
  }
};
}  // namespace

TEST_CASE("a failing app on the master fails over to the standby, and recover --failback returns") {
  Pair p;
  p.start_haproxy();
  p.start_pair();
  REQUIRE(p.lb_answers("web1"));
  json sb = p.b.status();
  CHECK(sb["peer"]["state"] == "up");
  CHECK(sb["peer"]["node_state"] == "active");
  CHECK(sb["services"]["app"]["state"] == "down");

  // The app breaks: it still answers 200, with a short body. The content probe sees it.
  vt::write_file(p.a.path("body"), "pong\n");
  REQUIRE_MESSAGE(p.states("failed", "active"), p.a.log(), p.b.log());
  CHECK(p.lb_answers("web2"));
  CHECK(p.a.status()["services"]["app"]["state"] == "down");
  CHECK(p.a.status()["node"]["epoch"].get<int>() < p.b.status()["node"]["epoch"].get<int>());

  // Failed sticks across a restart of the supervisor.
  CHECK(p.a.stop() == 0);
  p.a.start();
  CHECK(Pair::state(p.a) == "failed");

  vt::write_file(p.a.path("body"), "pong from web1\n");
  auto r = p.a.cli({"recover", "--failback"});
  CHECK(r.code == 0);
  REQUIRE_MESSAGE(p.states("active", "passive"), p.a.log(), p.b.log());
  CHECK(p.lb_answers("web1"));
  CHECK(p.b.status()["services"]["app"]["state"] == "down");
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("kill -9 of the master's whole process tree: the standby serves after dead_after") {
  Pair p;
  p.start_haproxy();
  p.start_pair();
  REQUIRE(p.lb_answers("web1"));
  // The whole tree: the supervisor, linkd, probes and the services' groups.
  std::vector<pid_t> groups;
  if (DIR* d = opendir(p.a.path("state/groups").c_str())) {
    while (dirent* e = readdir(d))
      if (std::atoi(e->d_name) > 1) groups.push_back(std::atoi(e->d_name));
    closedir(d);
  }
  REQUIRE_FALSE(groups.empty());
  p.a.kill9();
  for (pid_t g : groups) kill(-g, SIGKILL);
  REQUIRE(vt::eventually([&] { return Pair::state(p.b) == "active"; }, 5));
  CHECK(p.lb_answers("web2"));
  CHECK(p.b.status()["peer"]["state"] == "lost");
  CHECK(p.b.stop() == 0);
}

TEST_CASE("kill -9 of linkd on the active node: no failover, linkd comes back") {
  Pair p;
  p.start_pair();
  pid_t linkd = p.a.status()["peer"]["linkd_pid"];
  uint64_t epoch = p.a.status()["node"]["epoch"];
  kill(linkd, SIGKILL);
  REQUIRE(p.a.wait_log("linkd: exited"));
  REQUIRE(vt::eventually([&] {
    json st = p.a.status();
    return st["peer"]["linkd_pid"].is_number() && st["peer"]["linkd_pid"] != linkd &&
           st["peer"]["state"] == "up";
  }));
  CHECK(Pair::state(p.a) == "active");
  CHECK(Pair::state(p.b) == "passive");
  CHECK(p.a.status()["node"]["epoch"] == epoch);
  CHECK(p.b.log().find("-> starting") == std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("operator release and takeover hand the role over through the handshake") {
  Pair p;
  p.start_pair();
  CHECK(p.b.cli({"release"}).code == 1);  // not active
  CHECK(p.a.cli({"release"}).code == 0);
  REQUIRE(p.states("passive", "active"));
  auto r = p.a.cli({"takeover"});
  CHECK(r.code == 0);
  REQUIRE(p.states("active", "passive"));
  CHECK(p.a.cli({"maintenance", "on"}).code == 0);
  REQUIRE(p.states("maintenance", "active"));
  CHECK(p.a.cli({"maintenance", "off"}).code == 0);
  REQUIRE(p.states("passive", "active"));
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("forged, replayed and garbage datagrams at the link port: counted, no effect") {
  Pair p;
  p.start_pair();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  vac::SecretKey key, wrong;
  std::string err, hex = vt::read_file(p.a.path("peer.key"));
  REQUIRE(key.load_hex(hex.substr(0, hex.find('\n')), err));
  REQUIRE(wrong.load_hex(std::string(64, 'e'), err));
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(p.link_a));
  auto send = [&](const std::string& bytes) {
    sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  };
  // A quiesce from a session of web2 that node a never confirmed: what a captured datagram
  // replayed later looks like. It comes from another address than web2's link, so node a
  // refuses it before any HMAC work (linkd_test covers what comes from the peer's address).
  vac::Datagram d;
  d.from = "web2";
  d.sid = vac::random_hex(16), d.rsid = vac::random_hex(16), d.seq = 1;
  d.msg.kind = vac::WireMessage::command;
  d.msg.command_kind = vac::PeerKind::quiesce;
  d.msg.id = 1;
  d.msg.report = {"passive", 99, true, "standby"};
  for (int i = 0; i < 3; ++i) send(vac::seal(d, key));
  send(vac::seal(d, wrong));  // forged: not our key
  send(std::string(200, '\x42'));
  send("garbage");
  close(fd);
  json c;
  REQUIRE(vt::eventually([&] {
    c = p.a.status()["peer"].value("counters", json::object());
    return c.value("foreign_address", 0) >= 6;
  }));
  CHECK(Pair::state(p.a) == "active");
  CHECK(p.a.status()["node"]["epoch"] == epoch);
  CHECK(Pair::state(p.b) == "passive");
  auto r = p.a.cli({"status"});
  CHECK(r.out.find("foreign_address 6") != std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("keygen writes a private key; a key readable by others or too short is refused") {
  vt::Node n;
  auto r = vt::run_command({VACATAIRE_BIN, "keygen", n.path("k")});
  CHECK(r.code == 0);
  struct stat st {};
  REQUIRE(stat(n.path("k").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(vt::read_file(n.path("k")).size() == 129);  // 64 bytes in hex, and a newline
  r = vt::run_command({VACATAIRE_BIN, "keygen", n.path("k")});
  CHECK(r.code == 1);
  CHECK(r.out.find("exists; use --force") != std::string::npos);
  CHECK(vt::run_command({VACATAIRE_BIN, "keygen", "--force", n.path("k")}).code == 0);

  Pair p;
  chmod(p.a.path("peer.key").c_str(), 0644);
  r = p.a.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("is readable by group or others (chmod 600") != std::string::npos);
  CHECK(p.a.cli({"run"}).code == 3);
  p.b.write("peer.key", "abcdef\n", 0600);
  r = p.b.cli({"check-config"});
  CHECK(r.code == 3);
  CHECK(r.out.find("the key is 3 bytes; at least 32 are needed") != std::string::npos);
}

TEST_CASE("rule 3 with real processes: a standby whose witness fails does not take over") {
  Pair p;
  for (vt::Node* n : {&p.a, &p.b}) {
    n->write("gateway-up", "");
    n->configure({{"failover", {{"witness", "gateway"}}},
                  {"probes",
                   {{"gateway",
                     {{"exec", {"/bin/sh", "-c", "test -e gateway-up || exit 2"}},
                      {"protocol", "exit"},
                      {"interval", "50ms"},
                      {"fall", 1},
                      {"rise", 1},
                      {"critical", false}}}}}});
  }
  p.start_pair();
  std::remove(p.b.path("gateway-up").c_str());  // web2 cannot reach its witness
  REQUIRE(p.b.wait_probe("gateway", [](const json& g) { return g["state"] == "failing"; }));
  p.a.kill9();
  if (DIR* d = opendir(p.a.path("state/groups").c_str())) {
    while (dirent* e = readdir(d))
      if (std::atoi(e->d_name) > 1) kill(-std::atoi(e->d_name), SIGKILL);
    closedir(d);
  }
  REQUIRE(p.b.wait_log("lost: silent on every link"));
  // Well past dead_after, it still waits: it may be the isolated one.
  CHECK_FALSE(vt::eventually([&] { return Pair::state(p.b) != "passive"; }, 1.0));
  p.b.write("gateway-up", "");
  CHECK(vt::eventually([&] { return Pair::state(p.b) == "active"; }, 5));
  CHECK(p.b.stop() == 0);
}

TEST_CASE("rule 1: a service over its restart budget fails the node over") {
  Pair p;
  // No content probe here: only the restart budget may fail this node.
  p.a.configure({{"restart", {{"budget", 2}, {"budget_window", "1m"}}}, {"probes", nullptr}});
  p.start_pair();
  for (int i = 0; i < 3; ++i) {
    REQUIRE(p.a.wait_state("app", "up"));
    CHECK(Pair::state(p.a) == "active");  // within budget: restarts alone
    pid_t pid = p.a.status()["services"]["app"]["pid"];
    kill(pid, SIGKILL);
    REQUIRE(p.a.wait_service("app", [&](const json& s) { return s["pid"] != pid; }));
  }
  REQUIRE(p.states("failed", "active"));
  CHECK(p.a.log().find("service app restarted more than 2 times within 1m") != std::string::npos);
  CHECK(p.a.status()["services"]["app"]["state"] == "down");
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}
