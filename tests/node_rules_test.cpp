// The node core's rules (supervisor/node_rules.cpp), one at a time: each test pins down what one
// line decides, so that a one-line change to that line fails here (see tests/mutate).
#include <doctest/doctest.h>

#include "node_test_util.hpp"

using namespace vac;
using namespace vac::test;
using namespace std::chrono_literals;

namespace {
Event hb(NodeState s, uint64_t epoch, bool healthy = true, Role role = Role::unknown) {
  Event e = msg(PeerMessage::heartbeat, s, epoch, healthy);
  e.message.role = role;
  return e;
}
}  // namespace

// ---- roles and epochs ----

TEST_CASE("two nodes with the same role and the same name: neither acts as master, never both") {
  NodePolicy p = policy(true);
  p.name = p.peer_name = "web";
  Node a(p, NodeState::passive, 0, 0s), b(p, NodeState::passive, 0, 0s);
  a.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  b.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  CHECK_FALSE(a.acts_as_master());
  CHECK(a.state() == NodeState::passive);  // no order to break the tie: nobody starts
  CHECK(b.state() == NodeState::passive);
  CHECK(a.role_conflict().find("both are named web") != std::string::npos);
  CHECK(a.role_conflict().find("neither acts as master") != std::string::npos);
  // Both active at equal epochs (after a partition): both yield rather than both stay.
  Node c(p, NodeState::passive, 4, 0s), d(p, NodeState::passive, 4, 0s);
  c.handle(ev(Event::peer_lost), 3s), d.handle(ev(Event::peer_lost), 3s);
  c.handle(hb(NodeState::active, 5, true, Role::master), 4s);
  d.handle(hb(NodeState::active, 5, true, Role::master), 4s);
  CHECK(c.state() == NodeState::stopping);
  CHECK(d.state() == NodeState::stopping);
}

TEST_CASE("a role conflict is reported while it lasts, and cleared once the peer's role differs") {
  NodePolicy p = policy(true);
  p.name = "alpha", p.peer_name = "beta";
  Node n(p, NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  CHECK(n.role_conflict() ==
        "both nodes are configured master; alpha acts as master (first by name)");
  // The peer's configuration is mended and it restarts as the standby.
  n.handle(hb(NodeState::passive, 0, true, Role::standby), 1s);
  CHECK(n.role_conflict().empty());
}

TEST_CASE("an exhausted epoch: the node stays passive and says why") {
  Node n(policy(true), NodeState::passive, kEpochMax, 0s);
  auto a = n.handle(hb(NodeState::passive, 0), 0s);
  CHECK(n.state() == NodeState::passive);
  CHECK_FALSE(has(a, Action::persist));
  CHECK(n.epoch() == kEpochMax);
  CHECK(n.reason() == "the epoch is exhausted: this node cannot serve");
}

TEST_CASE("a takeover older than the peer's latest epoch is stale: ignored") {
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::active, 5), 0s);
  // Sent when the peer handed over at epoch 3, delivered late: it has served at 5 since.
  n.handle(msg(PeerMessage::takeover, NodeState::passive, 3), 1s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.peer()->epoch == 5);  // nor is it taken as news of the peer
  n.handle(msg(PeerMessage::takeover, NodeState::passive, 5), 2s);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.epoch() == 6);
}

TEST_CASE("rule 5's reason says whether the peer's epoch is higher or the epochs tie") {
  Node higher = active_master(3);
  higher.handle(hb(NodeState::active, 5), 1s);
  CHECK(higher.reason() == "both active: yielding to the peer's higher epoch");
  Node tie(policy(false), NodeState::passive, 0, 0s);
  tie.handle(ev(Event::peer_lost), 3s);
  tie.handle(ev(Event::services_up), 3s);
  tie.handle(hb(NodeState::active, tie.epoch()), 4s);
  CHECK(tie.state() == NodeState::stopping);
  CHECK(tie.reason() == "both active at equal epochs: the master serves");
}

// ---- the verdicts about the services ----

TEST_CASE("an active-scope verdict before the services start does not count") {
  // The epoch is being written (nothing runs yet) when an on-demand check fails.
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.wait() == Wait::persisting);
  n.handle(ev(Event::active_probe, false), 100ms);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.healthy());
  auto a = n.handle(Event(Event::persisted, true), 200ms);
  CHECK(has(a, Action::start_services));
  n.handle(ev(Event::services_up), 1s);
  n.handle(ev(Event::tick), 15s);  // past the start period, and no failure was counted
  CHECK(n.state() == NodeState::active);
  CHECK(n.healthy());
}

TEST_CASE("a failing active-scope probe is forgotten once the services are down") {
  Node n = active_master();
  n.handle(ev(Event::active_probe, true), 1s);
  n.handle(ev(Event::active_probe, false), 2s);
  REQUIRE(n.state() == NodeState::stopping);
  n.handle(ev(Event::services_down), 3s);
  REQUIRE(n.state() == NodeState::failed);
  n.handle(hb(NodeState::active, 2), 3s);  // the peer took the role
  n.handle(ev(Event::op_recover), 4s);
  n.handle(ev(Event::health, true), 5s);
  REQUIRE(n.state() == NodeState::passive);
  // The peer that took over fails: this node serves again, with no stale verdict.
  n.handle(hb(NodeState::failed, 2, false), 6s);
  REQUIRE(n.state() == NodeState::starting);
  n.handle(ev(Event::services_up), 6s);
  n.handle(ev(Event::tick), 30s);  // well past the new start period, with no verdict yet
  CHECK(n.state() == NodeState::active);
  CHECK(n.healthy());
}

TEST_CASE("services that never became ready are forgotten once they are down") {
  Node n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::maintenance, 0), 0s);
  n.handle(ev(Event::tick), 30s);  // start_timeout: unhealthy, but nobody can take over
  REQUIRE(n.state() == NodeState::starting);
  REQUIRE_FALSE(n.healthy());
  // The peer, out of maintenance, asks for the role: this node stops for it.
  n.handle(hb(NodeState::passive, 0), 31s);
  REQUIRE(n.state() == NodeState::stopping);
  n.handle(ev(Event::services_down), 32s);
  CHECK(n.state() == NodeState::failed);  // a node whose start failed is failed ...
  Node m(policy(true), NodeState::passive, 0, 0s);
  m.handle(hb(NodeState::maintenance, 0), 0s);
  m.handle(ev(Event::tick), 30s);
  REQUIRE_FALSE(m.healthy());
  m.handle(msg(PeerMessage::quiesce, NodeState::passive, 0), 31s);
  REQUIRE(m.state() == NodeState::stopping);
  m.handle(ev(Event::services_down), 32s);
  CHECK(m.state() == NodeState::passive);  // ... but one that stopped for its peer is healthy
  CHECK(m.healthy());
  CHECK(m.heartbeat().healthy);
}

// ---- the node record ----

TEST_CASE("a failed write is retried once per persist_retry, even when a retry is unanswered") {
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::active, 1), 0s);
  Event fail(Event::persisted, false);
  n.NodeCore::handle(fail, 0s);
  REQUIRE_FALSE(n.record_error().empty());
  CHECK(has(n.NodeCore::handle(ev(Event::tick), 1s), Action::persist));  // not answered
  CHECK_FALSE(has(n.NodeCore::handle(ev(Event::tick), 1500ms), Action::persist));
  CHECK(has(n.NodeCore::handle(ev(Event::tick), 2s), Action::persist));
}

// ---- the peer lost, isolation ----

TEST_CASE("isolation counts from when the last of peer and witness went silent") {
  Node n(policy(true, true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  n.handle(ev(Event::services_up), 0s);
  n.handle(ev(Event::witness, false), 1s);
  n.handle(ev(Event::peer_lost), 2s);
  n.handle(ev(Event::tick), 4500ms);
  CHECK(n.state() == NodeState::active);  // 2.5 s since both were lost, not 3.5 s
  n.handle(ev(Event::tick), 5s);
  CHECK(n.state() == NodeState::stopping);
  // linkd says peer_lost again (it restarted): the count goes on from the first.
  Node m(policy(true, true), NodeState::passive, 0, 0s);
  m.handle(hb(NodeState::passive, 0), 0s);
  m.handle(ev(Event::services_up), 0s);
  m.handle(ev(Event::witness, false), 1s);
  m.handle(ev(Event::peer_lost), 2s);
  m.handle(ev(Event::peer_lost), 4s);
  m.handle(ev(Event::tick), 5s);
  CHECK(m.state() == NodeState::stopping);
  // The other order: the peer is lost first, the witness still answers for a while.
  Node k(policy(true, true), NodeState::passive, 0, 0s);
  k.handle(hb(NodeState::passive, 0), 0s);
  k.handle(ev(Event::services_up), 0s);
  k.handle(ev(Event::peer_lost), 1s);
  k.handle(ev(Event::tick), 5s);  // the witness answers: not isolated, however long
  k.handle(ev(Event::witness, false), 5s);
  k.handle(ev(Event::tick), 7500ms);
  CHECK(k.state() == NodeState::active);  // 2.5 s since the witness went silent
  k.handle(ev(Event::tick), 8s);
  CHECK(k.state() == NodeState::stopping);
}

TEST_CASE("a lost peer ends the waits for its answer, and only those") {
  // Writing the epoch: the services still start once it is written.
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.wait() == Wait::persisting);
  n.handle(ev(Event::peer_lost), 100ms);
  CHECK(n.wait() == Wait::persisting);
  CHECK(has(n.handle(Event(Event::persisted, true), 200ms), Action::start_services));
  // Recovering: the probes still decide.
  Node f(policy(true), NodeState::failed, 1, 0s);
  f.handle(hb(NodeState::active, 2), 0s);
  f.handle(ev(Event::op_recover), 1s);
  f.handle(ev(Event::peer_lost), 2s);
  CHECK(f.wait() == Wait::recovering);
  f.handle(ev(Event::health, true), 3s);
  CHECK(f.state() != NodeState::failed);
  // Handed over: nobody is left to take the role; the plain rules (rule 3) apply.
  NodePolicy w = policy(true, true);
  Node h(w, NodeState::passive, 0, 0s);
  h.handle(hb(NodeState::passive, 0), 0s);
  h.handle(ev(Event::services_up), 0s);
  h.handle(ev(Event::op_release), 1s);
  h.handle(ev(Event::services_down), 1s);
  REQUIRE(h.wait() == Wait::handed_over);
  h.handle(ev(Event::witness, false), 1s);  // and it cannot take the role back by rule 3
  h.handle(ev(Event::peer_lost), 2s);
  CHECK(h.wait() == Wait::none);
  CHECK(h.state() == NodeState::passive);
}

// ---- failback ----

TEST_CASE("failback waits to hear the peer, then asks it to stop") {
  // Restarted failed: the peer is not heard yet when the probes pass.
  Node n(policy(true), NodeState::failed, 1, 0s);
  n.handle(ev(Event::op_recover, true), 1s);
  n.handle(ev(Event::health, true), 2s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::failback);
  auto a = n.handle(hb(NodeState::active, 3), 2500ms);
  CHECK(has(a, Action::send, PeerMessage::quiesce));
  CHECK(n.wait() == Wait::quiesce_sent);
}

TEST_CASE("failback ends when the peer is heard not serving: no role taken from it later") {
  Node n(policy(false), NodeState::failed, 1, 0s);
  n.handle(hb(NodeState::passive, 1), 0s);
  n.handle(ev(Event::op_recover, true), 1s);
  n.handle(ev(Event::health, true), 2s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::none);
  // The master takes the role itself, as both are passive: the standby leaves it there.
  auto a = n.handle(hb(NodeState::starting, 2), 3s);
  CHECK_FALSE(has(a, Action::send, PeerMessage::quiesce));
  CHECK(n.state() == NodeState::passive);
}

// ---- rule 1 without a peer, operator takeover after a handover ----

TEST_CASE("a single unhealthy node keeps serving and says why") {
  NodePolicy p = policy(true);
  p.has_peer = false;
  Node n(p, NodeState::passive, 0, 0s);
  n.handle(ev(Event::tick), 0s);
  n.handle(ev(Event::services_up), 0s);
  n.handle(ev(Event::health, false), 1s);
  CHECK(n.state() == NodeState::active);
  CHECK(n.reason() == "a critical probe is failing, and no peer to take over: still serving");
}

TEST_CASE("an operator takeover just after a handover is refused: the peer is taking the role") {
  Node n = active_master();
  n.handle(ev(Event::op_release), 1s);
  n.handle(ev(Event::services_down), 2s);  // `takeover` sent, maybe not yet delivered
  REQUIRE(n.wait() == Wait::handed_over);
  auto a = n.handle(ev(Event::op_takeover), 2100ms);
  CHECK(n.refused().find("just handed over") != std::string::npos);
  CHECK(n.state() == NodeState::passive);
  CHECK_FALSE(has(a, Action::persist));
  // Once the peer serves, the operator's takeover asks it to stop first.
  n.handle(hb(NodeState::starting, 2), 2200ms);
  a = n.handle(ev(Event::op_takeover), 2300ms);
  CHECK(n.refused().empty());
  CHECK(has(a, Action::send, PeerMessage::quiesce));
}
