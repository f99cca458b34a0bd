// The peer link: the supervisor<->linkd line codec, the datagram codec, the session handshake
// and replay guard (pure, on a fake monotonic clock), then real vacataire-linkd processes on
// loopback, driven as the supervisor drives them: heartbeats and commands, hostile datagrams,
// replays after restarts of either side, wall-clock steps, stalls, the supervisor's lease,
// floods, and privileges. Every wait is on a line or an event, with a deadline.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sodium.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include "common/line_reader.hpp"
#include "common/link_messages.hpp"
#include "common/text.hpp"
#include "harness.hpp"
#include "session.hpp"
#include "wire.hpp"

using namespace vac;
using vt::json;
using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;

namespace {
const std::string kKeyHex(64, 'a');  // 32 bytes of 0xaa

const SecretKey& test_key() {
  static SecretKey k;
  if (!k.loaded()) {
    std::string err;
    REQUIRE(sodium_init() >= 0);
    REQUIRE(k.load_hex(kKeyHex, err));
  }
  return k;
}

int free_udp_port() {
  return vt::free_port(SOCK_DGRAM);
}

std::string addr(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  return a;
}

// A UDP socket of the test's, bound to a port (0: any), that plays a peer or an attacker.
struct Socket {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  explicit Socket(int port = 0) {
    sockaddr_in a = loopback(port);
    REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~Socket() { close(fd); }
  void send_to(int port, const std::string& bytes) const {
    sockaddr_in a = loopback(port);
    sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
  // The next datagram within timeout_s, and the port it came from; empty when none.
  std::string receive(int& from_port, double timeout_s = 0) const {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) return {};
    char buf[65536];
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n < 0) return {};
    from_port = ntohs(from.sin_port);
    return std::string(buf, static_cast<size_t>(n));
  }
};

LinkdSettings settings(const std::string& node, const std::string& peer,
                       std::vector<LinkConfig> links, Duration dead_after = 300ms,
                       Duration heartbeat = 50ms) {
  LinkdSettings s;
  s.node = node, s.peer = peer, s.links = std::move(links), s.key_hex = kKeyHex;
  s.heartbeat = heartbeat, s.dead_after = dead_after;
  return s;
}

// A vacataire-linkd child driven the way the supervisor drives it. While `feeding`, every
// wait (on any Linkd) writes its heartbeat line each tick, as the supervisor's loop does.
class Linkd {
 public:
  Linkd(LinkdSettings s, std::vector<std::string> env = {}) : settings_(std::move(s)) {
    env_ = std::move(env);
    start();
    instances().push_back(this);
  }
  ~Linkd() {
    kill_now();
    std::erase(instances(), this);
  }
  void start() {
    int in[2], out[2];
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    std::vector<char*> envp;
    for (auto& e : env_) envp.push_back(e.data());
    for (char** e = environ; *e; ++e) envp.push_back(*e);
    envp.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      const char* argv[] = {"vacataire-linkd", nullptr};
      execve(BUILD_DIR "/vacataire-linkd", const_cast<char**>(argv), envp.data());
      _exit(127);
    }
    close(in[0]), close(out[1]);
    in_ = in[1], out_ = out[0];
    fcntl(out_, F_SETFL, O_NONBLOCK);
    reader_.reset();
    lines_.clear();
    seen_.clear();
    line(encode_config_line(settings_));
  }
  void kill_now() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(in_), close(out_);
    pid_ = 0;
    feeding_ = false;
  }
  void restart() {
    kill_now();
    start();
  }
  pid_t pid() const { return pid_; }
  void line(const std::string& l) {
    if (pid_ > 0) REQUIRE(write(in_, l.data(), l.size()) == static_cast<ssize_t>(l.size()));
  }
  void feed(const NodeReport& r) {
    report_ = r;
    feeding_ = true;
    last_feed_ = SteadyClock::now();
    line(encode_heartbeat_line(r));
  }
  void stop_feeding() { feeding_ = false; }
  SteadyClock::time_point last_feed() const { return last_feed_; }

  // The next line for which pred holds, within timeout_s; null if none.
  json wait_line(const std::function<bool(const json&)>& pred, double timeout_s = 5) {
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(timeout_s);
    for (;;) {
      while (!lines_.empty()) {
        json j = lines_.front();
        lines_.erase(lines_.begin());
        seen_.push_back(j);
        if (pred(j)) return j;
      }
      if (SteadyClock::now() >= deadline) return nullptr;
      pump_all();
    }
  }
  json wait_key(const std::string& key, double timeout_s = 5) {
    return wait_line([&](const json& j) { return j.contains(key); }, timeout_s);
  }
  // Lets time pass (feeding every instance) for timeout_s, keeping every line.
  void pass(double timeout_s) {
    wait_line([](const json&) { return false; }, timeout_s);
  }
  // Fresh figures: older lines (periodic stats among them) are read first.
  json stats() {
    pass(0.02);
    line(encode_stats_request_line());
    return wait_key("stats")["stats"];
  }
  int count(const std::function<bool(const json&)>& pred) const {
    int n = 0;
    for (auto& j : seen_) n += pred(j) ? 1 : 0;
    return n;
  }
  int count_peer(const std::string& kind) const {
    return count([&](const json& j) { return j.contains("peer") && j["peer"]["kind"] == kind; });
  }
  int count_lost() const {
    return count([](const json& j) { return j.contains("lost"); });
  }

  // Feeds the instances that are fed, reads every instance's output; waits 5 ms at most.
  static void pump_all() {
    std::vector<pollfd> fds;
    for (Linkd* l : instances()) {
      if (l->pid_ > 0 && l->feeding_ && SteadyClock::now() - l->last_feed_ >= 20ms) {
        l->last_feed_ = SteadyClock::now();
        l->line(encode_heartbeat_line(l->report_));
      }
      if (l->pid_ > 0) fds.push_back({l->out_, POLLIN, 0});
    }
    poll(fds.data(), fds.size(), 5);
    for (Linkd* l : instances())
      if (l->pid_ > 0)
        l->reader_.read_from(l->out_, [&](std::string_view text, bool) {
          l->lines_.push_back(json::parse(text, nullptr, false));
        });
  }

 private:
  static std::vector<Linkd*>& instances() {
    static std::vector<Linkd*> v;
    return v;
  }
  LinkdSettings settings_;
  std::vector<std::string> env_;
  pid_t pid_ = 0;
  int in_ = -1, out_ = -1;
  LineReader reader_{1 << 20};
  std::vector<json> lines_, seen_;
  bool feeding_ = false;
  NodeReport report_;
  SteadyClock::time_point last_feed_{};
};

bool is_peer(const json& j, const std::string& kind) {
  return j.contains("peer") && j["peer"]["kind"] == kind;
}

// Both sides of a pair on loopback, one link or two, fed as live supervisors feed them.
struct Pair {
  int a1 = free_udp_port(), b1 = free_udp_port();
  std::unique_ptr<Linkd> a, b;
  explicit Pair(Duration dead_after = 300ms, Duration heartbeat = 50ms,
                std::vector<std::string> env_a = {}, std::vector<std::string> env_b = {}) {
    a = std::make_unique<Linkd>(
        settings("web1", "web2", {{addr(a1), addr(b1)}}, dead_after, heartbeat), env_a);
    b = std::make_unique<Linkd>(
        settings("web2", "web1", {{addr(b1), addr(a1)}}, dead_after, heartbeat), env_b);
    REQUIRE(a->wait_key("ready").is_object());
    REQUIRE(b->wait_key("ready").is_object());
    a->feed({"active", 3, true, "master"});
    b->feed({"passive", 2, true, "standby"});
  }
  // Each side hears the other's heartbeat.
  void wait_up() {
    REQUIRE(a->wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
    REQUIRE(b->wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  }
};

// The protocol as a test-side peer speaks it, from a socket the test owns: a way to send
// well-formed, authenticated datagrams in any order, and to capture them.
struct ProtocolPeer {
  std::string name;
  Socket sock;
  int to;  // the linkd's link port
  PeerSession session{1, 150ms, 10ms};
  uint64_t seq = 0;
  SteadyClock::time_point origin = SteadyClock::now();

  ProtocolPeer(std::string n, int port, int linkd_port)
      : name(std::move(n)), sock(port), to(linkd_port) {}
  MonoTime now() const { return std::chrono::duration_cast<MonoTime>(SteadyClock::now() - origin); }
  std::string make(const WireMessage& m, const std::string& rsid) {
    Datagram d;
    d.from = name, d.link = 0, d.sid = session.mine(), d.rsid = rsid, d.seq = ++seq, d.msg = m;
    return seal(d, test_key());
  }
  std::string make(const WireMessage& m) { return make(m, session.peer()); }
  void send(const WireMessage& m) { sock.send_to(to, make(m)); }
  // Answers what arrives for timeout_s; true once the pair is confirmed.
  bool handshake(double timeout_s = 5) {
    auto deadline = SteadyClock::now() + std::chrono::duration<double>(timeout_s);
    while (SteadyClock::now() < deadline && !session.confirmed()) {
      send(heartbeat());
      int from = 0;
      std::string bytes = sock.receive(from, 0.02);
      Datagram d;
      if (bytes.empty() || open_datagram(bytes, test_key(), d) != OpenResult::ok) continue;
      std::vector<PeerSession::Outgoing> out;
      session.admit(d, now(), out);
      for (auto& o : out) sock.send_to(to, make(o.msg, o.rsid));
    }
    return session.confirmed();
  }
  static WireMessage heartbeat() {
    WireMessage m;
    m.kind = WireMessage::heartbeat;
    m.report = {"passive", 1, true, "standby"};
    return m;
  }
  static WireMessage command(uint64_t id, PeerKind k = PeerKind::takeover) {
    WireMessage m;
    m.kind = WireMessage::command;
    m.command_kind = k;
    m.id = id;
    m.report = {"stopping", 4, false, "standby"};
    return m;
  }
};
}  // namespace

TEST_CASE("link lines: every supervisor -> linkd line round-trips through the codec") {
  LinkdSettings s;
  s.node = "web1", s.peer = "web2", s.key_hex = std::string(64, 'a'), s.user = "nobody";
  s.links = {{"127.0.0.1:1", "127.0.0.1:2"}, {"[::1]:3", "[::1]:4"}};
  s.heartbeat = std::chrono::milliseconds(100), s.dead_after = std::chrono::milliseconds(700);
  s.endpoints.http = "127.0.0.1:8080";
  s.incarnation = 0xfeedfacecafebeef;
  std::string err;
  auto c = decode_to_linkd(encode_config_line(s), err);
  REQUIRE_MESSAGE(c, err);
  CHECK(c->kind == ToLinkd::config);
  CHECK(c->settings.node == "web1");
  CHECK(c->settings.links.size() == 2);
  CHECK(c->settings.links[1].peer == "[::1]:4");
  CHECK(c->settings.key_hex == s.key_hex);
  CHECK(c->settings.heartbeat == std::chrono::milliseconds(100));
  CHECK(c->settings.dead_after == std::chrono::milliseconds(700));
  CHECK(c->settings.user == "nobody");
  CHECK(c->settings.incarnation == 0xfeedfacecafebeef);
  CHECK(c->settings.endpoints.http == "127.0.0.1:8080");

  NodeReport r{"active", 7, true, "standby"};
  auto h = decode_to_linkd(encode_heartbeat_line(r), err);
  REQUIRE_MESSAGE(h, err);
  CHECK(h->kind == ToLinkd::heartbeat);
  CHECK(h->report == r);
  auto sd = decode_to_linkd(encode_send_line(PeerKind::quiesce, r), err);
  REQUIRE_MESSAGE(sd, err);
  CHECK(sd->kind == ToLinkd::send);
  CHECK(sd->command == PeerKind::quiesce);
  CHECK(sd->report == r);
  auto st = decode_to_linkd(encode_status_line({{"node", {{"name", "web1"}}}}), err);
  REQUIRE_MESSAGE(st, err);
  CHECK(st->status_doc["node"]["name"] == "web1");
  auto rq = decode_to_linkd(encode_stats_request_line(), err);
  REQUIRE_MESSAGE(rq, err);
  CHECK(rq->kind == ToLinkd::stats);
  // The lease follows interfaces: max(dead_after / 2, 3 ticks), tick = min(50 ms, heartbeat / 2).
  CHECK(supervisor_tick(std::chrono::milliseconds(200)) == std::chrono::milliseconds(50));
  CHECK(supervisor_tick(std::chrono::milliseconds(40)) == std::chrono::milliseconds(20));
  CHECK(supervisor_lease(std::chrono::milliseconds(200), std::chrono::seconds(1)) ==
        std::chrono::milliseconds(500));
  CHECK(supervisor_lease(std::chrono::milliseconds(200), std::chrono::milliseconds(200)) ==
        std::chrono::milliseconds(150));
}

TEST_CASE("a peer's timing other than this node's is put in words, with what it costs") {
  using std::chrono::milliseconds;
  Duration hb = milliseconds(30), dead = milliseconds(700);
  CHECK(timing_mismatch("web2", hb, dead, {}) == "");  // not announced
  CHECK(timing_mismatch("web2", hb, dead, {30'000, 700'000}) == "");
  CHECK(timing_mismatch("web2", hb, dead, {20'000, 600'000}) ==
        "peer web2 runs heartbeat 20ms, dead_after 600ms; this node runs heartbeat 30ms, "
        "dead_after 700ms: set the same on both nodes; the guard's fence is shortened to 635ms");
  CHECK(timing_mismatch("web2", hb, dead, {20'000, 800'000}) ==
        "peer web2 runs heartbeat 20ms, dead_after 800ms; this node runs heartbeat 30ms, "
        "dead_after 700ms: set the same on both nodes");
  CHECK(timing_mismatch("web2", hb, dead, {20'000, 25'000})
            .find("; the peer loses this node between two of its heartbeats; the guard's fence "
                  "is shortened to ") != std::string::npos);
  CHECK(timing_mismatch("web2", hb, dead, {900'000, 2'000'000})
            .find("; this node loses the peer between two of its heartbeats") != std::string::npos);
}

TEST_CASE(
    "the guard's fence comes before the peer can take over, whichever dead_after is shorter") {
  using std::chrono::milliseconds;
  // The peer takes over no sooner than lease + its dead_after - this node's heartbeat.
  auto earliest_takeover = [](Duration hb, Duration dead, Duration peer_dead) {
    return supervisor_lease(hb, dead) + peer_dead - hb;
  };
  CHECK(guard_fence(milliseconds(50), milliseconds(400)) == milliseconds(375));
  CHECK(guard_fence(milliseconds(200), milliseconds(1000), milliseconds(1000)) ==
        milliseconds(900));
  // A peer with a shorter dead_after shortens the fence; a longer one changes nothing.
  CHECK(guard_fence(milliseconds(200), milliseconds(1000), milliseconds(600)) == milliseconds(700));
  CHECK(guard_fence(milliseconds(200), milliseconds(600), milliseconds(1000)) == milliseconds(500));
  for (int hb : {20, 50, 200, 500})
    for (int dead : {100, 150, 400, 1000, 3000})
      for (int peer_dead : {100, 150, 400, 1000, 3000}) {
        if (dead <= hb || peer_dead <= hb) continue;
        Duration h = milliseconds(hb), d = milliseconds(dead), pd = milliseconds(peer_dead);
        CAPTURE(hb);
        CAPTURE(dead);
        CAPTURE(peer_dead);
        CHECK(guard_fence(h, d, pd) > supervisor_lease(h, d));
        CHECK(guard_fence(h, d, pd) < earliest_takeover(h, d, pd));
      }
  // A peer whose dead_after is not longer than this node's heartbeat cannot be fenced in time
  // (it loses this node between heartbeats): the fence is the lease, never less.
  CHECK(guard_fence(milliseconds(200), milliseconds(1000), milliseconds(150)) == milliseconds(500));
}

TEST_CASE("link lines: every linkd -> supervisor line round-trips through the codec") {
  std::string err;
  auto rd = decode_from_linkd(encode_ready_line(2, 65534), err);
  REQUIRE_MESSAGE(rd, err);
  CHECK(rd->kind == FromLinkd::ready);
  CHECK(rd->links == 2);
  CHECK(rd->uid == 65534);
  auto e = decode_from_linkd(encode_error_line("cannot bind \xff"), err);
  REQUIRE_MESSAGE(e, err);
  CHECK(e->message.rfind("cannot bind", 0) == 0);
  auto l = decode_from_linkd(encode_lost_line(), err);
  REQUIRE_MESSAGE(l, err);
  CHECK(l->kind == FromLinkd::lost);
  auto p = decode_from_linkd(
      encode_peer_line({PeerKind::stopped, {"stopping", 3, false, "master"}, {}}), err);
  REQUIRE_MESSAGE(p, err);
  CHECK(p->peer_value.kind == PeerKind::stopped);
  CHECK(p->peer_value.report == NodeReport{"stopping", 3, false, "master"});
  CHECK_FALSE(p->peer_value.timing.known());
  auto h = decode_from_linkd(
      encode_peer_line({PeerKind::heartbeat, {"active", 4, true, "standby"}, {50'000, 400'000}}),
      err);
  REQUIRE_MESSAGE(h, err);
  CHECK(h->peer_value.timing == LinkTiming{50'000, 400'000});
  CHECK(h->peer_value.incarnation == 0);
  auto hi = decode_from_linkd(
      encode_peer_line({PeerKind::quiesce, {"active", 4, true, "master"}, {}, 77}), err);
  REQUIRE_MESSAGE(hi, err);
  CHECK(hi->peer_value.incarnation == 77);
  CHECK(h->peer_value.timing.known());
  // Out of range (past a day, or what would wrap to a negative duration): as if not announced.
  CHECK_FALSE((LinkTiming{50'000, uint64_t(1) << 63}).known());
  CHECK_FALSE((LinkTiming{uint64_t(kMaxDurationUs) + 1, 400'000}).known());
  CHECK((LinkTiming{uint64_t(kMaxDurationUs), uint64_t(kMaxDurationUs)}).known());
  CHECK_FALSE(decode_from_linkd(R"({"peer":{"kind":"heartbeat","state":"active","epoch":1,)"
                                R"("healthy":true,"role":"master","dead_after_us":"1s"}})",
                                err));
  CHECK(err.find("dead_after_us") != std::string::npos);
  LinkdStats s;
  s.links.push_back({"127.0.0.1:1", "127.0.0.1:2", true, 12.5, std::nullopt, 4, 5, 6});
  s.datagrams = {{"ok", 3}, {"bad_tag", 9}};
  s.kernel_drops = 6, s.peer_alive = true, s.supervisor_fresh = true, s.commands_pending = 1;
  auto sl = decode_from_linkd(encode_stats_line(s), err);
  REQUIRE_MESSAGE(sl, err);
  auto& t = sl->stats_value;
  REQUIRE(t.links.size() == 1);
  CHECK(t.links[0].up);
  CHECK(t.links[0].last_heard_ms == 12.5);
  CHECK_FALSE(t.links[0].rtt_ms);
  CHECK(t.links[0].kernel_drops == 6);
  CHECK(t.datagrams.at("bad_tag") == 9);
  CHECK(t.kernel_drops == 6);
  CHECK(t.peer_alive);
  CHECK(t.supervisor_fresh);
  CHECK(t.commands_pending == 1);
}

TEST_CASE("link lines: wrong types and shapes are errors naming the field, never exceptions") {
  struct Case {
    const char* line;
    const char* error;
  };
  Case to_linkd[] = {
      {"", "not JSON"},
      {"[1]", "expected a JSON object"},
      {R"({"heartbeat":{},"send":{}})", "exactly one key"},
      {R"({"hello":1})", "unknown kind \"hello\""},
      {R"({"heartbeat":{"state":5,"epoch":1,"healthy":true,"role":"master"}})",
       "heartbeat line: field \"state\" must be a string"},
      {R"({"heartbeat":{"state":"active","epoch":-1,"healthy":true,"role":"master"}})",
       "field \"epoch\" must be a non-negative integer"},
      {R"({"heartbeat":{"state":"active","epoch":1,"healthy":"yes","role":"master"}})",
       "field \"healthy\" must be true or false"},
      {R"({"heartbeat":{"state":"active","epoch":1,"healthy":true}})", "missing field \"role\""},
      {R"({"heartbeat":{"state":"active","epoch":1,"healthy":true,"role":"boss"}})",
       "\"role\" must be \"master\" or \"standby\""},
      {R"({"heartbeat":{"state":"Active!","epoch":1,"healthy":true,"role":"master"}})",
       "not a node state name"},
      {R"({"send":{"kind":"heartbeat","state":"active","epoch":1,"healthy":true,"role":"master"}})",
       "send line: field \"kind\" must be \"takeover\""},
      {R"({"status":[]})", "status line: expected a JSON object"},
      {R"({"config":{"node":"a","peer":"b","links":[],"key":"00","heartbeat_us":1,"dead_after_us":2}})",
       "at least one link"},
      {R"({"config":{"node":"a","peer":"b","links":[{"listen":1}],"key":"00","heartbeat_us":1,"dead_after_us":2}})",
       "config line: links[0]: field \"listen\" must be a string"},
      {R"({"config":{"node":"a","peer":"b","links":[{"listen":"x","peer":"y"}],"key":"0g","heartbeat_us":1,"dead_after_us":2}})",
       "field \"key\" must be hexadecimal"},
      {R"({"config":{"node":"a","peer":"b","links":[{"listen":"x","peer":"y"}],"key":"00","heartbeat_us":0,"dead_after_us":2}})",
       "field \"heartbeat_us\" must be between"},
      {R"({"config":{"node":"a","peer":"a","links":[{"listen":"x","peer":"y"}],"key":"00","heartbeat_us":1,"dead_after_us":2}})",
       "must differ"},
      {R"({"config":{"node":"a","peer":"b","links":[{"listen":"x","peer":"y"}],"key":"00","heartbeat_us":1,"dead_after_us":2,"endpoints":{"http":80}}})",
       "config line: endpoints: field \"http\" must be a string"},
  };
  for (auto& c : to_linkd) {
    std::string err;
    CAPTURE(c.line);
    CHECK_FALSE(decode_to_linkd(c.line, err));
    CHECK_MESSAGE(err.find(c.error) != std::string::npos, err);
  }
  Case from_linkd[] = {
      {"{\"error\":", "not JSON"},
      {R"({"ready":{"links":"2"}})", "ready line: field \"links\" must be a non-negative integer"},
      {R"({"error":5})", "error line: expected a string"},
      {R"({"lost":false})", "lost line: expected true"},
      {R"({"peer":{"kind":"hello","state":"active","epoch":1,"healthy":true,"role":"master"}})",
       "peer line: field \"kind\" is not a peer message kind"},
      {R"({"peer":{"kind":"takeover","state":"active","epoch":1.5,"healthy":true,"role":"master"}})",
       "field \"epoch\" must be a non-negative integer"},
      {R"({"stats":{"links":[{"listen":"a","peer":"b","up":1}],"datagrams":{},"peer_alive":true}})",
       "stats line: links[0]: field \"up\" must be true or false"},
      {R"({"stats":{"links":[],"datagrams":{"ok":-1},"peer_alive":true}})",
       "stats line: datagrams: field \"ok\" must be a non-negative integer"},
      {R"({"stats":{"links":[{"listen":"a","peer":"b","up":true,"rtt_ms":"x"}],"datagrams":{},"peer_alive":true}})",
       "field \"rtt_ms\" must be a number"},
  };
  for (auto& c : from_linkd) {
    std::string err;
    CAPTURE(c.line);
    CHECK_FALSE(decode_from_linkd(c.line, err));
    CHECK_MESSAGE(err.find(c.error) != std::string::npos, err);
  }
  // Bytes that are not UTF-8 anywhere in a line are an error, not an abort.
  std::string err;
  CHECK_FALSE(decode_to_linkd("{\"heartbeat\":{\"state\":\"\xff\"}}", err));
  CHECK_FALSE(decode_from_linkd("{\"error\":\"\xc3\"}", err));
}

TEST_CASE("datagrams: sealed, opened, and refused when forged, oversized or malformed") {
  Datagram d;
  d.from = "web1", d.link = 1, d.sid = random_hex(16), d.rsid = "", d.seq = 9;
  d.msg.kind = WireMessage::command;
  d.msg.command_kind = PeerKind::quiesce;
  d.msg.id = 4;
  d.msg.report = {"active", 8, true, "master"};
  std::string bytes = seal(d, test_key());
  Datagram out;
  REQUIRE(open_datagram(bytes, test_key(), out) == OpenResult::ok);
  CHECK(out.from == "web1");
  CHECK(out.link == 1);
  CHECK(out.sid == d.sid);
  CHECK(out.seq == 9);
  CHECK(out.msg.kind == WireMessage::command);
  CHECK(out.msg.command_kind == PeerKind::quiesce);
  CHECK(out.msg.id == 4);
  CHECK(out.msg.report == NodeReport{"active", 8, true, "master"});
  // A heartbeat announces its sender's heartbeat and dead_after.
  Datagram hb = d;
  hb.msg = {};
  hb.msg.kind = WireMessage::heartbeat;
  hb.msg.report = {"passive", 8, true, "standby"};
  hb.msg.t = 77;
  hb.msg.timing = {20'000, 150'000};
  Datagram hb_out;
  REQUIRE(open_datagram(seal(hb, test_key()), test_key(), hb_out) == OpenResult::ok);
  CHECK(hb_out.msg.timing == LinkTiming{20'000, 150'000});
  CHECK(hb_out.msg.t == 77);
  // No timestamp, no boot time: nothing in a datagram reads a wall clock.
  CHECK(bytes.find("\"ts\"") == std::string::npos);
  CHECK(bytes.find("\"boot\"") == std::string::npos);

  SecretKey other;
  std::string err;
  REQUIRE(other.load_hex(std::string(64, 'b'), err));
  CHECK(open_datagram(bytes, other, out) == OpenResult::bad_tag);
  std::string flipped = bytes;
  flipped[5] ^= 1;
  CHECK(open_datagram(flipped, test_key(), out) == OpenResult::bad_tag);
  CHECK(open_datagram("short", test_key(), out) == OpenResult::bad_tag);
  CHECK(open_datagram(std::string(40000, 'x'), test_key(), out) == OpenResult::oversized);

  // Authentic bytes that make no sense: each is refused with the field named, never thrown.
  auto sealed = [](const std::string& body) {
    unsigned char tag[kTagBytes];
    test_key().tag(body, tag);
    return body + std::string(reinterpret_cast<char*>(tag), kTagBytes);
  };
  std::string sid = random_hex(16);
  struct Case {
    std::string body, error;
  };
  std::string head = R"({"v":2,"from":"web1","link":0,"sid":")" + sid + R"(","rsid":"","seq":1,)";
  Case cases[] = {
      {"not json", "datagram: line 1"},
      {"[]", "expected a JSON object"},
      {R"({"v":1})", "\"v\" must be 2"},
      {R"({"v":2,"from":5})", "field \"from\" must be a string"},
      {head + R"("msg":[]})", "field \"msg\" must be an object"},
      {R"({"v":2,"from":"web1","link":0,"sid":"zz","rsid":"","seq":1,"msg":{}})",
       "\"sid\" is not a session id"},
      {R"({"v":2,"from":"web1","link":-1,"sid":")" + sid + R"(","rsid":"","seq":1,"msg":{}})",
       "\"link\" must be a non-negative integer"},
      {head + R"("msg":{"kind":"boom"}})", "\"kind\" is not a message kind"},
      {head +
           R"("msg":{"kind":"heartbeat","state":"active","epoch":1,"healthy":true,"role":"x","t":1}})",
       "\"role\" must be"},
      {head +
           R"("msg":{"kind":"heartbeat","state":"active","epoch":1,"healthy":true,"role":"master"}})",
       "missing field \"t\""},
      {head +
           R"("msg":{"kind":"command","command":"heartbeat","id":1,"state":"active","epoch":1,"healthy":true,"role":"master"}})",
       "\"command\" is not takeover"},
      {head +
           R"("msg":{"kind":"command","command":"takeover","id":0,"state":"active","epoch":1,"healthy":true,"role":"master"}})",
       "\"id\" must be positive"},
      {head + R"("msg":{"kind":"challenge","nonce":"abc"}})", "\"nonce\" is not a nonce"},
      {head + R"("msg":{"kind":"ack","id":"1"}})", "\"id\" must be a non-negative integer"},
      {head + "\"msg\":{\"kind\":\"pong\",\"t\":1,\"x\":\"\xff\"}}", ""},  // bad UTF-8, ignored
  };
  for (auto& c : cases) {
    CAPTURE(c.body);
    std::string why;
    OpenResult r = open_datagram(sealed(c.body), test_key(), out, &why);
    if (c.error.empty()) {
      CHECK(r != OpenResult::bad_tag);
      continue;
    }
    CHECK(r == OpenResult::malformed);
    CHECK_MESSAGE(why.find(c.error) != std::string::npos, why);
  }

  Key k;
  CHECK_FALSE(parse_key_hex("abcd", k, err));
  CHECK(err.find("at least 32") != std::string::npos);
  CHECK_FALSE(parse_key_hex("zz", k, err));
  CHECK(parse_key_hex(new_key_hex(), k, err));
  CHECK(k.size() == 64);
  CHECK(key_hex(k).size() == 128);
  SecretKey s;
  CHECK_FALSE(s.load_hex("abcd", err));
  CHECK(err.find("32 to 1024 bytes") != std::string::npos);
  CHECK_FALSE(s.load_hex(std::string(63, 'a') + "g", err));
  CHECK(err.find("not hexadecimal") != std::string::npos);
}

namespace {
// One side of a pair of PeerSessions, on a monotonic clock the test moves by hand.
struct Side {
  std::string name;
  std::unique_ptr<PeerSession> session;
  uint64_t seq = 0;
  explicit Side(std::string n) : name(std::move(n)) { restart(); }
  void restart() {
    session = std::make_unique<PeerSession>(2, 150ms, 10ms);
    seq = 0;
  }
  Datagram make(const WireMessage& m, const std::string& rsid, uint64_t link = 0) {
    Datagram d;
    d.from = name, d.link = link, d.sid = session->mine(), d.rsid = rsid, d.seq = ++seq;
    d.msg = m;
    return d;
  }
  Datagram data(const WireMessage& m, uint64_t link = 0) { return make(m, session->peer(), link); }
};

// Delivers d to `to`, then every handshake datagram back and forth until none is left.
PeerSession::Verdict deliver(Side& from, Side& to, const Datagram& d, MonoTime now) {
  std::vector<PeerSession::Outgoing> out;
  auto v = to.session->admit(d, now, out);
  for (int round = 0; round < 10 && !out.empty(); ++round) {
    std::vector<PeerSession::Outgoing> back;
    for (auto& o : out) from.session->admit(to.make(o.msg, o.rsid), now, back);
    out.clear();
    for (auto& o : back) to.session->admit(from.make(o.msg, o.rsid), now, out);
  }
  return v;
}

WireMessage takeover(uint64_t id) {
  WireMessage m;
  m.kind = WireMessage::command;
  m.command_kind = PeerKind::takeover;
  m.id = id;
  m.report = {"stopping", 2, false, "master"};
  return m;
}

WireMessage beat() {
  WireMessage m;
  m.kind = WireMessage::heartbeat;
  m.report = {"active", 2, true, "master"};
  return m;
}
using V = PeerSession::Verdict;
}  // namespace

TEST_CASE("sessions: data counts only inside a pair confirmed by challenge and response") {
  Side a("web1"), b("web2");
  MonoTime t = 1000ms;
  CHECK_FALSE(a.session->confirmed());
  // The first heartbeat is from a session b has never seen: it starts the handshake.
  CHECK(deliver(a, b, a.data(beat()), t) == V::unconfirmed);
  CHECK(a.session->peer() == b.session->mine());
  CHECK(b.session->peer() == a.session->mine());
  CHECK(deliver(a, b, a.data(takeover(1)), t) == V::accept);
  CHECK(deliver(b, a, b.data(beat()), t) == V::accept);
  // In order per link, strictly: a repeat or an older one is a replay.
  Datagram d = a.data(beat());
  CHECK(deliver(a, b, d, t) == V::accept);
  CHECK(deliver(a, b, d, t) == V::replay);
  Datagram older = a.data(beat(), 1), newer = a.data(beat(), 1);
  CHECK(deliver(a, b, newer, t) == V::accept);
  CHECK(deliver(a, b, older, t) == V::replay);
  // Links keep their own order: link 0 is not held back by link 1 being ahead.
  CHECK(deliver(a, b, a.data(beat(), 0), t) == V::accept);
  // No wall clock anywhere: a session works the same whatever the monotonic origin.
  Side c("web1"), e("web2");
  MonoTime far = std::chrono::hours(24 * 365 * 30);
  CHECK(deliver(c, e, c.data(beat()), far) == V::unconfirmed);
  CHECK(deliver(c, e, c.data(takeover(1)), far) == V::accept);
}

TEST_CASE("sessions: a replay after a restart of either side is never accepted") {
  Side a("web1"), b("web2");
  MonoTime t = 1000ms;
  deliver(a, b, a.data(beat()), t);
  Datagram captured = a.data(takeover(1));
  REQUIRE(deliver(a, b, captured, t) == V::accept);
  Datagram captured_beat = a.data(beat());
  REQUIRE(deliver(a, b, captured_beat, t) == V::accept);

  SUBCASE("the receiver restarts") {
    b.restart();
    // Refused, though it makes b ask a (alive) to prove its session: the pair forms again.
    CHECK(deliver(a, b, captured, t) == V::unconfirmed);
    REQUIRE(b.session->peer() == a.session->mine());
    REQUIRE(a.session->peer() == b.session->mine());
    CHECK(deliver(a, b, a.data(beat()), t + 10ms) == V::accept);
    // The captures name b's old session.
    CHECK(deliver(a, b, captured, t + 10ms) == V::stale_session);
    CHECK(deliver(a, b, captured_beat, t + 10ms) == V::stale_session);
  }
  SUBCASE("the sender restarts") {
    a.restart();
    CHECK(deliver(a, b, a.data(beat()), t + 10ms) == V::unconfirmed);
    REQUIRE(b.session->peer() == a.session->mine());
    CHECK(deliver(a, b, captured, t + 10ms) == V::unconfirmed);  // a's old session: refused
    CHECK(deliver(a, b, a.data(takeover(1)), t + 10ms) == V::accept);
  }
  SUBCASE("the receiver drops the pair after silence") {
    b.session->drop_peer();
    CHECK(deliver(a, b, captured, t + 500ms) == V::unconfirmed);
  }
}

TEST_CASE("sessions: old handshakes cannot bring back an old session; challenges expire") {
  Side a("web1"), b("web2");
  MonoTime t = 1000ms;
  // b challenges a's first session; a's response is captured (and lost) on the way.
  std::vector<PeerSession::Outgoing> out;
  b.session->admit(a.data(beat()), t, out);
  REQUIRE(out.size() == 1);
  REQUIRE(out[0].msg.kind == WireMessage::challenge);
  std::vector<PeerSession::Outgoing> back;
  a.session->admit(b.make(out[0].msg, out[0].rsid), t, back);
  REQUIRE(back.size() == 2);  // a's response, and a's own challenge to b
  Datagram old_response = a.make(back[0].msg, back[0].rsid);
  REQUIRE(old_response.msg.kind == WireMessage::response);
  Datagram old_takeover = a.make(takeover(1), b.session->mine());

  SUBCASE("a response too late is refused") {
    CHECK(b.session->admit(old_response, t + 400ms, out) == V::handshake);
    CHECK_FALSE(b.session->confirmed());
  }
  SUBCASE("a restarted peer confirmed since: the old response confirms nothing") {
    std::string old_session = a.session->mine();
    a.restart();
    deliver(a, b, a.data(beat()), t + 20ms);
    REQUIRE(b.session->peer() == a.session->mine());
    CHECK(b.session->admit(old_response, t + 30ms, out) == V::handshake);
    CHECK(b.session->peer() == a.session->mine());
    CHECK(b.session->peer() != old_session);
    CHECK(b.session->admit(old_takeover, t + 30ms, out) == V::unconfirmed);
  }
  SUBCASE("a response to somebody else's session confirms nothing") {
    Datagram other = old_response;
    other.rsid = random_hex(16);
    CHECK(b.session->admit(other, t, out) == V::handshake);
    CHECK_FALSE(b.session->confirmed());
  }
  SUBCASE("in time, it confirms; what a sent before its response stays refused") {
    CHECK(b.session->admit(old_response, t + 100ms, out) == V::handshake);
    CHECK(b.session->peer() == a.session->mine());
    CHECK(b.session->admit(old_takeover, t + 100ms, out) == V::accept);  // sent after it
    Datagram before = old_response;
    before.msg = takeover(2);
    before.seq = old_response.seq - 1;
    CHECK(b.session->admit(before, t + 100ms, out) == V::replay);
  }
}

TEST_CASE("sessions: replayed challenges are answered at a bounded rate") {
  Side a("web1"), b("web2");
  std::vector<PeerSession::Outgoing> out;
  WireMessage ch;
  ch.kind = WireMessage::challenge;
  ch.nonce = random_hex(16);
  Datagram d = a.make(ch, b.session->mine());
  for (int i = 0; i < 100; ++i) b.session->admit(d, 1000ms, out);
  int responses = 0;
  for (auto& o : out) responses += o.msg.kind == WireMessage::response;
  CHECK(responses == 1);
  b.session->admit(d, 1020ms, out);  // once the rate limit allows, answered again
  responses = 0;
  for (auto& o : out) responses += o.msg.kind == WireMessage::response;
  CHECK(responses == 2);
}

TEST_CASE("command inbox: each id passed on once, whatever the order") {
  CommandInbox in;
  CHECK(in.first_time(3));
  CHECK(in.first_time(1));
  CHECK_FALSE(in.first_time(3));
  CHECK(in.first_time(2));
  CHECK_FALSE(in.first_time(1));
  for (uint64_t id = 4; id < 3000; ++id) REQUIRE(in.first_time(id));
  CHECK_FALSE(in.first_time(5));  // forgotten individually, still refused under the floor
  CHECK_FALSE(in.first_time(2999));
  in.reset();
  CHECK(in.first_time(1));
}

TEST_CASE("two linkd processes: heartbeats with the role, commands once over two links, loss") {
  int a1 = free_udp_port(), a2 = free_udp_port(), b1 = free_udp_port(), b2 = free_udp_port();
  LinkdSettings sa = settings("web1", "web2", {{addr(a1), addr(b1)}, {addr(a2), addr(b2)}});
  sa.incarnation = 4242;  // web1's supervisor run: in every heartbeat and command
  Linkd a(sa);
  Linkd b(settings("web2", "web1", {{addr(b1), addr(a1)}, {addr(b2), addr(a2)}}));
  REQUIRE(a.wait_key("ready").is_object());
  REQUIRE(b.wait_key("ready").is_object());
  a.feed({"active", 3, true, "master"});
  b.feed({"passive", 2, true, "standby"});
  json p = b.wait_line([](const json& j) { return is_peer(j, "heartbeat"); });
  REQUIRE(p.is_object());
  CHECK(p["peer"]["state"] == "active");
  CHECK(p["peer"]["epoch"] == 3);
  CHECK(p["peer"]["healthy"] == true);
  CHECK(p["peer"]["role"] == "master");
  // With the timing a's linkd runs (settings' defaults), for b's supervisor to compare.
  CHECK(p["peer"]["heartbeat_us"] == 50'000);
  CHECK(p["peer"]["dead_after_us"] == 300'000);
  CHECK(p["peer"]["incarnation"] == 4242);

  a.line(encode_send_line(PeerKind::takeover, {"stopping", 3, false, "master"}));
  json t = b.wait_line([](const json& j) { return is_peer(j, "takeover"); });
  REQUIRE(t.is_object());
  CHECK(t["peer"]["state"] == "stopping");
  CHECK(t["peer"]["incarnation"] == 4242);
  // Sent on both links and retried until acknowledged, it is passed on once.
  REQUIRE(vt::eventually([&] { return a.stats()["commands_pending"] == 0; }));
  b.pass(0.3);
  CHECK(b.count_peer("takeover") == 1);

  json st = a.stats();
  CHECK(st["peer_alive"] == true);
  CHECK(st["supervisor_fresh"] == true);
  REQUIRE(st["links"].size() == 2);
  for (auto& l : st["links"]) {
    CHECK(l["up"] == true);
    CHECK(l["rtt_ms"].is_number());
  }
  CHECK(st["datagrams"]["ok"].get<int>() > 0);

  b.kill_now();
  json lost = a.wait_key("lost", 3);
  REQUIRE(lost.is_object());
  CHECK(a.stats()["peer_alive"] == false);
}

TEST_CASE("a takeover not yet acknowledged is dropped once this node serves again") {
  // Nobody answers at the peer's address: the command stays pending, retried every tick.
  int a1 = free_udp_port(), pb = free_udp_port();
  Linkd a(settings("web1", "web2", {{addr(a1), addr(pb)}}));
  REQUIRE(a.wait_key("ready").is_object());
  a.feed({"passive", 3, true, "master"});
  a.line(encode_send_line(PeerKind::takeover, {"passive", 3, true, "master"}));
  REQUIRE(vt::eventually([&] { return a.stats()["commands_pending"] == 1; }));
  a.feed({"passive", 3, false, "master"});  // still not serving: still pending
  a.pass(0.1);
  CHECK(a.stats()["commands_pending"] == 1);
  // It gave up waiting and serves: the takeover, delivered later to the peer or to its next
  // incarnation, would start a second node.
  a.feed({"starting", 4, true, "master"});
  CHECK(vt::eventually([&] { return a.stats()["commands_pending"] == 0; }));
}

TEST_CASE("hostile datagrams at a link port are counted by verdict, never acted on") {
  int a1 = free_udp_port(), pb = free_udp_port();
  Linkd a(settings("web1", "web2", {{addr(a1), addr(pb)}}));
  REQUIRE(a.wait_key("ready").is_object());
  a.feed({"passive", 1, true, "master"});
  ProtocolPeer peer("web2", pb, a1);  // the configured peer's own address
  REQUIRE(peer.handshake());

  // Commands arriving out of order, and again, reach the supervisor once each.
  for (uint64_t id : {3, 1, 2, 3, 1, 2}) peer.send(ProtocolPeer::command(id));
  REQUIRE(a.wait_line([&](const json&) { return a.count_peer("takeover") == 3; }, 5).is_object());

  std::string captured = peer.make(ProtocolPeer::heartbeat());
  peer.sock.send_to(a1, captured);
  peer.sock.send_to(a1, captured);  // replayed
  SecretKey wrong;
  std::string err;
  REQUIRE(wrong.load_hex(std::string(64, 'b'), err));
  Datagram forged;
  forged.from = "web2", forged.sid = peer.session.mine(), forged.rsid = peer.session.peer();
  forged.seq = 1000, forged.msg = ProtocolPeer::command(9);
  peer.sock.send_to(a1, seal(forged, wrong));  // not our key
  Datagram other = forged;
  other.from = "web3";
  peer.sock.send_to(a1, seal(other, test_key()));  // another sender with the key
  other.from = "web1";
  peer.sock.send_to(a1, seal(other, test_key()));  // a's own datagram reflected
  other.from = "web2", other.link = 1;
  peer.sock.send_to(a1, seal(other, test_key()));  // sealed for another link
  other.link = 0, other.sid = random_hex(16);
  peer.sock.send_to(a1, seal(other, test_key()));  // a session a never confirmed
  other.sid = peer.session.mine(), other.rsid = random_hex(16);
  peer.sock.send_to(a1, seal(other, test_key()));  // addressed to another session of a's
  std::string junk = "{\"v\":2}";
  unsigned char tag[kTagBytes];
  test_key().tag(junk, tag);
  peer.sock.send_to(a1, junk + std::string(reinterpret_cast<char*>(tag), kTagBytes));
  std::string garbage(300, '\0');
  randombytes_buf(garbage.data(), garbage.size());
  peer.sock.send_to(a1, garbage);
  peer.sock.send_to(a1, std::string(9000, 'x'));  // larger than any datagram of ours
  Socket stranger;
  for (int i = 0; i < 3; ++i) stranger.send_to(a1, peer.make(ProtocolPeer::command(10 + i)));

  json c;
  REQUIRE(vt::eventually([&] {
    c = a.stats()["datagrams"];
    return c["foreign_address"] == 3 && c["oversized"] == 1 && c["bad_tag"] == 2 &&
           c["malformed"] == 1 && c["wrong_sender"] == 2 && c["wrong_link"] == 1 &&
           c["replay"].get<int>() >= 1 && c["unconfirmed"].get<int>() >= 1 &&
           c["stale_session"].get<int>() >= 1;
  }));
  a.pass(0.1);
  CHECK(a.count_peer("takeover") == 3);
  CHECK(a.count([](const json& j) { return j.contains("peer") && j["peer"]["epoch"] == 4; }) == 3);
}

namespace {
// A relay between two linkd processes, in place of the network: each side's configured peer
// address is the relay's. It forwards everything and keeps a copy, as an eavesdropper would;
// a datagram is signed, not encrypted, so the copy can be read and replayed.
struct Relay {
  Socket sock;
  int a, b;
  std::mutex mu;
  std::vector<std::pair<int, std::string>> seen;  // (destination port, bytes)
  std::atomic<bool> stop{false};
  std::thread thread;
  Relay(int port, int a_port, int b_port) : sock(port), a(a_port), b(b_port) {
    thread = std::thread([this] { run(); });
  }
  ~Relay() {
    stop = true;
    thread.join();
  }
  void run() {
    auto deadline = SteadyClock::now() + 240s;
    while (!stop && SteadyClock::now() < deadline) {
      int from = 0;
      std::string bytes = sock.receive(from, 0.01);
      int to = from == a ? b : from == b ? a : 0;
      if (bytes.empty() || to == 0) continue;
      {
        std::lock_guard<std::mutex> lock(mu);
        if (seen.size() < 100000) seen.emplace_back(to, bytes);
      }
      sock.send_to(to, bytes);
    }
  }
  // Copies of datagrams sent to port `to` that carry a command of this kind.
  std::vector<std::string> commands(int to, PeerKind kind) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> out;
    Datagram d;
    for (auto& [port, bytes] : seen)
      if (port == to && open_datagram(bytes, test_key(), d) == OpenResult::ok &&
          d.msg.kind == WireMessage::command && d.msg.command_kind == kind)
        out.push_back(bytes);
    return out;
  }
  // Every copy sent to port `to`.
  std::vector<std::string> all(int to) {
    std::lock_guard<std::mutex> lock(mu);
    std::vector<std::string> out;
    for (auto& [port, bytes] : seen)
      if (port == to) out.push_back(bytes);
    return out;
  }
};

uint64_t refused(Linkd& l) {
  json c = l.stats()["datagrams"];
  return c["unconfirmed"].get<uint64_t>() + c["stale_session"].get<uint64_t>() +
         c["replay"].get<uint64_t>();
}
}  // namespace

TEST_CASE("a captured command replayed after a restart of either linkd is never acted on") {
  int a1 = free_udp_port(), b1 = free_udp_port(), px = free_udp_port();
  Relay relay(px, a1, b1);
  Linkd a(settings("web1", "web2", {{addr(a1), addr(px)}}, 1s));
  Linkd b(settings("web2", "web1", {{addr(b1), addr(px)}}, 1s));
  REQUIRE(a.wait_key("ready").is_object());
  REQUIRE(b.wait_key("ready").is_object());
  a.feed({"active", 3, true, "master"});
  b.feed({"passive", 2, true, "standby"});
  REQUIRE(b.wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  a.line(encode_send_line(PeerKind::takeover, {"stopping", 3, false, "master"}));
  REQUIRE(b.wait_line([](const json& j) { return is_peer(j, "takeover"); }).is_object());
  REQUIRE(vt::eventually([&] { return a.stats()["commands_pending"] == 0; }));
  auto takeovers = relay.commands(b1, PeerKind::takeover);
  REQUIRE(!takeovers.empty());
  // Replayed into the same pair, the copies are refused too.
  uint64_t before = refused(b);
  for (auto& t : takeovers) relay.sock.send_to(b1, t);
  REQUIRE(vt::eventually([&] { return refused(b) >= before + takeovers.size(); }));
  CHECK(b.count_peer("takeover") == 1);

  // The receiver restarts: its new session was never in any captured datagram.
  b.restart();
  REQUIRE(b.wait_key("ready").is_object());
  b.feed({"passive", 2, true, "standby"});
  REQUIRE(b.wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  before = refused(b);
  for (auto& t : takeovers) relay.sock.send_to(b1, t);
  REQUIRE(vt::eventually([&] { return refused(b) >= before + takeovers.size(); }));
  b.pass(0.2);
  CHECK(b.count_peer("takeover") == 0);

  // A new command inside the new pair is delivered; then the sender restarts.
  a.line(encode_send_line(PeerKind::quiesce, {"active", 3, true, "master"}));
  REQUIRE(b.wait_line([](const json& j) { return is_peer(j, "quiesce"); }).is_object());
  REQUIRE(vt::eventually([&] { return a.stats()["commands_pending"] == 0; }));
  auto quiesces = relay.commands(b1, PeerKind::quiesce);
  REQUIRE(!quiesces.empty());
  a.restart();
  REQUIRE(a.wait_key("ready").is_object());
  a.feed({"active", 3, true, "master"});
  REQUIRE(a.wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  // Everything ever captured, handshakes included, replayed at the restarted pair.
  before = refused(b);
  auto everything = relay.all(b1);
  for (auto& d : everything) relay.sock.send_to(b1, d);
  REQUIRE(
      vt::eventually([&] { return refused(b) >= before + takeovers.size() + quiesces.size(); }));
  b.pass(0.3);
  CHECK(b.count_peer("takeover") == 0);
  CHECK(b.count_peer("quiesce") == 1);
  CHECK(b.count_lost() == 0);  // and the replays did not break the live pair
  CHECK(a.count_lost() == 0);
  // The live pair still carries commands.
  a.line(encode_send_line(PeerKind::stopped, {"passive", 3, true, "master"}));
  REQUIRE(b.wait_line([](const json& j) { return is_peer(j, "stopped"); }).is_object());
}

namespace {
const char* kFaketimeLib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

// The environment that runs a process under libfaketime, its wall clock offset by what `file`
// says (re-read on every call, so the test can step it); the monotonic clock is left alone,
// as a real clock step leaves it.
std::vector<std::string> faketime_env(const std::string& file) {
  return {cat("LD_PRELOAD=", kFaketimeLib), "FAKETIME_TIMESTAMP_FILE=" + file,
          "FAKETIME_NO_CACHE=1", "FAKETIME_DONT_FAKE_MONOTONIC=1",
          "ASAN_OPTIONS=verify_asan_link_order=0:detect_leaks=0"};
}

// Whether libfaketime really moves a process's wall clock here.
bool faketime_works(const std::string& file) {
  if (access(kFaketimeLib, R_OK) != 0) return false;
  vt::write_file(file, "-2h\n");
  std::string cmd = "env";
  for (auto& e : faketime_env(file)) cmd += " " + e;
  cmd += " date +%s";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return false;
  long long shown = 0;
  bool read = fscanf(p, "%lld", &shown) == 1;
  pclose(p);
  return read && std::llabs(static_cast<long long>(time(nullptr)) - 7200 - shown) < 60;
}
}  // namespace

TEST_CASE("wall-clock steps on either side, back and forth by hours, change nothing") {
  vt::Node dir;  // a temporary directory
  std::string fa = dir.path("clock-a"), fb = dir.path("clock-b");
  if (!faketime_works(fa)) {
    MESSAGE("libfaketime (Debian package faketime) is not usable here; test skipped");
    return;
  }
  vt::write_file(fa, "-2h\n");
  vt::write_file(fb, "+3h\n");
  Pair p(1s, 50ms, faketime_env(fa), faketime_env(fb));
  p.wait_up();
  p.a->line(encode_send_line(PeerKind::takeover, {"stopping", 3, false, "master"}));
  REQUIRE(p.b->wait_line([](const json& j) { return is_peer(j, "takeover"); }).is_object());
  // Step both clocks the other way, by hours, while the pair runs.
  vt::write_file(fa, "+5h\n");
  vt::write_file(fb, "-4h\n");
  p.b->line(encode_send_line(PeerKind::quiesce, {"passive", 2, true, "standby"}));
  REQUIRE(p.a->wait_line([](const json& j) { return is_peer(j, "quiesce"); }).is_object());
  p.a->pass(2.5);  // more than twice dead_after
  CHECK(p.a->count_lost() == 0);
  CHECK(p.b->count_lost() == 0);
  // A restart of the side whose clock went back ten hours: the peer takes it back at once.
  vt::write_file(fa, "-10h\n");
  p.a->restart();
  REQUIRE(p.a->wait_key("ready").is_object());
  p.a->feed({"active", 3, true, "master"});
  REQUIRE(p.a->wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  p.a->line(encode_send_line(PeerKind::stopped, {"passive", 3, true, "master"}));
  REQUIRE(p.b->wait_line([](const json& j) { return is_peer(j, "stopped"); }).is_object());
  CHECK(p.b->count_lost() == 0);
  CHECK(p.b->stats()["peer_alive"] == true);
}

TEST_CASE("a stalled linkd reads what waits in its sockets before declaring the peer lost") {
  Pair p(300ms, 50ms);
  p.wait_up();
  p.b->pass(0.3);
  REQUIRE(kill(p.a->pid(), SIGSTOP) == 0);
  // The peer goes on heartbeating for three times dead_after; it loses a, which is right.
  REQUIRE(p.b->wait_key("lost", 5).is_object());
  p.b->pass(0.6);
  REQUIRE(kill(p.a->pid(), SIGCONT) == 0);
  // a wakes with its silence timer long expired and heartbeats in its socket: not lost.
  p.a->pass(1.0);
  CHECK(p.a->count_lost() == 0);
  CHECK(p.a->stats()["peer_alive"] == true);
  // And the pair is whole again: b hears a.
  REQUIRE(p.b->wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
}

TEST_CASE(
    "the lease: a supervisor that stops writing is lost at the peer within lease + dead_after") {
  Duration dead_after = 300ms, heartbeat = 50ms;
  Pair p(dead_after, heartbeat);
  p.wait_up();
  p.a->pass(1.0);  // fed, a stays alive at b
  CHECK(p.b->count_lost() == 0);
  p.a->stop_feeding();
  auto last_line = p.a->last_feed();
  REQUIRE(p.b->wait_key("lost", 5).is_object());
  auto took = SteadyClock::now() - last_line;
  Duration bound = supervisor_lease(heartbeat, dead_after) + dead_after;
  MESSAGE("lost at the peer ", std::chrono::duration<double, std::milli>(took).count(),
          " ms after the last line (lease + dead_after = ", format_duration(bound), ")");
  CHECK(took >= dead_after);  // the peer waited dead_after of silence, no less
  CHECK(took < bound + 1s);   // with room for a loaded machine's scheduling
  json stale = p.a->wait_line(
      [](const json& j) { return j.contains("stats") && j["stats"]["supervisor_fresh"] == false; });
  CHECK(stale.is_object());
  // Lines come again: heartbeats resume and the peer hears a again.
  p.a->feed({"active", 3, true, "master"});
  REQUIRE(p.b->wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
}

namespace {
// A child process that sends datagrams from fd to port as fast as it can until the deadline.
pid_t flooder(int fd, int port, double seconds, bool authentic_copy, const std::string& copy) {
  pid_t pid = fork();
  if (pid != 0) return pid;
  setpriority(PRIO_PROCESS, 0, 5);  // the attacker's CPU is not ours; on loopback it is
  sockaddr_in to = loopback(port);
  std::string garbage(200, '\0');
  randombytes_buf(garbage.data(), garbage.size());
  const std::string& bytes = authentic_copy ? copy : garbage;
  auto deadline = SteadyClock::now() + std::chrono::duration<double>(seconds);
  while (SteadyClock::now() < deadline)
    for (int i = 0; i < 256; ++i)
      sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  _exit(0);
}
}  // namespace

TEST_CASE("a UDP flood at a link port (garbage, foreign, replayed copies) starves nothing") {
  int a1 = free_udp_port(), b1 = free_udp_port(), px = free_udp_port();
  Relay relay(px, a1, b1);
  Linkd a(settings("web1", "web2", {{addr(a1), addr(px)}}, 1s, 100ms));
  Linkd b(settings("web2", "web1", {{addr(b1), addr(px)}}, 1s, 100ms));
  REQUIRE(a.wait_key("ready").is_object());
  REQUIRE(b.wait_key("ready").is_object());
  a.feed({"passive", 2, true, "standby"});
  b.feed({"active", 3, true, "master"});
  REQUIRE(a.wait_line([](const json& j) { return is_peer(j, "heartbeat"); }).is_object());
  Socket stranger;
  pid_t f1 = flooder(stranger.fd, a1, 3, false, "");
  pid_t f2 = flooder(relay.sock.fd, a1, 3, false, "");  // from the peer's very address
  auto copies = relay.all(a1);
  REQUIRE(!copies.empty());
  pid_t f3 = flooder(relay.sock.fd, a1, 3, true, copies.back());  // an authentic copy
  a.pass(4);
  for (pid_t f : {f1, f2, f3}) {
    kill(f, SIGKILL);
    waitpid(f, nullptr, 0);
  }
  json st = a.stats();
  MESSAGE("flooded linkd: ", st.dump());
  CHECK(a.count_lost() == 0);
  CHECK(b.count_lost() == 0);
  CHECK(st["peer_alive"] == true);
  CHECK(st["datagrams"]["foreign_address"].get<uint64_t>() > 1000);
  CHECK(st["datagrams"]["bad_tag"].get<uint64_t>() > 1000);
  CHECK(st["datagrams"]["replay"].get<uint64_t>() > 1000);
  CHECK(st["kernel_drops"].is_number());
}

TEST_CASE("linkd never runs as root: default user, no new privileges, key locked in memory") {
  if (geteuid() != 0) {
    MESSAGE("not root: privilege dropping not tested");
    return;
  }
  passwd* pw = getpwnam("vacataire");
  if (!pw) pw = getpwnam("nobody");
  REQUIRE(pw);
  uid_t expected = pw->pw_uid;
  Linkd a(settings("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}}));
  json r = a.wait_key("ready");
  REQUIRE(r.is_object());
  CHECK(r["ready"]["uid"] == expected);
  std::string status = vt::read_file(cat("/proc/", a.pid(), "/status"));
  CHECK(status.find(cat("Uid:\t", expected, "\t", expected, "\t", expected)) != std::string::npos);
  CHECK(status.find("NoNewPrivs:\t1") != std::string::npos);
  CHECK(status.find("Groups:\t \n") != std::string::npos);         // none
#if !defined(__SANITIZE_ADDRESS__)                                 // ASan makes mlock a no-op
  CHECK(status.find("VmLck:\t       0 kB") == std::string::npos);  // the key's page is locked
#endif

  auto root = settings("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}});
  root.user = "root";
  Linkd r0(root);
  json e = r0.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("never runs as root") != std::string::npos);

  auto nouser = settings("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}});
  nouser.user = "no-such-user-here";
  Linkd n(nouser);
  e = n.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("no user \"no-such-user-here\"") != std::string::npos);
}

TEST_CASE("linkd refuses a bad configuration with an error line") {
  Linkd bad(settings("web1", "web2", {{"127.0.0.1:99999", "127.0.0.1:1"}}));
  json e = bad.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("port must be a number") != std::string::npos);
  auto short_key = settings("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}});
  short_key.key_hex = "abcd";
  Linkd k(short_key);
  e = k.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("32 to 1024 bytes") != std::string::npos);
}
