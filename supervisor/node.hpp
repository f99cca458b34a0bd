// The node state machine of DESIGN.md, pure: (state, event, now) -> (state, actions). No I/O,
// no clock, no globals: the supervisor feeds it events (probe verdicts, what the peer link
// heard, operator commands, services up or down, the result of a write, ticks) and carries
// out its actions (start or stop the services, tell the peer, persist, notify). Every rule is
// a unit test, and a simulation drives two of them through random faults.
//
// A state may have a sub-state (Wait): what the node is waiting for in the middle of a
// handshake. Every sub-state has a deadline; when it passes, the sub-state ends and the
// plain rules of its state apply again, so no reply that never comes can stall the pair.
//
// Handovers are break-before-make, the failure handover (rule 1) included: a node stops its
// services FIRST and tells the peer `takeover` once they are down (or once stop_timeout has
// passed). Telling the peer first would shorten the gap by the stop time, but both nodes would
// serve during the stop; the promise puts "never two serving" before "never none", and a node
// failing its probes serves badly anyway, so the stop costs little.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/duration.hpp"

namespace vac {

enum class NodeState { passive, starting, active, stopping, failed, maintenance };
const char* to_string(NodeState s);
bool parse_node_state(const std::string& s, NodeState& out);

// What a node waits for inside its state; `none` outside a handshake. Each has a deadline.
enum class Wait {
  none,
  handed_over,    // passive: told the peer to take over (or stopped for it); until it serves
  quiesce_sent,   // passive: asked the serving peer to stop; until it has stopped
  failback,       // passive, just recovered with failback: until the peer is heard
  shutdown,       // passive, shutting down: until the peer serves; then the shell may exit
  persisting,     // starting: the new epoch is being written; services start once it is
  ready,          // starting: services started; until they are all up and ready
  then_takeover,  // stopping for a planned or failure handover: `takeover` once down
  then_stopped,   // stopping because the peer asked: `stopped` once down
  stop_overdue,   // stopping past stop_timeout: the peer was told anyway; until down
  recovering,     // failed: recover given; until the probes pass `rise` times
};
const char* to_string(Wait w);

// The configured role, carried in every heartbeat. `unknown` from a peer that does not say.
enum class Role { unknown, master, standby };
const char* to_string(Role r);
bool parse_role(const std::string& s, Role& out);

// Epochs above this are refused, on load and on receipt: max(own, peer) + 1 never wraps.
constexpr uint64_t kEpochMax = uint64_t(1) << 62;

// Monotonic time as seen by the core; the shell passes the loop's clock.
using Time = Duration;

struct NodePolicy {
  bool master = true;
  std::string name, peer_name;  // two masters (or standbys): the name sorting first serves
  uint64_t incarnation = 0;     // this run of the supervisor, in every message (random, not 0)
  bool has_peer = true;
  bool has_witness = false;
  bool failback_auto = false;
  bool stop_without_peer = false;
  Duration dead_after = std::chrono::seconds(1);
  Duration startup_grace = std::chrono::seconds(3);
  Duration isolation_after = std::chrono::seconds(3);
  // Deadlines of the sub-states.
  Duration start_timeout = std::chrono::seconds(30);    // ready: then unhealthy (rule 1)
  Duration stop_timeout = std::chrono::seconds(10);     // then_*: tell the peer anyway
  Duration handover_timeout = std::chrono::seconds(5);  // handed_over, quiesce_sent, failback
  Duration recover_timeout = std::chrono::seconds(60);  // recovering: stay failed
  Duration persist_timeout = std::chrono::seconds(5);   // persisting: count as a failure
  Duration persist_retry = std::chrono::seconds(1);     // a failed write is retried this often
  // Active-scope probes: failures in the start period do not count; the first pass ends it.
  Duration start_period = std::chrono::seconds(10);
};

// Messages between the two nodes' cores (carried by linkd).
struct PeerMessage {
  enum Kind { heartbeat, takeover, quiesce, stopped } kind = heartbeat;
  NodeState state = NodeState::passive;  // the sender's, on every message
  uint64_t epoch = 0;
  bool healthy = false;
  Role role = Role::unknown;  // the sender's configured role
  uint64_t incarnation = 0;   // the sender supervisor's run (random at each start; 0: not said)
};
const char* to_string(PeerMessage::Kind k);

struct Event {
  enum Kind {
    tick,           // time passed
    peer_message,   // an authenticated message from the peer (also proves it alive)
    peer_lost,      // linkd: no valid datagram on any link for dead_after
    health,         // node-scope critical probes: flag = all pass (after fall/rise)
    active_probe,   // active-scope critical probes: flag = all pass; counted only while serving
    budget,         // flag = some service is over its restart budget (rule 1's second trigger)
    witness,        // the witness probe's verdict changed
    services_up,    // every wanted service is up and ready
    services_down,  // every service is down
    persisted,      // the shell's answer to Action::persist: flag = written durably
    op_takeover,    // operator: make this node active
    op_release,     // operator: hand over to the peer
    op_recover,     // operator: leave failed once probes pass (flag: then fail back)
    op_maintenance_on,
    op_maintenance_off,
    op_svc_restart,  // operator restarted a service: a new start period for active probes
    op_shutdown,     // the supervisor is asked to exit: stop, hand over, then may_exit()
  } kind = tick;
  PeerMessage message;  // peer_message
  bool flag = false;
  std::string detail;  // persisted: why the write failed

  Event() = default;
  Event(Kind k, bool f = false) : kind(k), flag(f) {}              // NOLINT: implicit on purpose
  Event(const PeerMessage& m) : kind(peer_message), message(m) {}  // NOLINT
};

struct Action {
  enum Kind {
    start_services,
    stop_services,
    send,  // message to the peer (heartbeats are the shell's; commands are retried by linkd)
    // Write durable_state() and epoch(); answer with Event::persisted before any other event.
    persist,
    notify,  // the state changed: run notify hooks
  } kind;
  PeerMessage message;  // send
};

class NodeCore {
 public:
  // `epoch` as loaded; above kEpochMax it is refused and the node starts failed.
  NodeCore(NodePolicy policy, NodeState persisted, uint64_t epoch, Time now);

  std::vector<Action> handle(const Event& e, Time now);

  NodeState state() const { return state_; }
  Wait wait() const { return wait_; }
  Time wait_deadline() const { return deadline_; }  // meaningful when wait() != none
  uint64_t epoch() const { return epoch_; }
  // Fit to serve: probes pass, within budget, services became ready in time, record written.
  bool healthy() const { return unhealthy_reason().empty(); }
  std::string unhealthy_reason() const;
  // Healthy and active: what /health and the load balancer are told.
  bool serving() const { return state_ == NodeState::active && healthy(); }
  bool peer_reachable() const { return peer_reachable_; }
  const std::string& reason() const { return reason_; }
  const std::optional<PeerMessage>& peer() const { return peer_; }
  // Why the last operator command was refused; empty when it was accepted.
  const std::string& refused() const { return refused_; }
  // Loud problems for the log and status; empty when none.
  const std::string& role_conflict() const { return role_conflict_; }
  const std::string& epoch_refused() const { return epoch_refused_; }
  const std::string& record_error() const { return record_error_; }
  // The role this node plays in the pair: its configured one, or by name order on a conflict.
  bool acts_as_master() const;
  // After op_shutdown: services down and the peer told (and heard serving, or the deadline).
  bool may_exit() const;

  // What to write to the state file: the sticky states (failed, maintenance), including the
  // one a stopping node is heading for; anything else restarts passive.
  NodeState durable_state() const {
    NodeState s = state_ == NodeState::stopping ? after_stop_ : state_;
    return s == NodeState::failed || s == NodeState::maintenance ? s : NodeState::passive;
  }

  // What this node's heartbeats say about it.
  PeerMessage heartbeat() const;

 private:
  // The rules live in node.cpp (the table) and node_rules.cpp (the level rules).
  friend struct NodeRules;

  NodePolicy policy_;
  NodeState state_;
  Wait wait_ = Wait::none;
  Time deadline_{};
  uint64_t epoch_;
  NodeState after_stop_ = NodeState::passive;  // where `stopping` leads
  std::string reason_;
  // The verdicts that make up healthy().
  bool probes_ok_ = true;
  bool active_ok_ = true;      // active-scope probes, as last reported while serving
  bool start_period_ = false;  // active-scope failures do not count yet
  Time start_period_end_{};
  bool over_budget_ = false;
  bool start_overdue_ = false;  // services did not become ready within start_timeout
  std::string record_error_;    // the last write of the node record failed
  Time persist_retry_at_{};
  // When this node last told the peer to take the role (`takeover` or `stopped` sent as its
  // services stopped), whatever state it went to: a node that comes back to passive soon after
  // (recovered, out of maintenance) waits for that handover as handed_over does.
  std::optional<Time> told_peer_at_;
  bool witness_ok_ = true;
  bool peer_reachable_ = false;
  bool peer_seen_ = false;
  std::optional<PeerMessage> peer_;
  uint64_t peer_epoch_max_ = 0;    // the highest epoch heard from the peer
  uint64_t quiesced_epoch_ = 0;    // the peer's epoch when asked to stop
  uint64_t peer_incarnation_ = 0;  // the peer's run, as its messages say (0: not said)
  bool failback_ = false;          // recovering with failback: ask the peer once recovered
  bool shutdown_ = false;          // op_shutdown given: never active again in this process
  Time started_;
  Time unreachable_since_{};  // both peer and witness unreachable since
  std::string refused_;
  std::string role_conflict_;
  std::string epoch_refused_;
};

}  // namespace vac
