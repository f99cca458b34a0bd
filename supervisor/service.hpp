// One supervised service at run time: its process group, readiness, output, logger, finish
// script and restart pacing. The Supervisor decides *whether* a service should run (wanted,
// dependencies ready, shutting down); a Service carries that out and reports back through
// ServiceHost::changed().
#pragma once

#include <sys/types.h>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "backoff.hpp"
#include "child.hpp"
#include "common/line_reader.hpp"
#include "service_dir.hpp"
#include "spawn.hpp"

namespace vac {

using Clock = std::chrono::steady_clock;

enum class ServiceState { down, starting, up, stopping, backoff };
const char* to_string(ServiceState s);

// What a Service needs from the supervisor around it.
class ServiceHost {
 public:
  virtual ~ServiceHost() = default;
  // The registry every Child of a service or probe is started in.
  virtual ChildTable& children() = 0;
  virtual void changed() = 0;
  virtual const RestartConfig& restart_policy() const = 0;
  virtual std::vector<std::string> base_env() const = 0;
  virtual int null_fd() const = 0;
};

class Service {
 public:
  Service(ServiceSpec spec, ServiceHost& host);
  ~Service();
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  const ServiceSpec& spec() const { return spec_; }
  const std::string& name() const { return spec_.name; }
  // A new spec (SIGHUP): takes effect at the next start, as with runit.
  void set_spec(ServiceSpec spec) { spec_ = std::move(spec); }

  ServiceState state() const;
  bool ready() const { return phase_ == Phase::running && ready_; }
  bool idle() const { return phase_ == Phase::idle; }
  bool in_backoff() const { return phase_ == Phase::backoff; }
  pid_t pid() const { return run_.pid(); }

  bool want_up = false;

  void start();         // idle -> starting (or up when it has no readiness check)
  void stop();          // running -> stopping -> down; backoff -> down
  void restart();       // stop, then the supervisor starts it again
  void kill_now();      // SIGKILL the group: counts as a crash, restarted by policy
  void skip_backoff();  // backoff -> idle, so the supervisor starts it now
  void stop_logger();
  bool logger_running() const { return logger_.running(); }

  nlohmann::json status(Clock::time_point now) const;
  // Restarts after crashes, for the node's restart budget (rule 1).
  RestartBudget& budget() { return budget_; }

 private:
  enum class Phase { idle, running, signalled, draining, finishing, backoff };

  void on_exit(int status);
  void check_drained();
  void after_drain();
  void after_finish();
  void become_ready(const char* how);
  void close_notify();
  void run_ready_check();
  void start_logger();
  void on_output(ev::io&, int);
  void on_notify(ev::io&, int);
  void on_timer(ev::timer&, int);
  void on_ready_timer(ev::timer&, int);
  void on_logger_timer(ev::timer&, int);
  std::vector<std::string> child_env() const;
  SpawnSpec spawn_spec(const char* program) const;
  ChildLabel label(const char* role, bool in_cgroup);

  ServiceSpec spec_;
  ServiceHost& host_;
  Phase phase_ = Phase::idle;
  bool ready_ = false;
  bool stop_requested_ = false;
  // The service's cgroup (where cgroup v2 is available): run, ready and finish live in it.
  std::shared_ptr<Cgroup> cgroup_;
  // run: its group is kept after the leader exits, until drained and released.
  Child run_, finish_, ready_check_, logger_;
  Clock::time_point started_{}, ready_at_{}, state_since_{};
  std::string last_exit_ = "-";
  int restarts_ = 0;
  Backoff backoff_;
  RestartBudget budget_;
  Duration backoff_delay_{0};
  Duration last_uptime_{0};
  int last_status_ = 0;
  Clock::time_point stop_deadline_{};

  // One timer for the phase at hand: stop deadline, drain polling, finish timeout, backoff.
  ev::timer timer_;

  int notify_fd_ = -1;  // owned by run_
  ev::io notify_io_;
  ev::timer ready_timer_;

  // Output: either read here line by line, or a pipe kept open for log/run.
  int out_r_ = -1, out_w_ = -1;
  ev::io out_io_;
  LineReader reader_{4096};
  bool logger_wanted_ = true;
  Clock::time_point logger_started_{};
  Backoff logger_backoff_;
  ev::timer logger_timer_;
};

}  // namespace vac
