// The cells of node.cpp's table: what an edge (a message, a command, a service or write
// result) does in the state it arrives in, and what each sub-state does at its deadline.
#include "node_rules.hpp"

namespace vac {

using R = NodeRules;

namespace {
std::string after_timeout(const char* what, Duration d) {
  return std::string(what) + " within " + format_duration(d);
}
}  // namespace

// ---- services and the node record ----

void R::ready(Core& n, const Event&, Time now, Out& out) {
  if (n.wait_ == Wait::persisting) return;  // nothing was started yet: a stale report
  n.start_overdue_ = false;
  set_state(n, NodeState::active, n.reason_, out);
  set_wait(n, Wait::none, now);
}

// Break-before-make: the peer is told only now that the services are down.
void R::stopped_down(Core& n, const Event&, Time now, Out& out) {
  Wait then = n.wait_;
  set_state(n, n.after_stop_, n.reason_, out);
  if (then == Wait::then_takeover) send(n, PeerMessage::takeover, out);
  if (then == Wait::then_stopped) send(n, PeerMessage::stopped, out);
  bool told =
      then == Wait::then_takeover || then == Wait::then_stopped || then == Wait::stop_overdue;
  if (told) n.told_peer_at_ = now;
  Wait next = Wait::none;
  if (told && n.state_ == NodeState::passive)
    next = n.shutdown_ ? Wait::shutdown : Wait::handed_over;
  set_wait(n, next, now);
}

void R::written(Core& n, const Event&, Time, Out&) {
  n.record_error_.clear();
}

void R::unwritten(Core& n, const Event& e, Time now, Out&) {
  n.record_error_ = e.detail.empty() ? "the write failed" : e.detail;
  n.persist_retry_at_ = now + n.policy_.persist_retry;
}

// The epoch is on disk: the services may start now.
void R::start_now(Core& n, const Event& e, Time now, Out& out) {
  written(n, e, now, out);
  if (n.wait_ != Wait::persisting) return;
  set_wait(n, Wait::ready, now);
  n.start_period_ = true;
  n.start_period_end_ = now + n.policy_.start_period;
  out.push_back({Action::start_services, {}});
}

void R::abort_start(Core& n, const Event& e, Time now, Out& out) {
  unwritten(n, e, now, out);
  if (n.wait_ != Wait::persisting) return;
  set_state(n, NodeState::passive, "cannot write the node record: services not started", out);
  set_wait(n, Wait::none, now);
}

// ---- the peer's commands ----

void R::take_role(Core& n, const Event& e, Time now, Out& out) {
  // Break-before-make: a takeover from a node that says it serves is stale (reordered).
  if (serving_state(e.message.state)) return;
  if (!n.healthy()) {
    n.reason_ = "the peer handed over, but " + n.unhealthy_reason();
    return;
  }
  go_active(n, "the peer handed over", now, out);
}

void R::say_stopped(Core& n, const Event&, Time now, Out& out) {
  send(n, PeerMessage::stopped, out);
  // The peer takes the role on our `stopped`: do not reclaim it meanwhile.
  if (n.state_ == NodeState::passive && !n.shutdown_) set_wait(n, Wait::handed_over, now);
}

void R::peer_stopped(Core& n, const Event&, Time now, Out& out) {
  if (n.wait_ == Wait::quiesce_sent && n.healthy())
    go_active(n, "the peer stopped its services for us", now, out);
}

void R::stop_for_peer(Core& n, const Event&, Time now, Out& out) {
  go_down(n, NodeState::passive, Wait::then_stopped, "the peer asked to take over", now, out);
}

void R::then_stopped(Core& n, const Event&, Time now, Out&) {
  if (n.wait_ == Wait::none) set_wait(n, Wait::then_stopped, now);
}

// ---- operator commands ----

void R::claim(Core& n, const Event&, Time now, Out& out) {
  if (n.shutdown_) return void(n.refused_ = "this node is shutting down");
  if (!n.healthy()) return void(n.refused_ = "this node is unhealthy: " + n.unhealthy_reason());
  // The peer was told to take the role (or that we stopped for it): starting now would serve
  // alongside it once that arrives. Once it serves, takeover asks it to stop first.
  if (n.wait_ == Wait::handed_over)
    return void(n.refused_ = "this node just handed over; take over once the peer serves");
  const auto& peer = n.peer_;
  if (n.peer_reachable_ && (serving_state(peer->state) || peer->state == NodeState::stopping)) {
    n.quiesced_epoch_ = peer->epoch;
    send(n, PeerMessage::quiesce, out);
    set_wait(n, Wait::quiesce_sent, now);
    n.reason_ = "operator takeover: asked the peer to stop its services";
    return;
  }
  go_active(n, "operator takeover", now, out);
}

void R::release(Core& n, const Event&, Time now, Out& out) {
  if (!peer_can_take_over(n)) return void(n.refused_ = "no healthy passive peer to hand over to");
  go_down(n, NodeState::passive, Wait::then_takeover, "operator release: handing over once stopped",
          now, out);
}

void R::recover(Core& n, const Event& e, Time now, Out&) {
  set_wait(n, Wait::recovering, now);
  n.failback_ = e.flag || n.policy_.failback_auto;
  // The probes are re-run and the budgets cleared by the shell: the fresh verdict decides.
  n.probes_ok_ = false;
  n.over_budget_ = false;
  n.start_overdue_ = false;
  n.epoch_refused_.clear();
  n.reason_ = "recovering: waiting for the probes to pass";
}

void R::maintain(Core& n, const Event&, Time now, Out& out) {
  set_state(n, NodeState::maintenance, "operator maintenance", out);
  set_wait(n, Wait::none, now);
}

void R::maintain_stop(Core& n, const Event&, Time now, Out& out) {
  go_down(n, NodeState::maintenance, Wait::then_takeover,
          "operator maintenance: handing over once stopped", now, out);
}

void R::maintain_after(Core& n, const Event&, Time, Out& out) {
  if (n.after_stop_ == NodeState::failed)
    return void(n.refused_ = "this node is failing over; run recover first");
  n.after_stop_ = NodeState::maintenance;
  persist(n, out);  // the sticky target changed
}

void R::unmaintain(Core& n, const Event&, Time, Out& out) {
  set_state(n, NodeState::passive, "maintenance ended", out);
}

void R::exit_idle(Core& n, const Event&, Time now, Out&) {
  n.shutdown_ = true;
  set_wait(n, Wait::none, now);
  n.reason_ = "shutting down";
}

void R::exit_stop(Core& n, const Event&, Time now, Out& out) {
  n.shutdown_ = true;
  go_down(n, NodeState::passive, n.policy_.has_peer ? Wait::then_takeover : Wait::none,
          "shutting down: handing over once stopped", now, out);
}

void R::exit_after(Core& n, const Event&, Time, Out&) {
  n.shutdown_ = true;
}

void R::not_active(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is not active";
}
void R::not_failed(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is not failed";
}
void R::not_maintained(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is not in maintenance";
}
void R::is_active(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is already active";
}
void R::is_stopping(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is stopping";
}
void R::is_failed(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is failed; run recover first";
}
void R::in_maint(Core& n, const Event&, Time, Out&) {
  n.refused_ = "this node is in maintenance; end maintenance first";
}

// ---- deadlines ----

void R::give_up_waiting(Core& n, Time now, Out&) {
  const NodePolicy& p = n.policy_;
  switch (n.wait_) {
    case Wait::handed_over:
      n.reason_ = after_timeout("the peer did not take the role", p.handover_timeout);
      break;
    case Wait::quiesce_sent:
      // Heard stopping for us: its stop has a deadline of its own (stop_timeout, then it tells
      // us anyway), usually longer than ours. Giving up now would leave a standby that asked
      // passive while the peer, once down, waits for it to take the role. (The peer is
      // reachable: peer_lost ends this wait.)
      if (n.peer_ && n.peer_->state == NodeState::stopping)
        return set_wait(n, Wait::quiesce_sent, now);
      n.reason_ = after_timeout("the peer did not stop", p.handover_timeout);
      break;
    case Wait::failback:
      n.reason_ = after_timeout("no failback: the peer was not heard", p.handover_timeout);
      break;
    default:
      n.reason_ =
          after_timeout("shutting down: the peer did not take the role", p.handover_timeout);
      break;
  }
  set_wait(n, Wait::none, now);
}

void R::persist_timed_out(Core& n, Time now, Out& out) {
  Event e(Event::persisted, false);
  e.detail = after_timeout("no answer from the write", n.policy_.persist_timeout);
  abort_start(n, e, now, out);
}

void R::start_timed_out(Core& n, Time now, Out&) {
  n.start_overdue_ = true;  // rule 1 now applies
  set_wait(n, Wait::none, now);
}

void R::stop_timed_out(Core& n, Time now, Out& out) {
  send(n, n.wait_ == Wait::then_takeover ? PeerMessage::takeover : PeerMessage::stopped, out);
  n.reason_ =
      after_timeout("the services did not stop", n.policy_.stop_timeout) + ": told the peer anyway";
  set_wait(n, Wait::stop_overdue, now);
}

void R::recover_timed_out(Core& n, Time now, Out&) {
  n.failback_ = false;
  n.reason_ = after_timeout("recover: the probes did not pass", n.policy_.recover_timeout) +
              "; still failed (run recover again)";
  set_wait(n, Wait::none, now);
}

}  // namespace vac
