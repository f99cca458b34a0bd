// This node's role in the pair: the pure NodeCore, the node record that makes its state
// durable, and the PeerLink to the other node. Pair feeds the core its events (the probes'
// verdicts, what the peer says, the operator's commands, the services' progress, ticks) and
// carries out its actions: services wanted or not, the record written before anything acts on
// it, commands to the peer. The Supervisor owns the services and probes; Pair steers them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/config.hpp"
#include "node.hpp"
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
  Pair(const Config& config, Workload work, ServiceHost& host);
  ~Pair();
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;

  // Reads the node record, proves it can be written, starts the core and linkd.
  bool start(std::string& err);

  // Whether the core wants the services running on this node.
  bool services_wanted() const { return services_wanted_; }
  bool active() const { return core_ && core_->state() == NodeState::active; }
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
  // stopped first, then `takeover` to the peer), bounded by a deadline; then linkd stops.
  void begin_shutdown();
  // Shutdown has nothing left to do here: handover done or given up, linkd gone.
  bool finished() const { return shutdown_ == Shutdown::done && !link_running(); }

  nlohmann::json node_status(bool healthy) const;
  nlohmann::json peer_status() const;
  // Why the node is unhealthy beyond its probes ("" when it is not): status shows it.
  std::string persist_problem() const { return persist_error_; }

 private:
  void feed(Event e);
  Time now() const;
  bool node_healthy() const;
  std::vector<ProbeHealth> probe_health() const;
  std::string over_budget() const;
  bool persist();
  void on_tick(ev::timer&, int);
  void on_shutdown_deadline(ev::timer&, int);
  void finish_shutdown(const char* why);
  bool link_running() const { return link_ && link_->running(); }

  const Config& config_;
  Workload work_;
  ServiceHost& host_;
  Key key_;
  std::unique_ptr<NodeCore> core_;
  std::unique_ptr<PeerLink> link_;
  Clock::time_point started_;
  ev::timer tick_, shutdown_timer_;
  bool services_wanted_ = false;
  bool recovering_ = false;  // recover given: health means every critical probe passing
  std::string record_note_;  // what was wrong with the record read at start-up
  std::string persist_error_;
  std::string budget_logged_;  // the service last reported over its restart budget
  enum class Shutdown {
    none,
    stopping,      // services stopping; linkd still tells the peer we are stopping
    handing_over,  // services stopped, `takeover` sent: waiting for the peer to take the role
    done,          // linkd told to stop
  } shutdown_ = Shutdown::none;
  bool hand_over_ = false;  // the core accepted the shutdown's release
};

}  // namespace vac
