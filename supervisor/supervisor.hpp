// `vacataire run`: the supervisor's event loop. It owns every child (one libev child watcher
// for any pid, so orphans adopted as subreaper are reaped too), keeps each service at its
// wanted state in dependency order, serves the control socket, and on SIGTERM/SIGINT stops
// everything in reverse order before it exits.
#pragma once

#include <memory>
#include <unordered_map>
#include <vector>

#include <ev++.h>

#include "common/config.hpp"
#include "control.hpp"
#include "node.hpp"
#include "notify.hpp"
#include "probe.hpp"
#include "sd_notify.hpp"
#include "service.hpp"
#include "state_dir.hpp"
#include "wire.hpp"

namespace vac {

// Reads the peer key file: at least 32 bytes, readable by its owner alone.
bool load_peer_key(const std::string& path, Key& key, std::string& err);

class Supervisor : public ServiceHost {
 public:
  Supervisor(Config config, std::vector<ServiceSpec> specs);
  ~Supervisor() override;
  int run();  // returns the process exit code

  // ServiceHost
  pid_t start_child(const SpawnSpec& spec, std::function<void(pid_t, int)> on_exit,
                    std::string& err) override;
  void record_group(pid_t pgid, const std::string& service, const char* role) override;
  void forget_group(pid_t pgid) override;
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
  void handle(const nlohmann::json& req, const Caller& caller, ControlServer::Reply reply);
  nlohmann::json handle_svc(const nlohmann::json& req);
  void handle_probe(const nlohmann::json& req, ControlServer::Reply reply);
  void set_probes(const std::map<std::string, ProbeConfig>& configs);
  bool healthy() const;
  void on_probe_change(Probe& p);
  bool authorized(const Caller& caller, std::string& why) const;

  // The node's role in the pair (node_shell.cpp): the pure NodeCore fed by probes, linkd,
  // operators and the services' progress; its actions carried out here.
  bool start_node(std::string& err);
  void feed(Event e);
  Time now() const;
  bool node_healthy() const;
  std::vector<ProbeHealth> probe_health() const;
  std::string over_budget() const;
  void after_reconcile();
  void start_linkd();
  void stop_linkd();
  void to_linkd(const std::string& line);
  void on_linkd_output(ev::io&, int);
  void on_linkd_line(std::string_view line);
  void on_tick(ev::timer&, int);
  void on_linkd_restart(ev::timer&, int);
  nlohmann::json node_status() const;
  // The status line linkd's endpoints answer from (status_feed.cpp).
  bool serves_endpoints() const;
  void feed_status();
  std::string status_signature() const;
  nlohmann::json peer_status() const;
  nlohmann::json handle_node_command(const std::string& cmd, const nlohmann::json& req);

  void on_child(ev::child&, int);
  void on_signal(ev::sig&, int);
  void on_reconcile(ev::idle&, int);

  Config config_;
  std::vector<ServiceSpec> initial_specs_;
  StateDir state_;
  std::vector<std::unique_ptr<Service>> services_;  // in start order
  std::vector<std::unique_ptr<Service>> retiring_;  // removed by a reload, stopping
  std::vector<std::unique_ptr<Probe>> probes_;
  std::vector<std::unique_ptr<Probe>> retired_probes_;  // until their process is reaped
  std::string base_dir_;                                // the config file's directory
  std::string probes_dir_;                              // the built-in probes
  std::unordered_map<pid_t, std::function<void(pid_t, int)>> children_;
  std::vector<std::string> env_;
  ControlServer control_;
  ev::child child_watcher_;
  ev::sig sigterm_, sigint_, sighup_;
  ev::idle reconcile_idle_;
  int null_fd_ = -1;
  std::unique_ptr<NodeCore> core_;
  bool services_wanted_ = false;
  bool recovering_ = false;  // recover given: health means every critical probe passing
  std::string record_note_;
  std::string budget_logged_;  // the service last reported over its restart budget
  bool health_fed_ = true;     // the last health verdict given to the core
  std::string role_conflict_logged_, epoch_refused_logged_;
  nlohmann::json last_heartbeat_;
  Key key_;
  pid_t linkd_pid_ = 0;
  int linkd_in_ = -1, linkd_out_ = -1;
  ev::io linkd_io_;
  LineReader linkd_reader_{65536};
  ev::timer linkd_restart_, tick_;
  Backoff linkd_backoff_;
  Clock::time_point linkd_started_{};
  int linkd_restarts_ = 0;
  nlohmann::json link_stats_;
  std::map<std::pair<std::string, std::string>, uint64_t> transitions_;  // (from, to) -> count
  Clock::time_point state_since_{}, last_status_sent_{};
  std::string last_status_signature_;
  uint64_t control_refused_ = 0;  // callers not allowed a mutating command
  bool shutting_down_ = false;
  bool was_healthy_ = true;
  bool in_reconcile_ = false, reconcile_again_ = false;
  Clock::time_point started_;
  std::map<std::string, ProbeState> probe_seen_;  // for probe_failing/probe_passing events
  Notifier notifier_{*this};
  ManagerNotifier manager_;  // systemd's READY/STOPPING/WATCHDOG, s6's readiness fd
};

}  // namespace vac
