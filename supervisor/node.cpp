// The node core as a table: what each (state, event) pair does, and what each sub-state does
// when its deadline passes. After every event the level rules of node_rules.cpp run (who
// should serve, given what is known now); the table holds only what an edge changes.
#include "node_rules.hpp"

namespace vac {

const char* to_string(NodeState s) {
  switch (s) {
    case NodeState::passive:
      return "passive";
    case NodeState::starting:
      return "starting";
    case NodeState::active:
      return "active";
    case NodeState::stopping:
      return "stopping";
    case NodeState::failed:
      return "failed";
    case NodeState::maintenance:
      return "maintenance";
  }
  return "passive";
}

bool parse_node_state(const std::string& s, NodeState& out) {
  for (NodeState n : {NodeState::passive, NodeState::starting, NodeState::active,
                      NodeState::stopping, NodeState::failed, NodeState::maintenance})
    if (s == to_string(n)) return out = n, true;
  return false;
}

const char* to_string(Role r) {
  return r == Role::master ? "master" : r == Role::standby ? "standby" : "unknown";
}

bool parse_role(const std::string& s, Role& out) {
  for (Role r : {Role::master, Role::standby})
    if (s == to_string(r)) return out = r, true;
  return false;
}

const char* to_string(PeerMessage::Kind k) {
  static const char* names[] = {"heartbeat", "takeover", "quiesce", "stopped"};
  return names[k];
}

namespace {
using R = NodeRules;
using Handler = void (*)(NodeCore&, const Event&, Time, std::vector<Action>&);

// The edges. Columns: what happened; rows: the state it happened in.
enum Column {
  up,           // services_up
  down,         // services_down
  written,      // persisted, ok
  unwritten,    // persisted, failed
  takeover,     // the peer says: take the role
  quiesce,      // the peer says: stop, I take the role
  stopped,      // the peer says: my services are down, as you asked
  op_takeover,  //
  op_release,   //
  op_recover,   //
  maint_on,     //
  maint_off,    //
  op_shutdown,  //
  columns
};

// clang-format off
constexpr Handler kTable[6][columns] = {
  //            up          down       written        unwritten      takeover    quiesce          stopped         op_takeover   op_release       op_recover       maint_on            maint_off          op_shutdown
  /* passive */ {R::nop,     R::nop,    R::written,    R::unwritten,  R::take_role, R::say_stopped, R::peer_stopped, R::claim,    R::not_active,   R::not_failed,   R::maintain,        R::not_maintained, R::exit_idle},
  /* starting*/ {R::ready,   R::nop,    R::start_now,  R::abort_start, R::nop,     R::stop_for_peer, R::nop,        R::is_active, R::release,      R::not_failed,   R::maintain_stop,   R::not_maintained, R::exit_stop},
  /* active  */ {R::nop,     R::nop,    R::written,    R::unwritten,  R::nop,      R::stop_for_peer, R::nop,        R::is_active, R::release,      R::not_failed,   R::maintain_stop,   R::not_maintained, R::exit_stop},
  /* stopping*/ {R::nop,     R::stopped_down, R::written, R::unwritten, R::nop,    R::then_stopped, R::nop,         R::is_stopping, R::not_active, R::not_failed,   R::maintain_after,  R::not_maintained, R::exit_after},
  /* failed  */ {R::nop,     R::nop,    R::written,    R::unwritten,  R::nop,      R::say_stopped,  R::nop,         R::is_failed, R::not_active,   R::recover,      R::is_failed,       R::not_maintained, R::exit_idle},
  /* maint.  */ {R::nop,     R::nop,    R::written,    R::unwritten,  R::nop,      R::say_stopped,  R::nop,         R::in_maint,  R::not_active,   R::not_failed,   R::nop,             R::unmaintain,     R::exit_idle},
};
// clang-format on

// The column of an edge event; -1 for the events that only change what is known (verdicts,
// heartbeats, ticks): the level rules act on those.
int column(const Event& e) {
  switch (e.kind) {
    case Event::services_up:
      return up;
    case Event::services_down:
      return down;
    case Event::persisted:
      return e.flag ? written : unwritten;
    case Event::peer_message:
      switch (e.message.kind) {
        case PeerMessage::takeover:
          return takeover;
        case PeerMessage::quiesce:
          return quiesce;
        case PeerMessage::stopped:
          return stopped;
        case PeerMessage::heartbeat:
          return -1;
      }
      return -1;
    case Event::op_takeover:
      return Column::op_takeover;
    case Event::op_release:
      return Column::op_release;
    case Event::op_recover:
      return Column::op_recover;
    case Event::op_maintenance_on:
      return maint_on;
    case Event::op_maintenance_off:
      return maint_off;
    case Event::op_shutdown:
      return Column::op_shutdown;
    default:
      return -1;
  }
}

bool is_operator(Event::Kind k) {
  return k == Event::op_takeover || k == Event::op_release || k == Event::op_recover ||
         k == Event::op_maintenance_on || k == Event::op_maintenance_off ||
         k == Event::op_svc_restart || k == Event::op_shutdown;
}
}  // namespace

// Every sub-state, its deadline, and what happens when the reply never comes.
const WaitRule& wait_rule(Wait w) {
  // clang-format off
  static const WaitRule rules[] = {
    {Wait::none,          "none",          nullptr,                       R::nop_deadline},
    // The peer never took the role (takeover lost or ignored): the plain rules decide again.
    {Wait::handed_over,   "handed_over",   &NodePolicy::handover_timeout, R::give_up_waiting},
    // The peer never said `stopped`: the plain rules again (it still serves: stay passive).
    // Renewed while the peer is heard stopping: its own stop_timeout bounds that.
    {Wait::quiesce_sent,  "quiesce_sent",  &NodePolicy::handover_timeout, R::give_up_waiting},
    // The peer was not heard: no failback; the plain rules.
    {Wait::failback,      "failback",      &NodePolicy::handover_timeout, R::give_up_waiting},
    // The peer never served: the shell may exit anyway (the peer's rule 3 takes over).
    {Wait::shutdown,      "shutdown",      &NodePolicy::handover_timeout, R::give_up_waiting},
    // The write never answered: counted as failed; services are not started.
    {Wait::persisting,    "persisting",    &NodePolicy::persist_timeout,  R::persist_timed_out},
    // Services never became ready: the node is unhealthy, rule 1 applies.
    {Wait::ready,         "ready",         &NodePolicy::start_timeout,    R::start_timed_out},
    // Services would not stop: tell the peer anyway and keep waiting for the stop.
    {Wait::then_takeover, "then_takeover", &NodePolicy::stop_timeout,     R::stop_timed_out},
    {Wait::then_stopped,  "then_stopped",  &NodePolicy::stop_timeout,     R::stop_timed_out},
    // The shell's stop ends in SIGKILL, so services_down comes: nothing is left to give up.
    {Wait::stop_overdue,  "stop_overdue",  nullptr,                       R::nop_deadline},
    // The probes never passed: stay failed; the operator may recover again.
    {Wait::recovering,    "recovering",    &NodePolicy::recover_timeout,  R::recover_timed_out},
  };
  // clang-format on
  return rules[static_cast<int>(w)];
}

const char* to_string(Wait w) {
  return wait_rule(w).name;
}

// Rule 8: failed and maintenance stick across restarts; anything else starts passive, since
// the services of a previous instance were stopped before this one began.
NodeCore::NodeCore(NodePolicy policy, NodeState persisted, uint64_t epoch, Time now)
    : policy_(std::move(policy)),
      state_(persisted == NodeState::failed || persisted == NodeState::maintenance
                 ? persisted
                 : NodeState::passive),
      epoch_(epoch),
      reason_(state_ == NodeState::passive ? "starting up" : "kept from before the restart"),
      started_(now) {
  if (epoch > kEpochMax) {
    // A damaged record: serving with it could wrap the epoch and lose rule 5. Keep the node
    // out of the pair until an operator recovers it (it then counts from 0).
    epoch_refused_ = "the persisted epoch " + std::to_string(epoch) + " is out of range";
    epoch_ = 0;
    state_ = NodeState::failed;
    reason_ = epoch_refused_ + "; run recover to start again from epoch 0";
  }
}

PeerMessage NodeCore::heartbeat() const {
  return {PeerMessage::heartbeat,
          state_,
          epoch_,
          healthy(),
          policy_.master ? Role::master : Role::standby,
          policy_.incarnation};
}

std::vector<Action> NodeCore::handle(const Event& e, Time now) {
  std::vector<Action> out;
  if (is_operator(e.kind)) refused_.clear();
  R::expire(*this, now, out);
  int c = column(e);
  if (R::learn(*this, e, now, out) && c >= 0)
    kTable[static_cast<int>(state_)][c](*this, e, now, out);
  R::evaluate(*this, now, out);
  return out;
}

}  // namespace vac
