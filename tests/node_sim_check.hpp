// The simulation's step and its invariants (included by node_sim_impl.hpp).
#pragma once

namespace vac::sim {

inline std::string Sim::step() {
  now_ += kStep;
  ++stats.steps;
  // Quiet periods: the faults stop for kQuietLength, then resume.
  if (!quiet_ && now_ >= next_quiet_) enter_quiet();
  if (quiet_ && now_ - quiet_since_ >= kQuietLength) {
    quiet_ = false;
    next_quiet_ = now_ + 5s + rand_dur(15s);
    log("quiet ends");
  }
  // Partitions come and go; the isolated node loses its witness too.
  if (isolated_ >= 0 && now_ >= isolated_until_) {
    log("heal");
    int was = isolated_;
    isolated_ = -1;
    if (n_[was].up) feed(was, Event(Event::witness, true));
  } else if (isolated_ < 0 && !quiet_ && p(0.0005)) {
    isolated_ = p(0.5) ? 0 : 1;
    ++stats.partitions;
    isolated_until_ = now_ + rand_dur(3s);
    log("isolate n", isolated_);
    if (n_[isolated_].up) feed(isolated_, Event(Event::witness, false));
  }
  for (int i = 0; i < 2; ++i) {
    Node& x = n_[i];
    if (!x.up) {
      if (now_ >= x.down_until) boot(i);
      continue;
    }
    faults(i);
    if (!x.up) continue;
    shell(i);
    if (!x.up) continue;
    linkd(i);
    feed(i, Event::tick);
  }
  deliver();
  check();
  return broken_;
}

inline void Sim::check() {
  auto running = [&](int i) { return n_[i].up && n_[i].svc_running; };
  // Two serving: stopping and starting count, since their processes run.
  if (running(0) && running(1)) {
    if (both_since_ < Time(0)) {
      both_since_ = now_;
      int later = n_[0].activated >= n_[1].activated ? 0 : 1;
      overlap_kind_ = n_[later].active_kind;
      log("both serving (", overlap_kind_, ")");
      for (const char* k : kPlanned)
        if (overlap_kind_ == k)
          fail("both serving after a planned handover (" + overlap_kind_ + ")");
    }
    stats.overlap[overlap_kind_] += kStep;
    Duration d = now_ - both_since_ + kStep;
    stats.overlap_max[overlap_kind_] = std::max(stats.overlap_max[overlap_kind_], d);
    // A linkd restart since the peers last heard each other (dead_after before the overlap)
    // delays a loss report, and with it the isolated node's fence.
    bool restart = last_linkd_restart_ >= both_since_ - kDeadAfter;
    if (d > (restart ? kOverlapBoundLinkdRestart : kOverlapBound))
      fail("both serving for " + std::to_string(ms(d)) + " ms (" + overlap_kind_ +
           (restart ? ", a linkd restarted" : "") + ")");
  } else {
    both_since_ = Time(-1);
  }
  // An unhealthy node serves while the healthy passive peer it hears could take the role.
  for (int i = 0; i < 2; ++i) {
    const Node& x = n_[i];
    const Node& y = n_[1 - i];
    NodeState s = x.up ? x.core->state() : NodeState::passive;
    bool bad = x.up && (s == NodeState::starting || s == NodeState::active) && x.svc_running &&
               !x.core->healthy() && x.core->peer_reachable() && y.up && !y.shutting &&
               y.core->state() == NodeState::passive && y.core->healthy() && isolated_ < 0;
    if (!bad) {
      unhealthy_since_[i] = Time(-1);
      continue;
    }
    if (unhealthy_since_[i] < Time(0)) unhealthy_since_[i] = now_;
    Duration d = now_ - unhealthy_since_[i];
    stats.unhealthy_max = std::max(stats.unhealthy_max, d);
    if (d > kUnhealthyBound)
      fail("n" + std::to_string(i) + " unhealthy and serving for " + std::to_string(ms(d)) +
           " ms while its peer could serve");
  }
  // Liveness once the faults have stopped.
  if (!quiet_) return;
  auto serves = [&](int i) {
    const Node& x = n_[i];
    return x.up && x.core->state() == NodeState::active && x.core->healthy() && x.svc_ready;
  };
  auto could = [&](int i) {
    const Node& x = n_[i];
    NodeState s = x.up ? x.core->state() : NodeState::passive;
    return !x.shutting && s != NodeState::failed && s != NodeState::maintenance;
  };
  if (serves(0) || serves(1) || (!could(0) && !could(1))) {
    nobody_since_ = Time(-1);
    return;
  }
  if (nobody_since_ < Time(0)) nobody_since_ = now_;
  Duration d = now_ - nobody_since_;
  stats.liveness_max = std::max(stats.liveness_max, d);
  if (d > kLivenessBound)
    fail("no node serves for " + std::to_string(ms(d)) + " ms after the faults stopped");
}

}  // namespace vac::sim
