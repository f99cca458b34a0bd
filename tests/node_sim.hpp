// The simulated system of node_sim_test.cpp: two cores, their shells, linkd and the network.
#pragma once

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "node.hpp"

namespace vac::sim {
using namespace std::chrono_literals;

constexpr Duration kStep = 5ms;
constexpr Duration kHeartbeat = 50ms;
constexpr Duration kDeadAfter = 250ms;
constexpr Duration kIsolationAfter = 600ms;
constexpr Duration kStartupGrace = 500ms;
constexpr Duration kMaxDelay = 30ms;
constexpr Duration kMaxServiceTime = 60ms;  // a start or a stop
constexpr Duration kWarmup = 100ms;         // a started service's probe may fail this long
// The core's deadlines, scaled to the simulation.
constexpr Duration kStartTimeout = 400ms;
constexpr Duration kStopTimeout = 200ms;
constexpr Duration kHandoverTimeout = 400ms;
constexpr Duration kRecoverTimeout = 1s;
constexpr Duration kPersistTimeout = 100ms;
constexpr Duration kPersistRetry = 100ms;
constexpr Duration kStartPeriod = 200ms;
constexpr Duration kQuietLength = 5s;

// The bounds the invariants check.
// Two serving: a partition until the isolated node fences itself, or until they hear each
// other again and the lower epoch yields, plus its stop.
constexpr Duration kOverlapBound =
    kIsolationAfter + kDeadAfter + 4 * kHeartbeat + kMaxDelay + kMaxServiceTime;
// A linkd restart is back within its restart backoff's cap (dead_after / 4) and its start-up;
// the new linkd says the peer is lost only dead_after after it starts. A restart on the
// isolated side during a partition delays its fence by both.
constexpr Duration kLinkdRestartMax = kDeadAfter / 4 + 40ms;
constexpr Duration kOverlapBoundLinkdRestart = kOverlapBound + kLinkdRestartMax + kDeadAfter;
// An unhealthy node serving while the healthy passive peer it hears could: a few heartbeats
// for it to learn the peer can take the role, then its stop.
constexpr Duration kUnhealthyBound = 6 * kHeartbeat + kMaxDelay + kMaxServiceTime;
// Liveness after faults stop: the start-up grace of a restarted node, a start that never
// becomes ready and its handover, a handover that is not taken, and the restarts.
constexpr Duration kLivenessBound = kStartupGrace + kStartTimeout + kStopTimeout +
                                    kHandoverTimeout + 2 * kDeadAfter + 4 * kMaxServiceTime +
                                    6 * kHeartbeat + kPersistTimeout;
constexpr Duration kShutdownBound = kStopTimeout + kHandoverTimeout + 2 * kStep;

inline const char* const kPlanned[] = {"release",  "rule 1",   "operator takeover",
                                       "failback", "shutdown", "maintenance"};

inline long ms(Duration d) {
  return static_cast<long>(d.count() / 1000);
}

struct Stats {
  long steps = 0, activations = 0, partitions = 0, crashes = 0, linkd_restarts = 0,
       write_failures = 0, never_ready = 0, quiet_checks = 0, duplicates = 0;
  long commands_sent[4] = {0, 0, 0, 0};
  std::map<std::string, long> handovers;        // activations by kind
  std::map<std::string, Duration> overlap;      // time with both serving, by the kind of the
  std::map<std::string, Duration> overlap_max;  // later activation
  Duration unhealthy_max{0}, liveness_max{0};

  void add(const Stats& o) {
    steps += o.steps, activations += o.activations, partitions += o.partitions;
    crashes += o.crashes, linkd_restarts += o.linkd_restarts;
    write_failures += o.write_failures, never_ready += o.never_ready;
    quiet_checks += o.quiet_checks, duplicates += o.duplicates;
    for (int i = 0; i < 4; ++i) commands_sent[i] += o.commands_sent[i];
    for (auto& [k, v] : o.handovers) handovers[k] += v;
    for (auto& [k, v] : o.overlap) overlap[k] += v;
    for (auto& [k, v] : o.overlap_max) overlap_max[k] = std::max(overlap_max[k], v);
    unhealthy_max = std::max(unhealthy_max, o.unhealthy_max);
    liveness_max = std::max(liveness_max, o.liveness_max);
  }

  std::string report() const {
    std::ostringstream s;
    s << "simulated " << steps << " steps (" << steps * ms(kStep) / 1000 << " s): " << activations
      << " activations, " << partitions << " partitions, " << crashes << " crashes, "
      << linkd_restarts << " linkd restarts, " << write_failures << " failed writes, "
      << never_ready << " starts never ready, " << duplicates << " duplicate commands, "
      << quiet_checks << " quiet periods\n"
      << "commands: takeover " << commands_sent[1] << ", quiesce " << commands_sent[2]
      << ", stopped " << commands_sent[3] << "\n"
      << "overlap (both nodes' services running), by the kind of handover that started "
         "the second:\n";
    for (auto& [k, n] : handovers) {
      auto o = overlap.find(k);
      auto m = overlap_max.find(k);
      s << "  " << k << ": " << n << " handovers, overlap total "
        << (o == overlap.end() ? 0 : ms(o->second)) << " ms, longest "
        << (m == overlap_max.end() ? 0 : ms(m->second)) << " ms\n";
    }
    s << "bounds: overlap " << ms(kOverlapBound) << " ms (" << ms(kOverlapBoundLinkdRestart)
      << " ms with a linkd restart; planned: 0), unhealthy serving " << ms(kUnhealthyBound)
      << " ms (longest seen " << ms(unhealthy_max) << " ms), liveness " << ms(kLivenessBound)
      << " ms after faults stop (longest seen " << ms(liveness_max) << " ms)";
    return s.str();
  }
};

struct Packet {
  Time at;
  int to;
  enum Type { heartbeat, command, ack } type;
  PeerMessage msg;
  uint64_t id = 0;
  std::string tag;  // the kind of handover a command belongs to
};

class Sim {
 public:
  Stats stats;

  explicit Sim(uint64_t seed) : rng_(seed) {
    for (int i = 0; i < 2; ++i) boot(i);
    next_quiet_ = Time(0) + rand_dur(10s);
  }

  std::string trace_text() const {
    std::string t;
    for (auto& l : trace_) t += l + "\n";
    return t;
  }

  // One step of kStep; returns a broken invariant, or "".
  std::string step();

 private:
  struct Cmd {
    uint64_t id;
    PeerMessage msg;
    std::string tag;
  };
  struct Node {
    std::unique_ptr<NodeCore> core;
    NodeState persisted = NodeState::passive;
    uint64_t persisted_epoch = 0;
    bool up = true;
    Time down_until{0};
    bool shutting = false;
    Time shutdown_at{0};
    // The world the shell sees.
    bool healthy = true;
    Time unhealthy_until{0};
    bool disk_ok = true;
    Time disk_bad_until{0};
    bool over_budget = false;
    Time budget_until{0};
    bool svc_running = false, svc_wanted = false, svc_ready = false;
    Time svc_done{-1};  // when the pending start or stop completes; -1: never
    Time probe_pass_at{0};
    bool svc_sick = false;
    Time svc_sick_until{0};
    bool active_fed = true;
    // linkd
    bool linkd_up = true;
    Time linkd_back_at{0};
    Time last_rx{0};
    bool lost_reported = false;
    Time next_hb{0};
    std::deque<Cmd> outbox;
    uint64_t next_id = 1;
    std::set<uint64_t> seen;       // command ids delivered in this linkd's lifetime
    std::set<uint64_t> core_seen;  // ... and in this supervisor's: the duplicates
    // Bookkeeping for the invariants.
    bool recover_allowed = false;
    uint64_t max_epoch = 0;
    std::string handover_kind, quiesce_kind, active_kind;
    Time activated{0};
  };

  std::mt19937_64 rng_;
  Time now_{0};
  std::vector<Packet> net_;
  int isolated_ = -1;
  Time isolated_until_{0};
  bool quiet_ = false;
  Time quiet_since_{0}, next_quiet_{0};
  std::deque<std::string> trace_;
  std::string broken_;
  std::string delivering_tag_;
  Time both_since_{-1}, unhealthy_since_[2] = {Time(-1), Time(-1)}, nobody_since_{-1};
  Time last_linkd_restart_{-1};  // of either node
  uint64_t boots_ = 0;           // supervisor starts, both nodes: each run's incarnation
  std::string overlap_kind_;
  Node n_[2];

  bool p(double x) { return std::uniform_real_distribution<>(0, 1)(rng_) < x; }
  Duration rand_dur(Duration max) {
    return Duration(std::uniform_int_distribution<long long>(0, max.count())(rng_));
  }
  template <class... A>
  void log(const A&... a) {
    std::ostringstream s;
    s << ms(now_) << "ms ";
    (s << ... << a);
    trace_.push_back(s.str());
    if (trace_.size() > 250) trace_.pop_front();
  }
  void fail(const std::string& what) {
    if (broken_.empty()) broken_ = "at " + std::to_string(ms(now_)) + " ms: " + what;
  }

  NodePolicy policy(int i) const {
    NodePolicy pol;
    pol.master = i == 0;
    pol.name = i == 0 ? "alpha" : "beta";
    pol.peer_name = i == 0 ? "beta" : "alpha";
    pol.has_witness = true;
    pol.dead_after = kDeadAfter;
    pol.isolation_after = kIsolationAfter;
    pol.startup_grace = kStartupGrace;
    pol.start_timeout = kStartTimeout;
    pol.stop_timeout = kStopTimeout;
    pol.handover_timeout = kHandoverTimeout;
    pol.recover_timeout = kRecoverTimeout;
    pol.persist_timeout = kPersistTimeout;
    pol.persist_retry = kPersistRetry;
    pol.start_period = kStartPeriod;
    return pol;
  }

  void boot(int i);
  void feed(int i, const Event& e, int depth = 0);
  void carry_out(int i, const std::vector<Action>& actions, NodeState before, int depth);
  void note_transition(int i, NodeState before);
  void net_send(int from, Packet::Type type, const PeerMessage& m, uint64_t id = 0,
                const std::string& tag = "");
  void faults(int i);
  void shell(int i);
  void linkd(int i);
  void deliver();
  void operator_command(int i);
  void enter_quiet();
  void check();
};

}  // namespace vac::sim

#include "node_sim_impl.hpp"
