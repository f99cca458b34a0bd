// The rules of DESIGN.md's node state machine, one test each (numbers as there).
#include <doctest/doctest.h>

#include <algorithm>

#include "node_test_util.hpp"

using namespace vac;
using namespace vac::test;
using namespace std::chrono_literals;

TEST_CASE("both passive at start: the master takes the role, the standby waits") {
  Node master(policy(true), NodeState::passive, 0, 0s);
  auto a = master.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0), 0s);
  CHECK(master.state() == NodeState::starting);
  CHECK(has(a, Action::persist));
  CHECK(has(a, Action::start_services));
  CHECK(master.epoch() == 1);
  master.handle(ev(Event::services_up), 0s);
  CHECK(master.state() == NodeState::active);

  Node standby(policy(false), NodeState::passive, 0, 0s);
  standby.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0), 0s);
  CHECK(standby.state() == NodeState::passive);
  standby.handle(msg(PeerMessage::heartbeat, NodeState::active, 1), 0s);
  CHECK(standby.state() == NodeState::passive);
}

TEST_CASE("rule 1: a failing active node hands over to a healthy passive peer and fails") {
  Node n = active_master();
  auto a = n.handle(ev(Event::health, false), 1s);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));  // stop first: break-before-make
  CHECK(has(a, Action::stop_services));
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.wait() == Wait::then_takeover);
  CHECK(n.durable_state() == NodeState::failed);  // a crash now must still find it failed
  a = n.handle(ev(Event::services_down), 1s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(n.state() == NodeState::failed);
}

TEST_CASE("rule 1: without a peer able to take over, the failing node keeps serving") {
  Node n = active_master();
  n.handle(msg(PeerMessage::heartbeat, NodeState::failed, 0, false), 1s);
  auto a = n.handle(ev(Event::health, false), 1s);
  CHECK(n.state() == NodeState::active);
  CHECK_FALSE(n.serving());  // reported unhealthy: /health answers 503
  CHECK(n.reason().find("no healthy passive peer") != std::string::npos);
  // ... and fails over as soon as one appears.
  a = n.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0, true), 2s);
  CHECK(has(a, Action::stop_services));
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.wait() == Wait::then_takeover);

  NodePolicy p = policy(true);
  p.stop_without_peer = true;
  Node s(p, NodeState::passive, 0, 0s);
  s.handle(msg(PeerMessage::heartbeat, NodeState::maintenance, 0), 0s);
  s.handle(ev(Event::services_up), 0s);
  s.handle(ev(Event::health, false), 1s);
  CHECK(s.state() == NodeState::stopping);  // stop_without_peer: the original behaviour
  CHECK(s.durable_state() == NodeState::failed);
}

TEST_CASE("rule 2: a passive node told to take over starts its services with a new epoch") {
  Node n(policy(false), NodeState::passive, 4, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::active, 7), 0s);
  auto a = n.handle(msg(PeerMessage::takeover, NodeState::stopping, 7), 1s);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.epoch() == 8);  // max(own, peer) + 1
  CHECK(has(a, Action::start_services));
  // An unhealthy passive node does not take over.
  Node sick(policy(false), NodeState::passive, 0, 0s);
  sick.handle(ev(Event::health, false), 0s);
  sick.handle(msg(PeerMessage::takeover, NodeState::stopping, 1), 0s);
  CHECK(sick.state() == NodeState::passive);
}

TEST_CASE("rule 3: the peer lost while active, or never heard after the grace: take over") {
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::active, 1), 0s);
  n.handle(ev(Event::peer_lost), 1s);
  CHECK(n.state() == NodeState::starting);

  Node alone(policy(false), NodeState::passive, 0, 0s);
  alone.handle(ev(Event::tick), 2s);
  CHECK(alone.state() == NodeState::passive);  // still within the start-up grace
  alone.handle(ev(Event::tick), 3s);
  CHECK(alone.state() == NodeState::starting);
}

TEST_CASE("rule 3: not when the witness says this node is the isolated one") {
  Node n(policy(false, true), NodeState::passive, 0, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::active, 1), 0s);
  n.handle(ev(Event::witness, false), 0s);
  n.handle(ev(Event::peer_lost), 1s);
  CHECK(n.state() == NodeState::passive);
  n.handle(ev(Event::witness, true), 2s);
  CHECK(n.state() == NodeState::starting);
}

TEST_CASE("rule 4: an active node reaching neither peer nor witness fences itself") {
  Node n(policy(true, true), NodeState::passive, 0, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0), 0s);
  n.handle(ev(Event::services_up), 0s);
  n.handle(ev(Event::peer_lost), 1s);
  n.handle(ev(Event::witness, false), 1s);
  n.handle(ev(Event::tick), 3500ms);
  CHECK(n.state() == NodeState::active);  // not yet isolation_after
  n.handle(ev(Event::tick), 4s);
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.reason().find("isolated") != std::string::npos);
  // Without a witness, a lost peer alone does not fence: the peer may simply be dead.
  Node lone = active_master();
  lone.handle(ev(Event::peer_lost), 1s);
  lone.handle(ev(Event::tick), 60s);
  CHECK(lone.state() == NodeState::active);
}

TEST_CASE("rule 5: both active after a heal: the lower epoch yields; on a tie, the standby") {
  Node n = active_master(3);
  n.handle(msg(PeerMessage::heartbeat, NodeState::active, 5), 1s);
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.durable_state() == NodeState::passive);

  Node keep = active_master(3);
  keep.handle(msg(PeerMessage::heartbeat, NodeState::active, 3), 1s);
  CHECK(keep.state() == NodeState::active);  // the master keeps a tie

  Node standby(policy(false), NodeState::passive, 0, 0s);
  standby.handle(ev(Event::peer_lost), 3s);
  standby.handle(ev(Event::services_up), 3s);
  uint64_t e = standby.epoch();
  standby.handle(msg(PeerMessage::heartbeat, NodeState::active, e), 4s);
  CHECK(standby.state() == NodeState::stopping);
}

TEST_CASE("rule 6: recover re-runs the probes, then passive; with failback, quiesce the peer") {
  Node n(policy(true), NodeState::failed, 2, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::active, 3), 0s);
  CHECK(n.state() == NodeState::failed);
  n.handle(ev(Event::health, true), 0s);
  CHECK(n.state() == NodeState::failed);  // sticky: probes passing is not enough
  auto a = n.handle(ev(Event::op_recover, true), 1s);
  CHECK(n.refused().empty());
  CHECK(n.state() == NodeState::failed);  // waiting for a fresh verdict
  a = n.handle(ev(Event::health, true), 2s);
  CHECK(n.state() == NodeState::passive);
  CHECK(has(a, Action::send, PeerMessage::quiesce));
  n.handle(msg(PeerMessage::heartbeat, NodeState::stopping, 3), 2s);
  CHECK(n.state() == NodeState::passive);
  a = n.handle(msg(PeerMessage::stopped, NodeState::passive, 3), 3s);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.epoch() == 4);
}

TEST_CASE("rule 6: the peer asked to quiesce stops, then says so") {
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::failed, 1, false), 0s);
  n.handle(ev(Event::services_up), 0s);
  REQUIRE(n.state() == NodeState::active);
  auto a = n.handle(msg(PeerMessage::quiesce, NodeState::passive, 1), 1s);
  CHECK(has(a, Action::stop_services));
  CHECK_FALSE(has(a, Action::send, PeerMessage::stopped));
  a = n.handle(ev(Event::services_down), 2s);
  CHECK(n.state() == NodeState::passive);
  CHECK(has(a, Action::send, PeerMessage::stopped));
}

TEST_CASE("rule 7: operator takeover, release and maintenance follow the same handshake") {
  Node standby(policy(false), NodeState::passive, 0, 0s);
  standby.handle(msg(PeerMessage::heartbeat, NodeState::active, 1), 0s);
  auto a = standby.handle(ev(Event::op_takeover), 1s);
  CHECK(has(a, Action::send, PeerMessage::quiesce));
  CHECK(standby.state() == NodeState::passive);
  standby.handle(msg(PeerMessage::stopped, NodeState::passive, 1), 2s);
  CHECK(standby.state() == NodeState::starting);

  Node m = active_master();
  a = m.handle(ev(Event::op_release), 1s);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));
  CHECK(m.state() == NodeState::stopping);
  CHECK(m.durable_state() == NodeState::passive);
  a = m.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(m.wait() == Wait::handed_over);

  Node alone = active_master();
  alone.handle(msg(PeerMessage::heartbeat, NodeState::failed, 0, false), 1s);
  alone.handle(ev(Event::op_release), 1s);
  CHECK(alone.refused() == "no healthy passive peer to hand over to");
  CHECK(alone.state() == NodeState::active);

  Node mt = active_master();
  a = mt.handle(ev(Event::op_maintenance_on), 1s);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));
  a = mt.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(mt.state() == NodeState::maintenance);
  mt.handle(ev(Event::op_maintenance_off), 3s);
  CHECK(mt.state() != NodeState::maintenance);

  Node failed(policy(true), NodeState::failed, 1, 0s);
  failed.handle(ev(Event::op_takeover), 0s);
  CHECK(failed.refused() == "this node is failed; run recover first");
  failed.handle(ev(Event::op_maintenance_on), 0s);
  CHECK(failed.state() == NodeState::failed);
}

TEST_CASE("rule 8: failed and maintenance stick across restarts; other states restart passive") {
  CHECK(Node(policy(true), NodeState::failed, 3, 0s).state() == NodeState::failed);
  CHECK(Node(policy(true), NodeState::maintenance, 3, 0s).state() == NodeState::maintenance);
  CHECK(Node(policy(true), NodeState::active, 3, 0s).state() == NodeState::passive);
  Node n(policy(true), NodeState::failed, 3, 0s);
  n.handle(msg(PeerMessage::heartbeat, NodeState::passive, 0), 0s);
  CHECK(n.state() == NodeState::failed);
  CHECK(n.epoch() == 3);
}

TEST_CASE("a single node (no peer) serves as soon as it is healthy") {
  NodePolicy p = policy(true);
  p.has_peer = false;
  Node n(p, NodeState::passive, 0, 0s);
  n.handle(ev(Event::tick), 0s);
  CHECK(n.state() == NodeState::starting);
  n.handle(ev(Event::services_up), 0s);
  n.handle(ev(Event::health, false), 1s);
  CHECK(n.state() == NodeState::active);  // stopping the only server helps nobody
}
