#include "service.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>

#include "common/log.hpp"
#include "state_dir.hpp"

namespace vac {

namespace {
constexpr auto kDrainPoll = std::chrono::milliseconds(10);
// Readiness is polled briskly at first (a failover waits on it), then every 50 ms.
constexpr auto kReadyPollFast = std::chrono::milliseconds(10);
constexpr auto kReadyPoll = std::chrono::milliseconds(50);
constexpr auto kReadyFastFor = std::chrono::milliseconds(200);
constexpr auto kReadyTimeout = std::chrono::seconds(2);
constexpr auto kLoggerStopTimeout = std::chrono::seconds(5);

double secs(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

void set_nonblock(int fd) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}
}  // namespace

const char* to_string(ServiceState s) {
  switch (s) {
    case ServiceState::down:
      return "down";
    case ServiceState::starting:
      return "starting";
    case ServiceState::up:
      return "up";
    case ServiceState::stopping:
      return "stopping";
    case ServiceState::backoff:
      return "backoff";
  }
  return "?";
}

Service::Service(ServiceSpec spec, ServiceHost& host) : spec_(std::move(spec)), host_(host) {
  timer_.set<Service, &Service::on_timer>(this);
  ready_timer_.set<Service, &Service::on_ready_timer>(this);
  logger_timer_.set<Service, &Service::on_logger_timer>(this);
  notify_io_.set<Service, &Service::on_notify>(this);
  out_io_.set<Service, &Service::on_output>(this);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) == 0) {
    out_r_ = fds[0], out_w_ = fds[1];
    if (!spec_.has_log) {
      set_nonblock(out_r_);  // only our end: the service writes blocking
      out_io_.start(out_r_, ev::READ);
    }
  } else {
    log_error(spec_.name, sys_error("pipe"));
  }
  state_since_ = Clock::now();
}

// The Children go with the Service: whatever still runs of it is killed and its exit callbacks
// are cancelled, so a Service removed with a check or a finish still running is safe.
Service::~Service() {
  timer_.stop();
  ready_timer_.stop();
  logger_timer_.stop();
  notify_io_.stop();
  out_io_.stop();
  for (int fd : {out_r_, out_w_})
    if (fd >= 0) close(fd);
}

ServiceState Service::state() const {
  switch (phase_) {
    case Phase::idle:
      return ServiceState::down;
    case Phase::running:
      return ready_ ? ServiceState::up : ServiceState::starting;
    case Phase::backoff:
      return ServiceState::backoff;
    default:
      return ServiceState::stopping;
  }
}

// A program of the service directory, run there with the service's environment, stdin from
// /dev/null and its output where the service's goes.
SpawnSpec Service::spawn_spec(const char* program) const {
  SpawnSpec s;
  s.exe = cat(spec_.dir, '/', program);
  s.cwd = spec_.dir;
  s.env = child_env();
  s.fds = {{0, host_.null_fd()}, {1, out_w_}, {2, out_w_}};
  return s;
}

ChildLabel Service::label(const char* role, bool in_cgroup) {
  ChildLabel l;
  l.owner = spec_.name;
  l.role = role;
  if (in_cgroup) {
    if (!cgroup_) cgroup_ = host_.children().cgroup(cat("service.", spec_.name));
    l.cgroup = cgroup_;
  }
  return l;
}

std::vector<std::string> Service::child_env() const {
  std::vector<std::string> env;
  for (auto& kv : host_.base_env()) {
    std::string name = kv.substr(0, kv.find('='));
    bool drop = spec_.env.count(name) > 0;
    for (auto& u : spec_.unset_env) drop |= u == name;
    if (!drop) env.push_back(kv);
  }
  for (auto& [k, v] : spec_.env) env.push_back(cat(k, '=', v));
  return env;
}

void Service::start() {
  if (phase_ != Phase::idle) return;
  stop_requested_ = false;
  ready_ = false;
  if (spec_.has_log && !logger_.running()) {
    logger_wanted_ = true;
    start_logger();
  }
  SpawnSpec s = spawn_spec("run");
  std::string err;
  int notify = -1;
  if (spec_.notification_fd >= 0 && (notify = run_.add_pipe(spec_.notification_fd, false, err)) < 0)
    log_error(spec_.name, err);
  started_ = state_since_ = Clock::now();
  if (!run_.start(
          host_.children(), s, label("run", true), [this](int st) { on_exit(st); }, err)) {
    log_error(spec_.name, "cannot start: ", err);
    last_exit_ = cat("cannot start: ", err);
    last_uptime_ = Duration(0);
    phase_ = Phase::finishing;  // nothing ran: go straight to the restart decision
    after_finish();
    return;
  }
  phase_ = Phase::running;
  log_info(spec_.name, "started, pid ", run_.pid());
  if (notify >= 0) {
    notify_fd_ = notify;
    notify_io_.start(notify_fd_, ev::READ);
  } else if (spec_.has_ready) {
    ready_timer_.start(0, 0);
  } else {
    become_ready("no readiness check");
  }
}

void Service::become_ready(const char* how) {
  ready_ = true;
  ready_at_ = state_since_ = Clock::now();
  ready_timer_.stop();
  close_notify();
  log_info(spec_.name, "up (", how, ")");
  host_.changed();
}

void Service::on_notify(ev::io&, int) {
  char buf[256];
  ssize_t n = read(notify_fd_, buf, sizeof buf);
  if (n > 0 && std::string_view(buf, static_cast<size_t>(n)).find('\n') != std::string_view::npos)
    return become_ready("notification-fd");
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    close_notify();
    log_warn(spec_.name, "closed notification-fd ", spec_.notification_fd,
             " without writing a newline; it will not be marked ready");
  }
}

void Service::close_notify() {
  if (notify_fd_ < 0) return;
  notify_io_.stop();
  run_.close_fd(notify_fd_);
  notify_fd_ = -1;
}

void Service::run_ready_check() {
  SpawnSpec s = spawn_spec("ready");
  std::string err;
  bool started = ready_check_.start(
      host_.children(), s, label("ready", true),
      [this](int st) {
        ready_check_.release();
        ready_timer_.stop();
        if (phase_ != Phase::running || ready_) return;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return become_ready("ready check passed");
        bool early = Clock::now() - started_ < kReadyFastFor;
        ready_timer_.start(secs(early ? kReadyPollFast : kReadyPoll), 0);
      },
      err);
  if (!started) {
    log_warn(spec_.name, "cannot run ready check: ", err);
    ready_timer_.start(secs(kReadyPoll), 0);
    return;
  }
  ready_timer_.start(secs(kReadyTimeout), 0);
}

void Service::on_ready_timer(ev::timer&, int) {
  if (phase_ != Phase::running || ready_) return;
  if (ready_check_.running()) {
    log_warn(spec_.name, "ready check took longer than ", secs(kReadyTimeout), "s; killed");
    ready_check_.kill();
    return;  // its exit schedules the next attempt
  }
  run_ready_check();
}

void Service::on_exit(int status) {
  last_status_ = status;
  last_exit_ = describe_wait_status(status);
  last_uptime_ = std::chrono::duration_cast<Duration>(Clock::now() - started_);
  bool crashed = phase_ == Phase::running;
  ready_ = false;
  ready_timer_.stop();
  ready_check_.release();
  close_notify();
  if (crashed) {
    log_warn(spec_.name, "exited (", last_exit_, ") after ",
             format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(last_uptime_)));
    // Whatever the dead leader left in its group would hold ports and files the next run needs.
    run_.kill();
    stop_deadline_ = Clock::now();
  } else {
    log_info(spec_.name, "stopped (", last_exit_, ")");
  }
  phase_ = Phase::draining;
  state_since_ = Clock::now();
  check_drained();
}

void Service::check_drained() {
  if (!run_.group_alive()) {
    timer_.stop();
    return after_drain();
  }
  if (Clock::now() >= stop_deadline_) run_.kill();
  timer_.start(secs(kDrainPoll), 0);
}

void Service::after_drain() {
  run_.release();  // the group is empty: its record goes
  if (!spec_.has_finish) return after_finish();
  SpawnSpec s = spawn_spec("finish");
  // s6's convention: exit code (256 when killed by a signal) and signal number.
  int code = WIFEXITED(last_status_) ? WEXITSTATUS(last_status_) : 256;
  int sig = WIFSIGNALED(last_status_) ? WTERMSIG(last_status_) : 0;
  s.args = {std::to_string(code), std::to_string(sig)};
  std::string err;
  phase_ = Phase::finishing;
  bool started = finish_.start(
      host_.children(), s, label("finish", true),
      [this](int st) {
        finish_.release();  // with what it left in its group
        timer_.stop();
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
          log_warn(spec_.name, "finish ended with ", describe_wait_status(st));
        after_finish();
      },
      err);
  if (!started) {
    log_warn(spec_.name, "cannot run finish: ", err);
    return after_finish();
  }
  timer_.start(seconds(spec_.timeout_finish), 0);
}

void Service::after_finish() {
  if (stop_requested_ || !want_up) {
    phase_ = Phase::idle;
    state_since_ = Clock::now();
    host_.changed();
    return;
  }
  ++restarts_;
  budget_.record(std::chrono::duration_cast<Duration>(Clock::now().time_since_epoch()));
  backoff_delay_ = backoff_.next_delay(host_.restart_policy(), last_uptime_);
  if (backoff_delay_.count() == 0) {
    phase_ = Phase::idle;
    host_.changed();  // the supervisor restarts it at once if its dependencies are up
    return;
  }
  log_info(spec_.name, "died young ", backoff_.young_deaths, " times in a row; restarting in ",
           format_duration(backoff_delay_));
  phase_ = Phase::backoff;
  state_since_ = Clock::now();
  timer_.start(seconds(backoff_delay_), 0);
}

void Service::on_timer(ev::timer&, int) {
  switch (phase_) {
    case Phase::signalled:
      log_warn(spec_.name, "still running ", format_duration(spec_.timeout_stop),
               " after the stop signal (timeout-stop); sending SIGKILL");
      run_.kill();
      break;
    case Phase::draining:
      check_drained();
      break;
    case Phase::finishing:
      log_warn(spec_.name, "finish still running after ", format_duration(spec_.timeout_finish),
               "; sending SIGKILL");
      finish_.kill();
      break;
    case Phase::backoff:
      phase_ = Phase::idle;
      host_.changed();
      break;
    default:
      break;
  }
}

void Service::stop() {
  stop_requested_ = true;
  switch (phase_) {
    case Phase::backoff:
      timer_.stop();
      phase_ = Phase::idle;
      state_since_ = Clock::now();
      host_.changed();
      break;
    case Phase::running:
      log_info(spec_.name, "stopping (", strsignal(spec_.stop_signal), ")");
      run_.signal(spec_.stop_signal);
      run_.signal(SIGCONT);
      phase_ = Phase::signalled;
      state_since_ = Clock::now();
      stop_deadline_ = Clock::now() + spec_.timeout_stop;
      timer_.start(seconds(spec_.timeout_stop), 0);
      break;
    default:
      break;  // idle, or already on its way down
  }
}

void Service::restart() {
  if (phase_ == Phase::running)
    stop();
  else if (phase_ == Phase::backoff)
    skip_backoff();
  else
    host_.changed();
}

void Service::kill_now() {
  run_.kill();
}

void Service::skip_backoff() {
  if (phase_ != Phase::backoff) return;
  timer_.stop();
  backoff_.young_deaths = 0;
  phase_ = Phase::idle;
  host_.changed();
}

void Service::on_output(ev::io&, int) {
  auto r = reader_.read_from(out_r_, [this](std::string_view line, bool truncated) {
    if (truncated)
      log_line(Level::info, spec_.name, cat(line, " [line truncated]"));
    else
      log_line(Level::info, spec_.name, line);
  });
  if (r != LineReader::ReadResult::again) out_io_.stop();
}

void Service::start_logger() {
  SpawnSpec s;
  s.exe = spec_.dir + "/log/run";
  s.cwd = spec_.dir + "/log";
  s.env = child_env();
  s.fds = {{0, out_r_}, {1, 2}, {2, 2}};
  std::string err;
  logger_started_ = Clock::now();
  bool started = logger_.start(
      host_.children(), s, label("log", false),
      [this](int st) {
        logger_.release();
        logger_timer_.stop();
        if (!logger_wanted_) return host_.changed();
        auto up = std::chrono::duration_cast<Duration>(Clock::now() - logger_started_);
        Duration d = logger_backoff_.next_delay(host_.restart_policy(), up);
        log_warn(spec_.name, "logger exited (", describe_wait_status(st), "); restarting in ",
                 format_duration(d));
        logger_timer_.start(seconds(d), 0);
      },
      err);
  if (!started) {
    log_error(spec_.name, "cannot start logger: ", err);
    logger_timer_.start(seconds(host_.restart_policy().backoff_max), 0);
  }
}

void Service::stop_logger() {
  logger_wanted_ = false;
  logger_timer_.stop();
  if (!logger_.running()) return;
  logger_.signal(SIGTERM);
  logger_.signal(SIGCONT);
  logger_timer_.start(secs(kLoggerStopTimeout), 0);
}

void Service::on_logger_timer(ev::timer&, int) {
  if (logger_wanted_) {
    if (!logger_.running()) start_logger();
  } else if (logger_.running()) {
    log_warn(spec_.name, "logger ignored SIGTERM; sending SIGKILL");
    logger_.kill();
  }
}

nlohmann::json Service::status(Clock::time_point now) const {
  nlohmann::json j;
  j["state"] = to_string(state());
  j["pid"] = run_.running() ? nlohmann::json(run_.pid()) : nlohmann::json(nullptr);
  j["want"] = want_up ? "up" : "down";
  j["ready"] = ready();
  j["restarts"] = restarts_;
  j["since_s"] = secs(now - state_since_);
  if (run_.running()) j["uptime_s"] = secs(now - started_);
  j["last_exit"] = last_exit_;
  if (phase_ == Phase::backoff) j["backoff_s"] = seconds(backoff_delay_);
  j["depends"] = spec_.depends;
  if (spec_.has_log)
    j["logger_pid"] = logger_.running() ? nlohmann::json(logger_.pid()) : nlohmann::json(nullptr);
  if (cgroup_) j["cgroup"] = cgroup_->path();
  return j;
}

}  // namespace vac
