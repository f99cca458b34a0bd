#include "probe.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>

#include "common/log.hpp"

namespace vac {

namespace {
constexpr size_t kMaxLine = 4096;            // one result line, or one line of output
constexpr size_t kMaxOneshotOutput = 16384;  // what an exit probe may print per check
constexpr int kMaxStderrLinesPerCheck = 20;
constexpr size_t kLatencyWindow = 1000;

double to_ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

bool pipe_pair(int fds[2], bool nonblock_read) {
  if (pipe2(fds, O_CLOEXEC) != 0) return false;
  if (nonblock_read) fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
  return true;
}

bool executable(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && access(path.c_str(), X_OK) == 0;
}

std::string shorten(std::string_view s, size_t n = 120) {
  return s.size() <= n ? std::string(s) : cat(s.substr(0, n), "...");
}
}  // namespace

Probe::Probe(std::string name, ProbeConfig config, std::string base_dir, std::string probes_dir,
             ServiceHost& host, std::function<void(Probe&)> on_state_change)
    : name_(std::move(name)),
      config_(std::move(config)),
      base_dir_(std::move(base_dir)),
      probes_dir_(std::move(probes_dir)),
      host_(host),
      on_state_change_(std::move(on_state_change)),
      jsonl_(config_.protocol == "jsonl") {
  verdict_.fall = config_.fall;
  verdict_.rise = config_.rise;
  interval_timer_.set<Probe, &Probe::on_interval>(this);
  timeout_timer_.set<Probe, &Probe::on_timeout>(this);
  restart_timer_.set<Probe, &Probe::on_restart>(this);
  out_io_.set<Probe, &Probe::on_stdout>(this);
  err_io_.set<Probe, &Probe::on_stderr>(this);
}

Probe::~Probe() {
  interval_timer_.stop();
  timeout_timer_.stop();
  restart_timer_.stop();
  if (pid_ > 0) kill(-pid_, SIGKILL);
  for (pid_t p : dying_) kill(-p, SIGKILL);
  close_pipes();
}

std::string Probe::resolve(const std::string& exe, const std::string& base_dir,
                           const std::string& probes_dir) {
  if (exe.find('/') != std::string::npos)
    return exe[0] == '/' || base_dir.empty() ? exe : cat(base_dir, '/', exe);
  if (!probes_dir.empty() && executable(cat(probes_dir, '/', exe)))
    return cat(probes_dir, '/', exe);
  const char* path = std::getenv("PATH");
  std::string_view p = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!p.empty()) {
    auto colon = p.find(':');
    std::string dir(p.substr(0, colon));
    if (!dir.empty() && executable(cat(dir, '/', exe))) return cat(dir, '/', exe);
    if (colon == std::string_view::npos) break;
    p.remove_prefix(colon + 1);
  }
  return exe;
}

SpawnSpec Probe::spawn_spec() const {
  SpawnSpec s;
  s.exe = resolve(config_.exec[0], base_dir_, probes_dir_);
  s.args.assign(config_.exec.begin() + 1, config_.exec.end());
  s.cwd = base_dir_;
  s.env = host_.base_env();
  s.env.push_back(cat("VACATAIRE_PROBE=", name_));
  return s;
}

// A fixed cadence: probes with the same interval stay in step, so one wake-up of the loop
// serves them all. A check still running when the next is due is not doubled.
void Probe::start() {
  running_ = true;
  interval_timer_.start(0, seconds(config_.interval));
}

void Probe::reset_verdict() {
  verdict_ = Verdict{config_.fall, config_.rise};
  if (running_ && !pending_) begin_check();
}

void Probe::pause() {
  stop();
  verdict_ = Verdict{config_.fall, config_.rise};
}

void Probe::stop() {
  running_ = false;
  interval_timer_.stop();
  timeout_timer_.stop();
  restart_timer_.stop();
  if (pid_ > 0) kill_process("stopping");
}

void Probe::check_now(OnResult done) {
  waiters_.push_back(std::move(done));
  begin_check();  // joins the check under way, if any
}

void Probe::on_interval(ev::timer&, int) {
  begin_check();
}

void Probe::begin_check() {
  if (pending_) return;
  ++seq_;
  check_started_ = Clock::now();
  stderr_lines_ = stderr_dropped_ = 0;
  if (!jsonl_) return spawn_oneshot();
  if (!ensure_process()) {
    ProbeResult r;
    r.detail = restart_timer_.is_active()
                   ? cat(problem_, "; restarting in ", format_duration(restart_delay_))
                   : problem_;
    return complete(r);
  }
  pending_ = true;
  timeout_timer_.start(seconds(config_.timeout), 0);
  std::string req = encode_request(seq_);
  ssize_t n = write(in_w_, req.data(), req.size());
  if (n != static_cast<ssize_t>(req.size())) {
    std::string why = n < 0 && errno == EAGAIN ? "probe is not reading its input"
                                               : sys_error("cannot write to the probe");
    kill_process(why);
    ProbeResult r;
    r.detail = why;
    complete(r);
  }
}

bool Probe::ensure_process() {
  if (pid_ > 0) return true;
  if (restart_timer_.is_active()) return false;
  int in[2], out[2], err[2];
  if (!pipe_pair(in, false)) return problem_ = sys_error("pipe"), false;
  if (!pipe_pair(out, true) || !pipe_pair(err, true)) {
    problem_ = sys_error("pipe");
    for (int fd : {in[0], in[1], out[0], out[1]}) close(fd);
    return false;
  }
  fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
  SpawnSpec s = spawn_spec();
  s.fds = {{0, in[0]}, {1, out[1]}, {2, err[1]}};
  std::string error;
  pid_t pid = host_.start_child(
      s, [this](pid_t p, int st) { on_process_exit(p, st); }, error);
  close(in[0]), close(out[1]), close(err[1]);
  if (pid < 0) {
    close(in[1]), close(out[0]), close(err[0]);
    problem_ = cat("cannot start: ", error);
    process_started_ = Clock::now();
    schedule_restart();
    return false;
  }
  pid_ = pid;
  problem_.clear();
  process_started_ = Clock::now();
  in_w_ = in[1], out_r_ = out[0], err_r_ = err[0];
  out_reader_.reset();
  err_reader_.reset();
  out_io_.start(out_r_, ev::READ);
  err_io_.start(err_r_, ev::READ);
  host_.record_group(pid, name_, "probe");
  log_debug(cat("probe ", name_), "started ", s.exe, ", pid ", pid);
  return true;
}

// Kills the probe process now. It is forgotten at once (pipes closed, restart paced), so the
// next check never talks to it; its exit is only cleaned up when reaped.
void Probe::kill_process(const std::string& why) {
  if (pid_ <= 0) return;
  kill(-pid_, SIGKILL);
  dying_.insert(pid_);
  pid_ = 0;
  close_pipes();
  problem_ = why;
  if (jsonl_) schedule_restart();
}

void Probe::schedule_restart() {
  if (!running_) return;
  auto uptime = std::chrono::duration_cast<Duration>(Clock::now() - process_started_);
  ++restarts_;
  restart_delay_ = backoff_.next_delay(host_.restart_policy(), uptime);
  log_warn(cat("probe ", name_), problem_, "; restarting",
           restart_delay_.count() ? cat(" in ", format_duration(restart_delay_)) : "");
  restart_timer_.stop();
  if (restart_delay_.count() > 0) restart_timer_.start(seconds(restart_delay_), 0);
}

void Probe::close_pipes() {
  out_io_.stop();
  err_io_.stop();
  for (int* fd : {&in_w_, &out_r_, &err_r_})
    if (*fd >= 0) close(*fd), *fd = -1;
}

void Probe::on_process_exit(pid_t pid, int status) {
  if (dying_.erase(pid)) {
    kill(-pid, SIGKILL);  // what it left in its group
    if (jsonl_) host_.forget_group(pid);
    if (!running_) host_.changed();  // a shutdown may be waiting for this exit
    return;
  }
  if (pid != pid_) return;
  if (!jsonl_) {
    finish_oneshot(status);
    if (!running_) host_.changed();
    return;
  }
  // Take what it wrote before dying; a grandchild keeping the pipe open must not hold us.
  if (out_io_.is_active())
    out_reader_.read_from(out_r_, [this](std::string_view l, bool t) { handle_line(l, t); });
  if (pid != pid_) return on_process_exit(pid, status);  // that output got it killed
  kill(-pid, SIGKILL);
  host_.forget_group(pid);
  pid_ = 0;
  close_pipes();
  problem_ = cat("probe exited (", describe_wait_status(status), ")");
  if (pending_) {
    ProbeResult r;
    r.detail = problem_;
    complete(r);
  }
  schedule_restart();
  if (!running_) host_.changed();
}

// After the backoff, start the process ahead of the next check.
void Probe::on_restart(ev::timer&, int) {
  if (running_) ensure_process();
}

void Probe::on_stdout(ev::io&, int) {
  if (!jsonl_) {
    char buf[4096];
    for (;;) {
      ssize_t n = read(out_r_, buf, sizeof buf);
      if (n > 0) {
        size_t room = kMaxOneshotOutput - std::min(kMaxOneshotOutput, oneshot_output_.size());
        oneshot_output_.append(buf, std::min(room, static_cast<size_t>(n)));
        continue;
      }
      if (n == 0) out_io_.stop();  // EOF; the exit is what ends the check
      return;
    }
  }
  auto r = out_reader_.read_from(out_r_, [this](std::string_view l, bool t) { handle_line(l, t); });
  if (r != LineReader::ReadResult::again && out_io_.is_active()) out_io_.stop();
}

void Probe::handle_line(std::string_view line, bool truncated) {
  if (pid_ <= 0) return;  // already killed
  std::string problem;
  ProbeResult r;
  long long check = 0;
  std::string err;
  if (!pending_)
    problem = cat("unexpected output when no check was asked for: ", quote(shorten(line)));
  else if (truncated)
    problem = cat("result line longer than ", kMaxLine, " bytes");
  else if (!decode_result(line, check, r, err))
    problem = cat("malformed result line (", err, "): ", quote(shorten(line)));
  else if (check != seq_)
    problem = cat("answered check ", check, " when check ", seq_, " was asked");
  if (problem.empty()) return complete(std::move(r));
  log_warn(cat("probe ", name_), problem, "; killing it");
  kill_process(problem);
  if (pending_) {
    ProbeResult fail;
    fail.detail = problem;
    complete(fail);
  }
}

void Probe::on_stderr(ev::io&, int) {
  auto r = err_reader_.read_from(err_r_, [this](std::string_view l, bool t) { log_stderr(l, t); });
  if (r != LineReader::ReadResult::again) err_io_.stop();
}

void Probe::log_stderr(std::string_view line, bool truncated) {
  if (++stderr_lines_ > kMaxStderrLinesPerCheck) {
    ++stderr_dropped_;
    return;
  }
  log_line(Level::info, cat("probe ", name_),
           truncated ? cat(line, " [line truncated]") : std::string(line));
}

void Probe::on_timeout(ev::timer&, int) {
  if (!pending_) return;
  std::string why = cat("no answer within ", format_duration(config_.timeout), "; probe killed");
  kill_process(why);
  ProbeResult r;
  r.detail = why;
  complete(r);
}

void Probe::spawn_oneshot() {
  int out[2];
  ProbeResult r;
  if (!pipe_pair(out, true)) {
    r.detail = sys_error("pipe");
    return complete(r);
  }
  SpawnSpec s = spawn_spec();
  s.fds = {{0, host_.null_fd()}, {1, out[1]}, {2, out[1]}};
  std::string error;
  pid_t pid = host_.start_child(
      s, [this](pid_t p, int st) { on_process_exit(p, st); }, error);
  close(out[1]);
  if (pid < 0) {
    close(out[0]);
    r.detail = cat("cannot start: ", error);
    return complete(r);
  }
  pid_ = pid;
  pending_ = true;
  out_r_ = out[0];
  oneshot_output_.clear();
  out_io_.start(out_r_, ev::READ);
  timeout_timer_.start(seconds(config_.timeout), 0);
}

void Probe::finish_oneshot(int status) {
  pid_t pid = pid_;
  if (out_io_.is_active()) on_stdout(out_io_, ev::READ);  // what it wrote before exiting
  pid_ = 0;
  kill(-pid, SIGKILL);  // a grandchild holding the pipe open must not hold the check
  close_pipes();
  if (!pending_) return;
  ProbeResult r;
  parse_plugin_output(oneshot_output_, r.detail, r.metrics);
  if (WIFEXITED(status)) {
    int code = WEXITSTATUS(status);
    r.status = status_from_exit(code);
    if (code == 3)
      r.detail = cat("UNKNOWN: ", r.detail);
    else if (code > 3)
      r.detail = cat("exit ", code, ": ", r.detail);
  } else {
    r.status = Status::fail;
    r.detail = cat(describe_wait_status(status), r.detail.empty() ? "" : ": ", r.detail);
  }
  complete(std::move(r));
}

void Probe::complete(ProbeResult r) {
  pending_ = false;
  timeout_timer_.stop();
  auto now = Clock::now();
  last_latency_ms_ = to_ms(now - check_started_);
  last_check_ = now;
  latencies_.push_back(last_latency_ms_);
  latency_histogram_.observe(last_latency_ms_ / 1000);
  if (latencies_.size() > kLatencyWindow) latencies_.pop_front();
  if (r.status == Status::ok)
    ++ok_count_;
  else if (r.status == Status::warn)
    ++warn_count_;
  else
    ++fail_count_;
  if (stderr_dropped_ > 0)
    log_warn(cat("probe ", name_), "dropped ", stderr_dropped_, " more lines of stderr this check");
  bool changed = verdict_.record(r.status);
  have_last_ = true;
  last_ = std::move(r);
  if (changed) {
    if (verdict_.state == ProbeState::failing)
      log_warn(cat("probe ", name_), "failing after ", verdict_.consecutive_fail,
               " failed checks: ", last_.detail);
    else
      log_info(cat("probe ", name_), to_string(verdict_.state), " (", last_.detail, ")");
    if (on_state_change_) on_state_change_(*this);
  }
  auto waiters = std::move(waiters_);
  waiters_.clear();
  for (auto& w : waiters) w(last_, last_latency_ms_);
}

nlohmann::json Probe::status(Clock::time_point now) const {
  using json = nlohmann::json;
  json j = {{"state", to_string(verdict_.state)},
            {"critical", config_.critical},
            {"protocol", config_.protocol},
            {"interval_s", seconds(config_.interval)},
            {"checks", ok_count_ + warn_count_ + fail_count_},
            {"ok_count", ok_count_},
            {"warn_count", warn_count_},
            {"fail_count", fail_count_},
            {"consecutive_fail", verdict_.consecutive_fail},
            {"consecutive_pass", verdict_.consecutive_pass},
            {"restarts", restarts_}};
  j["last"] = have_last_ ? json(to_string(last_.status)) : json(nullptr);
  j["detail"] = have_last_ ? json(last_.detail) : json(nullptr);
  j["metrics"] = have_last_ ? last_.metrics : json::object();
  j["latency_ms"] = have_last_ ? json(last_latency_ms_) : json(nullptr);
  if (!latencies_.empty()) {
    std::vector<double> v(latencies_.begin(), latencies_.end());
    std::sort(v.begin(), v.end());
    j["latency_p50_ms"] = v[v.size() / 2];
    j["latency_p99_ms"] = v[std::min(v.size() - 1, (v.size() * 99) / 100)];
  }
  j["last_check_s"] = have_last_ ? json(to_ms(now - last_check_) / 1000.0) : json(nullptr);
  j["pid"] = jsonl_ && pid_ > 0 ? json(pid_) : json(nullptr);
  j["latency_histogram"] = latency_histogram_.to_json();
  j["scope"] = config_.scope;
  j["running"] = running_;
  return j;
}

}  // namespace vac
