// The rules of the node core: the cells of node.cpp's table, the deadlines of the sub-states,
// and the level rules (DESIGN.md's numbered rules) that run after every event.
#include "node_rules.hpp"

#include <algorithm>

#include "common/duration.hpp"

namespace vac {

using R = NodeRules;

// ---- what the node is ----

std::string NodeCore::unhealthy_reason() const {
  if (shutdown_) return "shutting down";
  if (!probes_ok_)
    return wait_ == Wait::recovering ? "recovering: waiting for the probes to pass"
                                     : "a critical probe is failing";
  if (over_budget_) return "a service is over its restart budget";
  if (serving_state(state_) && !start_period_ && !active_ok_)
    return "an active-scope probe is failing";
  if (start_overdue_) return "the services did not become ready within start_timeout";
  if (!record_error_.empty()) return "cannot write the node record: " + record_error_;
  return "";
}

// Two nodes with the same configured role would both (or neither) take the role: the name
// sorting first acts as master, a rule both sides compute alike from what they know.
bool NodeCore::acts_as_master() const {
  if (!peer_ || peer_->role == Role::unknown || (peer_->role == Role::master) != policy_.master)
    return policy_.master;
  return policy_.name < policy_.peer_name;
}

bool NodeCore::may_exit() const {
  return shutdown_ && !serving_state(state_) && state_ != NodeState::stopping &&
         wait_ != Wait::shutdown;
}

// ---- helpers ----

void R::set_state(Core& n, NodeState s, const std::string& why, Out& out) {
  n.reason_ = why;
  if (s == n.state_) return;
  n.state_ = s;
  persist(n, out);
  out.push_back({Action::notify, {}});
}

void R::set_wait(Core& n, Wait w, Time now) {
  n.wait_ = w;
  auto timeout = wait_rule(w).timeout;
  n.deadline_ = timeout ? now + n.policy_.*timeout : Time::max();
}

void R::persist(Core&, Out& out) {
  out.push_back({Action::persist, {}});
}

void R::send(const Core& n, PeerMessage::Kind k, Out& out) {
  PeerMessage m = n.heartbeat();
  m.kind = k;
  out.push_back({Action::send, m});
}

bool R::peer_serving(const Core& n) {
  return n.peer_reachable_ && n.peer_ && serving_state(n.peer_->state);
}

bool R::peer_can_take_over(const Core& n) {
  return n.peer_reachable_ && n.peer_ && n.peer_->state == NodeState::passive && n.peer_->healthy;
}

// The new epoch is written before anything starts (sub-state `persisting`): a node that
// cannot write it does not serve, and a crash in between restarts passive with it. The
// verdicts about the services start clean: go_down cleared them when the services last went
// down, and none counts before they start (learn), so there is nothing to reset here.
void R::go_active(Core& n, const std::string& why, Time now, Out& out) {
  uint64_t base = std::max(n.epoch_, n.peer_ ? n.peer_->epoch : 0);
  if (base >= kEpochMax) {
    n.reason_ = "the epoch is exhausted: this node cannot serve";
    return;
  }
  n.epoch_ = base + 1;
  set_state(n, NodeState::starting, why, out);
  set_wait(n, Wait::persisting, now);
}

void R::go_down(Core& n, NodeState after, Wait then, const std::string& why, Time now, Out& out) {
  n.after_stop_ = after;
  // The verdicts about these services end with them (the next start opens a start period of
  // its own: start_now).
  n.active_ok_ = true;
  n.start_overdue_ = false;
  set_state(n, NodeState::stopping, why, out);  // persists the sticky target first
  set_wait(n, then, now);
  out.push_back({Action::stop_services, {}});
}

// ---- before the table: deadlines, and what an event tells ----

void R::expire(Core& n, Time now, Out& out) {
  const WaitRule& rule = wait_rule(n.wait_);
  if (rule.timeout && now >= n.deadline_) rule.expired(n, now, out);
  if (n.start_period_ && now >= n.start_period_end_) n.start_period_ = false;
  // A record that could not be written is written again, until it can be.
  if (!n.record_error_.empty() && now >= n.persist_retry_at_) {
    n.persist_retry_at_ = now + n.policy_.persist_retry;
    persist(n, out);
  }
}

bool R::accept(Core& n, const PeerMessage& m) {
  if (m.epoch <= kEpochMax) return true;
  n.epoch_refused_ = "refused a " + std::string(to_string(m.kind)) + " from the peer: epoch " +
                     std::to_string(m.epoch) + " is out of range";
  return false;
}

// Records what an event tells about the world. Returns false when the event is to be ignored
// altogether (its cell of the table does not run): a message refused or stale.
bool R::learn(Core& n, const Event& e, Time now, Out&) {
  switch (e.kind) {
    case Event::peer_message: {
      const PeerMessage& m = e.message;
      if (!accept(n, m)) return false;
      n.peer_reachable_ = n.peer_seen_ = true;
      // The peer restarted (crashed, or was restarted, within dead_after: never lost): it
      // knows nothing of what it was asked before, and decides afresh by the plain rules. A
      // takeover asked of its previous run is void: waiting on for its `stopped` while it takes
      // the role as master would start both (simulation seeds 42 and 75).
      if (m.incarnation != 0 && n.peer_incarnation_ != 0 && m.incarnation != n.peer_incarnation_ &&
          n.wait_ == Wait::quiesce_sent) {
        set_wait(n, Wait::none, now);
        n.reason_ = "the peer restarted: the takeover asked of it is void";
      }
      if (m.incarnation != 0) n.peer_incarnation_ = m.incarnation;
      // A takeover older than the peer's latest epoch is stale (it served since): it tells
      // nothing about the peer now.
      if (m.kind == PeerMessage::takeover && m.epoch < n.peer_epoch_max_) return false;
      n.peer_epoch_max_ = std::max(n.peer_epoch_max_, m.epoch);
      n.peer_ = m;
      if (m.role != Role::unknown && (m.role == Role::master) == n.policy_.master) {
        const NodePolicy& p = n.policy_;
        std::string both = std::string("both nodes are configured ") + to_string(m.role);
        // Equal names leave no order: neither acts as master (never both), loudly.
        n.role_conflict_ = p.name == p.peer_name
                               ? both + " and both are named " + p.name +
                                     ": neither acts as master; give the nodes different names"
                               : both + "; " + (n.acts_as_master() ? p.name : p.peer_name) +
                                     " acts as master (first by name)";
      } else {
        n.role_conflict_.clear();
      }
      // The peer serves: the handover it was waiting for is done.
      if (serving_state(m.state) && (n.wait_ == Wait::handed_over || n.wait_ == Wait::shutdown))
        set_wait(n, Wait::none, now);
      // At a later epoch than ours, the peer took the role since we served: it acted on what we
      // told it, and that tell holds back nothing any more (a peer restarted passive since
      // finds the master serving at once). At our epoch it has not.
      if (m.epoch > n.epoch_) n.told_peer_at_.reset();
      break;
    }
    case Event::peer_lost:
      if (n.peer_reachable_) n.unreachable_since_ = now;
      n.peer_reachable_ = false;
      // Nobody is left to answer: the plain rules (rule 3) decide. Except after a handover:
      // the `takeover` may have arrived and the peer serve though silent, so handed_over runs
      // to its deadline (evaluate_passive).
      if (n.wait_ == Wait::quiesce_sent || n.wait_ == Wait::shutdown) set_wait(n, Wait::none, now);
      break;
    case Event::health:
      n.probes_ok_ = e.flag;
      break;
    case Event::active_probe:
      // Only the verdict of started services counts: an on-demand check elsewhere, or one
      // while the epoch is still being written (nothing runs yet), is ignored.
      if (serving_state(n.state_) && n.wait_ != Wait::persisting) {
        n.active_ok_ = e.flag;
        if (e.flag) n.start_period_ = false;  // the first pass ends the start period
      }
      break;
    case Event::budget:
      n.over_budget_ = e.flag;
      break;
    case Event::witness:
      n.witness_ok_ = e.flag;
      break;
    case Event::op_svc_restart:
      if (serving_state(n.state_)) {
        n.start_period_ = true;
        n.start_period_end_ = now + n.policy_.start_period;
      }
      break;
    default:
      break;
  }
  return true;
}

// ---- the level rules ----

void R::evaluate(Core& n, Time now, Out& out) {
  bool witness_reachable = !n.policy_.has_witness || n.witness_ok_;
  if (n.peer_reachable_ || witness_reachable) n.unreachable_since_ = now;
  // Rule 6: a recovering node leaves failed once its fresh verdict passes.
  if (n.state_ == NodeState::failed && n.wait_ == Wait::recovering && n.healthy()) {
    set_state(n, NodeState::passive, "recovered: the probes pass", out);
    set_wait(n, n.failback_ ? Wait::failback : Wait::none, now);  // recover sets failback_
  }
  if (n.state_ == NodeState::passive) evaluate_passive(n, now, out);
  if (serving_state(n.state_)) evaluate_serving(n, now, out);
}

void R::evaluate_passive(Core& n, Time now, Out& out) {
  if (!n.healthy()) {  // includes shutting down
    // Our heartbeat now says we cannot serve, and the peer stopping for us may take its role
    // back on it: the takeover or failback we asked for is abandoned, so that a `stopped`
    // arriving once we are healthy again does not start a second node (simulation seed 3).
    if (n.wait_ == Wait::quiesce_sent) {
      set_wait(n, Wait::none, now);
      n.reason_ = "asked the peer to stop, then became unhealthy: not taking over";
    }
    return;
  }
  if (!n.policy_.has_peer) return go_active(n, "single node", now, out);
  const auto& peer = n.peer_;
  bool peer_busy =
      n.peer_reachable_ && (serving_state(peer->state) || peer->state == NodeState::stopping);
  if (n.wait_ == Wait::failback) {
    if (!n.peer_reachable_) return;  // wait to hear it (deadline: the plain rules)
    set_wait(n, Wait::none, now);
    if (peer_busy) {
      n.quiesced_epoch_ = peer->epoch;
      send(n, PeerMessage::quiesce, out);
      set_wait(n, Wait::quiesce_sent, now);
      n.reason_ = "failback: asked the peer to stop its services";
      return;
    }
  }
  if (n.wait_ == Wait::quiesce_sent) {
    // Heard stopped, even if its `stopped` was lost: not serving, at the epoch it served at.
    if (n.peer_reachable_ && !peer_busy && peer->epoch >= n.quiesced_epoch_)
      go_active(n, "the peer stopped its services for us", now, out);
    return;
  }
  // Having just handed over (or told the peer to take the role on the way to failed or
  // maintenance, and come back since), wait for the peer to take it rather than reclaim it.
  bool handing_over = n.wait_ == Wait::handed_over ||
                      (n.told_peer_at_ && now - *n.told_peer_at_ < n.policy_.handover_timeout);
  if (n.peer_reachable_) {
    if (peer_busy) return;
    // Neither serves. The master takes the role; the standby only when the master cannot.
    bool peer_able = peer->state == NodeState::passive && peer->healthy;
    if ((n.acts_as_master() && !handing_over) || !peer_able)
      go_active(n,
                peer_able ? "both passive: the master serves"
                          : std::string("the peer cannot serve (") + to_string(peer->state) +
                                (peer->healthy ? "" : ", unhealthy") + ")",
                now, out);
    return;
  }
  // Rule 3: the peer is silent. Take over if it was heard before, or was never heard since
  // the start-up grace, and the witness agrees this node is not the isolated one.
  bool witness_reachable = !n.policy_.has_witness || n.witness_ok_;
  if (!witness_reachable) return;
  // Having just sent `takeover`, the peer may be serving already though silent (its linkd
  // restarting, a link flapping): wait for it until handed_over's deadline, then take over.
  if (handing_over) return;
  if (n.peer_seen_ || now - n.started_ >= n.policy_.startup_grace)
    go_active(n, n.peer_seen_ ? "the peer was lost" : "no peer heard within the start-up grace",
              now, out);
}

void R::evaluate_serving(Core& n, Time now, Out& out) {
  const auto& peer = n.peer_;
  // Rule 5: both serving after a partition healed: the lower epoch yields; on a tie, the
  // node acting as master stays.
  if (peer_serving(n) &&
      (peer->epoch > n.epoch_ || (peer->epoch == n.epoch_ && !n.acts_as_master())))
    return go_down(n, NodeState::passive, Wait::none,
                   peer->epoch > n.epoch_ ? "both active: yielding to the peer's higher epoch"
                                          : "both active at equal epochs: the master serves",
                   now, out);
  // Rule 4: neither peer nor witness reachable for isolation_after: fence ourselves.
  if (n.policy_.has_peer && n.policy_.has_witness && !n.peer_reachable_ && !n.witness_ok_ &&
      now - n.unreachable_since_ >= n.policy_.isolation_after)
    return go_down(n, NodeState::passive, Wait::none,
                   "isolated: neither the peer nor the witness answers", now, out);
  // Rule 1, in starting as in active: unhealthy. Hand over (stop first, then `takeover`)
  // if someone can take the role; otherwise keep serving, degraded.
  std::string why = n.unhealthy_reason();
  if (why.empty()) return;
  // A node that only cannot write its record is not broken: it steps aside, not into failed.
  NodeState after = n.record_error_.empty() || !n.probes_ok_ || n.over_budget_ ||
                            n.start_overdue_ || !n.active_ok_
                        ? NodeState::failed
                        : NodeState::passive;
  if (peer_can_take_over(n))
    return go_down(n, after, Wait::then_takeover, why + ": handing over to the peer", now, out);
  if (!n.policy_.has_peer) {
    n.reason_ = why + ", and no peer to take over: still serving";
    return;
  }
  if (n.policy_.stop_without_peer)
    return go_down(n, after, Wait::none, why + " (stop_without_peer)", now, out);
  n.reason_ = why + ", but no healthy passive peer can take over: still serving";
}

}  // namespace vac
