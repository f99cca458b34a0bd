// Helpers shared by the node core's rule tests.
#pragma once

#include <doctest/doctest.h>

#include <algorithm>

#include "node.hpp"

namespace vac::test {
using namespace std::chrono_literals;
// A core whose writes succeed at once, as the shell answers them (Event::persisted).
struct Node : NodeCore {
  using NodeCore::NodeCore;
  Node(const NodeCore& c) : NodeCore(c) {}  // NOLINT
  std::vector<Action> handle(const Event& e, Time now) {
    auto out = NodeCore::handle(e, now);
    for (size_t i = 0; i < out.size() && i < 64; ++i)
      if (out[i].kind == Action::persist) {
        auto more = NodeCore::handle(Event(Event::persisted, true), now);
        out.insert(out.end(), more.begin(), more.end());
      }
    return out;
  }
};

inline NodePolicy policy(bool master, bool witness = false) {
  NodePolicy p;
  p.master = master;
  p.has_witness = witness;
  p.dead_after = 1s;
  p.startup_grace = 3s;
  p.isolation_after = 3s;
  return p;
}

inline bool has(const std::vector<Action>& a, Action::Kind k,
                PeerMessage::Kind m = PeerMessage::heartbeat) {
  return std::any_of(a.begin(), a.end(), [&](const Action& x) {
    return x.kind == k && (k != Action::send || x.message.kind == m);
  });
}

inline Event msg(PeerMessage::Kind kind, NodeState state, uint64_t epoch, bool healthy = true) {
  Event e;
  e.kind = Event::peer_message;
  e.message = {kind, state, epoch, healthy, Role::unknown};
  return e;
}
inline Event ev(Event::Kind k, bool flag = false) {
  Event e;
  e.kind = k;
  e.flag = flag;
  return e;
}

// An active node, with a passive healthy peer heard.
inline Node active_master(uint64_t epoch = 1) {
  Node n(policy(true), NodeState::passive, epoch - 1, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0), 0s);
  n.handle(ev(Event::services_up), 0s);
  REQUIRE(n.state() == NodeState::active);
  return n;
}
}  // namespace vac::test
