// This node's role in the pair: the pure NodeCore, the node record that makes its state
// durable, and the PeerLink to the other node. Pair feeds the core its events (the probes'
// verdicts, what the peer says, the operator's commands, the services' progress, ticks) and
// carries out its actions: services wanted or not, the record written before anything acts on
// it, commands to the peer. The Supervisor owns the services and probes; Pair steers them.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/config.hpp"
#include "node.hpp"
#include "notify.hpp"
#include "peer_link.hpp"
#include "probe.hpp"
#include "service.hpp"

namespace vac {

// What the node runs, owned by the Supervisor: read and steered by Pair.
struct Workload {
  std::vector<std::unique_ptr<Service>>& services;
  std::vector<std::unique_ptr<Service>>& retiring;  // removed by a reload, still stopping
  std::vector<std::unique_ptr<Probe>>& probes;
};

class Pair {
 public:
  // status_doc builds the `status --json` document, which linkd's endpoints answer from.
  Pair(const Config& config, Workload work, ServiceHost& host, Notifier& notifier,
       std::function<nlohmann::json()> status_doc);
  ~Pair();
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;

  // Reads the node record, proves it can be written, starts the core and linkd.
  bool start(std::string& err);

  // A reload changed the peer section, user or endpoints (reload.hpp allowed it; config holds
  // them already): linkd is replaced by one with them, or started, or stopped when neither a
  // peer nor endpoints remain. The core hears nothing of it: the peer re-handshakes.
  void reload_link(const Key& key, std::function<void(const std::string&)> rejected = {});
  const Key& key() const { return key_; }
  bool peer_up() const { return core_ && core_->peer_reachable(); }
  std::string link_error() const { return link_ ? link_->error() : ""; }

  // Whether the core wants the services running on this node.
  // Not while the services are held after the guard's fence (see fence_held).
  bool services_wanted() const { return services_wanted_ && !fence_held(Clock::now()); }
  bool active() const { return core_ && core_->state() == NodeState::active; }
  std::string state_name() const { return core_ ? to_string(core_->state()) : "passive"; }
  uint64_t epoch() const { return core_ ? core_->epoch() : 0; }
  // Healthy and active, as the load balancer is told.
  bool serving() const;

  // After the Supervisor reconciled the services: their progress and health go to the core.
  void after_reconcile();
  void on_probe_change(Probe& p);
  // An operator restarted a service: the active-scope probes give it a start period.
  void service_restarted();

  // takeover, release, recover, maintenance: the reply for the control client.
  nlohmann::json command(const std::string& cmd, bool failback, bool on);

  // SIGTERM/SIGINT: an active node hands over before it goes (break-before-make: services
  // stopped first, then `takeover` to the peer, then the peer heard serving or the core's
  // handover deadline); then linkd stops.
  void begin_shutdown();
  // Shutdown has nothing left to do here: handover done or given up, linkd gone.
  bool finished() const { return shutdown_ == Shutdown::done && !link_running(); }

  // How long this supervisor's loop may stall before the guard fences its services: see
  // guard_fence in link_messages.hpp; the peer's dead_after counts once its heartbeats said it.
  // 0 without a peer.
  Duration guard_fence() const;
  // What is wrong with the peer's heartbeat and dead_after next to this node's, or "".
  std::string timing_mismatch() const;

  nlohmann::json node_status(bool healthy) const;
  nlohmann::json peer_status() const;

 private:
  void feed(Event e);
  // Gives the core the verdicts that changed since it last heard them.
  void feed_verdicts();
  Time now() const;
  bool node_probes_ok() const;    // node-scope critical probes (all passing while recovering)
  bool active_probes_ok() const;  // active-scope critical probes, while they run
  std::string over_budget() const;
  bool persist(std::string& err);
  void on_tick(ev::timer&, int);
  void make_link();
  // A peer lost while this loop was stalled is not believed at once: see on_peer_lost().
  void on_peer_lost();
  void check_timing();
  // This loop stalled past the guard's fence (or is waking from such a stall, before on_tick
  // has seen it): the services were killed, and the peer may be taking over right now.
  bool fence_held(Clock::time_point now) const;
  bool stalled_lately(Clock::time_point now) const;
  void finish_shutdown(const char* why);
  bool link_running() const { return link_ && link_->running(); }
  void emit(const char* event, const std::string& reason, const std::string& previous = "",
            const std::string& service = "");
  // The status line for linkd's endpoints: at once when what they look at changed, and at
  // least every peer heartbeat (durations and counters in /metrics).
  void feed_status();
  std::string status_signature() const;

  const Config& config_;
  Workload work_;
  ServiceHost& host_;
  Notifier& notifier_;
  std::function<nlohmann::json()> status_doc_;
  Key key_;
  std::unique_ptr<NodeCore> core_;
  std::unique_ptr<PeerLink> link_;
  Clock::time_point started_, state_since_, last_status_sent_;
  std::string last_status_signature_;
  std::map<std::pair<std::string, std::string>, uint64_t> transitions_;  // (from, to) -> count
  std::string role_conflict_logged_, epoch_refused_logged_;
  ev::timer tick_;
  Clock::time_point last_tick_{}, resumed_at_{};  // resumed_at_: the end of the last stall
  Clock::time_point held_until_{};                // services held after a fenced stall
  bool lost_deferred_ = false;
  uint64_t incarnation_ = 0;   // this run's, as the core's messages say it
  LinkTiming peer_timing_;     // as the peer's heartbeats announce it
  std::string timing_logged_;  // the mismatch last logged
  bool services_wanted_ = false;
  std::string record_note_;    // what was wrong with the record read at start-up
  std::string budget_logged_;  // the service last reported over its restart budget
  // The verdicts last given to the core, and the state it was in then (a change of state
  // resets the core's view of the active-scope probes).
  std::optional<bool> fed_health_, fed_active_, fed_budget_;
  NodeState fed_in_ = NodeState::passive;
  enum class Shutdown {
    none,
    handing_over,  // op_shutdown given: services stop, then `takeover`, until may_exit()
    done,          // linkd told to stop
  } shutdown_ = Shutdown::none;
};

}  // namespace vac
