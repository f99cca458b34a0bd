// The node state machine of DESIGN.md, pure: (state, event, now) -> (state, actions). No I/O,
// no clock, no globals: the supervisor feeds it events (probe verdicts, what the peer link
// heard, operator commands, services up or down, ticks) and carries out its actions (start
// or stop the services, tell the peer, persist, notify). Every rule is a unit test, and a
// simulation drives two of them through random faults.
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

// Monotonic time as seen by the core; the shell passes the loop's clock.
using Time = Duration;

struct NodePolicy {
  bool master = true;
  bool has_peer = true;
  bool has_witness = false;
  bool failback_auto = false;
  bool stop_without_peer = false;
  Duration dead_after = std::chrono::seconds(1);
  Duration startup_grace = std::chrono::seconds(3);
  Duration isolation_after = std::chrono::seconds(3);
};

// Messages between the two nodes' cores (carried by linkd).
struct PeerMessage {
  enum Kind { heartbeat, takeover, quiesce, stopped } kind = heartbeat;
  NodeState state = NodeState::passive;  // the sender's, on every message
  uint64_t epoch = 0;
  bool healthy = false;
};

struct Event {
  enum Kind {
    tick,           // time passed
    peer_message,   // an authenticated message from the peer (also proves it alive)
    peer_lost,      // linkd: no valid datagram on any link for dead_after
    health,         // local verdict changed: healthy = no critical probe failing
    witness,        // the witness probe's verdict changed
    services_up,    // every wanted service is up and ready
    services_down,  // every service is down
    op_takeover,    // operator: make this node active
    op_release,     // operator: hand over to the peer
    op_recover,     // operator: leave failed once probes pass (failback: then take over)
    op_maintenance_on,
    op_maintenance_off,
  } kind = tick;
  PeerMessage message;  // peer_message
  bool flag = false;    // health: healthy; witness: ok; op_recover: failback

  Event() = default;
  Event(Kind k, bool f = false) : kind(k), flag(f) {}              // NOLINT: implicit on purpose
  Event(const PeerMessage& m) : kind(peer_message), message(m) {}  // NOLINT
};

struct Action {
  enum Kind {
    start_services,
    stop_services,
    send,     // message to the peer (heartbeats are the shell's; commands are retried by linkd)
    persist,  // state and epoch changed: write them durably before acting further
    notify,   // the state changed: run notify hooks
  } kind;
  PeerMessage message;  // send
};

class NodeCore {
 public:
  NodeCore(NodePolicy policy, NodeState persisted, uint64_t epoch, Time now);

  std::vector<Action> handle(const Event& e, Time now);

  NodeState state() const { return state_; }
  uint64_t epoch() const { return epoch_; }
  bool healthy() const { return healthy_; }
  // Healthy and active: what /health and the load balancer are told.
  bool serving() const { return state_ == NodeState::active && healthy_; }
  bool peer_reachable() const { return peer_reachable_; }
  const std::string& reason() const { return reason_; }
  const std::optional<PeerMessage>& peer() const { return peer_; }
  // Why the last operator command was refused; empty when it was accepted.
  const std::string& refused() const { return refused_; }

  // What to write to the state file: the sticky states (failed, maintenance), including the
  // one a stopping node is heading for; anything else restarts passive.
  NodeState durable_state() const {
    NodeState s = state_ == NodeState::stopping ? after_stop_ : state_;
    return s == NodeState::failed || s == NodeState::maintenance ? s : NodeState::passive;
  }

  // What this node's heartbeats say about it.
  PeerMessage heartbeat() const { return {PeerMessage::heartbeat, state_, epoch_, healthy_}; }

 private:
  void set_state(NodeState s, const std::string& why, std::vector<Action>& out);
  void go_active(const std::string& why, std::vector<Action>& out);
  void go_down(NodeState after, const std::string& why, std::vector<Action>& out);
  void evaluate(Time now, std::vector<Action>& out);
  bool peer_serving() const;
  bool peer_can_take_over() const;

  NodePolicy policy_;
  NodeState state_;
  uint64_t epoch_;
  NodeState after_stop_ = NodeState::passive;  // where `stopping` leads
  std::string reason_;
  bool healthy_ = true;
  bool witness_ok_ = true;
  bool peer_reachable_ = false;
  bool peer_seen_ = false;
  bool peer_lost_while_active_ = false;
  std::optional<PeerMessage> peer_;
  Time started_;
  Time unreachable_since_{};      // both peer and witness unreachable since
  bool recovering_ = false;       // op_recover given: waiting for the probes to pass
  bool failback_ = false;         // after recovering, ask the peer to quiesce
  bool waiting_quiesce_ = false;  // asked the peer to stop, waiting for `stopped` or loss
  bool quiesce_reply_ = false;
  bool handed_over_ = false;  // sent `takeover`: the peer is taking the role; do not reclaim it //
                              // the peer asked us to stop: tell it once we have
  std::string refused_;
};

}  // namespace vac
