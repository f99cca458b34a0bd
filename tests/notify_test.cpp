// Notify hooks: what a hook receives, their ordering and bounds, that a hanging hook holds up
// neither the node nor a failover, and the three shipped examples against real receivers
// (SMTP: aiosmtpd; SNMP: snmptrapd; a webhook: a small HTTP server), all on loopback.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "harness.hpp"
#include "notify.hpp"
#include "wire.hpp"

using vt::json;

namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (!l.empty()) out.push_back(l);
  return out;
}

// The JSON events a recording hook appended to its file.
std::vector<json> recorded(const std::string& path) {
  std::vector<json> out;
  for (auto& l : lines_of(vt::read_file(path))) {
    json j = json::parse(l, nullptr, false);
    if (j.is_object()) out.push_back(j);
  }
  return out;
}

bool has_event(const std::string& path, const std::string& event, const std::string& state) {
  for (auto& j : recorded(path))
    if (j["event"] == event && j["state"] == state) return true;
  return false;
}

// A receiver process started by a test, killed with its group at the end.
struct Receiver {
  pid_t pid = 0;
  explicit Receiver(const std::vector<std::string>& argv, const std::string& log) {
    pid = fork();
    if (pid == 0) {
      setpgid(0, 0);
      FILE* f = fopen(log.c_str(), "a");
      if (f) dup2(fileno(f), 1), dup2(fileno(f), 2);
      std::vector<char*> args;
      for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execvp(args[0], args.data());
      _exit(127);
    }
  }
  ~Receiver() {
    if (pid > 0) {
      kill(-pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

// Single node with one service, so start-up alone makes two state changes.
void single_node(vt::Node& n, const json& extra = json::object()) {
  n.service("app", "exec sleep 1000");
  json cfg = {{"notify_dir", "notify.d"}};
  cfg.merge_patch(extra);
  n.configure(cfg);
}

bool tcp_listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

}  // namespace

TEST_CASE("list_hooks takes executables in name order and skips what run-parts skips") {
  vt::Node n;
  n.write("h/20-b", "#!/bin/sh\n", 0755);
  n.write("h/10-a", "#!/bin/sh\n", 0755);
  n.write("h/not-exec", "#!/bin/sh\n", 0644);
  n.write("h/.hidden", "#!/bin/sh\n", 0755);
  n.write("h/old~", "#!/bin/sh\n", 0755);
  n.write("h/x.dpkg-dist", "#!/bin/sh\n", 0755);
  mkdir(n.path("h/dir").c_str(), 0755);
  CHECK(vac::list_hooks(n.path("h")) == std::vector<std::string>{"10-a", "20-b"});
  CHECK(vac::list_hooks(n.path("missing")).empty());
}

TEST_CASE("notify_env and notify_json carry what DESIGN names") {
  vac::NotifyEvent e{"state", "active", "starting", "single node", "", "", 4};
  vac::NotifyIdentity who{"web1", "master", "web2"};
  auto env = vac::notify_env(e, who);
  for (const char* v :
       {"VACATAIRE_EVENT=state", "VACATAIRE_STATE=active", "VACATAIRE_PREVIOUS=starting",
        "VACATAIRE_NODE=web1", "VACATAIRE_PEER=web2", "VACATAIRE_REASON=single node"})
    CHECK(std::find(env.begin(), env.end(), v) != env.end());
  json j = vac::notify_json(e, who, 7, "2026-01-01T00:00:00.000Z");
  CHECK(j["event"] == "state");
  CHECK(j["previous"] == "starting");
  CHECK(j["epoch"] == 4);
  CHECK(j["seq"] == 7);
  CHECK_FALSE(j.contains("probe"));
}

TEST_CASE("every state change reaches each hook in order, on stdin and in the environment") {
  vt::Node n;
  single_node(n);
  std::string log = n.path("events");
  n.write("notify.d/record",
          "#!/bin/sh\ncat >> " + log +
              "\necho \"ENV $VACATAIRE_EVENT $VACATAIRE_PREVIOUS $VACATAIRE_STATE "
              "$VACATAIRE_NODE\" >> " +
              log + ".env\n",
          0755);
  n.start();
  REQUIRE(vt::eventually([&] { return has_event(log, "state", "active"); }));
  auto events = recorded(log);
  REQUIRE(events.size() >= 2);
  CHECK(events[0]["state"] == "starting");
  CHECK(events[0]["previous"] == "passive");
  CHECK(events[1]["state"] == "active");
  CHECK(events[1]["previous"] == "starting");
  CHECK(events[0]["seq"].get<int>() < events[1]["seq"].get<int>());
  CHECK(events[1]["node"] == "t1");
  CHECK(events[1]["epoch"].get<int>() >= 1);
  REQUIRE(vt::eventually([&] { return lines_of(vt::read_file(log + ".env")).size() >= 2; }));
  auto env = lines_of(vt::read_file(log + ".env"));
  CHECK(env[0] == "ENV state passive starting t1");
  CHECK(env[1] == "ENV state starting active t1");
  CHECK(n.status()["notify"]["hooks"]["record"]["runs"].get<int>() >= 2);

  // A shutdown is told too, and waited for (within notify_timeout).
  CHECK(n.stop() == 0);
  CHECK(has_event(log, "shutdown", "active"));
}

TEST_CASE(
    "a hook that hangs is killed at notify_timeout and holds up neither others nor the node") {
  vt::Node n;
  single_node(n, {{"notify_timeout", "1500ms"}});
  std::string pids = n.path("hang.pids"), log = n.path("events");
  n.write("notify.d/a-hang", "#!/bin/sh\necho $$ >> " + pids + "\nexec sleep 1000\n", 0755);
  n.write("notify.d/b-record", "#!/bin/sh\ncat >> " + log + "\n", 0755);
  n.write("notify.d/c-fail", "#!/bin/sh\necho 'no route to the pager' >&2\nexit 3\n", 0755);
  n.write("notify.d/d-flood", "#!/bin/sh\nexec yes flood\n", 0755);
  n.start();
  // The node goes active and the other hook hears both changes while the first run of the
  // hanging hook is still there.
  REQUIRE(n.wait_state("app", "up"));
  REQUIRE(vt::eventually([&] { return has_event(log, "state", "active"); }));
  auto first = lines_of(vt::read_file(pids));
  REQUIRE(first.size() == 1);
  pid_t hung = std::atoi(first[0].c_str());
  CHECK(vt::process_exists(hung));
  CHECK(n.status()["node"]["state"] == "active");
  // Killed at its timeout, then its next event runs: ordered per hook, nothing lost.
  CHECK(n.wait_log("a-hang: still running after 1.5s (event state); killing it"));
  CHECK(vt::eventually([&] { return !vt::process_exists(hung); }));
  CHECK(vt::eventually([&] { return lines_of(vt::read_file(pids)).size() == 2; }));
  CHECK(n.wait_log("c-fail: no route to the pager"));
  CHECK(n.wait_log("c-fail: exit 3 on event state"));
  json st = n.status()["notify"]["hooks"];
  CHECK(st["a-hang"]["timeouts"].get<int>() >= 1);
  CHECK(st["c-fail"]["failures"].get<int>() >= 2);
  // A hook that floods its output costs a bounded log, and is killed at its timeout too.
  CHECK(n.wait_log("d-flood: more than 100 lines of output; the rest is dropped"));
  CHECK(vt::eventually([&] { return n.status()["notify"]["hooks"]["d-flood"]["timeouts"] >= 1; }));
  // Shutdown waits for hooks at most notify_timeout, then kills them.
  CHECK(n.stop(10) == 0);
  for (auto& l : lines_of(vt::read_file(pids)))
    CHECK_FALSE(vt::process_exists(std::atoi(l.c_str())));
}

TEST_CASE("probe_failing and probe_passing events") {
  vt::Node n;
  std::string flag = n.path("ok");
  vt::write_file(flag, "");
  single_node(n, {{"probes",
                   {{"file",
                     {{"exec", {"/bin/sh", "-c", "test -f " + flag + " || exit 2"}},
                      {"protocol", "exit"},
                      {"interval", "50ms"},
                      {"fall", 1},
                      {"rise", 1},
                      {"critical", false}}}}}});
  std::string log = n.path("events");
  n.write("notify.d/record", "#!/bin/sh\ncat >> " + log + "\n", 0755);
  n.start();
  REQUIRE(n.wait_probe("file", [](const json& p) { return p["state"] == "passing"; }));
  unlink(flag.c_str());
  REQUIRE(vt::eventually([&] {
    for (auto& j : recorded(log))
      if (j["event"] == "probe_failing" && j["probe"] == "file") return true;
    return false;
  }));
  vt::write_file(flag, "");
  REQUIRE(vt::eventually([&] {
    for (auto& j : recorded(log))
      if (j["event"] == "probe_passing" && j["probe"] == "file") return true;
    return false;
  }));
}

TEST_CASE("hanging hooks on both nodes never delay a failover") {
  vt::Node a, b;
  int la = vt::free_port(SOCK_DGRAM), lb = vt::free_port(SOCK_DGRAM);
  std::string key = vac::new_key_hex() + "\n";
  std::string flag = a.path("healthy");
  vt::write_file(flag, "");
  auto setup = [&](vt::Node& n, const char* name, const char* role, const char* peer, int l, int p,
                   const std::string& probe_cmd) {
    n.write("peer.key", key, 0600);
    n.service("app", "exec sleep 1000");
    n.write("notify.d/hang", "#!/bin/sh\necho $$ >> " + n.path("hang.pids") + "\nexec sleep 1000\n",
            0755);
    n.configure({{"node", {{"name", name}, {"role", role}}},
                 {"notify_dir", "notify.d"},
                 {"notify_timeout", "60s"},
                 {"peer",
                  {{"name", peer},
                   {"links",
                    {{{"listen", "127.0.0.1:" + std::to_string(l)},
                      {"peer", "127.0.0.1:" + std::to_string(p)}}}},
                   {"key_file", "peer.key"},
                   {"heartbeat", "20ms"},
                   {"dead_after", "150ms"}}},
                 {"failover", {{"startup_grace", "500ms"}}},
                 {"probes",
                  {{"health",
                    {{"exec", {"/bin/sh", "-c", probe_cmd}},
                     {"protocol", "exit"},
                     {"interval", "50ms"},
                     {"fall", 1},
                     {"rise", 1},
                     {"scope", "active"}}}}}});
  };
  setup(a, "web1", "master", "web2", la, lb, "test -f " + flag + " || exit 2");
  setup(b, "web2", "standby", "web1", lb, la, "true");
  a.start();
  b.start();
  REQUIRE(vt::eventually([&] { return a.status()["node"]["state"] == "active"; }, 20));
  REQUIRE(vt::eventually([&] { return b.status()["peer"]["node_state"] == "active"; }, 20));
  unlink(flag.c_str());
  REQUIRE(vt::eventually([&] { return b.status()["node"]["state"] == "active"; }, 10));
  CHECK(vt::eventually([&] { return a.status()["node"]["state"] == "failed"; }, 10));
  // Every hook started on either node is still hanging: nobody waited for them.
  for (vt::Node* n : {&a, &b}) {
    auto pids = lines_of(vt::read_file(n->path("hang.pids")));
    REQUIRE_FALSE(pids.empty());
    CHECK(vt::process_exists(std::atoi(pids[0].c_str())));
  }
}

TEST_CASE("the mail example delivers through SMTP (aiosmtpd)") {
  vt::Node n;
  single_node(n);
  int port = vt::free_port(SOCK_STREAM);
  std::string maildir = n.path("maildir");
  // Debian's python3-aiosmtpd is for Debian's own interpreter, whatever python3 is on PATH.
  Receiver smtp({"/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l",
                 "127.0.0.1:" + std::to_string(port), "-c", "aiosmtpd.handlers.Mailbox", maildir},
                n.path("smtp.log"));
  REQUIRE(vt::eventually([&] { return tcp_listening(port); }));
  mkdir(n.path("notify.d").c_str(), 0755);
  symlink(SOURCE_DIR "/notify.d/mail", n.path("notify.d/mail").c_str());
  setenv("VACATAIRE_MAIL_TO", "ops@example.test", 1);
  setenv("VACATAIRE_MAIL_FROM", "vacataire@t1.example.test", 1);
  setenv("VACATAIRE_SMTP_URL", ("smtp://127.0.0.1:" + std::to_string(port)).c_str(), 1);
  setenv("VACATAIRE_NOTIFY_CONF", "/nonexistent", 1);
  n.start();
  unsetenv("VACATAIRE_MAIL_TO");
  // aiosmtpd's Mailbox handler keeps a Maildir: one file per message in new/.
  auto mail = [&] {
    std::string all;
    if (DIR* d = opendir((maildir + "/new").c_str())) {
      while (dirent* e = readdir(d))
        if (e->d_name[0] != '.') all += vt::read_file(maildir + "/new/" + e->d_name);
      closedir(d);
    }
    return all;
  };
  REQUIRE(
      vt::eventually([&] { return mail().find("starting -> active") != std::string::npos; }, 15));
  std::string m = mail();
  CHECK(m.find("Subject: [vacataire] t1: starting -> active") != std::string::npos);
  CHECK(m.find("To: ops@example.test") != std::string::npos);
  CHECK(m.find("\"event\":\"state\"") != std::string::npos);
}

TEST_CASE("the snmptrap example sends a v2c trap with its varbinds (snmptrapd)") {
  vt::Node n;
  single_node(n);
  int port = vt::free_port(SOCK_DGRAM);
  std::string traps = n.path("traps.log");
  n.write("snmptrapd.conf", "disableAuthorization yes\n");
  Receiver trapd({"snmptrapd", "-f", "-n", "-On", "-M", "/dev/null", "-m", "", "-C", "-c",
                  n.path("snmptrapd.conf"), "-Lf", traps, "-p", n.path("snmptrapd.pid"),
                  "udp:127.0.0.1:" + std::to_string(port)},
                 n.path("snmptrapd.out"));
  REQUIRE(vt::eventually(
      [&] { return vt::read_file(traps).find("NET-SNMP version") != std::string::npos; }));
  mkdir(n.path("notify.d").c_str(), 0755);
  symlink(SOURCE_DIR "/notify.d/snmptrap", n.path("notify.d/snmptrap").c_str());
  setenv("VACATAIRE_SNMP_TARGET", ("127.0.0.1:" + std::to_string(port)).c_str(), 1);
  setenv("VACATAIRE_NOTIFY_CONF", "/nonexistent", 1);
  n.start();
  unsetenv("VACATAIRE_SNMP_TARGET");
  const std::string oid = ".1.3.6.1.4.1.8072.9999.9999.7480";
  REQUIRE(vt::eventually(
      [&] { return vt::read_file(traps).find("\"active\"") != std::string::npos; }, 15));
  std::string t = vt::read_file(traps);
  CHECK(t.find(oid + ".0.1") != std::string::npos);  // the trap OID
  CHECK(t.find(oid + ".1.1 = STRING: \"t1\"") != std::string::npos);
  CHECK(t.find(oid + ".1.2 = STRING: \"state\"") != std::string::npos);
  CHECK(t.find(oid + ".1.3 = STRING: \"active\"") != std::string::npos);
  CHECK(t.find(oid + ".1.4 = STRING: \"starting\"") != std::string::npos);
}

TEST_CASE("the webhook example POSTs the event, or a Slack-compatible body") {
  for (const char* format : {"event", "slack"}) {
    CAPTURE(format);
    vt::Node n;
    single_node(n);
    int port = vt::free_port(SOCK_STREAM);
    std::string bodies = n.path("bodies");
    n.write("receiver.py",
            "import http.server, sys\n"
            "class H(http.server.BaseHTTPRequestHandler):\n"
            "    def do_POST(self):\n"
            "        n = int(self.headers.get('Content-Length', 0))\n"
            "        body = self.rfile.read(n)\n"
            "        with open(sys.argv[2], 'ab') as f:\n"
            "            f.write(self.headers.get('Content-Type', '').encode() + b' ' + body + "
            "b'\\n')\n"
            "        self.send_response(200); self.end_headers(); self.wfile.write(b'ok')\n"
            "    def log_message(self, *a): pass\n"
            "http.server.HTTPServer(('127.0.0.1', int(sys.argv[1])), H).serve_forever()\n");
    Receiver web({"python3", n.path("receiver.py"), std::to_string(port), bodies},
                 n.path("receiver.log"));
    REQUIRE(vt::eventually([&] { return tcp_listening(port); }));
    mkdir(n.path("notify.d").c_str(), 0755);
    symlink(SOURCE_DIR "/notify.d/webhook", n.path("notify.d/webhook").c_str());
    setenv("VACATAIRE_WEBHOOK_URL", ("http://127.0.0.1:" + std::to_string(port) + "/hook").c_str(),
           1);
    setenv("VACATAIRE_WEBHOOK_FORMAT", format, 1);
    setenv("VACATAIRE_NOTIFY_CONF", "/nonexistent", 1);
    n.start();
    unsetenv("VACATAIRE_WEBHOOK_URL");
    unsetenv("VACATAIRE_WEBHOOK_FORMAT");
    std::string want =
        std::string(format) == "slack" ? "starting -> active" : "\"previous\":\"starting\"";
    REQUIRE(
        vt::eventually([&] { return vt::read_file(bodies).find(want) != std::string::npos; }, 15));
    for (auto& l : lines_of(vt::read_file(bodies))) {
      CHECK(l.rfind("application/json ", 0) == 0);
      json j = json::parse(l.substr(l.find(' ') + 1), nullptr, false);
      CHECK(j.is_object());
      if (std::string(format) == "slack")
        CHECK(j["text"].get<std::string>().find("vacataire t1: ") == 0);
      else
        CHECK(j["node"] == "t1");
    }
  }
}
