// The peer link: the datagram format and replay guard, then real vacataire-linkd processes on
// loopback: heartbeats, commands acknowledged and passed on once, loss detection, forged,
// replayed, stale and garbage datagrams counted and ignored, privileges dropped.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>

#include "common/line_reader.hpp"
#include "common/link_messages.hpp"
#include "harness.hpp"
#include "linkd.hpp"

using namespace vac;
using vt::json;

namespace {
Key test_key(char fill = 'k') {
  return Key(32, static_cast<unsigned char>(fill));
}

int free_udp_port() {
  return vt::free_port(SOCK_DGRAM);
}

std::string addr(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

// A linkd child process driven the way the supervisor drives it.
class Linkd {
 public:
  Linkd(const std::string& node, const std::string& peer, std::vector<LinkConfig> links,
        const std::string& user = "", Duration dead_after = std::chrono::milliseconds(300)) {
    LinkdConfig c;
    c.node = node, c.peer = peer, c.links = std::move(links), c.key = test_key(), c.user = user;
    c.heartbeat = std::chrono::milliseconds(50);
    c.dead_after = dead_after;
    int in[2], out[2];
    REQUIRE(pipe2(in, O_CLOEXEC) == 0);
    REQUIRE(pipe2(out, O_CLOEXEC) == 0);
    pid_ = fork();
    if (pid_ == 0) {
      dup2(in[0], 0);
      dup2(out[1], 1);
      execl(BUILD_DIR "/vacataire-linkd", "vacataire-linkd", nullptr);
      _exit(127);
    }
    close(in[0]), close(out[1]);
    in_ = in[1], out_ = out[0];
    fcntl(out_, F_SETFL, O_NONBLOCK);
    send({{"config", linkd_config_json(c)}});
  }
  ~Linkd() { kill_now(); }
  void kill_now() {
    if (pid_ <= 0) return;
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    close(in_), close(out_);
    pid_ = 0;
  }
  void send(const json& j) {
    std::string line = j.dump() + "\n";
    REQUIRE(write(in_, line.data(), line.size()) == static_cast<ssize_t>(line.size()));
  }
  // The next line for which pred holds, within timeout; null if none.
  json wait_line(const std::function<bool(const json&)>& pred, double timeout_s = 5) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (std::chrono::steady_clock::now() < deadline) {
      while (!lines_.empty()) {
        json j = lines_.front();
        lines_.erase(lines_.begin());
        seen_.push_back(j);
        if (pred(j)) return j;
      }
      pollfd p{out_, POLLIN, 0};
      poll(&p, 1, 20);
      reader_.read_from(out_, [&](std::string_view l, bool) {
        lines_.push_back(json::parse(l, nullptr, false));
      });
    }
    return nullptr;
  }
  json wait_key(const std::string& key, double timeout_s = 5) {
    return wait_line([&](const json& j) { return j.contains(key); }, timeout_s);
  }
  // Fresh figures: older lines (periodic stats among them) are read first.
  json stats() {
    wait_line([](const json&) { return false; }, 0.05);
    send({{"stats", true}});
    return wait_key("stats")["stats"];
  }
  const std::vector<json>& seen() const { return seen_; }

 private:
  pid_t pid_ = 0;
  int in_ = -1, out_ = -1;
  LineReader reader_{1 << 20};
  std::vector<json> lines_, seen_;
};

// A UDP socket that plays the peer by hand.
struct FakePeer {
  int fd;
  FakePeer() : fd(socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) {}
  ~FakePeer() { close(fd); }
  void send_to(int to, const std::string& bytes) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(to));
    sendto(fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&a), sizeof a);
  }
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace

TEST_CASE("link lines: every supervisor -> linkd line round-trips through the codec") {
  LinkdSettings s;
  s.node = "web1", s.peer = "web2", s.key_hex = std::string(64, 'a'), s.user = "nobody";
  s.links = {{"127.0.0.1:1", "127.0.0.1:2"}, {"[::1]:3", "[::1]:4"}};
  s.heartbeat = std::chrono::milliseconds(100), s.dead_after = std::chrono::milliseconds(700);
  s.endpoints.http = "127.0.0.1:8080";
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
      encode_peer_line({PeerKind::stopped, {"stopping", 3, false, "master"}}), err);
  REQUIRE_MESSAGE(p, err);
  CHECK(p->peer_value.kind == PeerKind::stopped);
  CHECK(p->peer_value.report == NodeReport{"stopping", 3, false, "master"});
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

TEST_CASE("datagrams: sealed, opened, and refused when forged or malformed") {
  REQUIRE(sodium_init() >= 0);
  Datagram d;
  d.from = "web1", d.boot = 5, d.seq = 9, d.ts_ms = 123, d.msg = {{"kind", "heartbeat"}};
  std::string bytes = seal(d, test_key());
  Datagram out;
  REQUIRE(open_datagram(bytes, test_key(), out) == OpenResult::ok);
  CHECK(out.from == "web1");
  CHECK(out.seq == 9);
  CHECK(out.msg["kind"] == "heartbeat");
  CHECK(open_datagram(bytes, test_key('x'), out) == OpenResult::bad_tag);
  std::string flipped = bytes;
  flipped[5] ^= 1;
  CHECK(open_datagram(flipped, test_key(), out) == OpenResult::bad_tag);
  CHECK(open_datagram("short", test_key(), out) == OpenResult::bad_tag);
  CHECK(open_datagram(std::string(40000, 'x'), test_key(), out) == OpenResult::bad_tag);
  Datagram bad = d;
  bad.msg = json::object();
  std::string sealed_junk = seal(bad, test_key());
  CHECK(open_datagram(sealed_junk, test_key(), out) == OpenResult::ok);

  ReplayGuard g;
  CHECK(g.accept(5, 1));
  CHECK(g.accept(5, 2));
  CHECK_FALSE(g.accept(5, 2));
  CHECK_FALSE(g.accept(4, 100));
  CHECK(g.accept(6, 1));  // a restarted sender: a newer boot

  Key k;
  std::string err;
  CHECK_FALSE(parse_key_hex("abcd", k, err));
  CHECK(err.find("at least 32") != std::string::npos);
  CHECK_FALSE(parse_key_hex("zz", k, err));
  CHECK(parse_key_hex(new_key_hex(), k, err));
  CHECK(k.size() == 64);
}

TEST_CASE("two linkd processes: heartbeats, commands once over two links, loss") {
  int a1 = free_udp_port(), a2 = free_udp_port(), b1 = free_udp_port(), b2 = free_udp_port();
  Linkd a("web1", "web2", {{addr(a1), addr(b1)}, {addr(a2), addr(b2)}});
  Linkd b("web2", "web1", {{addr(b1), addr(a1)}, {addr(b2), addr(a2)}});
  REQUIRE(a.wait_key("ready").is_object());
  REQUIRE(b.wait_key("ready").is_object());
  a.send({{"heartbeat", {{"state", "active"}, {"epoch", 3}, {"healthy", true}}}});
  json p = b.wait_line(
      [](const json& j) { return j.contains("peer") && j["peer"]["state"] == "active"; });
  REQUIRE(p.is_object());
  CHECK(p["peer"]["epoch"] == 3);
  CHECK(p["peer"]["healthy"] == true);

  a.send(
      {{"send", {{"kind", "takeover"}, {"state", "stopping"}, {"epoch", 3}, {"healthy", false}}}});
  json t = b.wait_line(
      [](const json& j) { return j.contains("peer") && j["peer"]["kind"] == "takeover"; });
  REQUIRE(t.is_object());
  CHECK(t["peer"]["state"] == "stopping");
  // Sent on both links and retried, it is passed on once; the ack stops the retries.
  b.wait_line([](const json&) { return false; }, 0.5);
  int takeovers = 0;
  for (auto& j : b.seen())
    if (j.contains("peer") && j["peer"]["kind"] == "takeover") ++takeovers;
  CHECK(takeovers == 1);

  json st = a.stats();
  CHECK(st["peer_alive"] == true);
  REQUIRE(st["links"].size() == 2);
  for (auto& l : st["links"]) {
    CHECK(l["up"] == true);
    CHECK(l["rtt_ms"].is_number());
  }
  CHECK(st["counters"]["accepted"].get<int>() > 0);

  b.kill_now();
  json lost = a.wait_key("lost", 3);
  REQUIRE(lost.is_object());
  CHECK(lost["lost"]["silent_ms"].get<double>() >= 300);
}

TEST_CASE("forged, replayed, stale, foreign and garbage datagrams are counted, never acted on") {
  FakePeer peer;
  int a1 = free_udp_port(), a2 = free_udp_port();
  int nowhere = free_udp_port();  // linkd's own heartbeats go there; the test only sends
  Linkd a("web1", "web2", {{addr(a1), addr(nowhere)}, {addr(a2), addr(nowhere)}});
  REQUIRE(a.wait_key("ready").is_object());
  auto make = [&](const std::string& from, uint64_t seq, int64_t ts, const Key& key) {
    Datagram d;
    d.from = from, d.boot = 1000, d.seq = seq, d.ts_ms = ts;
    d.msg = {
        {"kind", "takeover"}, {"id", seq}, {"state", "stopping"}, {"epoch", 1}, {"healthy", false}};
    return seal(d, key);
  };
  std::string good = make("web2", 1, now_ms(), test_key());
  peer.send_to(a1, good);
  REQUIRE(a.wait_line([](const json& j) {
             return j.contains("peer") && j["peer"]["kind"] == "takeover";
           }).is_object());
  peer.send_to(a1, good);                                      // replayed
  peer.send_to(a2, make("web2", 7, now_ms(), test_key()));     // sealed for link 0, sent on 1
  peer.send_to(a1, make("web2", 2, now_ms(), test_key('x')));  // forged: wrong key
  peer.send_to(a1, make("web3", 3, now_ms(), test_key()));     // a sender we do not know
  peer.send_to(a1, make("web2", 4, now_ms() - 3600000, test_key()));  // an hour old
  std::string garbage(300, '\0');
  randombytes_buf(garbage.data(), garbage.size());
  peer.send_to(a1, garbage);
  peer.send_to(a1, "x");
  json c;
  REQUIRE(vt::eventually([&] {
    c = a.stats()["counters"];
    return c["bad_tag"] == 3 && c["replayed"] == 2 && c["unknown_sender"] == 1 && c["stale"] == 1;
  }));
  CHECK(c["accepted"] == 1);
  int takeovers = 0;
  for (auto& j : a.seen())
    if (j.contains("peer")) ++takeovers;
  CHECK(takeovers == 1);
}

TEST_CASE("linkd drops to the configured user once bound, and refuses bad configuration") {
  Linkd a("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}}, "nobody");
  json r = a.wait_key("ready");
  REQUIRE(r.is_object());
  CHECK(r["ready"]["uid"] == 65534);

  Linkd bad("web1", "web2", {{"127.0.0.1:99999", "127.0.0.1:1"}});
  json e = bad.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("port must be a number") != std::string::npos);

  Linkd nouser("web1", "web2", {{addr(free_udp_port()), addr(free_udp_port())}},
               "no-such-user-here");
  e = nouser.wait_key("error");
  REQUIRE(e.is_object());
  CHECK(e["error"].get<std::string>().find("no user \"no-such-user-here\"") != std::string::npos);
}

// Found by tests/fuzz/fuzz_datagram (its input is kept in tests/fuzz/corpus/datagram/): an
// authentic datagram whose "v" is a string made open_datagram throw, aborting linkd.
TEST_CASE("a sealed datagram with a wrongly typed version is malformed, not a crash") {
  vac::Key key(32, 0x5a);
  std::string body = R"({"v":"web2","link":0,"hoot":0,"seq":2,"ts":3,"msg":{"h":4}})";
  // Sealed as a peer holding the key would: body, then HMAC-SHA256(body).
  unsigned char tag[vac::kTagBytes];
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&st, tag);
  std::string bytes = body + std::string(reinterpret_cast<char*>(tag), sizeof tag);
  vac::Datagram out;
  vac::OpenResult r = vac::OpenResult::ok;
  CHECK_NOTHROW(r = vac::open_datagram(bytes, key, out));
  CHECK(r == vac::OpenResult::malformed);
}
