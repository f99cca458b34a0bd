// A deterministic simulation of two node state machines: a simulated clock, a simulated
// network (loss, delay, duplication, reordering, partitions and heals), linkd's heartbeats,
// loss detection and command retries, services that take time to start and stop, and random
// faults (probe failures, whole-node crashes and restarts from persisted state, operator
// commands). Invariants are checked at every step; a failure prints the seed to replay it.
//
//   node_sim_test                      100,000 steps from a fixed seed list
//   VACATAIRE_SIM_STEPS=N VACATAIRE_SIM_SEED=S node_sim_test   longer, or a given seed
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <memory>
#include <random>
#include <sstream>

#include "node.hpp"

using namespace vac;
using namespace std::chrono_literals;

namespace {

constexpr Duration kStep = 5ms;
constexpr Duration kHeartbeat = 50ms;
constexpr Duration kDeadAfter = 250ms;
constexpr Duration kIsolationAfter = 600ms;
constexpr Duration kStartupGrace = 500ms;
constexpr Duration kMaxDelay = 30ms;
constexpr Duration kMaxServiceTime = 60ms;

struct Packet {
  Time at;
  int to;
  PeerMessage msg;
};

struct Sim {
  std::mt19937_64 rng;
  Time now{0};
  std::vector<Packet> net;
  int isolated = -1;  // a node cut off from its peer and from the witness
  Time isolated_until{0};
  std::ostringstream trace;
  // What the run went through, so a test can tell it exercised something.
  long activations = 0, partitions = 0, crashes = 0, both_active_windows = 0, handovers = 0;

  struct Node {
    bool master;
    std::unique_ptr<NodeCore> core;
    NodeState persisted = NodeState::passive;
    uint64_t persisted_epoch = 0;
    bool up = true;
    Time down_until{0};
    bool healthy = true;  // the probes' truth
    Time unhealthy_until{0};
    bool services = false;  // running
    bool services_wanted = false;
    Time services_done{-1};  // when the pending start or stop completes
    Time last_rx{0};
    bool lost_reported = false;
    Time next_hb{0};
    std::deque<PeerMessage> outbox;  // commands, retried each heartbeat until delivered
    bool recover_allowed = false;    // an accepted recover since the node last failed
    uint64_t max_epoch_seen = 0;
  } n[2];

  double p(double x) { return std::uniform_real_distribution<>(0, 1)(rng) < x; }
  Duration rand_dur(Duration max) {
    return Duration(std::uniform_int_distribution<long long>(0, max.count())(rng));
  }

  NodePolicy policy(int i) {
    NodePolicy pol;
    pol.master = i == 0;
    pol.has_witness = true;
    pol.dead_after = kDeadAfter;
    pol.isolation_after = kIsolationAfter;
    pol.startup_grace = kStartupGrace;
    return pol;
  }

  void boot(int i) {
    Node& x = n[i];
    x.core = std::make_unique<NodeCore>(policy(i), x.persisted, x.persisted_epoch, now);
    x.up = true;
    x.services = x.services_wanted = false;
    x.services_done = Time(-1);
    x.lost_reported = false;
    x.last_rx = now;
    x.outbox.clear();
    feed(i, Event(Event::health, x.healthy));
    feed(i, Event(Event::witness, isolated != i));
  }

  explicit Sim(uint64_t seed) : rng(seed) {
    n[0].master = true, n[1].master = false;
    boot(0), boot(1);
  }

  void feed(int i, const Event& e) {
    Node& x = n[i];
    NodeState before = x.core->state();
    auto actions = x.core->handle(e, now);
    for (auto& a : actions) {
      switch (a.kind) {
        case Action::persist:
          x.persisted = x.core->durable_state();
          REQUIRE_MESSAGE(x.core->epoch() >= x.persisted_epoch, trace.str(), "epoch went down");
          x.persisted_epoch = x.core->epoch();
          break;
        case Action::start_services:
          x.services_wanted = true;
          x.services_done = now + rand_dur(kMaxServiceTime);
          break;
        case Action::stop_services:
          x.services_wanted = false;
          x.services_done = now + rand_dur(kMaxServiceTime);
          break;
        case Action::send:
          x.outbox.push_back(a.message);
          break;
        case Action::notify:
          break;
      }
    }
    NodeState after = x.core->state();
    if (after == NodeState::starting && before != NodeState::starting) ++activations;
    if (after == NodeState::stopping && n[1 - i].up &&
        n[1 - i].core->state() == NodeState::starting)
      ++handovers;
    if (after != before)
      trace << now.count() / 1000 << "ms n" << i << ' ' << to_string(before) << "->"
            << to_string(after) << " (" << x.core->reason() << ")\n";
    if (after == NodeState::failed && before != NodeState::failed) x.recover_allowed = false;
    if (before == NodeState::failed && after != NodeState::failed &&
        after != NodeState::maintenance)
      REQUIRE_MESSAGE(x.recover_allowed, trace.str(), "a failed node left failed without recover");
  }

  void send(int from, const PeerMessage& m) {
    int to = 1 - from;
    if (isolated >= 0) return;  // partitioned
    if (p(0.05)) return;        // lost
    int copies = p(0.02) ? 2 : 1;
    for (int c = 0; c < copies; ++c) net.push_back({now + rand_dur(kMaxDelay), to, m});
  }

  void step() {
    now += kStep;
    // Partitions come and go; the isolated node loses its witness too.
    if (isolated >= 0 && now >= isolated_until) {
      trace << now.count() / 1000 << "ms heal\n";
      int was = isolated;
      isolated = -1;
      if (n[was].up) feed(was, Event(Event::witness, true));
    } else if (isolated < 0 && p(0.0005)) {
      isolated = p(0.5) ? 0 : 1;
      ++partitions;
      isolated_until = now + rand_dur(3s);
      trace << now.count() / 1000 << "ms isolate n" << isolated << "\n";
      if (n[isolated].up) feed(isolated, Event(Event::witness, false));
    }
    for (int i = 0; i < 2; ++i) {
      Node& x = n[i];
      if (!x.up) {
        if (now >= x.down_until) {
          trace << now.count() / 1000 << "ms n" << i << " restarts\n";
          boot(i);
        }
        continue;
      }
      // Faults.
      if (p(0.0003)) {  // the whole node dies: supervisor, linkd and services
        trace << now.count() / 1000 << "ms n" << i << " crashes\n";
        ++crashes;
        x.up = false;
        x.services = x.services_wanted = false;
        x.down_until = now + rand_dur(2s);
        continue;
      }
      if (x.healthy && p(0.0005)) {
        x.healthy = false;
        x.unhealthy_until = now + rand_dur(2s);
        feed(i, Event(Event::health, false));
      } else if (!x.healthy && now >= x.unhealthy_until) {
        x.healthy = true;
        feed(i, Event(Event::health, true));
      }
      if (p(0.0004)) operator_command(i);
      // Services finish starting or stopping.
      if (x.services_done >= Time(0) && now >= x.services_done) {
        x.services_done = Time(-1);
        x.services = x.services_wanted;
        feed(i, Event(x.services ? Event::services_up : Event::services_down));
      }
      // linkd: heartbeats with retried commands, and loss detection.
      if (now >= x.next_hb) {
        x.next_hb = now + kHeartbeat;
        send(i, x.core->heartbeat());
        for (auto& m : x.outbox) send(i, m);
      }
      if (!x.lost_reported && now - x.last_rx >= kDeadAfter) {
        x.lost_reported = true;
        x.outbox.clear();  // commands are retried until acknowledged or the peer is lost
        feed(i, Event(Event::peer_lost, false));
      }
      feed(i, Event(Event::tick, false));
    }
    deliver();
    check();
  }

  void deliver() {
    // Delivered in the order of their (random) arrival times: reordering included.
    std::stable_sort(net.begin(), net.end(), [](auto& a, auto& b) { return a.at < b.at; });
    size_t done = 0;
    for (; done < net.size() && net[done].at <= now; ++done) {
      Packet& pk = net[done];
      Node& x = n[pk.to];
      Node& sender = n[1 - pk.to];
      if (!x.up) continue;
      x.last_rx = now;
      x.lost_reported = false;
      // An acknowledged command leaves the sender's outbox.
      if (pk.msg.kind != PeerMessage::heartbeat && !sender.outbox.empty() &&
          sender.outbox.front().kind == pk.msg.kind)
        sender.outbox.pop_front();
      feed(pk.to, Event(pk.msg));
    }
    net.erase(net.begin(), net.begin() + static_cast<long>(done));
  }

  void operator_command(int i) {
    Node& x = n[i];
    int which = std::uniform_int_distribution<>(0, 5)(rng);
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
      default:
        e.kind = Event::op_maintenance_off;
        break;
    }
    if (e.kind == Event::op_recover && x.core->state() == NodeState::failed)
      x.recover_allowed = true;
    trace << now.count() / 1000 << "ms n" << i << " operator " << which << "\n";
    feed(i, e);
  }

  // Invariants.
  Time both_active_since{-1};
  Time nobody_active_since{0};
  long both_active_steps = 0;

  bool serving(int i) const {
    return n[i].up &&
           (n[i].core->state() == NodeState::active || n[i].core->state() == NodeState::starting);
  }
  bool available(int i) const {
    const Node& x = n[i];
    NodeState s = x.core ? x.core->state() : NodeState::passive;
    return x.up && x.healthy && s != NodeState::failed && s != NodeState::maintenance &&
           isolated != i;
  }

  void check() {
    for (int i = 0; i < 2; ++i) {
      if (!n[i].up) continue;
      REQUIRE_MESSAGE(n[i].core->epoch() >= n[i].max_epoch_seen, trace.str(), "epoch decreased");
      n[i].max_epoch_seen = n[i].core->epoch();
    }
    // Both serving: only within a bounded window. During a partition the isolated node fences
    // itself after isolation_after; once they hear each other the lower epoch yields at once.
    if (serving(0) && serving(1)) {
      if (both_active_since < Time(0)) both_active_since = now, ++both_active_windows;
      ++both_active_steps;
      Duration bound = kIsolationAfter + kDeadAfter + 4 * kHeartbeat + kMaxDelay + kMaxServiceTime;
      REQUIRE_MESSAGE(now - both_active_since <= bound, trace.str(), "both nodes active for ",
                      (now - both_active_since).count() / 1000, "ms");
    } else {
      both_active_since = Time(-1);
    }
    // Liveness: while some healthy node can take the role and reach its peer or its witness,
    // some node is active within a bound.
    bool someone_available = available(0) || available(1);
    if (serving(0) || serving(1) || !someone_available) {
      nobody_active_since = now;
    } else {
      Duration bound =
          kStartupGrace + kDeadAfter + 4 * kHeartbeat + kMaxDelay + 2 * kMaxServiceTime;
      REQUIRE_MESSAGE(now - nobody_active_since <= bound, trace.str(), "no node active for ",
                      (now - nobody_active_since).count() / 1000, "ms although one could serve");
    }
  }
};

long env_long(const char* name, long fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atol(v) : fallback;
}

}  // namespace

TEST_CASE("two nodes through random faults keep the invariants") {
  long steps = env_long("VACATAIRE_SIM_STEPS", 100000);
  long seed0 = env_long("VACATAIRE_SIM_SEED", 1);
  long seeds = env_long("VACATAIRE_SIM_SEEDS", 4);
  long total = 0, activations = 0, partitions = 0, crashes = 0, windows = 0;
  for (long s = seed0; s < seed0 + seeds; ++s) {
    INFO("seed ", s, " (replay with VACATAIRE_SIM_SEED=", s, " VACATAIRE_SIM_SEEDS=1)");
    Sim sim(static_cast<uint64_t>(s));
    for (long i = 0; i < steps / seeds; ++i) {
      sim.step();
      // Keep the trace to the recent past: a failure shows what led to it.
      if (sim.trace.tellp() > 20000) {
        std::string t = sim.trace.str();
        sim.trace.str(t.substr(t.size() - 10000));
        sim.trace.seekp(0, std::ios::end);
      }
      ++total;
    }
    activations += sim.activations, partitions += sim.partitions, crashes += sim.crashes;
    windows += sim.both_active_windows;
  }
  MESSAGE("simulated ", total, " steps (", total * kStep.count() / 1000000, "s): ", activations,
          " activations, ", partitions, " partitions, ", crashes, " crashes, ", windows,
          " short both-active windows");
  CHECK(total >= steps - seeds);
  // The faults really happened, and failover really took place.
  CHECK(activations > 20);
  CHECK(partitions > 5);
  CHECK(crashes > 5);
}
