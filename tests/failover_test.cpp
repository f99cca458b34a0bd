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
#include <chrono>
#include <csignal>
#include <cstdio>
#include <sstream>

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
                   // The guard's fence is linkd's lease (200ms) + (dead_after - heartbeat) / 2:
                   // 375ms, which a supervisor under ASan on a loaded machine does not stall for.
                   {"heartbeat", "50ms"},
                   {"dead_after", "400ms"}}},
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
  // Both supervisors, and the roles settled: web1 active, web2 passive, and web1's content probe
  // past its start period (its first pass), so that a break of the app from here counts at once.
  void start_pair() {
    a.start();
    b.start();
    REQUIRE(states("active", "passive"));
    if (a.status()["probes"].contains("content"))
      REQUIRE(a.wait_probe("content", [](const json& c) { return c["state"] == "passing"; }));
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
  // Both apps write "start NODE <monotonic ns>" before they begin to listen and "stop NODE
  // <ns>" once they have exited, to one journal: what the services themselves saw, in order.
  std::string journal() const { return a.path("journal"); }
  void journal_services() {
    for (vt::Node* n : {&a, &b}) {
      std::string name = n == &a ? "web1" : "web2";
      std::string mark = " " + name + " $(mono)\" >> " + journal();
      n->write("services.d/app/run",
               "#!/bin/sh\n"
               "mono() { python3 -c 'import time; print(time.monotonic_ns())'; }\n"
               "trap 'kill -TERM $child 2>/dev/null; wait $child; echo \"stop" +
                   mark + "; exit 0' TERM INT\n" + "echo \"start" + mark +
                   "\npython3 " SOURCE_DIR "/services.d/app/app.py &\nchild=$!\nwait $child\n" +
                   "echo \"stop" + mark + "\n",
               0755);
    }
  }
  struct Mark {
    std::string what, node;
    long long ns;
  };
  std::vector<Mark> marks() const {
    std::vector<Mark> out;
    std::istringstream in(vt::read_file(journal()));
    Mark m;
    while (in >> m.what >> m.node >> m.ns) out.push_back(m);
    return out;
  }
  // The first `what` of node at or after ns (-1 if none).
  long long first(const std::string& what, const std::string& node, long long after = 0) const {
    for (auto& m : marks())
      if (m.what == what && m.node == node && m.ns >= after) return m.ns;
    return -1;
  }
  // web1 still active at epoch, web2 passive, and web2 never lost web1 nor started.
  void no_failover(uint64_t epoch) {
    CHECK(state(a) == "active");
    CHECK(state(b) == "passive");
    CHECK(a.status()["node"]["epoch"] == epoch);
    CHECK(b.log().find("-> starting") == std::string::npos);
    CHECK(b.log().find("lost: silent on every link") == std::string::npos);
  }
  long long last(const std::string& what, const std::string& node) const {
    long long t = -1;
    for (auto& m : marks())
      if (m.what == what && m.node == node) t = m.ns;
    return t;
  }
};

// A read-only bind mount of a directory onto itself, undone when the test ends.
struct ReadOnly {
  std::string dir;
  bool mounted = false;
  explicit ReadOnly(std::string d) : dir(std::move(d)) {
    if (getuid() != 0) return;
    mounted = vt::run_command({"/bin/mount", "--bind", dir, dir}).code == 0;
    if (mounted && vt::run_command({"/bin/mount", "-o", "remount,bind,ro", dir}).code != 0) undo();
  }
  // Writable again at once, even while a supervisor holds a descriptor opened through the bind
  // mount (its state directory's lock): the bind is made read-write, then detached lazily.
  void undo() {
    if (mounted) {
      vt::run_command({"/bin/mount", "-o", "remount,bind,rw", dir});
      vt::run_command({"/bin/umount", "-l", dir});
    }
    mounted = false;
  }
  ~ReadOnly() { undo(); }
};

long long mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
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

TEST_CASE("kill -9 of linkd three times in a second on the active node: no failover") {
  Pair p;
  // A new linkd must start and confirm a session with the peer within dead_after; under ASan,
  // on a loaded 2-core machine, its start alone can take most of a short dead_after.
  for (vt::Node* n : {&p.a, &p.b}) n->configure({{"peer", {{"dead_after", "600ms"}}}});
  p.start_pair();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {
    pid_t linkd = p.a.status()["peer"]["linkd_pid"];
    kill(linkd, SIGKILL);
    REQUIRE(vt::eventually([&] {
      json st = p.a.status();
      return st["peer"]["linkd_pid"].is_number() && st["peer"]["linkd_pid"] != linkd;
    }));
  }
  MESSAGE("three kills and restarts took ",
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), " s");
  CHECK(p.a.status()["peer"]["linkd_restarts"] == 3);
  REQUIRE(vt::eventually([&] { return p.a.status()["peer"]["state"] == "up"; }));
  p.no_failover(epoch);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a stopped linkd on the active node is replaced before the peer loses it: no failover") {
  Pair p;
  // The new linkd must start and confirm a session within dead_after / 2 (ASan, loaded machine).
  for (vt::Node* n : {&p.a, &p.b}) n->configure({{"peer", {{"dead_after", "1s"}}}});
  p.start_pair();
  uint64_t epoch = p.a.status()["node"]["epoch"];
  pid_t linkd = p.a.status()["peer"]["linkd_pid"];
  // Stopped, it neither heartbeats nor hears: web2 would take over after dead_after while web1,
  // hearing nothing, went on serving. The supervisor kills it after dead_after / 2 of silence.
  REQUIRE(kill(linkd, SIGSTOP) == 0);
  REQUIRE(p.a.wait_log("(stopped or stuck): killing it"));
  REQUIRE(vt::eventually([&] {
    json st = p.a.status();
    return st["peer"]["linkd_pid"].is_number() && st["peer"]["linkd_pid"] != linkd;
  }));
  CHECK_FALSE(vt::process_exists(linkd));
  CHECK(p.a.status()["peer"]["linkd_stalls"] == 1);
  REQUIRE(vt::eventually([&] { return p.a.status()["peer"]["state"] == "up"; }));
  // Two dead_afters later (web1 sends a heartbeat and a pong every 50ms) nothing has moved.
  auto heard = [&] { return p.b.status()["peer"]["datagrams"].value("ok", 0); };
  int before = heard();
  REQUIRE(vt::eventually([&] { return heard() >= before + 80; }));
  if (Pair::state(p.b) != "passive") MESSAGE("web1 log:\n", p.a.log(), "\nweb2 log:\n", p.b.log());
  p.no_failover(epoch);
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

TEST_CASE("release is break-before-make: the peer's service starts after this node's stopped") {
  Pair p;
  p.journal_services();
  p.start_pair();
  REQUIRE(p.a.wait_state("app", "up"));
  CHECK(p.a.cli({"release"}).code == 0);
  REQUIRE(p.states("passive", "active"));
  REQUIRE(p.b.wait_state("app", "up"));
  long long stop_a = p.last("stop", "web1"), start_b = p.first("start", "web2");
  REQUIRE(stop_a > 0);
  REQUIRE(start_b > 0);
  MESSAGE("web2 started ", (start_b - stop_a) / 1e6, " ms after web1 stopped");
  CHECK(start_b > stop_a);
  // And back: operator takeover on web1 asks web2 to stop first.
  CHECK(p.a.cli({"takeover"}).code == 0);
  REQUIRE(p.states("active", "passive"));
  REQUIRE(p.a.wait_state("app", "up"));
  long long stop_b = p.last("stop", "web2"), start_a = p.first("start", "web1", start_b);
  REQUIRE(stop_b > 0);
  CHECK(start_a > stop_b);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("SIGTERM of the active supervisor hands over: services stopped, then takeover") {
  Pair p;
  p.journal_services();
  p.start_pair();
  REQUIRE(p.a.wait_state("app", "up"));
  long long before = mono_ns();
  CHECK(p.a.stop() == 0);
  // Handed over, not lost: web2 heard a takeover and did not wait for dead_after.
  REQUIRE(vt::eventually([&] { return Pair::state(p.b) == "active"; }, 10));
  CHECK(p.a.log().find("handing over to web2") != std::string::npos);
  CHECK(p.b.log().find("the peer handed over") != std::string::npos);
  REQUIRE(p.b.wait_state("app", "up"));
  long long stop_a = p.last("stop", "web1"), start_b = p.first("start", "web2");
  REQUIRE(stop_a > before);
  REQUIRE(start_b > 0);
  MESSAGE("web2 started ", (start_b - stop_a) / 1e6, " ms after web1 stopped");
  CHECK(start_b > stop_a);
  CHECK(p.b.stop() == 0);
}

// linkd stops heartbeating when the supervisor stops feeding it (the lease), so the peer loses a
// frozen node as it would a dead one.
TEST_CASE("a frozen active supervisor is not heard as healthy; thawed, it yields") {
  Pair p;
  p.journal_services();
  p.start_pair();
  REQUIRE(p.a.wait_state("app", "up"));
  uint64_t epoch = p.a.status()["node"]["epoch"];
  pid_t app = p.a.status()["services"]["app"]["pid"];
  long long t0 = mono_ns();
  kill(p.a.pid(), SIGSTOP);
  kill(-app, SIGKILL);  // nothing serves on web1 now, and its supervisor cannot tell anyone
  REQUIRE_MESSAGE(vt::eventually([&] { return Pair::state(p.b) == "active"; }, 10), p.b.log());
  long long took = p.first("start", "web2") - t0;
  MESSAGE("web2 took over ", took / 1e6, " ms after web1's supervisor froze");
  // dead_after (400ms) after linkd's lease (max(dead_after / 2, 3 ticks) = 200ms) lapsed, plus
  // the peer's start-up; generous for a loaded machine.
  CHECK(took < 3'000'000'000LL);
  CHECK(p.b.status()["node"]["epoch"].get<uint64_t>() > epoch);
  REQUIRE(p.b.wait_state("app", "up"));
  long long thaw = mono_ns();
  kill(p.a.pid(), SIGCONT);
  // Rule 5: web1 hears web2 active with a higher epoch and yields.
  REQUIRE(p.states("passive", "active"));
  CHECK(p.a.status()["services"]["app"]["state"] == "down");
  // If web1 restarted its app when it thawed, it stopped it again at once.
  long long restarted = p.first("start", "web1", thaw);
  if (restarted > 0) {
    long long stopped = p.first("stop", "web1", restarted);
    REQUIRE(stopped > 0);
    MESSAGE("web1's app ran ", (stopped - restarted) / 1e6, " ms beside web2's after the thaw");
    CHECK(stopped - restarted < 2'000'000'000LL);
  }
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a frozen active supervisor: its guard kills its services before the peer starts") {
  Pair p;
  p.journal_services();
  p.start_pair();
  REQUIRE(p.a.wait_state("app", "up"));
  pid_t app = p.a.status()["services"]["app"]["pid"];  // the leader of its process group
  REQUIRE(vt::process_exists(app));
  // web2's app notes, as it starts, whether anything of web1's app is still alive.
  p.b.write("services.d/app/run",
            "#!/bin/sh\nkill -0 -- -" + std::to_string(app) +
                " 2>/dev/null && echo \"overlap web2 " +
                "$(python3 -c 'import time; print(time.monotonic_ns())')\" >> " + p.journal() +
                "\nexec python3 " SOURCE_DIR "/services.d/app/app.py\n",
            0755);
  long long t0 = mono_ns();
  kill(p.a.pid(), SIGSTOP);  // web1's app keeps running: only the guard can stop it now
  bool fenced = vt::eventually([&] { return !vt::process_exists(app); }, 10);
  long long gone = mono_ns();
  bool took_over = vt::eventually([&] { return Pair::state(p.b) == "active"; }, 10);
  bool serves = took_over && p.b.wait_state("app", "up");
  kill(p.a.pid(), SIGCONT);
  REQUIRE(fenced);
  MESSAGE("web1's app gone at most ", (gone - t0) / 1e6, " ms after its supervisor froze");
  REQUIRE_MESSAGE(took_over, p.b.log());
  CHECK(serves);
  CHECK(p.first("overlap", "web2") == -1);  // nothing of web1's app was alive when web2's began
  CHECK(p.a.wait_log("it is frozen, and its peer takes over"));
  REQUIRE(p.states("passive", "active"));  // thawed, web1 yields to the higher epoch
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE(
    "thawed just after its fence, a supervisor holds its services until the peer's choice is "
    "known") {
  Pair p;
  p.journal_services();
  p.start_pair();
  REQUIRE(p.a.wait_state("app", "up"));
  pid_t app = p.a.status()["services"]["app"]["pid"];
  size_t mark = p.a.log().size();
  kill(p.a.pid(), SIGSTOP);
  // Thawed as soon as the guard fenced its app (375ms), before web2's dead_after runs out
  // (550ms) or just after: web2 may or may not take over, and web1 cannot know which yet.
  bool fenced = vt::eventually([&] { return !vt::process_exists(app); }, 10);
  long long thaw = mono_ns();
  kill(p.a.pid(), SIGCONT);
  REQUIRE(fenced);
  const std::string woke = "may have killed the services: they restart in 400ms unless the peer";
  REQUIRE(p.a.wait_log(woke));
  // Settled either way: web1 serving again (web2 kept hearing it) or web2 (it took over).
  REQUIRE(vt::eventually([&] {
    return (Pair::state(p.a) == "active" && p.a.status()["services"]["app"]["state"] == "up") ||
           (Pair::state(p.a) == "passive" && Pair::state(p.b) == "active");
  }));
  std::string log = p.a.log();
  long started = vt::log_ms(log, "app: started", log.find(woke, mark));
  if (Pair::state(p.b) == "active") {
    MESSAGE("web2 took over; web1's app ", started >= 0 ? "restarted (wrongly)" : "was held");
    CHECK(started == -1);
    CHECK(p.first("start", "web1", thaw) == -1);
  } else {
    REQUIRE(started >= 0);
    long held = started - vt::log_ms(log, woke, mark);
    MESSAGE("web2 kept hearing web1, whose app restarted ", held, " ms after it woke");
    CHECK(held >= 400);  // dead_after: web2 would have said by then that it took over
    CHECK(p.first("start", "web2") == -1);
    CHECK(log.find("-> stopping", mark) == std::string::npos);
  }
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a passive supervisor frozen long enough to be lost does not take the role on waking") {
  Pair p;
  p.start_pair();
  REQUIRE(p.b.cli({"takeover"}).code == 0);  // web2 active, web1 (the master) passive
  REQUIRE(p.states("passive", "active"));
  uint64_t epoch = p.b.status()["node"]["epoch"];
  size_t mark = p.a.log().size();
  kill(p.a.pid(), SIGSTOP);
  // web2 loses web1 (its linkd stops heartbeating once the lease lapses) and drops the session,
  // so web1's linkd loses web2 in turn: a "lost" line waits for web1's frozen supervisor.
  bool lost = vt::eventually([&] { return p.b.status()["peer"]["state"] == "lost"; }, 10);
  usleep(1'600'000);  // the stall goes on: 4 x dead_after more, for web1's linkd to report it
  kill(p.a.pid(), SIGCONT);
  REQUIRE(lost);
  bool deferred = p.a.wait_log("reported lost just after this supervisor stalled");
  if (!deferred) MESSAGE("web1 log:\n", p.a.log(), "\nweb2 log:\n", p.b.log());
  REQUIRE(deferred);
  // Well past dead_after, web1 is passive and web2 active at the same epoch: nothing moved.
  CHECK_FALSE(vt::eventually([&] { return Pair::state(p.a) != "passive"; }, 1.0));
  REQUIRE(p.states("passive", "active"));
  CHECK(p.b.status()["node"]["epoch"] == epoch);
  CHECK(p.a.log().find("-> starting", mark) == std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("svc restart of the app on the active node: the start period, no failover") {
  Pair p;
  p.start_pair();
  // The app takes a moment to listen again: several checks fail while it restarts.
  p.a.write("services.d/app/run",
            "#!/bin/sh\nsleep 0.5\nexec python3 " SOURCE_DIR "/services.d/app/app.py\n", 0755);
  int fails = p.a.probe_status("content")["fail_count"];
  pid_t pid = p.a.status()["services"]["app"]["pid"];
  CHECK(p.a.cli({"svc", "restart", "app"}).code == 0);
  REQUIRE(p.a.wait_service("app", [&](const json& s) {
    return s["state"] == "up" && s["pid"].is_number() && s["pid"] != pid;
  }));
  REQUIRE(p.a.wait_probe("content", [](const json& c) { return c["last"] == "ok"; }));
  CHECK(p.a.probe_status("content")["fail_count"].get<int>() >= fails + 2);  // fall is 2
  CHECK(Pair::state(p.a) == "active");
  CHECK(Pair::state(p.b) == "passive");
  CHECK(p.a.probe_status("content")["state"] == "passing");
  CHECK(p.a.log().find("-> stopping") == std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("vacataire probe of an active-scope probe on the passive node leaves its verdict") {
  Pair p;
  p.start_pair();
  for (int i = 0; i < 3; ++i) {
    auto r = p.b.cli({"probe", "content", "--json"});
    CHECK(r.out.find("\"fail\"") != std::string::npos);  // nothing serves on web2
  }
  json c = p.b.probe_status("content");
  CHECK(c["state"] == "unknown");
  CHECK(c["consecutive_fail"] == 0);
  // Its next takeover starts from a clean verdict: web2 serves and stays active.
  CHECK(p.a.cli({"release"}).code == 0);
  REQUIRE(p.states("passive", "active"));
  REQUIRE(p.b.wait_probe("content", [](const json& c) { return c["state"] == "passing"; }));
  CHECK(Pair::state(p.b) == "active");
  CHECK(p.b.log().find("-> failed") == std::string::npos);
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
}

TEST_CASE("a node that cannot write its record is unhealthy, says why, and never serves again") {
  Pair p;
  p.start_pair();
  ReadOnly ro(p.a.path("state"));
  if (!ro.mounted) {
    MESSAGE("skipped: cannot bind-mount read-only here (needs root)");
    return;
  }
  vt::write_file(p.a.path("body"), "pong\n");  // the app breaks: web1 fails over
  REQUIRE(p.states("failed", "active"));
  json n;
  REQUIRE(vt::eventually([&] {
    n = p.a.status()["node"];
    return n.value("reason", "").find("cannot persist the node record") != std::string::npos;
  }));
  CHECK(n["healthy"] == false);
  CHECK(vt::read_file(p.a.path("state/node.json")).find("failed") == std::string::npos);
  // Restarted with the state dir still read-only and no peer to defer to, and the app fixed:
  // web1 does not serve, since it cannot know what it failed to record.
  CHECK(p.a.stop() == 0);
  CHECK(p.b.stop() == 0);
  vt::write_file(p.a.path("body"), "pong from web1\n");
  p.a.start();
  if (!p.a.status().empty()) {
    CHECK_FALSE(vt::eventually([&] { return Pair::state(p.a) == "active"; }, 1.5));
    CHECK(Pair::state(p.a) == "failed");
    CHECK(p.a.status()["node"]["reason"].get<std::string>().find(
              "cannot persist the node record") != std::string::npos);
    CHECK(p.a.status()["services"]["app"]["state"] == "down");
    // Writable again: the record says failed, and only recover lets it serve.
    ro.undo();
    REQUIRE_MESSAGE(vt::eventually([&] { return p.a.status()["node"]["healthy"] == true; }),
                    p.a.status().dump(), "\n", p.a.log());
    CHECK(Pair::state(p.a) == "failed");
    CHECK(vt::read_file(p.a.path("state/node.json")).find("failed") != std::string::npos);
    CHECK(p.a.cli({"recover"}).code == 0);
    CHECK(vt::eventually([&] { return Pair::state(p.a) == "active"; }));
    CHECK(p.a.stop() == 0);
  } else {
    CHECK(p.a.stop() != 0);  // refused to start at all: it does not serve either
  }
}
