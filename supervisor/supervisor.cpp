#include "supervisor.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <set>

#include "common/exit_codes.hpp"
#include "common/install_dirs.hpp"
#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "preflight.hpp"

namespace vac {

Supervisor::Supervisor(Config config, std::vector<ServiceSpec> specs)
    : config_(std::move(config)),
      initial_specs_(std::move(specs)),
      state_(config_.state_dir),
      control_([this](const ControlRequest& r, const Caller& c, ControlServer::Reply reply) {
        handle(r, c, std::move(reply));
      }),
      pair_(config_, Workload{services_, retiring_, probes_}, *this, notifier_,
            [this] { return status(); }) {
  child_watcher_.set<Supervisor, &Supervisor::on_child>(this);
  sigterm_.set<Supervisor, &Supervisor::on_signal>(this);
  sigint_.set<Supervisor, &Supervisor::on_signal>(this);
  sighup_.set<Supervisor, &Supervisor::on_signal>(this);
  reconcile_idle_.set<Supervisor, &Supervisor::on_reconcile>(this);
  drain_poll_.set<Supervisor, &Supervisor::on_drain_poll>(this);
}

Supervisor::~Supervisor() {
  probes_.clear();
  retired_probes_.clear();
  services_.clear();
  retiring_.clear();

  guard_.stop();  // its pipe closes: it exits, killing whatever is still registered
  log_writer_.flush();
  log_set_sink(nullptr);
  fatal_guard_set_log_fd(2);
  log_writer_.detach();
  if (null_fd_ >= 0) close(null_fd_);
}

// The supervisor's stderr may be a pipe whose reader stalls (a logger, a terminal paused with
// ^S): log lines then queue, up to a bound, and beyond it are dropped and counted; the loop
// never waits. A new open file description of the same pipe or terminal is made non-blocking,
// so fd 2 shared with children and the parent shell keeps its own flags; a socket (journald)
// is written with MSG_DONTWAIT; a regular file never blocks and is written as it is.
void Supervisor::start_log_writer() {
  struct stat st {};
  if (fstat(2, &st) != 0) return;
  int fd = -1;
  bool by_send = false;
  if (S_ISSOCK(st.st_mode)) {
    fd = fcntl(2, F_DUPFD_CLOEXEC, 3);
    by_send = true;
  } else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
    fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  }
  if (fd < 0) return;  // a regular file, or nothing better: write as before
  log_writer_.attach(fd, by_send, true);
  log_set_sink([this](std::string_view line) { log_writer_.write(line); });
  if (!by_send) fatal_guard_set_log_fd(fd);
}

int Supervisor::run() {
  started_ = Clock::now();
  // Orphans of our services are re-parented to us, so nothing escapes supervision or stays a
  // zombie; as PID 1 we reap everything anyway.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log_warn("supervisor", sys_error("PR_SET_CHILD_SUBREAPER"));
  signal(SIGPIPE, SIG_IGN);
  install_fatal_guard();
  start_log_writer();
  null_fd_ = open("/dev/null", O_RDWR | O_CLOEXEC);
  env_ = current_environment();
  env_.push_back(cat("VACATAIRE_NODE=", config_.node_name));

  std::string err;
  if (!state_.init(err)) {
    log_error("supervisor", err);
    return state_.busy() ? exit_code::failed : exit_code::system;
  }
  // Resolved once: a group lookup (NSS, perhaps LDAP) has no place in the loop.
  if (!config_.control_group.empty()) {
    if (group* g = getgrnam(config_.control_group.c_str())) control_.set_control_group(g->gr_gid);
  }
  // Before the control socket: if another instance runs, its groups are not stale.
  ControlServer* control = &control_;
  if (!control->listen(config_.control_socket, err)) {
    log_error("supervisor", err);
    return exit_code::failed;
  }
  child_watcher_.set(0, 0);
  child_watcher_.start();
  state_.stop_stale_groups(std::chrono::seconds(10));
  // Containment before the first service: its cgroups, then the guard that outlives us.
  std::string why;
  std::string base = children_.enable_cgroups(why);
  if (!base.empty())
    log_info("supervisor", "services are contained in cgroups under ", base);
  else
    log_info("supervisor", "no cgroup v2 for services (", why,
             "); containing them by process group only");
  if (!guard_.start(err))
    log_warn("supervisor", "cannot start vacataire-guard (", err,
             "): services are killed with the supervisor only by its own fatal guard and "
             "each leader's parent-death signal");
  for (ev::sig* s : {&sigterm_, &sigint_, &sighup_})
    s->start(s == &sigterm_ ? SIGTERM : s == &sigint_ ? SIGINT : SIGHUP);

  log_info("supervisor", "node ", config_.node_name, " supervising ", initial_specs_.size(),
           " services from ", config_.services_dir, " (pid ", getpid(), ")");
  base_dir_ = config_.file.find('/') == std::string::npos
                  ? "."
                  : config_.file.substr(0, std::max<size_t>(config_.file.rfind('/'), 1));
  probes_dir_ = config_.probes_dir.empty() ? default_probes_dir() : config_.probes_dir;
  set_services(std::move(initial_specs_));
  set_probes(config_.probes);
  notifier_.configure(config_.notify_dir, config_.notify_timeout,
                      {config_.node_name, config_.role, config_.peer ? config_.peer->name : ""});
  if (!pair_.start(err)) {
    log_error("supervisor", err);
    control_.close_socket();
    return exit_code::config;
  }
  changed();
  manager_.ready(cat("node ", config_.node_name, ", ", services_.size(), " services"));
  arm_guard();
  ev::get_default_loop().run(0);
  guard_tick_.stop();

  control_.close_socket();
  log_info("supervisor", "all services stopped; exiting");
  guard_.stop();
  log_writer_.flush();
  return exit_code::ok;
}

void Supervisor::set_services(std::vector<ServiceSpec> specs) {
  std::vector<std::unique_ptr<Service>> next;
  for (auto& spec : specs) {
    auto it = std::find_if(services_.begin(), services_.end(),
                           [&](auto& s) { return s && s->name() == spec.name; });
    if (it != services_.end()) {
      if (!((*it)->spec() == spec)) log_info("supervisor", spec.name, ": configuration changed");
      (*it)->set_spec(std::move(spec));
      next.push_back(std::move(*it));
    } else {
      bool down = spec.down;
      next.push_back(std::make_unique<Service>(std::move(spec), *this));
      next.back()->want_up = !down;
    }
  }
  for (auto& old : services_) {
    if (!old) continue;
    log_info("supervisor", old->name(), ": removed from the services directory; stopping it");
    old->want_up = false;
    retiring_.push_back(std::move(old));
  }
  services_ = std::move(next);
}

// Only probes whose config changed are restarted; the others keep their verdict and process.
void Supervisor::set_probes(const std::map<std::string, ProbeConfig>& configs, bool force) {
  std::vector<std::unique_ptr<Probe>> next;
  for (auto& [name, config] : configs) {
    auto it = std::find_if(probes_.begin(), probes_.end(),
                           [&](auto& p) { return p && p->name() == name; });
    if (it != probes_.end() && (*it)->config() == config && !force) {
      next.push_back(std::move(*it));
      continue;
    }
    if (it != probes_.end()) {
      log_info("supervisor", "probe ", name, ": configuration changed; restarting it");
      (*it)->stop();
      retired_probes_.push_back(std::move(*it));
    }
    next.push_back(std::make_unique<Probe>(name, config, base_dir_, probes_dir_, *this,
                                           [this](Probe& p) { on_probe_change(p); }));
    if (!shutting_down_ && (!next.back()->active_scope() || pair_.active())) next.back()->start();
  }
  for (auto& old : probes_) {
    if (!old) continue;
    log_info("supervisor", "probe ", old->name(), ": removed from the config");
    old->stop();
    retired_probes_.push_back(std::move(old));
  }
  probes_ = std::move(next);
}

bool Supervisor::healthy() const {
  std::vector<ProbeHealth> probes;
  for (auto& p : probes_) probes.push_back({p->critical(), p->running(), p->state()});
  return !shutting_down_ && node_health(probes, false);
}

void Supervisor::on_probe_change(Probe& p) {
  ProbeState& seen = probe_seen_[p.name()];
  if (p.state() != seen) {
    bool failing = p.state() == ProbeState::failing;
    nlohmann::json st = p.status(Clock::now());
    std::string detail = st.contains("detail") && st["detail"].is_string() ? st["detail"] : "";
    if (failing || seen == ProbeState::failing)
      notifier_.emit({failing ? "probe_failing" : "probe_passing", pair_.state_name(),
                      pair_.state_name(), detail, p.name(), "", pair_.epoch()});
    seen = p.state();
  }
  pair_.on_probe_change(p);
  bool now = healthy();
  if (now == was_healthy_) return;
  was_healthy_ = now;
  if (!now)
    log_warn("supervisor", "node unhealthy: critical probe ", p.name(), " is failing");
  else
    log_info("supervisor", "node healthy again: no critical probe is failing");
}

Service* Supervisor::find(const std::string& name) {
  for (auto& s : services_)
    if (s->name() == name) return s.get();
  return nullptr;
}

void Supervisor::on_child(ev::child& w, int) {
  if (children_.on_reaped(w.rpid, w.rstatus)) return;
  log_debug("supervisor", "reaped orphan pid ", w.rpid);
  if (shutting_down_) changed();  // a shutdown waits for killed groups to empty
}

nlohmann::json Supervisor::supervisor_status() const {
  return {{"pid", getpid()},
          {"guard_pid", guard_.running() ? nlohmann::json(guard_.pid()) : nlohmann::json(nullptr)},
          {"guard_restarts", guard_.restarts()},
          {"guard_fence_s", guard_.fence() > Duration(0) ? nlohmann::json(seconds(guard_.fence()))
                                                         : nlohmann::json(nullptr)},
          {"cgroup", children_.cgroup_base().empty() ? nlohmann::json(nullptr)
                                                     : nlohmann::json(children_.cgroup_base())},
          {"log_dropped_lines", log_writer_.dropped_messages()},
          {"log_dropped_bytes", log_writer_.dropped_bytes()},
          {"log_queued_bytes", log_writer_.queued()},
          {"reload", last_reload_.is_null() ? nlohmann::json({{"count", 0}}) : last_reload_}};
}

// Reconciling is deferred to an idle watcher when asked for from inside itself, so a chain of
// state changes never recurses.
void Supervisor::changed() {
  if (in_reconcile_) {
    reconcile_again_ = true;
    return;
  }
  reconcile();
}

void Supervisor::on_drain_poll(ev::timer&, int) {
  changed();
}

void Supervisor::on_reconcile(ev::idle&, int) {
  reconcile_idle_.stop();
  reconcile();
}

bool Supervisor::dependents_active(const Service& s) const {
  for (auto& other : services_)
    for (auto& d : other->spec().depends)
      if (d == s.name() && !other->idle() && !other->in_backoff()) return true;
  return false;
}

bool Supervisor::dependencies_ready(const Service& s) {
  for (auto& d : s.spec().depends) {
    Service* dep = find(d);
    if (!dep || !dep->ready()) return false;
  }
  return true;
}

void Supervisor::reconcile() {
  in_reconcile_ = true;
  int rounds = 0;
  do {
    reconcile_again_ = false;
    // Stops first, dependents before what they depend on.
    for (auto it = services_.rbegin(); it != services_.rend(); ++it) {
      Service& s = **it;
      bool should_run = s.want_up && pair_.services_wanted() && !shutting_down_;
      if (!should_run && !s.idle() && !dependents_active(s)) s.stop();
    }
    for (auto& r : retiring_) r->stop();
    for (auto& s : services_) {
      bool should_run = s->want_up && pair_.services_wanted() && !shutting_down_;
      if (should_run && s->idle() && dependencies_ready(*s)) s->start();
    }
  } while (reconcile_again_ && ++rounds < 8);
  in_reconcile_ = false;
  if (reconcile_again_) reconcile_idle_.start();  // finish in the next loop iteration
  pair_.after_reconcile();
  // The peer's heartbeats may have announced a shorter dead_after: the fence follows.
  if (!shutting_down_ && guard_.fence() > Duration(0) && pair_.guard_fence() != guard_.fence())
    arm_guard();

  // Retired services go once they are down and their logger has exited.
  for (auto& r : retiring_)
    if (r->idle()) r->stop_logger();
  std::erase_if(retiring_, [](auto& r) { return r->idle() && !r->logger_running(); });

  std::erase_if(retired_probes_, [](auto& p) { return !p->process_running(); });
  if (shutting_down_) {
    bool draining = children_.draining() > 0;
    // Killed groups empty as their members are reaped; a member someone else reaps wakes
    // nobody, so look again shortly.
    if (draining && !drain_poll_.is_active()) drain_poll_.start(0.05, 0);
    bool all_down = retiring_.empty() && retired_probes_.empty() && pair_.finished() && !draining &&
                    notifier_.idle();
    for (auto& p : probes_) all_down &= !p->process_running();
    for (auto& s : services_) all_down &= s->idle();
    if (!all_down) return;
    bool loggers = false;
    for (auto& s : services_) {
      if (s->logger_running()) s->stop_logger(), loggers = true;
    }
    if (!loggers) ev::get_default_loop().break_loop(ev::ALL);
  }
}

void Supervisor::begin_shutdown(const char* why) {
  if (shutting_down_) {
    log_info("supervisor", "already stopping (", why, ")");
    return;
  }
  log_info("supervisor", why, ": stopping all services");
  shutting_down_ = true;
  notifier_.emit({"shutdown", pair_.state_name(), pair_.state_name(), why, "", "", pair_.epoch()});
  // Hooks get their timeout to tell of the shutdown, never longer.
  notifier_.drain(config_.notify_timeout);
  manager_.stopping();
  for (auto& p : probes_) p->stop();
  // An active node hands over; linkd keeps telling the peer until the services are stopped.
  pair_.begin_shutdown();
  changed();
}

// In a pair, a supervisor frozen for longer than its linkd's lease is no longer advertised:
// linkd's last heartbeat leaves at the latest a heartbeat before the lease lapses, and the peer
// takes over dead_after after that one, so no sooner than lease + dead_after - heartbeat after
// the freeze. The guard fences this node's services halfway between the lease and that moment
// (lease + (dead_after - heartbeat) / 2), so that the peer starts its own only once these are
// gone; a stall that ends before the fence costs nothing. Alone (no peer) nobody would take
// over: no fence.
void Supervisor::arm_guard() {
  if (!config_.peer) {
    if (guard_.fence() > Duration(0)) guard_.set_fence(Duration(0));
    guard_tick_.stop();
    return;
  }
  const PeerConfig& p = *config_.peer;
  Duration fence = pair_.guard_fence();
  if (fence != guard_.fence()) {
    log_info(
        "guard", "services fenced if this loop stalls for ", format_duration(fence),
        " (linkd's lease, plus half of dead_after - heartbeat, the peer's dead_after if shorter)");
    guard_.set_fence(fence);
  }
  Duration tick = supervisor_tick(p.heartbeat);
  if (!guard_tick_.is_active() || guard_tick_.repeat != seconds(tick)) {
    guard_tick_.set<Supervisor, &Supervisor::on_guard_tick>(this);
    guard_tick_.start(0, seconds(tick));
  }
}

void Supervisor::on_guard_tick(ev::timer&, int) {
  guard_.tick();
}

void Supervisor::on_signal(ev::sig& w, int) {
  if (w.signum == SIGHUP) return reload();
  begin_shutdown(w.signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

}  // namespace vac
