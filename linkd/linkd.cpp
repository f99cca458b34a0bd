#include "linkd.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <sodium.h>

#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "metrics.hpp"

namespace vac {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {
bool resolve(const std::string& text, sockaddr_storage& out, socklen_t& len, std::string& err) {
  std::string host;
  int port = 0;
  if (!parse_address(text, host, port, err)) return false;
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return err = cat("bad address ", quote(text), ": ", gai_strerror(rc)), false;
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}
}  // namespace

bool parse_linkd_config(const json& j, LinkdConfig& c, std::string& err) {
  try {
    c.node = j.at("node").get<std::string>();
    if (const json& e = j.value("endpoints", json::object()); !e.empty())
      c.endpoints = {e.value("http", ""), e.value("agent_check", ""),
                     e.value("agent_inactive", "down")};
    for (auto& l : j.value("links", json::array()))
      c.links.push_back({l.at("listen"), l.at("peer")});
    if (c.links.empty() && c.endpoints.empty()) return err = "no links and no endpoints", false;
    if (!c.links.empty()) {
      c.peer = j.at("peer").get<std::string>();
      if (!parse_key_hex(j.at("key").get<std::string>(), c.key, err)) return false;
    }
    c.heartbeat = Duration(j.at("heartbeat_us").get<int64_t>());
    c.dead_after = Duration(j.at("dead_after_us").get<int64_t>());
    c.ts_window = Duration(j.value("ts_window_us", int64_t(60000000)));
    c.user = j.value("user", "");
  } catch (const json::exception& e) {
    return err = cat("bad configuration line: ", e.what()), false;
  }
  return true;
}

json linkd_config_json(const LinkdConfig& c) {
  json links = json::array();
  for (auto& l : c.links) links.push_back({{"listen", l.listen}, {"peer", l.peer}});
  char hex[1024];
  sodium_bin2hex(hex, sizeof hex, c.key.data(), std::min<size_t>(c.key.size(), 500));
  return {{"node", c.node},
          {"peer", c.peer},
          {"links", links},
          {"key", hex},
          {"heartbeat_us", c.heartbeat.count()},
          {"dead_after_us", c.dead_after.count()},
          {"ts_window_us", c.ts_window.count()},
          {"user", c.user},
          {"endpoints",
           {{"http", c.endpoints.http},
            {"agent_check", c.endpoints.agent_check},
            {"agent_inactive", c.endpoints.agent_inactive}}}};
}

LinkDaemon::LinkDaemon(LinkdConfig config) : config_(std::move(config)) {
  boot_ = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                    std::chrono::system_clock::now().time_since_epoch())
                                    .count());
  started_ = Clock::now();
  for (const char* k :
       {"accepted", "bad_tag", "malformed", "unknown_sender", "replayed", "stale", "oversized"})
    counters_[k] = 0;
}

LinkDaemon::~LinkDaemon() {
  for (auto& l : links_)
    if (l->fd >= 0) close(l->fd);
}

bool LinkDaemon::bind_links(std::string& err) {
  for (auto& lc : config_.links) {
    auto link = std::make_unique<Link>();
    link->config = lc;
    link->index = links_.size();
    sockaddr_storage local{};
    socklen_t local_len = 0;
    if (!resolve(lc.listen, local, local_len, err) ||
        !resolve(lc.peer, link->peer, link->peer_len, err))
      return false;
    link->fd = socket(local.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (link->fd < 0) return err = sys_error("socket"), false;
    if (bind(link->fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0)
      return err = sys_error(cat("cannot bind ", lc.listen)), false;
    links_.push_back(std::move(link));
  }
  if (!config_.endpoints.empty()) {
    endpoints_ = std::make_unique<EndpointServer>(
        config_.endpoints, supervisor_lease(config_.heartbeat, config_.dead_after));
    std::string why;
    if (!endpoints_->bind(why)) {
      // The peer link matters more than the endpoints: it runs without them, loudly. A load
      // balancer that cannot reach /active keeps this node out (fail closed).
      emit({{"error", cat(why, "; the endpoints are not served")}});
      endpoints_.reset();
    }
  }
  return true;
}

bool LinkDaemon::drop_privileges(std::string& err) {
  if (config_.user.empty() || geteuid() != 0) return true;
  passwd* pw = getpwnam(config_.user.c_str());
  if (!pw)
    return err = cat("no user ", quote(config_.user), " to run as (the `user` setting)"), false;
  if (setgroups(0, nullptr) != 0 || setgid(pw->pw_gid) != 0 || setuid(pw->pw_uid) != 0)
    return err = sys_error(cat("cannot become ", config_.user)), false;
  return true;
}

void LinkDaemon::start() {
  for (auto& l : links_) {
    l->owner = this;
    l->io.set<Link, &Link::on_io>(l.get());
    l->io.start(l->fd, ev::READ);
  }
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  stdin_io_.set<LinkDaemon, &LinkDaemon::on_stdin>(this);
  stdin_io_.start(0, ev::READ);
  silence_.set<LinkDaemon, &LinkDaemon::on_silence>(this);
  tick_.set<LinkDaemon, &LinkDaemon::on_tick>(this);
  tick_.start(0, seconds(config_.heartbeat));
  if (endpoints_) {
    std::string err;
    endpoints_->set_link_stats([this] { return stats(); });
    if (!endpoints_->start(err)) emit({{"error", err}});
  }
  emit({{"ready", {{"links", links_.size()}, {"uid", geteuid()}}}});
}

void LinkDaemon::emit(const json& j) {
  std::string line = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  for (size_t off = 0; off < line.size();) {
    ssize_t n = write(1, line.data() + off, line.size() - off);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) std::exit(0);  // the supervisor is gone
    off += static_cast<size_t>(n);
  }
}

void LinkDaemon::on_stdin(ev::io&, int) {
  auto r = stdin_reader_.read_from(0, [this](std::string_view line, bool truncated) {
    if (!truncated) on_supervisor_line(line);
  });
  if (r == LineReader::ReadResult::eof || r == LineReader::ReadResult::error)
    ev::get_default_loop().break_loop(ev::ALL);  // the supervisor closed our stdin: done
}

void LinkDaemon::on_supervisor_line(std::string_view line) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return log_warn("linkd", "ignoring a bad line from the supervisor");
  if (endpoints_) {
    endpoints_->heard_supervisor();
    if (j.contains("status")) endpoints_->set_status(j["status"]);
  }
  if (j.contains("heartbeat")) {
    json before = heartbeat_;
    heartbeat_ = j["heartbeat"];
    if (heartbeat_ != before) {  // news travels now, not at the next tick
      json hb = {{"kind", "heartbeat"}};
      hb.update(heartbeat_);
      send_all(hb);
    }
  }
  if (j.contains("send")) {
    json m = j["send"];
    m["id"] = next_id_;
    pending_[next_id_++] = m;
    send_all(m);
  }
  if (j.contains("stats")) emit({{"stats", stats()}});
}

void LinkDaemon::send_on(Link& link, const json& msg) {
  Datagram d;
  d.from = config_.node;
  d.boot = boot_;
  d.link = link.index;
  d.seq = ++link.seq;
  d.ts_ms = wall_ms();
  d.msg = msg;
  std::string bytes = seal(d, config_.key);
  if (sendto(link.fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&link.peer),
             link.peer_len) > 0)
    ++link.tx;
}

void LinkDaemon::send_all(const json& msg) {
  for (auto& l : links_) send_on(*l, msg);
}

void LinkDaemon::on_tick(ev::timer&, int) {
  if (heartbeat_.is_object()) {  // nothing to say before the supervisor has said what we are
    json hb = {
        {"kind", "heartbeat"},
        {"t", std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
                  .count()}};
    hb.update(heartbeat_);
    send_all(hb);
  }
  for (auto& [id, m] : pending_) send_all(m);  // retried until acknowledged
  if (ms_since(last_stats_) >= 1000) {
    last_stats_ = Clock::now();
    emit({{"stats", stats()}});
  }
}

void LinkDaemon::on_silence(ev::timer&, int) {
  if (peer_alive_) peer_lost();
}

void LinkDaemon::peer_lost() {
  peer_alive_ = false;
  pending_.clear();  // commands are retried until acknowledged or the peer is lost
  emit({{"lost", {{"silent_ms", ms_since(last_heard_)}}}});
}

void LinkDaemon::on_readable(Link& link) {
  char buf[kMaxDatagram + 1];
  for (int i = 0; i < 64; ++i) {  // bounded per wake-up: a flood cannot starve the loop
    ssize_t n = recv(link.fd, buf, sizeof buf, MSG_TRUNC);
    if (n < 0) return;
    if (static_cast<size_t>(n) > kMaxDatagram) {
      ++counters_["oversized"];
      continue;
    }
    on_datagram(link, std::string_view(buf, static_cast<size_t>(n)));
  }
}

void LinkDaemon::on_datagram(Link& link, std::string_view bytes) {
  Datagram d;
  OpenResult r = open_datagram(bytes, config_.key, d);
  if (r != OpenResult::ok) return void(++counters_[to_string(r)]);
  if (d.from != config_.peer) return void(++counters_["unknown_sender"]);
  if (std::llabs(wall_ms() - d.ts_ms) > seconds(config_.ts_window) * 1000)
    return void(++counters_["stale"]);
  // A datagram captured on one link and replayed on another is a replay too.
  if (d.link != link.index || !link.replay.accept(d.boot, d.seq))
    return void(++counters_["replayed"]);
  ++counters_["accepted"];
  ++link.rx;
  link.heard = true;
  link.last_heard = last_heard_ = Clock::now();
  silence_.stop();
  silence_.start(seconds(config_.dead_after), 0);
  std::string kind = d.msg.value("kind", "");
  bool was_alive = peer_alive_;
  peer_alive_ = true;
  if (kind == "heartbeat") {
    send_on(link, {{"kind", "pong"}, {"t", d.msg.value("t", int64_t(0))}});
    json peer = {{"kind", "heartbeat"},
                 {"state", d.msg.value("state", "passive")},
                 {"epoch", d.msg.value("epoch", uint64_t(0))},
                 {"healthy", d.msg.value("healthy", false)}};
    if (!was_alive || peer != last_peer_) emit({{"peer", peer}});
    last_peer_ = peer;
  } else if (kind == "pong") {
    int64_t t = d.msg.value("t", int64_t(0));
    int64_t now =
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now().time_since_epoch())
            .count();
    if (t > 0 && now >= t) link.rtt_ms = static_cast<double>(now - t) / 1000.0;
  } else if (kind == "ack") {
    pending_.erase(d.msg.value("id", uint64_t(0)));
  } else if (kind == "takeover" || kind == "quiesce" || kind == "stopped") {
    uint64_t id = d.msg.value("id", uint64_t(0));
    send_on(link, {{"kind", "ack"}, {"id", id}});
    uint64_t& done = delivered_[d.boot];
    if (id > done) {  // each command reaches the supervisor once, whichever link carried it
      done = id;
      json m = d.msg;
      m.erase("id");
      emit({{"peer", m}});
    }
  } else {
    ++counters_["malformed"];
  }
}

json LinkDaemon::stats() const {
  json links = json::array();
  for (auto& l : links_) {
    double heard = l->heard ? ms_since(l->last_heard) : -1;
    links.push_back({{"listen", l->config.listen},
                     {"peer", l->config.peer},
                     {"up", l->heard && heard < seconds(config_.dead_after) * 1000},
                     {"last_heard_ms", l->heard ? json(heard) : json(nullptr)},
                     {"rtt_ms", l->rtt_ms >= 0 ? json(l->rtt_ms) : json(nullptr)},
                     {"rx", l->rx},
                     {"kernel_drops", udp_kernel_drops(l->fd)},
                     {"tx", l->tx}});
  }
  return {{"links", links}, {"counters", counters_}, {"peer_alive", peer_alive_}};
}

}  // namespace vac
