// The node core's sub-states and their deadlines (no reply that never comes stalls the pair),
// break-before-make handovers, roles, durable writes, epochs, and the policies that moved
// from the shell into the core (start period, restart budget, recovering, shutdown).
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

// A master that has released to its (healthy, passive) peer and is waiting for it to serve.
Node released(const NodePolicy& p = policy(true)) {
  Node n(p, NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  n.handle(ev(Event::services_up), 0s);
  REQUIRE(n.state() == NodeState::active);
  n.handle(ev(Event::op_release), 1s);
  REQUIRE(n.refused().empty());
  n.handle(ev(Event::services_down), 1s);
  REQUIRE(n.wait() == Wait::handed_over);
  return n;
}
}  // namespace

TEST_CASE("a release whose takeover is ignored or lost: the master serves again") {
  // Lost: the peer stays passive and healthy; the handover deadline ends the wait.
  Node n = released();
  n.handle(hb(NodeState::passive, 0), 2s);
  CHECK(n.state() == NodeState::passive);  // waiting for the peer to take the role
  n.handle(ev(Event::tick), 1s + 5s - 1ms);
  CHECK(n.state() == NodeState::passive);
  n.handle(ev(Event::tick), 1s + 5s);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.reason() == "both passive: the master serves");
  // Ignored because the peer was unhealthy: it says so, and the master takes the role back.
  Node m = released();
  m.handle(hb(NodeState::passive, 0, false), 2s);
  CHECK(m.state() == NodeState::starting);
  // The peer took it: the wait ends without reclaiming.
  Node k = released();
  k.handle(hb(NodeState::starting, 2), 2s);
  CHECK(k.wait() == Wait::none);
  k.handle(ev(Event::tick), 30s);
  CHECK(k.state() == NodeState::passive);
}

TEST_CASE("once the peer served after a handover, a peer back passive finds the master serving") {
  // The peer took the role, then was killed and restarted (passive, at its epoch): the handover
  // is long done, and the master must not wait out handover_timeout (chaos seed 4010).
  Node n = released();
  uint64_t served = n.epoch();
  n.handle(hb(NodeState::starting, served + 1), 1s + 10ms);
  n.handle(hb(NodeState::active, served + 1), 1s + 50ms);
  CHECK(n.wait() == Wait::none);
  // Restarted within dead_after: never lost, heard again passive.
  n.handle(hb(NodeState::passive, served + 1), 2s + 300ms);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.reason() == "both passive: the master serves");
  // Heard serving at our own epoch (both were active before the release, at equal epochs):
  // it has not taken the role since; the tell still holds the master back.
  Node e = released();
  e.handle(hb(NodeState::active, e.epoch()), 1s + 10ms);
  e.handle(hb(NodeState::passive, e.epoch()), 1s + 20ms);
  CHECK(e.state() == NodeState::passive);
  e.handle(ev(Event::tick), 1s + 5s);
  CHECK(e.state() == NodeState::starting);
  // A stale heartbeat from before the handover (the peer serving at an older epoch) does not
  // end the wait: the takeover may still be on its way.
  Node k = released();
  k.handle(hb(NodeState::active, k.epoch() - 1), 1s + 10ms);
  k.handle(hb(NodeState::passive, k.epoch() - 1), 1s + 20ms);
  CHECK(k.state() == NodeState::passive);
  k.handle(ev(Event::tick), 1s + 5s);
  CHECK(k.state() == NodeState::starting);
}

TEST_CASE("a takeover asked of a peer that restarted since is void: never both start") {
  // web2 asked the active master to stop; the master crashed and came back (within dead_after:
  // never lost), passive at the epoch it served at, and free to take the role as master.
  // Reading that passive heartbeat as the `stopped` would start both (simulation seed 42).
  auto from = [](NodeState s, uint64_t epoch, uint64_t run) {
    Event e = hb(s, epoch);
    e.message.incarnation = run;
    return e;
  };
  Node n(policy(false), NodeState::passive, 2, 0s);
  n.handle(from(NodeState::active, 3, 11), 0s);
  n.handle(ev(Event::op_takeover), 1s);
  REQUIRE(n.wait() == Wait::quiesce_sent);
  n.handle(from(NodeState::passive, 3, 12), 1s + 100ms);  // a new run, passive at 3
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::none);
  CHECK(n.reason() == "the peer restarted: the takeover asked of it is void");
  n.handle(from(NodeState::starting, 4, 12), 1s + 120ms);  // it takes the role as master
  CHECK(n.state() == NodeState::passive);
  // The same run answering passive at that epoch is the answer (its `stopped` lost).
  Node m(policy(false), NodeState::passive, 2, 0s);
  m.handle(from(NodeState::active, 3, 11), 0s);
  m.handle(ev(Event::op_takeover), 1s);
  m.handle(from(NodeState::stopping, 3, 11), 1s + 50ms);
  m.handle(from(NodeState::passive, 3, 11), 1s + 100ms);
  CHECK(m.state() == NodeState::starting);
  // A peer that does not say its run (0) is taken at its word, as before.
  Node k(policy(false), NodeState::passive, 2, 0s);
  k.handle(from(NodeState::active, 3, 11), 0s);
  k.handle(ev(Event::op_takeover), 1s);
  k.handle(from(NodeState::passive, 3, 0), 1s + 100ms);
  CHECK(k.state() == NodeState::starting);
}

TEST_CASE("a node that handed over and then loses its peer waits before taking the role back") {
  // The takeover may have arrived: the peer may serve though silent (its linkd restarting, a
  // link flapping). Rule 3 waits for handed_over's deadline (simulation seed 21, 250,000 steps).
  Node n = released();
  n.handle(ev(Event::peer_lost), 1s + 100ms);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::handed_over);
  n.handle(ev(Event::tick), 1s + 5s - 1ms);
  CHECK(n.state() == NodeState::passive);
  // Heard serving meanwhile: the wait ends, nothing to take back.
  Node k = released();
  k.handle(ev(Event::peer_lost), 1s + 100ms);
  k.handle(hb(NodeState::active, 2), 2s);
  CHECK(k.wait() == Wait::none);
  k.handle(ev(Event::tick), 30s);
  CHECK(k.state() == NodeState::passive);
  // Still silent at the deadline: the plain rules, and rule 3 takes over.
  n.handle(ev(Event::tick), 1s + 5s);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.reason() == "the peer was lost");
}

TEST_CASE("a node that asked its peer to stop and then turns unhealthy abandons the takeover") {
  // Its heartbeat says it cannot serve, so the peer stopping for it may take the role back:
  // a `stopped` that arrives once it is healthy again must not start it (simulation seed 3).
  Node n(policy(false), NodeState::failed, 2, 0s);  // the standby: no master rule
  n.handle(hb(NodeState::active, 3), 0s);
  n.handle(ev(Event::op_recover, true), 1s);
  n.handle(ev(Event::health, true), 2s);
  REQUIRE(n.wait() == Wait::quiesce_sent);
  n.handle(ev(Event::health, false), 2100ms);
  CHECK(n.wait() == Wait::none);
  CHECK(n.reason().find("not taking over") != std::string::npos);
  n.handle(ev(Event::health, true), 2200ms);
  n.handle(msg(PeerMessage::stopped, NodeState::passive, 3), 2300ms);
  CHECK(n.state() == NodeState::passive);
  // Healthy throughout: the `stopped` starts it, as ever.
  Node m(policy(false), NodeState::failed, 2, 0s);
  m.handle(hb(NodeState::active, 3), 0s);
  m.handle(ev(Event::op_recover, true), 1s);
  m.handle(ev(Event::health, true), 2s);
  m.handle(msg(PeerMessage::stopped, NodeState::passive, 3), 2300ms);
  CHECK(m.state() == NodeState::starting);
}

TEST_CASE("a takeover from before the peer's latest epoch is stale, serving or not since") {
  // The peer served at epoch 3 and stopped since (heard passive at 3): a takeover it sent at
  // epoch 2, reordered or retried late, tells nothing about it now.
  Node n(policy(false), NodeState::passive, 1, 0s);
  n.handle(hb(NodeState::active, 3), 0s);
  n.handle(hb(NodeState::passive, 3), 1s);
  n.handle(msg(PeerMessage::takeover, NodeState::passive, 2), 2s);
  CHECK(n.state() == NodeState::passive);
  // A takeover at the epoch it served at is the real one, even after a reordered heartbeat
  // from before its stop.
  Node m(policy(false), NodeState::passive, 1, 0s);
  m.handle(hb(NodeState::active, 3), 0s);
  m.handle(msg(PeerMessage::takeover, NodeState::passive, 3), 1s);
  CHECK(m.state() == NodeState::starting);
}

TEST_CASE("a failback whose peer is lost while it waits for stopped: the plain rules decide") {
  Node n(policy(false), NodeState::failed, 2, 0s);
  n.handle(hb(NodeState::active, 3), 0s);
  n.handle(ev(Event::op_recover, true), 1s);
  n.handle(ev(Event::health, true), 2s);
  REQUIRE(n.wait() == Wait::quiesce_sent);
  n.handle(ev(Event::peer_lost), 3s);
  CHECK(n.wait() != Wait::quiesce_sent);    // the quiesce wait is over
  CHECK(n.state() == NodeState::starting);  // rule 3: the peer was lost
  CHECK(n.reason() == "the peer was lost");
}

TEST_CASE("a failback whose stopped is lost: heard passive at its epoch is stopped") {
  Node n(policy(true), NodeState::failed, 2, 0s);
  n.handle(hb(NodeState::active, 3), 0s);
  n.handle(ev(Event::op_recover, true), 1s);
  CHECK(n.wait() == Wait::recovering);
  auto a = n.handle(ev(Event::health, true), 2s);
  CHECK(has(a, Action::send, PeerMessage::quiesce));
  CHECK(n.wait() == Wait::quiesce_sent);
  n.handle(hb(NodeState::passive, 2), 2s);  // a reordered heartbeat from before: not it
  CHECK(n.state() == NodeState::passive);
  n.handle(hb(NodeState::stopping, 3), 2s);
  CHECK(n.state() == NodeState::passive);
  n.handle(hb(NodeState::passive, 3), 3s);  // its `stopped` never came
  CHECK(n.state() == NodeState::starting);
  CHECK(n.epoch() == 4);
  // The peer never stops: after the deadline the plain rules apply (it serves: stay passive).
  Node m(policy(true), NodeState::failed, 2, 0s);
  m.handle(hb(NodeState::active, 3), 0s);
  m.handle(ev(Event::op_recover, true), 1s);
  m.handle(ev(Event::health, true), 2s);
  m.handle(ev(Event::tick), 7s);
  CHECK(m.wait() == Wait::none);
  CHECK(m.state() == NodeState::passive);
  CHECK(m.reason().find("did not stop") != std::string::npos);
}

TEST_CASE("starting has a deadline: services never ready make the node unhealthy (rule 1)") {
  Node n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.wait() == Wait::ready);
  n.handle(ev(Event::tick), 29s);
  CHECK(n.healthy());
  auto a = n.handle(ev(Event::tick), 30s);
  CHECK(n.state() == NodeState::stopping);  // the healthy passive peer takes the role
  CHECK(n.wait() == Wait::then_takeover);
  CHECK(n.durable_state() == NodeState::failed);
  // Without a peer that can take it, keep trying, and say so in the heartbeat.
  Node alone(policy(true), NodeState::passive, 0, 0s);
  alone.handle(hb(NodeState::maintenance, 0), 0s);
  alone.handle(ev(Event::tick), 30s);
  CHECK(alone.state() == NodeState::starting);
  CHECK_FALSE(alone.heartbeat().healthy);
  alone.handle(ev(Event::services_up), 31s);
  CHECK(alone.state() == NodeState::active);
  CHECK(alone.healthy());
}

TEST_CASE("rule 1 applies in starting") {
  Node n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.state() == NodeState::starting);
  n.handle(ev(Event::health, false), 1s);
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.durable_state() == NodeState::failed);
}

TEST_CASE("two masters: reported, and the name sorting first serves, on both sides") {
  NodePolicy pa = policy(true), pb = policy(true);
  pa.name = pb.peer_name = "alpha";
  pb.name = pa.peer_name = "beta";
  Node a(pa, NodeState::passive, 0, 0s), b(pb, NodeState::passive, 0, 0s);
  a.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  b.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  CHECK(a.state() == NodeState::starting);
  CHECK(b.state() == NodeState::passive);
  CHECK(a.acts_as_master());
  CHECK_FALSE(b.acts_as_master());
  CHECK(a.role_conflict().find("both nodes are configured master") != std::string::npos);
  CHECK(b.role_conflict() == a.role_conflict());
  // Both active at equal epochs (e.g. after a partition): beta yields, alpha stays.
  Node a2(pa, NodeState::passive, 4, 0s), b2(pb, NodeState::passive, 4, 0s);
  a2.handle(ev(Event::peer_lost), 3s), b2.handle(ev(Event::peer_lost), 3s);
  REQUIRE(a2.epoch() == 5);
  REQUIRE(b2.epoch() == 5);
  a2.handle(hb(NodeState::active, 5, true, Role::master), 4s);
  b2.handle(hb(NodeState::active, 5, true, Role::master), 4s);
  CHECK(a2.state() == NodeState::starting);
  CHECK(b2.state() == NodeState::stopping);
  // Two standbys: the same rule, so one of them serves.
  NodePolicy sa = pa, sb = pb;
  sa.master = sb.master = false;
  Node c(sa, NodeState::passive, 0, 0s), d(sb, NodeState::passive, 0, 0s);
  c.handle(hb(NodeState::passive, 0, true, Role::standby), 0s);
  d.handle(hb(NodeState::passive, 0, true, Role::standby), 0s);
  CHECK(c.state() == NodeState::starting);
  CHECK(d.state() == NodeState::passive);
  // Different roles: no conflict, the configured master serves whatever the names.
  Node e(sb, NodeState::passive, 0, 0s);
  e.handle(hb(NodeState::passive, 0, true, Role::master), 0s);
  CHECK(e.role_conflict().empty());
  CHECK(e.state() == NodeState::passive);
  CHECK(e.heartbeat().role == Role::standby);
}

TEST_CASE("a node that cannot write its record does not start services, and retries") {
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  auto a = n.handle(hb(NodeState::passive, 0), 0s);
  CHECK(has(a, Action::persist));
  CHECK_FALSE(has(a, Action::start_services));
  CHECK(n.wait() == Wait::persisting);
  Event fail(Event::persisted, false);
  fail.detail = "No space left on device";
  n.handle(fail, 0s);
  CHECK(n.state() == NodeState::passive);
  CHECK_FALSE(n.healthy());
  CHECK(n.unhealthy_reason().find("No space left") != std::string::npos);
  CHECK(n.record_error() == "No space left on device");
  a = n.handle(ev(Event::tick), 500ms);
  CHECK_FALSE(has(a, Action::persist));
  a = n.handle(ev(Event::tick), 1s);
  CHECK(has(a, Action::persist));  // retried
  CHECK(n.state() == NodeState::passive);
  a = n.handle(Event(Event::persisted, true), 1s);
  CHECK(n.healthy());
  CHECK(n.state() == NodeState::starting);  // healthy again: the master takes the role
  CHECK(n.wait() == Wait::persisting);
  a = n.handle(Event(Event::persisted, true), 1s);
  CHECK(has(a, Action::start_services));
  CHECK(n.wait() == Wait::ready);
  // The write never answers: counted as failed after persist_timeout.
  NodeCore m(policy(true), NodeState::passive, 0, 0s);
  m.handle(hb(NodeState::passive, 0), 0s);
  m.handle(ev(Event::tick), 4s);
  CHECK(m.state() == NodeState::starting);
  a = m.handle(ev(Event::tick), 5s);
  CHECK(m.state() == NodeState::passive);
  CHECK_FALSE(has(a, Action::start_services));
  CHECK_FALSE(m.healthy());
}

TEST_CASE("an active node that cannot write steps aside, not into failed") {
  Node n = active_master();
  n.handle(Event(Event::persisted, false), 1s);
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.durable_state() == NodeState::passive);
}

TEST_CASE("epochs are validated on load and on receipt, and never wrap") {
  NodeCore n(policy(true), NodeState::passive, UINT64_MAX, 0s);
  CHECK(n.state() == NodeState::failed);
  CHECK(n.epoch() == 0);
  CHECK(n.epoch_refused().find("out of range") != std::string::npos);
  CHECK(NodeCore(policy(true), NodeState::passive, kEpochMax, 0s).state() == NodeState::passive);

  Node m(policy(false), NodeState::passive, 3, 0s);
  m.handle(msg(PeerMessage::takeover, NodeState::passive, UINT64_MAX), 1s);
  CHECK(m.state() == NodeState::passive);
  CHECK_FALSE(m.peer().has_value());
  CHECK(m.epoch_refused().find("18446744073709551615") != std::string::npos);
  m.handle(msg(PeerMessage::takeover, NodeState::passive, kEpochMax), 1s);
  CHECK(m.state() == NodeState::passive);  // max + 1 would leave the range: refused
  CHECK(m.epoch() == 3);
  m.handle(msg(PeerMessage::takeover, NodeState::passive, kEpochMax - 1), 1s);
  CHECK(m.state() == NodeState::passive);  // older than the peer's last epoch: stale
  Node k(policy(false), NodeState::passive, 3, 0s);
  k.handle(msg(PeerMessage::takeover, NodeState::passive, kEpochMax - 1), 1s);
  CHECK(k.state() == NodeState::starting);
  CHECK(k.epoch() == kEpochMax);
}

TEST_CASE("shutdown of the active node: stop, then hand over, then exit") {
  Node n = active_master();
  auto a = n.handle(ev(Event::op_shutdown), 1s);
  CHECK(n.state() == NodeState::stopping);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));
  CHECK_FALSE(n.may_exit());
  a = n.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(n.wait() == Wait::shutdown);
  CHECK_FALSE(n.may_exit());
  CHECK_FALSE(n.heartbeat().healthy);
  n.handle(hb(NodeState::passive, 0), 2s);
  CHECK(n.state() == NodeState::passive);  // never active again
  n.handle(hb(NodeState::starting, 2), 3s);
  CHECK(n.may_exit());
  // The peer never takes it: exit at the deadline anyway.
  Node m = active_master();
  m.handle(ev(Event::op_shutdown), 1s);
  m.handle(ev(Event::services_down), 2s);
  m.handle(ev(Event::tick), 7s);
  CHECK(m.may_exit());
  // The peer is lost while it waits: nobody is left to take the role; exit without waiting.
  Node l = active_master();
  l.handle(ev(Event::op_shutdown), 1s);
  l.handle(ev(Event::services_down), 2s);
  REQUIRE(l.wait() == Wait::shutdown);
  l.handle(ev(Event::peer_lost), 2500ms);
  CHECK(l.wait() == Wait::none);
  CHECK(l.may_exit());
  // A passive node exits at once and ignores a takeover.
  Node p(policy(false), NodeState::passive, 0, 0s);
  p.handle(hb(NodeState::active, 1), 0s);
  p.handle(ev(Event::op_shutdown), 1s);
  CHECK(p.may_exit());
  p.handle(msg(PeerMessage::takeover, NodeState::passive, 1), 1s);
  CHECK(p.state() == NodeState::passive);
}

TEST_CASE("services that will not stop: the peer is told at stop_timeout, once") {
  Node n = active_master();
  n.handle(ev(Event::op_release), 1s);
  auto a = n.handle(ev(Event::tick), 11s - 1ms);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));
  a = n.handle(ev(Event::tick), 11s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(n.wait() == Wait::stop_overdue);
  CHECK(n.state() == NodeState::stopping);
  a = n.handle(ev(Event::services_down), 20s);
  CHECK_FALSE(has(a, Action::send, PeerMessage::takeover));
  CHECK(n.wait() == Wait::handed_over);
}

TEST_CASE("active-scope probes: a start period, ended by the first pass or by time") {
  Node n = active_master();  // services started at 0s: the start period runs until 10s
  n.handle(ev(Event::active_probe, false), 1s);
  CHECK(n.healthy());  // in the start period
  CHECK(n.state() == NodeState::active);
  n.handle(ev(Event::active_probe, true), 2s);
  n.handle(ev(Event::active_probe, false), 3s);  // after the first pass: it counts
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.durable_state() == NodeState::failed);
  // The start period runs out while still failing: the failure counts from then.
  Node m = active_master();
  m.handle(ev(Event::active_probe, false), 1s);
  m.handle(ev(Event::tick), 10s);
  CHECK(m.state() == NodeState::stopping);
  // `svc restart` opens a new start period.
  Node r = active_master();
  r.handle(ev(Event::active_probe, true), 1s);
  r.handle(ev(Event::op_svc_restart), 20s);
  r.handle(ev(Event::active_probe, false), 21s);
  CHECK(r.state() == NodeState::active);
  r.handle(ev(Event::tick), 30s);
  CHECK(r.state() == NodeState::stopping);
  // An on-demand check on a passive node does not touch the verdict.
  Node p(policy(false), NodeState::passive, 0, 0s);
  p.handle(hb(NodeState::active, 1), 0s);
  p.handle(ev(Event::active_probe, false), 1s);
  CHECK(p.healthy());
  p.handle(msg(PeerMessage::takeover, NodeState::passive, 1), 2s);
  p.handle(ev(Event::services_up), 2s);
  p.handle(ev(Event::tick), 20s);
  CHECK(p.state() == NodeState::active);
}

TEST_CASE("over the restart budget: rule 1's second trigger; recover clears it") {
  Node n = active_master();
  n.handle(ev(Event::budget, true), 1s);
  CHECK(n.state() == NodeState::stopping);
  n.handle(ev(Event::services_down), 1s);
  CHECK(n.state() == NodeState::failed);
  n.handle(ev(Event::op_recover), 2s);
  n.handle(ev(Event::health, true), 3s);
  // Recovered, but it handed the role to the peer at 1s: the `takeover` may still make it
  // serve, so the master waits for that handover as handed_over does (simulation seed 7).
  CHECK(n.state() == NodeState::passive);
  CHECK(n.healthy());
  n.handle(ev(Event::tick), 1s + 5s - 1ms);
  CHECK(n.state() == NodeState::passive);
  n.handle(ev(Event::tick), 1s + 5s);
  CHECK(n.state() == NodeState::starting);  // the peer never took it: the master serves again
}

TEST_CASE("recovering has a deadline: probes that never pass leave the node failed") {
  Node n(policy(true), NodeState::failed, 1, 0s);
  n.handle(ev(Event::op_recover), 1s);
  CHECK(n.wait() == Wait::recovering);
  CHECK(n.unhealthy_reason().find("recovering") != std::string::npos);
  n.handle(ev(Event::tick), 61s);
  CHECK(n.wait() == Wait::none);
  CHECK(n.reason().find("run recover again") != std::string::npos);
  n.handle(ev(Event::health, true), 62s);
  CHECK(n.state() == NodeState::failed);  // no recover pending any more
}

TEST_CASE("stale and crossed commands") {
  // A takeover from a peer that says it serves was sent before it stopped: ignored.
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(msg(PeerMessage::takeover, NodeState::active, 1), 0s);
  CHECK(n.state() == NodeState::passive);
  // A passive node asked to quiesce says stopped and does not reclaim the role meanwhile.
  Node m(policy(true), NodeState::passive, 0, 0s);
  m.handle(ev(Event::health, false), 0s);
  m.handle(hb(NodeState::passive, 0), 0s);
  auto a = m.handle(msg(PeerMessage::quiesce, NodeState::passive, 0), 0s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
  m.handle(ev(Event::health, true), 1s);
  CHECK(m.state() == NodeState::passive);
  CHECK(m.wait() == Wait::handed_over);
  // Operator takeover while the peer is still stopping: ask it, do not start alongside it.
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::stopping, 1), 0s);
  a = s.handle(ev(Event::op_takeover), 0s);
  CHECK(has(a, Action::send, PeerMessage::quiesce));
  CHECK(s.state() == NodeState::passive);
}

TEST_CASE("quiesce is answered in every state that does not serve, once stopped") {
  // A failed node says stopped at once.
  Node f(policy(true), NodeState::failed, 1, 0s);
  auto a = f.handle(msg(PeerMessage::quiesce, NodeState::passive, 1), 0s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
  // A node stopping for another reason (yielding by rule 5) says it once down.
  Node y = active_master(3);
  y.handle(hb(NodeState::active, 5), 1s);
  REQUIRE(y.state() == NodeState::stopping);
  REQUIRE(y.wait() == Wait::none);
  y.handle(msg(PeerMessage::quiesce, NodeState::active, 5), 1s);
  CHECK(y.wait() == Wait::then_stopped);
  a = y.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
}

TEST_CASE("every sub-state has a name for status") {
  for (Wait w : {Wait::none, Wait::handed_over, Wait::quiesce_sent, Wait::failback, Wait::shutdown,
                 Wait::persisting, Wait::ready, Wait::then_takeover, Wait::then_stopped,
                 Wait::stop_overdue, Wait::recovering}) {
    std::string name = to_string(w);
    CHECK(!name.empty());
    CHECK(name != "none" + std::string(w == Wait::none ? "x" : ""));
  }
  CHECK(std::string(to_string(Wait::then_takeover)) == "then_takeover");
}
