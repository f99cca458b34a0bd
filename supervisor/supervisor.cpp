#include "supervisor.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <set>

#include "common/exit_codes.hpp"
#include "common/install_dirs.hpp"
#include "common/log.hpp"

namespace vac {

Supervisor::Supervisor(Config config, std::vector<ServiceSpec> specs)
    : config_(std::move(config)),
      initial_specs_(std::move(specs)),
      state_(config_.state_dir),
      control_([this](const nlohmann::json& r, const Caller& c, ControlServer::Reply reply) {
        handle(r, c, std::move(reply));
      }) {
  child_watcher_.set<Supervisor, &Supervisor::on_child>(this);
  sigterm_.set<Supervisor, &Supervisor::on_signal>(this);
  sigint_.set<Supervisor, &Supervisor::on_signal>(this);
  sighup_.set<Supervisor, &Supervisor::on_signal>(this);
  reconcile_idle_.set<Supervisor, &Supervisor::on_reconcile>(this);
}

Supervisor::~Supervisor() {
  probes_.clear();
  retired_probes_.clear();
  services_.clear();
  retiring_.clear();
  if (null_fd_ >= 0) close(null_fd_);
}

int Supervisor::run() {
  started_ = Clock::now();
  // Orphans of our services are re-parented to us, so nothing escapes supervision or stays a
  // zombie; as PID 1 we reap everything anyway.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
    log_warn("supervisor", sys_error("PR_SET_CHILD_SUBREAPER"));
  signal(SIGPIPE, SIG_IGN);
  null_fd_ = open("/dev/null", O_RDWR | O_CLOEXEC);
  env_ = current_environment();
  env_.push_back(cat("VACATAIRE_NODE=", config_.node_name));

  std::string err;
  if (!state_.init(err)) {
    log_error("supervisor", "state directory: ", err);
    return exit_code::system;
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
  if (!start_node(err)) {
    log_error("supervisor", err);
    control_.close_socket();
    return exit_code::config;
  }
  changed();
  manager_.ready(cat("node ", config_.node_name, ", ", services_.size(), " services"));
  ev::get_default_loop().run(0);

  control_.close_socket();
  log_info("supervisor", "all services stopped; exiting");
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
void Supervisor::set_probes(const std::map<std::string, ProbeConfig>& configs) {
  std::vector<std::unique_ptr<Probe>> next;
  for (auto& [name, config] : configs) {
    auto it = std::find_if(probes_.begin(), probes_.end(),
                           [&](auto& p) { return p && p->name() == name; });
    if (it != probes_.end() && (*it)->config() == config) {
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
    bool serving = core_ && core_->state() == NodeState::active;
    if (!shutting_down_ && (!next.back()->active_scope() || serving)) next.back()->start();
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
  return !shutting_down_ && node_health(probe_health(), false);
}

void Supervisor::on_probe_change(Probe& p) {
  ProbeState& seen = probe_seen_[p.name()];
  if (p.state() != seen) {
    bool failing = p.state() == ProbeState::failing;
    nlohmann::json st = p.status(Clock::now());
    std::string detail = st.contains("detail") && st["detail"].is_string() ? st["detail"] : "";
    if (failing || seen == ProbeState::failing)
      notifier_.emit({failing ? "probe_failing" : "probe_passing",
                      core_ ? to_string(core_->state()) : "passive",
                      core_ ? to_string(core_->state()) : "passive", detail, p.name(), "",
                      core_ ? core_->epoch() : 0});
    seen = p.state();
  }
  if (p.name() == config_.failover.witness)
    feed(Event(Event::witness, p.state() == ProbeState::passing));
  feed(Event(Event::health, health_fed_ = node_healthy()));
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

pid_t Supervisor::start_child(const SpawnSpec& spec, std::function<void(pid_t, int)> on_exit,
                              std::string& err) {
  pid_t pid = spawn(spec, err);
  if (pid > 0) children_[pid] = std::move(on_exit);
  return pid;
}

void Supervisor::record_group(pid_t pgid, const std::string& service, const char* role) {
  state_.record_group(pgid, service, role);
}
void Supervisor::forget_group(pid_t pgid) {
  state_.forget_group(pgid);
}

void Supervisor::on_child(ev::child& w, int) {
  auto it = children_.find(w.rpid);
  if (it == children_.end()) {
    log_debug("supervisor", "reaped orphan pid ", w.rpid);
    return;
  }
  auto handler = std::move(it->second);
  children_.erase(it);
  handler(w.rpid, w.rstatus);
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
      bool should_run = s.want_up && services_wanted_ && !shutting_down_;
      if (!should_run && !s.idle() && !dependents_active(s)) s.stop();
    }
    for (auto& r : retiring_) r->stop();
    for (auto& s : services_) {
      bool should_run = s->want_up && services_wanted_ && !shutting_down_;
      if (should_run && s->idle() && dependencies_ready(*s)) s->start();
    }
  } while (reconcile_again_ && ++rounds < 8);
  in_reconcile_ = false;
  if (reconcile_again_) reconcile_idle_.start();  // finish in the next loop iteration
  after_reconcile();

  // Retired services go once they are down and their logger has exited.
  for (auto& r : retiring_)
    if (r->idle()) r->stop_logger();
  std::erase_if(retiring_, [](auto& r) { return r->idle() && !r->logger_running(); });

  std::erase_if(retired_probes_, [](auto& p) { return !p->process_running(); });
  if (shutting_down_) {
    bool all_down =
        retiring_.empty() && retired_probes_.empty() && linkd_pid_ == 0 && notifier_.idle();
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
  notifier_.emit({"shutdown", core_ ? to_string(core_->state()) : "passive",
                  core_ ? to_string(core_->state()) : "passive", why, "", "",
                  core_ ? core_->epoch() : 0});
  // Hooks get their timeout to tell of the shutdown, never longer.
  notifier_.drain(config_.notify_timeout);
  manager_.stopping();
  tick_.stop();
  linkd_restart_.stop();
  stop_linkd();
  for (auto& p : probes_) p->stop();
  changed();
}

void Supervisor::on_signal(ev::sig& w, int) {
  if (w.signum == SIGHUP) return reload();
  begin_shutdown(w.signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

void Supervisor::reload() {
  std::vector<std::string> errors;
  Config next;
  if (!load_config(config_.file, next, errors)) {
    for (auto& e : errors) log_error("reload", e);
    log_error("reload", "configuration not reloaded; still running the previous one");
    return;
  }
  auto specs = load_services(next.services_dir, errors);
  if (!errors.empty()) {
    for (auto& e : errors) log_error("reload", e);
    log_error("reload", "services not reloaded; still running the previous ones");
    return;
  }
  if (next.control_socket != config_.control_socket || next.state_dir != config_.state_dir)
    log_warn("reload", "control_socket and node.state_dir changes take effect at the next start");
  config_.restart = next.restart;
  if (next.notify_dir != config_.notify_dir || next.notify_timeout != config_.notify_timeout)
    log_info("reload", "notify_dir ", next.notify_dir.empty() ? "(none)" : next.notify_dir);
  config_.notify_dir = next.notify_dir;
  config_.notify_timeout = next.notify_timeout;
  notifier_.configure(config_.notify_dir, config_.notify_timeout,
                      {config_.node_name, config_.role, config_.peer ? config_.peer->name : ""});
  config_.services_dir = next.services_dir;
  set_probes(next.probes);
  config_.probes = next.probes;
  log_info("reload", "reloaded ", config_.file, ": ", specs.size(), " services");
  set_services(std::move(specs));
  changed();
}

}  // namespace vac
