// One configured health probe at run time (see vacataire-probes(7)). A jsonl probe is started
// once and asked {"check":N} on its stdin each interval; an exit probe is spawned each
// interval and judged by its exit code and first output line. Whatever the probe does wrong
// (no answer in time, garbage, an oversized line, a wrong check id, an exit, a grandchild
// holding its pipe) becomes a `fail` with a precise detail; the probe process is killed by
// process group and, for jsonl, restarted with backoff. Output is bounded per check.
#pragma once

#include <deque>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "backoff.hpp"
#include "common/config.hpp"
#include "common/line_reader.hpp"
#include "common/probe_result.hpp"
#include "metrics.hpp"
#include "service.hpp"
#include "verdict.hpp"

namespace vac {

class Probe {
 public:
  using OnResult = std::function<void(const ProbeResult&, double latency_ms)>;

  // base_dir resolves relative paths in exec; probes_dir holds the built-ins.
  Probe(std::string name, ProbeConfig config, std::string base_dir, std::string probes_dir,
        ServiceHost& host, std::function<void(Probe&)> on_state_change);
  ~Probe();
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  const std::string& name() const { return name_; }
  const ProbeConfig& config() const { return config_; }
  ProbeState state() const { return verdict_.state; }
  bool critical() const { return config_.critical; }
  bool active_scope() const { return config_.scope == "active"; }
  bool running() const { return running_; }
  bool process_running() const { return pid_ > 0 || !dying_.empty(); }

  void start();  // first check at once, then every interval
  // Forgets the verdict (recover: the probes are re-run from scratch) and checks now.
  void reset_verdict();
  void stop();   // no more checks; the probe process is killed
  void pause();  // stop, and forget the verdict (an active-scope probe on a node going passive)
  // Runs a check now (or joins the one under way) and calls done with its result.
  void check_now(OnResult done);

  nlohmann::json status(Clock::time_point now) const;

  // The executable for exec[0]: a path (relative to base_dir), else a built-in, else PATH.
  static std::string resolve(const std::string& exe, const std::string& base_dir,
                             const std::string& probes_dir);

 private:
  SpawnSpec spawn_spec() const;  // exe, args, cwd and environment; fds are the caller's
  void begin_check();
  void complete(ProbeResult r);
  bool ensure_process();
  void kill_process(const std::string& why);
  void schedule_restart();
  void on_process_exit(pid_t pid, int status);
  void close_pipes();
  void spawn_oneshot();
  void finish_oneshot(int status);
  void handle_line(std::string_view line, bool truncated);
  void log_stderr(std::string_view line, bool truncated);

  void on_interval(ev::timer&, int);
  void on_timeout(ev::timer&, int);
  void on_restart(ev::timer&, int);
  void on_stdout(ev::io&, int);
  void on_stderr(ev::io&, int);

  std::string name_;
  ProbeConfig config_;
  std::string base_dir_, probes_dir_;
  ServiceHost& host_;
  std::function<void(Probe&)> on_state_change_;
  bool jsonl_;
  bool running_ = false;

  Verdict verdict_;
  long long seq_ = 0;
  bool pending_ = false;
  Clock::time_point check_started_{}, last_check_{};
  std::vector<OnResult> waiters_;
  bool have_last_ = false;
  ProbeResult last_;
  double last_latency_ms_ = 0;
  std::deque<double> latencies_;        // the most recent ones, for p50/p99
  LatencyHistogram latency_histogram_;  // every one, for /metrics
  long long ok_count_ = 0, warn_count_ = 0, fail_count_ = 0;

  // The probe process: persistent (jsonl) or the current one-shot (exit).
  pid_t pid_ = 0;
  Clock::time_point process_started_{};
  int in_w_ = -1, out_r_ = -1, err_r_ = -1;
  ev::io out_io_, err_io_;
  LineReader out_reader_{4096}, err_reader_{4096};
  std::string oneshot_output_;
  int stderr_lines_ = 0, stderr_dropped_ = 0;
  std::set<pid_t> dying_;  // killed, not yet reaped
  std::string problem_;    // why the process is not running, or was last restarted
  int restarts_ = 0;
  Backoff backoff_;
  Duration restart_delay_{0};

  ev::timer interval_timer_, timeout_timer_, restart_timer_;
};

}  // namespace vac
