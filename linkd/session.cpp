#include "session.hpp"

#include <sodium.h>

#include "common/text.hpp"

namespace vac {

namespace {
constexpr size_t kRateEntries = 16;  // peer sessions remembered for rate limits
constexpr size_t kInboxIds = 1024;   // command ids remembered individually

// Remembers key at now unless it was seen within every; false when too soon.
bool rate_ok(std::map<std::string, MonoTime>& seen, const std::string& key, MonoTime now,
             Duration every) {
  auto it = seen.find(key);
  if (it != seen.end() && now - it->second < every) return false;
  if (seen.size() >= kRateEntries) seen.clear();  // forgetting only loosens a rate limit
  seen[key] = now;
  return true;
}
}  // namespace

const char* PeerSession::to_string(Verdict v) {
  switch (v) {
    case Verdict::accept:
      return "ok";
    case Verdict::handshake:
      return "handshake";
    case Verdict::unconfirmed:
      return "unconfirmed";
    case Verdict::stale_session:
      return "stale_session";
    case Verdict::replay:
      return "replay";
  }
  return "replay";
}

PeerSession::PeerSession(size_t links, Duration window, Duration rechallenge)
    : mine_(random_hex(kSessionBytes)),
      window_(std::max<Duration>(window, std::chrono::milliseconds(1))),
      rechallenge_(rechallenge),
      floor_(links, 0) {
  randombytes_buf(secret_, sizeof secret_);
}

std::string PeerSession::nonce_for(const std::string& sid, int64_t window_index) const {
  // Keyed by a secret of this start, bound to the peer session, to the pair generation (a
  // confirmation voids every challenge issued before it) and to the time window.
  std::string input = cat(sid, ':', generation_, ':', window_index);
  unsigned char out[kSessionBytes];
  crypto_generichash(out, sizeof out, reinterpret_cast<const unsigned char*>(input.data()),
                     input.size(), secret_, sizeof secret_);
  return key_hex(Key(out, out + sizeof out));
}

void PeerSession::challenge(const std::string& sid, MonoTime now, std::vector<Outgoing>& out) {
  if (!rate_ok(challenged_, sid, now, rechallenge_)) return;
  WireMessage m;
  m.kind = WireMessage::challenge;
  m.nonce = nonce_for(sid, now / window_);
  out.push_back({sid, m});
}

void PeerSession::respond(const Datagram& d, MonoTime now, std::vector<Outgoing>& out) {
  // Answering proves only that our session is alive now; it changes nothing here. Only
  // challenges to this session are answered: replays of older ones cost nothing.
  if (d.rsid != mine_) return;
  if (!rate_ok(answered_, d.sid + d.msg.nonce, now, rechallenge_)) return;
  WireMessage m;
  m.kind = WireMessage::response;
  m.nonce = d.msg.nonce;
  out.push_back({d.sid, m});
}

void PeerSession::confirm(const Datagram& d) {
  peer_ = d.sid;
  // Everything the peer sent before this response is older than the pair: refused.
  for (auto& f : floor_) f = d.seq;
  ++generation_;
  challenged_.clear();
}

void PeerSession::drop_peer() {
  peer_.clear();
  for (auto& f : floor_) f = 0;
  ++generation_;
  challenged_.clear();
}

PeerSession::Verdict PeerSession::admit(const Datagram& d, MonoTime now,
                                        std::vector<Outgoing>& out) {
  int64_t w = now / window_;
  switch (d.msg.kind) {
    case WireMessage::challenge:
      respond(d, now, out);
      if (d.sid != peer_) challenge(d.sid, now, out);
      return Verdict::handshake;
    case WireMessage::response:
      // Only a response to one of our recent challenges, for the current generation, sent to
      // this start of ours, confirms a session.
      if (d.rsid == mine_ && d.sid != peer_ &&
          (d.msg.nonce == nonce_for(d.sid, w) || d.msg.nonce == nonce_for(d.sid, w - 1)))
        confirm(d);
      return Verdict::handshake;
    default:
      break;
  }
  if (d.sid != peer_) {
    challenge(d.sid, now, out);  // maybe the peer restarted: ask it to prove it
    return Verdict::unconfirmed;
  }
  if (d.rsid != mine_) return Verdict::stale_session;
  if (d.link >= floor_.size() || d.seq <= floor_[d.link]) return Verdict::replay;
  floor_[d.link] = d.seq;
  return Verdict::accept;
}

bool CommandInbox::first_time(uint64_t id) {
  if (id <= floor_ || !seen_.insert(id).second) return false;
  while (seen_.size() > kInboxIds) {
    floor_ = *seen_.begin();
    seen_.erase(seen_.begin());
  }
  return true;
}

void CommandInbox::reset() {
  seen_.clear();
  floor_ = 0;
}

}  // namespace vac
