// The rules of the node core, shared by the table (node.cpp) and the level rules
// (node_rules.cpp). Internal to the core: the supervisor uses node.hpp only.
#pragma once

#include <vector>

#include "node.hpp"

namespace vac {

struct WaitRule;

struct NodeRules {
  using Out = std::vector<Action>;
  using Core = NodeCore;

  // Edge handlers: one per cell of the table.
  static void nop(Core&, const Event&, Time, Out&) {}
  static void ready(Core& n, const Event&, Time now, Out& out);
  static void stopped_down(Core& n, const Event&, Time now, Out& out);
  static void written(Core& n, const Event&, Time now, Out& out);
  static void unwritten(Core& n, const Event& e, Time now, Out& out);
  static void start_now(Core& n, const Event&, Time now, Out& out);
  static void abort_start(Core& n, const Event& e, Time now, Out& out);
  static void take_role(Core& n, const Event&, Time now, Out& out);
  static void say_stopped(Core& n, const Event&, Time now, Out& out);
  static void peer_stopped(Core& n, const Event&, Time now, Out& out);
  static void stop_for_peer(Core& n, const Event&, Time now, Out& out);
  static void then_stopped(Core& n, const Event&, Time now, Out& out);
  static void claim(Core& n, const Event&, Time now, Out& out);
  static void release(Core& n, const Event&, Time now, Out& out);
  static void recover(Core& n, const Event& e, Time now, Out& out);
  static void maintain(Core& n, const Event&, Time now, Out& out);
  static void maintain_stop(Core& n, const Event&, Time now, Out& out);
  static void maintain_after(Core& n, const Event&, Time now, Out& out);
  static void unmaintain(Core& n, const Event&, Time now, Out& out);
  static void exit_idle(Core& n, const Event&, Time now, Out& out);
  static void exit_stop(Core& n, const Event&, Time now, Out& out);
  static void exit_after(Core& n, const Event&, Time now, Out& out);
  // Refusals of operator commands, each with a reason the operator can act on.
  static void not_active(Core& n, const Event&, Time, Out&);
  static void not_failed(Core& n, const Event&, Time, Out&);
  static void not_maintained(Core& n, const Event&, Time, Out&);
  static void is_active(Core& n, const Event&, Time, Out&);
  static void is_stopping(Core& n, const Event&, Time, Out&);
  static void is_failed(Core& n, const Event&, Time, Out&);
  static void in_maint(Core& n, const Event&, Time, Out&);

  // Deadline handlers: one per sub-state.
  static void nop_deadline(Core&, Time, Out&) {}
  static void give_up_waiting(Core& n, Time now, Out& out);
  static void persist_timed_out(Core& n, Time now, Out& out);
  static void start_timed_out(Core& n, Time now, Out& out);
  static void stop_timed_out(Core& n, Time now, Out& out);
  static void recover_timed_out(Core& n, Time now, Out& out);

  // What every event does before the table: deadlines, then what it tells about the world.
  static void expire(Core& n, Time now, Out& out);
  static bool learn(Core& n, const Event& e, Time now, Out& out);
  static bool accept(Core& n, const PeerMessage& m);
  // The level rules: who should serve, given what is known now.
  static void evaluate(Core& n, Time now, Out& out);
  static void evaluate_passive(Core& n, Time now, Out& out);
  static void evaluate_serving(Core& n, Time now, Out& out);

  // Helpers.
  static void set_state(Core& n, NodeState s, const std::string& why, Out& out);
  static void set_wait(Core& n, Wait w, Time now);
  static void go_active(Core& n, const std::string& why, Time now, Out& out);
  static void go_down(Core& n, NodeState after, Wait then, const std::string& why, Time now,
                      Out& out);
  static void send(const Core& n, PeerMessage::Kind k, Out& out);
  static void persist(Core& n, Out& out);
  static bool peer_serving(const Core& n);
  static bool peer_can_take_over(const Core& n);
};

struct WaitRule {
  Wait wait;
  const char* name;
  Duration NodePolicy::*timeout;  // null: no deadline of its own (see node.cpp)
  void (*expired)(NodeCore&, Time, std::vector<Action>&);
};
const WaitRule& wait_rule(Wait w);

inline bool serving_state(NodeState s) {
  return s == NodeState::active || s == NodeState::starting;
}

}  // namespace vac
