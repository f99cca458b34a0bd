#include "linkd.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <sodium.h>

#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "common/text.hpp"

namespace vac {

namespace {
constexpr size_t kMaxOutBuffer = 1 << 20;  // lines for a supervisor that stopped reading
constexpr int kReceiveBuffer = 4 << 20;    // room for a burst while the loop is busy
constexpr size_t kRecentTags = 65536;      // a few minutes of a pair's datagrams

bool resolve(const std::string& text, sockaddr_storage& out, socklen_t& len, std::string& err) {
  std::string host;
  int port = 0;
  if (!parse_address(text, host, port, err)) return false;
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return err = cat("bad address ", quote(text), ": ", gai_strerror(rc)), false;
  std::memcpy(&out, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  return true;
}

// The same host and port: the only datagrams worth an HMAC come from the configured peer.
bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET) {
    auto& x = reinterpret_cast<const sockaddr_in&>(a);
    auto& y = reinterpret_cast<const sockaddr_in&>(b);
    return x.sin_port == y.sin_port && x.sin_addr.s_addr == y.sin_addr.s_addr;
  }
  if (a.ss_family == AF_INET6) {
    auto& x = reinterpret_cast<const sockaddr_in6&>(a);
    auto& y = reinterpret_cast<const sockaddr_in6&>(b);
    return x.sin6_port == y.sin6_port &&
           std::memcmp(&x.sin6_addr, &y.sin6_addr, sizeof x.sin6_addr) == 0;
  }
  return false;
}

double ms(Duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}
}  // namespace

MonoClock steady_mono_clock() {
  auto origin = std::chrono::steady_clock::now();
  return [origin] {
    return std::chrono::duration_cast<MonoTime>(std::chrono::steady_clock::now() - origin);
  };
}

LinkDaemon::LinkDaemon(LinkdSettings settings, MonoClock clock)
    : settings_(std::move(settings)), clock_(std::move(clock)) {
  // A challenge stays answerable for about dead_after; one peer session is challenged (and
  // one challenge answered) at most every half heartbeat.
  session_ = std::make_unique<PeerSession>(
      settings_.links.size(), settings_.dead_after / 2,
      std::max<Duration>(settings_.heartbeat / 2, std::chrono::milliseconds(5)));
  lease_length_ = supervisor_lease(settings_.heartbeat, settings_.dead_after);
  for (const char* k :
       {"ok", "foreign_address", "oversized", "bad_tag", "malformed", "wrong_sender", "wrong_link",
        "handshake", "unconfirmed", "stale_session", "replay"})
    datagrams_[k] = 0;
}

LinkDaemon::~LinkDaemon() {
  for (auto& l : links_)
    if (l->fd >= 0) close(l->fd);
}

bool LinkDaemon::load_key(std::string& err) {
  if (settings_.links.empty()) return true;  // endpoints only: no peer, no key
  bool ok = key_.load_hex(settings_.key_hex, err);
  sodium_memzero(settings_.key_hex.data(), settings_.key_hex.size());
  settings_.key_hex.clear();
  if (ok && !key_.locked())
    log_warn("linkd", "the key could not be locked in memory (RLIMIT_MEMLOCK); it may be swapped");
  return ok;
}

bool LinkDaemon::bind_links(std::string& err) {
  for (auto& lc : settings_.links) {
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
    // Root may raise the receive buffer past net.core.rmem_max; others get what it allows.
    int size = kReceiveBuffer, on = 1;
    if (setsockopt(link->fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0)
      setsockopt(link->fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    // Each datagram then carries the socket's count of datagrams the kernel dropped.
    setsockopt(link->fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof on);
    if (bind(link->fd, reinterpret_cast<sockaddr*>(&local), local_len) != 0) {
      err = sys_error(cat("cannot bind ", lc.listen));
      close(link->fd);
      return false;
    }
    links_.push_back(std::move(link));
  }
  if (!settings_.endpoints.http.empty() || !settings_.endpoints.agent_check.empty()) {
    EndpointsConfig ec{settings_.endpoints.http, settings_.endpoints.agent_check,
                       settings_.endpoints.agent_inactive};
    endpoints_ = std::make_unique<EndpointServer>(ec, lease_length_);
    std::string why;
    if (!endpoints_->bind(why)) {
      // The peer link matters more than the endpoints: it runs without them, loudly. A load
      // balancer that cannot reach /active keeps this node out (fail closed).
      emit(encode_error_line(cat(why, "; the endpoints are not served")));
      endpoints_.reset();
    }
  }
  return true;
}

void LinkDaemon::start() {
  for (auto& l : links_) {
    l->owner = this;
    l->io.set<Link, &Link::on_io>(l.get());
    l->io.start(l->fd, ev::READ);
  }
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
  fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
  stdin_io_.set<LinkDaemon, &LinkDaemon::on_stdin>(this);
  stdin_io_.start(0, ev::READ);
  stdout_io_.set<LinkDaemon, &LinkDaemon::on_stdout>(this);
  stdout_io_.set(1, ev::WRITE);
  silence_.set<LinkDaemon, &LinkDaemon::on_silence>(this);
  lease_.set<LinkDaemon, &LinkDaemon::on_lease>(this);
  lease_.set(0, seconds(lease_length_));
  last_line_ = now();  // the configuration line was the supervisor's first word
  lease_.again();
  supervisor_fresh_ = true;
  tick_.set<LinkDaemon, &LinkDaemon::on_tick>(this);
  tick_.start(0, seconds(settings_.heartbeat));
  // Stats, and the supervisor's sign that this linkd is not stopped or stuck.
  report_.set<LinkDaemon, &LinkDaemon::on_report>(this);
  Duration report = linkd_report_period(settings_.dead_after);
  report_.start(seconds(report), seconds(report));
  sigterm_.set<LinkDaemon, &LinkDaemon::on_signal>(this);
  sigterm_.start(SIGTERM);
  sigint_.set<LinkDaemon, &LinkDaemon::on_signal>(this);
  sigint_.start(SIGINT);
  if (endpoints_) {
    endpoints_->heard_supervisor();
    endpoints_->set_link_stats([this] {
      nlohmann::json j = stats_json(stats());
      j["counters"] = j["datagrams"];  // the name /metrics reads
      return j;
    });
    std::string err;
    if (!endpoints_->start(err)) emit(encode_error_line(err));
  }
  emit(encode_ready_line(links_.size(), geteuid()));
}

void LinkDaemon::on_signal(ev::sig&, int) {
  ev::get_default_loop().break_loop(ev::ALL);  // main returns: the key is wiped on the way
}

// ---- the supervisor's side ----

void LinkDaemon::emit(const std::string& line) {
  if (out_buf_.size() + line.size() > kMaxOutBuffer) {
    if (lines_dropped_++ % 1000 == 0)
      log_warn("linkd", "the supervisor is not reading; dropping lines (", lines_dropped_, ")");
    return;
  }
  out_buf_ += line;
  on_stdout(stdout_io_, ev::WRITE);
}

void LinkDaemon::on_stdout(ev::io&, int) {
  while (!out_buf_.empty()) {
    ssize_t n = write(1, out_buf_.data(), out_buf_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {  // the supervisor is gone
      out_buf_.clear();
      ev::get_default_loop().break_loop(ev::ALL);
      return;
    }
    out_buf_.erase(0, static_cast<size_t>(n));
  }
  if (out_buf_.empty())
    stdout_io_.stop();
  else if (!stdout_io_.is_active())
    stdout_io_.start();
}

void LinkDaemon::on_stdin(ev::io&, int) {
  read_stdin();
}

void LinkDaemon::read_stdin() {
  auto r = stdin_reader_.read_from(0, [this](std::string_view line, bool truncated) {
    if (truncated) return log_warn("linkd", "a line from the supervisor was too long; ignored");
    on_supervisor_line(line);
  });
  if (r == LineReader::ReadResult::eof || r == LineReader::ReadResult::error)
    ev::get_default_loop().break_loop(ev::ALL);  // the supervisor closed our stdin: done
}

void LinkDaemon::on_supervisor_line(std::string_view line) {
  std::string err;
  auto m = decode_to_linkd(line, err);
  if (!m) return log_warn("linkd", "ignoring a line from the supervisor: ", err);
  // Any well-formed line renews the lease: the supervisor's loop is turning.
  last_line_ = now();
  lease_.again();
  if (endpoints_) endpoints_->heard_supervisor();
  if (!supervisor_fresh_) log_info("linkd", "the supervisor speaks again; heartbeats resume");
  supervisor_fresh_ = true;
  switch (m->kind) {
    case ToLinkd::config:
      log_warn("linkd", "ignoring a second configuration line");
      break;
    case ToLinkd::heartbeat: {
      bool changed = !heartbeat_ || !(*heartbeat_ == m->report);
      heartbeat_ = m->report;
      // A `takeover` or `stopped` not yet acknowledged is moot once this node serves (it gave
      // up waiting for the peer): delivered later, to the peer or to its next incarnation, it
      // would start a second node serving.
      if (m->report.state == "starting" || m->report.state == "active")
        std::erase_if(pending_, [](const auto& p) {
          return p.second.kind == PeerKind::takeover || p.second.kind == PeerKind::stopped;
        });
      if (changed) send_heartbeat();  // news travels now, not at the next tick
      break;
    }
    case ToLinkd::send:
      pending_[next_id_++] = {m->command, m->report};
      send_pending();
      break;
    case ToLinkd::status:
      status_ = std::move(m->status_doc);
      if (endpoints_) endpoints_->set_status(status_);
      break;
    case ToLinkd::stats:
      emit(encode_stats_line(stats()));
      break;
  }
}

void LinkDaemon::on_lease(ev::timer&, int) {
  read_stdin();  // lines may be waiting behind a stall of ours, not of the supervisor
  if (now() - last_line_ >= lease_length_) {
    if (supervisor_fresh_)
      log_warn("linkd", "no line from the supervisor for ", format_duration(lease_length_),
               "; heartbeats stop until it speaks again");
    supervisor_fresh_ = false;
  }
}

// ---- the peer's side ----

void LinkDaemon::send_on(Link& link, const std::string& rsid, const WireMessage& msg) {
  Datagram d;
  d.from = settings_.node;
  d.link = link.index;
  d.sid = session_->mine();
  d.rsid = rsid;
  d.seq = ++seq_;
  d.msg = msg;
  std::string bytes = seal(d, key_);
  if (sendto(link.fd, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&link.peer),
             link.peer_len) > 0)
    ++link.tx;
}

void LinkDaemon::send_all(const std::string& rsid, const WireMessage& msg) {
  for (auto& l : links_) send_on(*l, rsid, msg);
}

void LinkDaemon::send_heartbeat() {
  // Advertised only while the supervisor holds its lease: a frozen supervisor goes silent.
  if (!heartbeat_ || !supervisor_fresh_) return;
  WireMessage m;
  m.kind = WireMessage::heartbeat;
  m.report = *heartbeat_;
  m.t = static_cast<uint64_t>(now().count());
  m.timing = {static_cast<uint64_t>(settings_.heartbeat.count()),
              static_cast<uint64_t>(settings_.dead_after.count())};
  m.incarnation = settings_.incarnation;
  send_all(session_->peer(), m);
}

void LinkDaemon::send_pending() {
  for (auto& [id, p] : pending_) {
    WireMessage m;
    m.kind = WireMessage::command;
    m.command_kind = p.kind;
    m.id = id;
    m.report = p.report;
    m.incarnation = settings_.incarnation;
    send_all(session_->peer(), m);
  }
}

void LinkDaemon::on_tick(ev::timer&, int) {
  send_heartbeat();
  send_pending();  // retried until acknowledged or the peer is lost
}

void LinkDaemon::on_report(ev::timer&, int) {
  // Lines still waiting: the supervisor reads them, and learns from them that linkd runs, before
  // another stats line; stats never crowd out what the peer said.
  if (!out_buf_.empty()) return;
  emit(encode_stats_line(stats()));
}

void LinkDaemon::drain_links() {
  for (auto& l : links_) on_readable(*l, kDrainLimit);
}

void LinkDaemon::on_silence(ev::timer&, int) {
  // Read what is waiting first: a stall of ours is not the peer's silence.
  drain_links();
  Duration silent = now() - last_heartbeat_;
  if (silent < settings_.dead_after) {
    silence_.start(seconds(settings_.dead_after - silent), 0);
    return;
  }
  if (peer_alive_) peer_lost();
}

void LinkDaemon::peer_lost() {
  peer_alive_ = false;
  pending_.clear();  // retried until acknowledged or the peer is lost
  last_peer_.reset();
  session_->drop_peer();  // whatever comes next proves itself afresh
  pair_changed();
  emit(encode_lost_line());
}

void LinkDaemon::pair_changed() {
  generation_ = session_->generation();
  inbox_.reset();  // command ids belong to the peer session
  if (session_->confirmed()) {
    send_heartbeat();
    send_pending();  // commands still wanted reach a restarted peer too
  }
}

void LinkDaemon::on_readable(Link& link, int budget) {
  char buf[kMaxDatagram + 1];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(uint32_t))];
  for (int i = 0; i < budget; ++i) {
    sockaddr_storage from{};
    iovec iov{buf, sizeof buf};
    msghdr mh{};
    mh.msg_name = &from;
    mh.msg_namelen = sizeof from;
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control;
    mh.msg_controllen = sizeof control;
    ssize_t n = recvmsg(link.fd, &mh, MSG_TRUNC);
    if (n < 0) return;
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
        uint32_t drops = 0;
        std::memcpy(&drops, CMSG_DATA(c), sizeof drops);
        link.kernel_drops = drops;  // the socket's running total
      }
    // Before any HMAC work: only the configured peer's address is worth one.
    if (!same_address(from, link.peer)) {
      count("foreign_address");
      continue;
    }
    if (static_cast<size_t>(n) > kMaxDatagram) {
      count("oversized");
      continue;
    }
    on_datagram(link, std::string_view(buf, static_cast<size_t>(n)));
  }
}

void LinkDaemon::on_datagram(Link& link, std::string_view bytes) {
  // Genuine tags are unpredictable: matching a remembered one means a copy, or garbage made
  // to look like one; either way refused, and no genuine datagram can be shadowed.
  uint64_t tag = 0;
  if (bytes.size() > kTagBytes) {
    std::memcpy(&tag, bytes.data() + bytes.size() - kTagBytes, sizeof tag);
    if (recent_tags_.count(tag)) return count("replay");
  }
  Datagram d;
  OpenResult r = open_datagram(bytes, key_, d);
  if (r != OpenResult::ok) return count(to_string(r));
  if (recent_tags_.insert(tag).second) {
    recent_order_.push_back(tag);
    if (recent_order_.size() > kRecentTags) {
      recent_tags_.erase(recent_order_.front());
      recent_order_.pop_front();
    }
  }
  // Our own datagrams reflected back, or another pair's sharing the key: not our peer.
  if (d.from != settings_.peer) return count("wrong_sender");
  // A datagram captured on one link and replayed on another is refused.
  if (d.link != link.index) return count("wrong_link");
  std::vector<PeerSession::Outgoing> replies;
  auto verdict = session_->admit(d, now(), replies);
  count(PeerSession::to_string(verdict));
  for (auto& o : replies) send_all(o.rsid, o.msg);
  if (session_->generation() != generation_) pair_changed();
  if (verdict == PeerSession::Verdict::accept) on_data(link, d);
}

void LinkDaemon::on_data(Link& link, const Datagram& d) {
  ++link.rx;
  link.heard = true;
  link.last_heard = now();
  const WireMessage& m = d.msg;
  switch (m.kind) {
    case WireMessage::heartbeat: {
      // Only heartbeats keep the peer alive: they stop when its supervisor does.
      last_heartbeat_ = now();
      silence_.stop();
      silence_.start(seconds(settings_.dead_after), 0);
      WireMessage pong;
      pong.kind = WireMessage::pong;
      pong.t = m.t;
      send_on(link, session_->peer(), pong);
      bool news = !peer_alive_ || !last_peer_ || !(*last_peer_ == m.report) ||
                  !(peer_timing_ == m.timing) || peer_incarnation_ != m.incarnation;
      peer_alive_ = true;
      last_peer_ = m.report;
      peer_timing_ = m.timing;
      peer_incarnation_ = m.incarnation;
      if (news) emit(encode_peer_line({PeerKind::heartbeat, m.report, m.timing, m.incarnation}));
      break;
    }
    case WireMessage::pong: {
      auto sent = static_cast<int64_t>(m.t), at = static_cast<int64_t>(now().count());
      if (at >= sent) link.rtt_ms = static_cast<double>(at - sent) / 1000.0;
      break;
    }
    case WireMessage::ack:
      pending_.erase(m.id);
      break;
    case WireMessage::command: {
      WireMessage ack;
      ack.kind = WireMessage::ack;
      ack.id = m.id;
      send_on(link, session_->peer(), ack);  // every copy is acknowledged...
      if (inbox_.first_time(m.id))           // ...and the first, whichever link, passed on
        emit(encode_peer_line({m.command_kind, m.report, {}, m.incarnation}));
      break;
    }
    default:
      break;
  }
}

LinkdStats LinkDaemon::stats() const {
  LinkdStats s;
  MonoTime t = now();
  for (auto& l : links_) {
    LinkStats ls;
    ls.listen = l->config.listen;
    ls.peer = l->config.peer;
    ls.up = l->heard && t - l->last_heard < settings_.dead_after;
    if (l->heard) ls.last_heard_ms = ms(t - l->last_heard);
    if (l->rtt_ms >= 0) ls.rtt_ms = l->rtt_ms;
    ls.rx = l->rx, ls.tx = l->tx, ls.kernel_drops = l->kernel_drops;
    s.kernel_drops += l->kernel_drops;
    s.links.push_back(std::move(ls));
  }
  s.datagrams = datagrams_;
  s.peer_alive = peer_alive_;
  s.supervisor_fresh = supervisor_fresh_;
  s.commands_pending = pending_.size();
  return s;
}

}  // namespace vac
