// The node core's edges and table (supervisor/node_edges.cpp, supervisor/node.cpp), one at a
// time: each test pins down what one line decides, so that a one-line change to that line fails
// here (see tests/mutate).
#include <doctest/doctest.h>

#include "node_test_util.hpp"

using namespace vac;
using namespace vac::test;
using namespace std::chrono_literals;

namespace {
Event hb(NodeState s, uint64_t epoch, bool healthy = true) {
  return msg(PeerMessage::heartbeat, s, epoch, healthy);
}

int count(const std::vector<Action>& a, Action::Kind k) {
  return static_cast<int>(std::count_if(a.begin(), a.end(), [&](auto& x) { return x.kind == k; }));
}

// A standby that has asked its active peer (epoch 1) to stop for an operator takeover.
Node asking_standby() {
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::active, 1), 0s);
  auto a = s.handle(ev(Event::op_takeover), 0s);
  REQUIRE(has(a, Action::send, PeerMessage::quiesce));
  REQUIRE(s.wait() == Wait::quiesce_sent);
  return s;
}

// A master that recovered with its standby passive: it writes `passive`, then its new epoch.
template <class Core>
std::vector<Action> recovered(Core& n) {
  n.handle(hb(NodeState::passive, 0), 0s);
  n.handle(ev(Event::op_recover), 1s);
  return n.handle(ev(Event::health, true), 2s);
}
}  // namespace

// ---- services and the node record ----

TEST_CASE("services reported up before the epoch is written are stale: start only after it") {
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.wait() == Wait::persisting);
  n.handle(ev(Event::services_up), 0s);  // from an earlier start, reordered
  CHECK(n.state() == NodeState::starting);
  CHECK(n.wait() == Wait::persisting);
  auto a = n.handle(Event(Event::persisted, true), 1s);
  CHECK(has(a, Action::start_services));
  CHECK(n.wait() == Wait::ready);
}

TEST_CASE("two writes answered in a start: the services start once") {
  Node n(policy(true), NodeState::failed, 2, 0s);
  auto a = recovered(n);
  CHECK(count(a, Action::persist) == 2);
  CHECK(count(a, Action::start_services) == 1);
  CHECK(n.state() == NodeState::starting);
  CHECK(n.wait() == Wait::ready);
}

TEST_CASE("a write that fails once the services started stops them (rule 1), not forgets them") {
  NodeCore n(policy(true), NodeState::failed, 2, 0s);
  auto a = recovered(n);
  REQUIRE(count(a, Action::persist) == 2);
  a = n.handle(Event(Event::persisted, true), 2s);
  REQUIRE(has(a, Action::start_services));
  a = n.handle(Event(Event::persisted, false), 2s);
  CHECK(n.state() == NodeState::stopping);  // the services run: they must be stopped
  CHECK(has(a, Action::stop_services));
  CHECK(n.wait() == Wait::then_takeover);
  CHECK(n.durable_state() == NodeState::passive);  // only the record: not failed
}

TEST_CASE("a start aborted by a failed write leaves no sub-state, and the write is retried") {
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  n.handle(Event(Event::persisted, false), 0s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::none);
  // Past the old write's deadline, with events coming often, the retries keep their pace.
  int late = 0;
  for (Time t = 250ms; t <= 8s; t += 250ms) {
    auto a = n.handle(hb(NodeState::passive, 0), t);
    if (has(a, Action::persist)) {
      late += t > 5s;
      n.handle(Event(Event::persisted, false), t);
    }
  }
  CHECK(late >= 2);
}

TEST_CASE("a write that never answers is reported as such") {
  NodeCore n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  n.handle(ev(Event::tick), 5s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.record_error().find("no answer from the write within") != std::string::npos);
}

// ---- the peer's commands ----

TEST_CASE("an unhealthy passive node told to take over stays passive and says why") {
  Node n(policy(false), NodeState::passive, 0, 0s);
  n.handle(ev(Event::health, false), 0s);
  n.handle(msg(PeerMessage::takeover, NodeState::stopping, 1), 1s);
  CHECK(n.state() == NodeState::passive);
  CHECK(n.reason() == "the peer handed over, but a critical probe is failing");
}

TEST_CASE("a starting node asked to quiesce stops, and says stopped once its services are down") {
  Node n(policy(true), NodeState::passive, 0, 0s);
  n.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(n.state() == NodeState::starting);
  auto a = n.handle(msg(PeerMessage::quiesce, NodeState::passive, 0), 1s);
  CHECK(n.state() == NodeState::stopping);
  CHECK(n.wait() == Wait::then_stopped);
  CHECK(has(a, Action::stop_services));
  CHECK_FALSE(has(a, Action::send, PeerMessage::stopped));  // break-before-make
  a = n.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
  CHECK(n.state() == NodeState::passive);
  CHECK(n.wait() == Wait::handed_over);
}

TEST_CASE("a recovering node answers quiesce and keeps recovering") {
  Node f(policy(false), NodeState::failed, 1, 0s);
  f.handle(hb(NodeState::active, 2), 0s);
  f.handle(ev(Event::op_recover), 1s);
  auto a = f.handle(msg(PeerMessage::quiesce, NodeState::passive, 2), 1s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
  CHECK(f.wait() == Wait::recovering);
  f.handle(ev(Event::health, true), 2s);
  CHECK(f.state() == NodeState::passive);
  // In maintenance too: no sub-state to wait in.
  Node m(policy(true), NodeState::maintenance, 1, 0s);
  a = m.handle(msg(PeerMessage::quiesce, NodeState::passive, 2), 1s);
  CHECK(has(a, Action::send, PeerMessage::stopped));
  CHECK(m.wait() == Wait::none);
}

TEST_CASE("a standby ignores a stopped it did not ask for") {
  // Stale or duplicated: acting on it could start a second server beside a peer that serves.
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::passive, 1), 0s);
  REQUIRE(s.state() == NodeState::passive);
  s.handle(msg(PeerMessage::stopped, NodeState::passive, 1), 1s);
  CHECK(s.state() == NodeState::passive);
  CHECK(s.wait() == Wait::none);
}

TEST_CASE("a node whose probes fail while it waits for the peer to stop does not take the role") {
  Node s = asking_standby();
  s.handle(ev(Event::health, false), 1s);
  s.handle(msg(PeerMessage::stopped, NodeState::passive, 1), 2s);
  CHECK(s.state() == NodeState::passive);
}

// ---- operator commands ----

TEST_CASE("an operator takeover on the standby waits for the peer to stop, not a stale heartbeat") {
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::active, 3), 0s);
  s.handle(ev(Event::op_takeover), 0s);
  CHECK(s.reason() == "operator takeover: asked the peer to stop its services");
  s.handle(hb(NodeState::passive, 2), 1s);  // from before it served at epoch 3
  CHECK(s.state() == NodeState::passive);
  s.handle(hb(NodeState::stopping, 3), 1s);
  CHECK(s.state() == NodeState::passive);
  s.handle(msg(PeerMessage::stopped, NodeState::passive, 3), 2s);
  CHECK(s.state() == NodeState::starting);
  CHECK(s.epoch() == 4);
}

TEST_CASE("an operator takeover with nobody serving starts this node at once") {
  // The master is passive and able: the standby still takes the role when told to.
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::passive, 0), 0s);
  REQUIRE(s.state() == NodeState::passive);
  s.handle(ev(Event::op_takeover), 1s);
  CHECK(s.refused().empty());
  CHECK(s.state() == NodeState::starting);
  CHECK(s.reason() == "operator takeover");
  // No peer heard yet, inside the start-up grace.
  Node t(policy(false), NodeState::passive, 0, 0s);
  t.handle(ev(Event::op_takeover), 1s);
  CHECK(t.state() == NodeState::starting);
}

TEST_CASE("an operator takeover on a node that is shutting down is refused, saying so") {
  Node p(policy(false), NodeState::passive, 0, 0s);
  p.handle(hb(NodeState::active, 1), 0s);
  p.handle(ev(Event::op_shutdown), 1s);
  p.handle(ev(Event::op_takeover), 1s);
  CHECK(p.refused() == "this node is shutting down");
  CHECK(p.state() == NodeState::passive);
}

TEST_CASE("an unhealthy node refuses an operator takeover, and does not ask the peer to stop") {
  // Asking would stop the peer's services for a node that cannot then serve.
  Node s(policy(false), NodeState::passive, 0, 0s);
  s.handle(hb(NodeState::active, 1), 0s);
  s.handle(ev(Event::health, false), 1s);
  auto a = s.handle(ev(Event::op_takeover), 1s);
  CHECK(s.refused() == "this node is unhealthy: a critical probe is failing");
  CHECK_FALSE(has(a, Action::send, PeerMessage::quiesce));
  CHECK(s.wait() == Wait::none);
}

TEST_CASE("the standby's takeover waits for a peer that stops slower than handover_timeout") {
  // The peer's services take 7 s to stop (under its stop_timeout, over our handover_timeout):
  // the standby keeps waiting while it hears the peer stopping, and takes the role at its
  // `stopped` instead of leaving the peer to wait for it, then serve again.
  Node s = asking_standby();
  s.handle(hb(NodeState::stopping, 1), 1s);
  s.handle(hb(NodeState::stopping, 1), 6s);
  CHECK(s.wait() == Wait::quiesce_sent);
  CHECK(s.state() == NodeState::passive);
  s.handle(msg(PeerMessage::stopped, NodeState::passive, 1), 7s);
  CHECK(s.state() == NodeState::starting);
  CHECK(s.epoch() == 2);
  // Still active at the deadline (it never stopped): give up; the plain rules keep it serving.
  Node g = asking_standby();
  g.handle(hb(NodeState::active, 1), 1s);
  g.handle(ev(Event::tick), 5s);
  CHECK(g.wait() == Wait::none);
  CHECK(g.reason().find("the peer did not stop") != std::string::npos);
}

TEST_CASE(
    "a peer whose services outlast stop_timeout tells us anyway: the node that asked serves") {
  Node s = asking_standby();
  for (Time t = 1s; t <= 10s; t += 1s) s.handle(hb(NodeState::stopping, 1), t);
  REQUIRE(s.wait() == Wait::quiesce_sent);
  s.handle(msg(PeerMessage::stopped, NodeState::stopping, 1), 11s);  // "told the peer anyway"
  CHECK(s.state() == NodeState::starting);
}

TEST_CASE("recover clears a refused epoch, and says it waits for the probes") {
  NodeCore n(policy(true), NodeState::passive, UINT64_MAX, 0s);
  REQUIRE(n.state() == NodeState::failed);
  CHECK(n.reason().find("run recover to start again from epoch 0") != std::string::npos);
  n.handle(ev(Event::op_recover), 1s);
  CHECK(n.epoch_refused().empty());
  CHECK(n.reason() == "recovering: waiting for the probes to pass");
  CHECK(n.wait() == Wait::recovering);
}

TEST_CASE("a restarted node says why it is in its state") {
  CHECK(NodeCore(policy(true), NodeState::passive, 1, 0s).reason() == "starting up");
  CHECK(NodeCore(policy(true), NodeState::active, 1, 0s).reason() == "starting up");
  CHECK(NodeCore(policy(true), NodeState::failed, 1, 0s).reason() ==
        "kept from before the restart");
  CHECK(NodeCore(policy(true), NodeState::maintenance, 1, 0s).reason() ==
        "kept from before the restart");
}

TEST_CASE("maintenance asked while stopping: a handover ends in it, a failover stays failed") {
  Node n = active_master();
  n.handle(ev(Event::op_release), 1s);
  n.handle(ev(Event::op_maintenance_on), 1s);
  CHECK(n.refused().empty());
  CHECK(n.durable_state() == NodeState::maintenance);  // a crash now still finds it there
  auto a = n.handle(ev(Event::services_down), 2s);
  CHECK(n.state() == NodeState::maintenance);
  CHECK(has(a, Action::send, PeerMessage::takeover));  // the handover still completes
  // Failing over (rule 1): recover comes first.
  Node f = active_master();
  f.handle(ev(Event::health, false), 1s);
  f.handle(ev(Event::op_maintenance_on), 1s);
  CHECK(f.refused() == "this node is failing over; run recover first");
  CHECK(f.durable_state() == NodeState::failed);
  f.handle(ev(Event::services_down), 2s);
  CHECK(f.state() == NodeState::failed);
}

TEST_CASE("a node without a peer may exit as soon as its services are down") {
  NodePolicy p = policy(true);
  p.has_peer = false;
  Node n(p, NodeState::passive, 0, 0s);
  n.handle(ev(Event::tick), 0s);
  n.handle(ev(Event::services_up), 0s);
  REQUIRE(n.state() == NodeState::active);
  n.handle(ev(Event::op_shutdown), 1s);
  CHECK_FALSE(n.may_exit());
  n.handle(ev(Event::services_down), 2s);
  CHECK(n.wait() == Wait::none);  // nobody to hand over to: nothing to wait for
  CHECK(n.may_exit());
  // Yielding by rule 5 hands nothing over either: no wait for a takeover never sent.
  Node y = active_master(3);
  y.handle(hb(NodeState::active, 5), 1s);
  REQUIRE(y.state() == NodeState::stopping);
  y.handle(ev(Event::services_down), 2s);
  CHECK(y.state() == NodeState::passive);
  CHECK(y.wait() == Wait::none);
}

TEST_CASE("a passive node asked to shut down says so, and may exit") {
  Node p(policy(false), NodeState::passive, 0, 0s);
  p.handle(hb(NodeState::active, 1), 0s);
  p.handle(ev(Event::op_shutdown), 1s);
  CHECK(p.reason() == "shutting down");
  CHECK(p.may_exit());
}

TEST_CASE("shutdown while stopping: the node hands over, never serves again, and exits") {
  Node n = active_master();
  n.handle(ev(Event::op_release), 1s);
  n.handle(ev(Event::op_shutdown), 1s);
  CHECK(n.refused().empty());
  auto a = n.handle(ev(Event::services_down), 2s);
  CHECK(has(a, Action::send, PeerMessage::takeover));
  CHECK(n.wait() == Wait::shutdown);
  CHECK_FALSE(n.heartbeat().healthy);
  CHECK_FALSE(n.may_exit());
  n.handle(ev(Event::tick), 8s);  // the peer never took it: the plain rules, still not serving
  CHECK(n.state() == NodeState::passive);
  CHECK(n.may_exit());
}

TEST_CASE("every operator command clears the previous refusal; other events keep it") {
  // Each command after a refused one, in a state that accepts it: the shell reads refused()
  // right after feeding a command, so a stale refusal would report it as refused.
  auto accepted_after_refusal = [](Node n, Event::Kind refused, Event::Kind ok) {
    n.handle(ev(refused), 1s);
    REQUIRE_FALSE(n.refused().empty());
    n.handle(ev(ok), 1s);
    return n.refused();
  };
  Node standby(policy(false), NodeState::passive, 0, 0s);
  standby.handle(hb(NodeState::active, 1), 0s);
  Node failed(policy(true), NodeState::failed, 1, 0s);
  Node maint(policy(true), NodeState::maintenance, 1, 0s);
  CHECK(accepted_after_refusal(standby, Event::op_release, Event::op_takeover) == "");
  CHECK(accepted_after_refusal(active_master(), Event::op_takeover, Event::op_release) == "");
  CHECK(accepted_after_refusal(failed, Event::op_takeover, Event::op_recover) == "");
  CHECK(accepted_after_refusal(standby, Event::op_release, Event::op_maintenance_on) == "");
  CHECK(accepted_after_refusal(maint, Event::op_takeover, Event::op_maintenance_off) == "");
  CHECK(accepted_after_refusal(active_master(), Event::op_takeover, Event::op_svc_restart) == "");
  CHECK(accepted_after_refusal(standby, Event::op_release, Event::op_shutdown) == "");
  // Not an operator command: the refusal stays until the next one.
  standby.handle(ev(Event::op_release), 1s);
  standby.handle(ev(Event::tick), 2s);
  standby.handle(hb(NodeState::active, 1), 2s);
  CHECK(standby.refused() == "this node is not active");
}
