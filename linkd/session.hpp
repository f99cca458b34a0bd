// Which authenticated datagrams count. Each linkd start draws a random session id; a datagram
// carries its sender's session and the receiver's session as the sender knows it. Data
// (heartbeats, commands, acks) counts only inside a confirmed pair of sessions, with sequence
// numbers strictly increasing per link; a peer session is confirmed only by a response that
// echoes a fresh challenge of ours. So nothing captured before either side's latest start can
// be replayed into the pair, and no clock is involved. See vacataire-linkd(8), "Sessions".
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "common/duration.hpp"
#include "wire.hpp"

namespace vac {

using MonoTime = Duration;  // a monotonic clock's reading; only differences mean anything

class PeerSession {
 public:
  enum class Verdict {
    accept,         // data inside the confirmed pair, in order
    handshake,      // a challenge or response, handled here
    unconfirmed,    // data from a peer session not (yet) confirmed
    stale_session,  // data naming a session that is not the current one on either side
    replay,         // data not newer than the last accepted on its link
  };
  static const char* to_string(Verdict v);

  // A handshake datagram to send on every link, addressed to the session rsid.
  struct Outgoing {
    std::string rsid;
    WireMessage msg;
  };

  // window: how long one of our challenges stays answerable (a response is accepted up to two
  // windows after the challenge); rechallenge: how often one peer session is challenged or
  // answered at most.
  PeerSession(size_t links, Duration window, Duration rechallenge);

  const std::string& mine() const { return mine_; }
  const std::string& peer() const { return peer_; }  // "" until one is confirmed
  bool confirmed() const { return !peer_.empty(); }
  // Bumped whenever the confirmed peer session changes (or is dropped): command ids and the
  // inbox belong to one pair.
  uint64_t generation() const { return generation_; }

  // Classifies one authenticated datagram from the configured peer (its name and link already
  // checked) received at now; handshake datagrams to send are appended to out.
  Verdict admit(const Datagram& d, MonoTime now, std::vector<Outgoing>& out);

  // The peer fell silent: whatever comes next must prove itself again.
  void drop_peer();

 private:
  std::string nonce_for(const std::string& sid, int64_t window_index) const;
  void challenge(const std::string& sid, MonoTime now, std::vector<Outgoing>& out);
  void respond(const Datagram& d, MonoTime now, std::vector<Outgoing>& out);
  void confirm(const Datagram& d);

  std::string mine_, peer_;
  unsigned char secret_[32];  // per start: makes our nonces unpredictable and ours alone
  Duration window_, rechallenge_;
  uint64_t generation_ = 0;
  std::vector<uint64_t> floor_;  // per link: the highest sequence number accepted
  // Rate limits, bounded: a replayed handshake datagram costs one small answer at most.
  std::map<std::string, MonoTime> challenged_, answered_;
  std::deque<std::string> challenged_order_, answered_order_;
};

// Commands reach the supervisor once each, in whatever order they arrive: the ids seen from
// the current peer session (bounded: ids at or under the floor count as seen).
class CommandInbox {
 public:
  bool first_time(uint64_t id);  // records it
  void reset();

 private:
  std::set<uint64_t> seen_;
  uint64_t floor_ = 0;
};

}  // namespace vac
