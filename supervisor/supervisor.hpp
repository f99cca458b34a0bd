// `vacataire run`: the supervisor's event loop. It owns every child (one libev child watcher
// for any pid, so orphans adopted as subreaper are reaped too), keeps each service at its
// wanted state in dependency order, serves the control socket, and on SIGTERM/SIGINT stops
// everything in reverse order before it exits.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include <ev++.h>

#include "child.hpp"
#include "common/config.hpp"
#include "control.hpp"
#include "guard.hpp"
#include "notify.hpp"
#include "pair.hpp"
#include "probe.hpp"
#include "sd_notify.hpp"
#include "service.hpp"
#include "state_dir.hpp"
#include "writer.hpp"

namespace vac {

class Supervisor : public ServiceHost {
 public:
  Supervisor(Config config, std::vector<ServiceSpec> specs);
  ~Supervisor() override;
  int run();  // returns the process exit code

  // ServiceHost
  ChildTable& children() override { return children_; }
  void changed() override;
  const RestartConfig& restart_policy() const override { return config_.restart; }
  std::vector<std::string> base_env() const override { return env_; }
  int null_fd() const override { return null_fd_; }

 private:
  Service* find(const std::string& name);
  void reconcile();
  bool dependents_active(const Service& s) const;
  bool dependencies_ready(const Service& s);
  void begin_shutdown(const char* why);
  void reload();
  void set_services(std::vector<ServiceSpec> specs);
  nlohmann::json status() const;
  void handle(const ControlRequest& req, const Caller& caller, ControlServer::Reply reply);
  nlohmann::json handle_svc(const ControlRequest& req);
  void handle_probe(const ControlRequest& req, ControlServer::Reply reply);
  // force: every probe restarts (its program may resolve elsewhere: probes_dir changed).
  void set_probes(const std::map<std::string, ProbeConfig>& configs, bool force = false);
  void reload_refused(const std::vector<std::string>& why);
  void set_link_config(const Config& from);  // the peer section, user and endpoints
  bool healthy() const;
  void on_probe_change(Probe& p);
  bool authorized(const Caller& caller, std::string& why) const;
  nlohmann::json supervisor_status() const;
  void start_log_writer();

  void on_child(ev::child&, int);
  void on_signal(ev::sig&, int);
  void on_reconcile(ev::idle&, int);
  void on_drain_poll(ev::timer&, int);
  void arm_guard();
  void on_guard_tick(ev::timer&, int);

  Config config_;
  std::vector<ServiceSpec> initial_specs_;
  StateDir state_;
  // Before everything that owns a Child: the table outlives them all.
  ChildTable children_{&state_};
  GuardLink guard_{children_};
  BoundedWriter log_writer_{256 * 1024};  // the supervisor's stderr, never blocking the loop
  std::vector<std::unique_ptr<Service>> services_;  // in start order
  std::vector<std::unique_ptr<Service>> retiring_;  // removed by a reload, stopping
  std::vector<std::unique_ptr<Probe>> probes_;
  std::vector<std::unique_ptr<Probe>> retired_probes_;  // until their process is reaped
  std::string base_dir_;                                // the config file's directory
  std::string probes_dir_;                              // the built-in probes
  std::vector<std::string> env_;
  ControlServer control_;
  ev::child child_watcher_;
  ev::sig sigterm_, sigint_, sighup_;
  ev::idle reconcile_idle_;
  ev::timer drain_poll_;
  ev::timer guard_tick_;  // the guard's fence: ticks from this loop, so a frozen loop stops them
  int null_fd_ = -1;
  uint64_t control_refused_ = 0;  // callers not allowed a mutating command
  nlohmann::json last_reload_;    // the last SIGHUP's outcome, for `status`
  int reloads_ = 0;
  bool shutting_down_ = false;
  bool was_healthy_ = true;
  bool in_reconcile_ = false, reconcile_again_ = false;
  Clock::time_point started_;
  std::map<std::string, ProbeState> probe_seen_;  // for probe_failing/probe_passing events
  Notifier notifier_{*this};
  ManagerNotifier manager_;  // systemd's READY/STOPPING/WATCHDOG, s6's readiness fd
  Pair pair_;                // the node's role in the pair: core, record, peer link
};

}  // namespace vac
