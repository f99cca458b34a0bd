// The simulated system's behaviour (included by node_sim.hpp).
#pragma once

namespace vac::sim {

inline void Sim::boot(int i) {
  Node& x = n_[i];
  NodePolicy pol = policy(i);
  pol.incarnation = ++boots_;  // a new run: every message says which
  x.core = std::make_unique<NodeCore>(pol, x.persisted, x.persisted_epoch, now_);
  x.up = true;
  x.shutting = false;
  x.svc_running = x.svc_wanted = x.svc_ready = false;
  x.svc_done = Time(-1);
  x.active_fed = true;
  x.linkd_up = true;
  x.lost_reported = false;
  x.last_rx = now_;
  x.outbox.clear();
  x.seen.clear();
  x.core_seen.clear();
  x.max_epoch = x.core->epoch();
  log("n", i, " boots ", to_string(x.core->state()), " epoch ", x.core->epoch());
  feed(i, Event(Event::health, x.healthy));
  feed(i, Event(Event::witness, isolated_ != i));
  feed(i, Event(Event::budget, x.over_budget));
}

// The shell: carry out the core's actions, and answer its writes before anything else.
inline void Sim::feed(int i, const Event& e, int depth) {
  Node& x = n_[i];
  NodeState before = x.core->state();
  auto actions = x.core->handle(e, now_);
  carry_out(i, actions, before, depth);
}

inline void Sim::carry_out(int i, const std::vector<Action>& actions, NodeState before, int depth) {
  Node& x = n_[i];
  std::optional<bool> written;
  for (auto& a : actions) {
    switch (a.kind) {
      case Action::persist:
        written = x.disk_ok;
        if (!x.disk_ok) {
          ++stats.write_failures;
          break;
        }
        if (x.core->epoch() < x.persisted_epoch) fail("the persisted epoch went down");
        x.persisted = x.core->durable_state();
        x.persisted_epoch = x.core->epoch();
        break;
      case Action::start_services:
        if (x.svc_running && !x.svc_wanted) fail("services started before they stopped");
        x.svc_wanted = x.svc_running = true;
        x.svc_ready = false;
        // Some services never become ready; the others take a moment, and their probe
        // fails at first (no readiness check: they listen a little later).
        if (!quiet_ && p(0.03)) {
          x.svc_done = Time(-1);
          ++stats.never_ready;
          log("n", i, " services will never become ready");
        } else {
          x.svc_done = now_ + rand_dur(kMaxServiceTime);
        }
        x.probe_pass_at = now_ + rand_dur(kWarmup);
        break;
      case Action::stop_services:
        x.svc_wanted = false;
        x.svc_done = now_ + rand_dur(kMaxServiceTime);
        break;
      case Action::send: {
        ++stats.commands_sent[a.message.kind];
        std::string tag = a.message.kind == PeerMessage::takeover  ? x.handover_kind
                          : a.message.kind == PeerMessage::quiesce ? x.quiesce_kind
                                                                   : "";
        if (a.message.kind == PeerMessage::quiesce)
          tag = x.core->reason().rfind("failback", 0) == 0 ? "failback" : "operator takeover";
        x.quiesce_kind = a.message.kind == PeerMessage::quiesce ? tag : x.quiesce_kind;
        if (x.linkd_up) x.outbox.push_back({x.next_id++, a.message, tag});
        log("n", i, " sends ", to_string(a.message.kind), " (", tag, ")");
        break;
      }
      case Action::notify:
        break;
    }
  }
  note_transition(i, before);
  if (written && depth < 4) feed(i, Event(Event::persisted, *written), depth + 1);
}

inline void Sim::note_transition(int i, NodeState before) {
  Node& x = n_[i];
  NodeState after = x.core->state();
  if (x.core->epoch() < x.max_epoch) fail("the epoch went down");
  if (x.core->epoch() > kEpochMax) fail("the epoch left its range");
  x.max_epoch = x.core->epoch();
  if (after == before) return;
  log("n", i, " ", to_string(before), "->", to_string(after), " [", to_string(x.core->wait()),
      "] (", x.core->reason(), ") epoch ", x.core->epoch());
  if (after == NodeState::stopping && x.core->wait() == Wait::then_takeover) {
    const std::string& r = x.core->reason();
    x.handover_kind = r.rfind("operator release", 0) == 0       ? "release"
                      : r.rfind("operator maintenance", 0) == 0 ? "maintenance"
                      : r.rfind("shutting down", 0) == 0        ? "shutdown"
                                                                : "rule 1";
  }
  if (after == NodeState::starting) {
    ++stats.activations;
    const std::string& r = x.core->reason();
    x.active_kind = r == "the peer handed over"                   ? delivering_tag_
                    : r == "the peer stopped its services for us" ? x.quiesce_kind
                    : r == "operator takeover"                    ? "operator takeover, peer idle"
                    : r == "the peer was lost"                    ? "failure: peer lost"
                    : r.rfind("the peer cannot serve", 0) == 0    ? "failure: peer cannot serve"
                    : r == "both passive: the master serves"      ? "master takes the role"
                                                                  : "start-up";
    x.activated = now_;
    ++stats.handovers[x.active_kind];
  }
  if (after == NodeState::failed) x.recover_allowed = false;
  if (before == NodeState::failed && after != NodeState::failed && !x.recover_allowed)
    fail("a failed node left failed without recover");
}

inline void Sim::net_send(int from, Packet::Type type, const PeerMessage& m, uint64_t id,
                          const std::string& tag) {
  if (isolated_ >= 0) return;  // partitioned
  if (p(0.05)) return;         // lost
  int copies = p(0.02) ? 2 : 1;
  for (int c = 0; c < copies; ++c)
    net_.push_back({now_ + rand_dur(kMaxDelay), 1 - from, type, m, id, tag});
}

inline void Sim::faults(int i) {
  Node& x = n_[i];
  if (quiet_) return;
  if (p(0.0002)) {  // the whole node dies: supervisor, linkd and services
    log("n", i, " crashes");
    ++stats.crashes;
    x.up = false;
    x.svc_running = x.svc_wanted = false;
    x.down_until = now_ + rand_dur(2s);
    return;
  }
  if (x.linkd_up && p(0.0003)) {  // linkd restarts: what it had pending is lost
    x.linkd_up = false;
    x.linkd_back_at = now_ + rand_dur(kLinkdRestartMax);
    last_linkd_restart_ = now_;
    x.outbox.clear();
    x.seen.clear();
    ++stats.linkd_restarts;
    log("n", i, " linkd restarts");
  }
  if (x.healthy && p(0.0004)) {
    x.healthy = false;
    x.unhealthy_until = now_ + rand_dur(2s);
    feed(i, Event(Event::health, false));
  }
  if (x.disk_ok && p(0.0002)) {
    x.disk_ok = false;
    x.disk_bad_until = now_ + rand_dur(1s);
    log("n", i, " disk goes bad");
  }
  if (x.svc_running && !x.over_budget && p(0.0002)) {
    x.over_budget = true;
    x.budget_until = now_ + rand_dur(1s);
    feed(i, Event(Event::budget, true));
  }
  if (x.svc_running && !x.svc_sick && p(0.0003)) {
    x.svc_sick = true;
    x.svc_sick_until = now_ + rand_dur(1s);
  }
  if (p(0.001)) operator_command(i);
}

// The shell's clocks: faults that end, services that finish, active-scope probes.
inline void Sim::shell(int i) {
  Node& x = n_[i];
  if (!x.healthy && now_ >= x.unhealthy_until) {
    x.healthy = true;
    feed(i, Event(Event::health, true));
  }
  if (!x.disk_ok && now_ >= x.disk_bad_until) x.disk_ok = true;
  if (x.over_budget && now_ >= x.budget_until) {
    x.over_budget = false;
    feed(i, Event(Event::budget, false));
  }
  if (x.svc_sick && now_ >= x.svc_sick_until) x.svc_sick = false;
  if (x.svc_done >= Time(0) && now_ >= x.svc_done) {
    x.svc_done = Time(-1);
    if (x.svc_wanted) {
      x.svc_ready = true;
      feed(i, Event::services_up);
    } else {
      x.svc_running = x.svc_ready = false;
      feed(i, Event::services_down);
    }
  }
  // Active-scope probes run while the node serves; their verdict changes are fed.
  NodeState s = x.core->state();
  bool serving = s == NodeState::starting || s == NodeState::active;
  if (serving && x.svc_running) {
    bool pass = x.svc_ready && now_ >= x.probe_pass_at && !x.svc_sick;
    if (pass != x.active_fed) {
      x.active_fed = pass;
      feed(i, Event(Event::active_probe, pass));
    }
  } else {
    x.active_fed = true;
  }
  if (x.shutting && x.core->may_exit()) {
    log("n", i, " exits after shutdown");
    if (x.svc_running) fail("the supervisor exited with its services running");
    x.up = false;
    x.down_until = now_ + rand_dur(1s);
  } else if (x.shutting && now_ - x.shutdown_at > kShutdownBound) {
    fail("a shutdown did not end within " + std::to_string(ms(kShutdownBound)) + " ms");
  }
}

inline void Sim::linkd(int i) {
  Node& x = n_[i];
  if (!x.linkd_up) {
    if (now_ < x.linkd_back_at) return;
    x.linkd_up = true;
    x.last_rx = now_;  // a new linkd waits dead_after before it says lost
    x.lost_reported = false;
  }
  if (now_ >= x.next_hb) {
    x.next_hb = now_ + kHeartbeat;
    net_send(i, Packet::heartbeat, x.core->heartbeat());
    // As linkd: a takeover or stopped not yet acknowledged is dropped once this node serves.
    if (x.core->state() == NodeState::active || x.core->state() == NodeState::starting)
      std::erase_if(x.outbox, [](const Cmd& c) {
        return c.msg.kind == PeerMessage::takeover || c.msg.kind == PeerMessage::stopped;
      });
    for (auto& c : x.outbox) net_send(i, Packet::command, c.msg, c.id, c.tag);
  }
  if (!x.lost_reported && now_ - x.last_rx >= kDeadAfter) {
    x.lost_reported = true;
    x.outbox.clear();  // commands are retried until acknowledged or the peer is lost
    feed(i, Event::peer_lost);
  }
}

inline void Sim::deliver() {
  // In the order of their (random) arrival times: reordering included.
  std::stable_sort(net_.begin(), net_.end(), [](auto& a, auto& b) { return a.at < b.at; });
  size_t done = 0;
  for (; done < net_.size() && net_[done].at <= now_; ++done) {
    Packet pk = net_[done];
    Node& x = n_[pk.to];
    if (!x.up || !x.linkd_up) continue;
    x.last_rx = now_;
    x.lost_reported = false;
    if (pk.type == Packet::ack) {
      std::erase_if(n_[pk.to].outbox, [&](const Cmd& c) { return c.id == pk.id; });
      continue;
    }
    if (pk.type == Packet::command) {
      net_send(pk.to, Packet::ack, {}, pk.id);
      if (!x.seen.insert(pk.id).second) continue;  // at most once per linkd lifetime
      if (!x.core_seen.insert(pk.id).second) ++stats.duplicates;
    }
    delivering_tag_ = pk.tag;
    feed(pk.to, Event(pk.msg));
    delivering_tag_.clear();
  }
  net_.erase(net_.begin(), net_.begin() + static_cast<long>(done));
}

inline void Sim::operator_command(int i) {
  Node& x = n_[i];
  int which = std::uniform_int_distribution<>(0, 8)(rng_);
  // Mostly what an operator would do in this state, so that every handover happens often.
  if (p(0.7)) switch (x.core->state()) {
      case NodeState::active:
        which = std::uniform_int_distribution<>(0, 3)(rng_) == 0 ? 5 : p(0.3) ? 7 : p(0.2) ? 3 : 1;
        break;
      case NodeState::passive:
        which = p(0.7) ? 0 : 6;
        break;
      case NodeState::failed:
        which = 2;
        break;
      case NodeState::maintenance:
        which = 4;
        break;
      default:
        break;
    }
  Event e;
  switch (which) {
    case 0:
      e.kind = Event::op_takeover;
      break;
    case 1:
      e.kind = Event::op_release;
      break;
    case 2:
      e.kind = Event::op_recover, e.flag = p(0.5);
      break;
    case 3:
      e.kind = Event::op_maintenance_on;
      break;
    case 4:
      e.kind = Event::op_maintenance_off;
      break;
    case 5:
      e.kind = Event::op_svc_restart;
      if (x.svc_running) x.probe_pass_at = now_ + rand_dur(kWarmup);
      break;
    case 6:  // `vacataire probe` of an active-scope probe, wherever it is
      e.kind = Event::active_probe, e.flag = false;
      if (x.core->state() == NodeState::active) return;  // would be a real verdict there
      break;
    case 7:
      e.kind = Event::op_shutdown;
      x.shutting = true;
      x.shutdown_at = now_;
      break;
    default:
      e.kind = Event::op_recover, e.flag = true;
      break;
  }
  bool recovering = e.kind == Event::op_recover && x.core->state() == NodeState::failed;
  feed(i, e);
  log("n", i, " operator ", which, x.core->refused().empty() ? "" : ": " + x.core->refused());
  if (recovering) {
    x.recover_allowed = true;
    // The shell re-runs the probes and clears the budgets: their fresh verdict decides.
    x.over_budget = false;
    feed(i, Event(Event::budget, false));
    feed(i, Event(Event::health, x.healthy));
  }
}

inline void Sim::enter_quiet() {
  quiet_ = true;
  quiet_since_ = now_;
  ++stats.quiet_checks;
  log("quiet: the faults stop");
  if (isolated_ >= 0) isolated_until_ = now_;
  for (int i = 0; i < 2; ++i) {
    Node& x = n_[i];
    x.unhealthy_until = x.disk_bad_until = x.budget_until = x.svc_sick_until = now_;
    x.linkd_back_at = std::min(x.linkd_back_at, now_);
    if (!x.up) x.down_until = now_;
    if (x.svc_running && x.svc_wanted && x.svc_done < Time(0) && !x.svc_ready)
      x.svc_done = now_ + rand_dur(kMaxServiceTime);  // even the stuck start completes
  }
}

}  // namespace vac::sim

#include "node_sim_check.hpp"
