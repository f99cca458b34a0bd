#include "pair.hpp"

#include <sodium.h>
#include <unistd.h>
#include <algorithm>

#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "node_store.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
// The loop's tick: the core's clock and linkd's lease. linkd stops advertising this node when
// no line has come for max(dead_after / 2, 3 ticks), so a tick is never longer than half a
// heartbeat: a live supervisor always renews the lease in time.
double tick_period(const Config& c) {
  Duration t = std::chrono::milliseconds(50);
  if (c.peer) t = std::min<Duration>(t, c.peer->heartbeat / 2);
  return std::max(seconds(t), 0.001);
}
}  // namespace

Pair::Pair(const Config& config, Workload work, ServiceHost& host, Notifier& notifier,
           std::function<nlohmann::json()> status_doc)
    : config_(config),
      work_(work),
      host_(host),
      notifier_(notifier),
      status_doc_(std::move(status_doc)) {
  tick_.set<Pair, &Pair::on_tick>(this);
}

Pair::~Pair() = default;

Time Pair::now() const {
  return std::chrono::duration_cast<Duration>(Clock::now() - started_);
}

void Pair::emit(const char* event, const std::string& reason, const std::string& previous,
                const std::string& service) {
  std::string now = state_name();
  notifier_.emit({event, now, previous.empty() ? now : previous, reason, "", service, epoch()});
}

bool Pair::start(std::string& err) {
  started_ = state_since_ = Clock::now();
  NodePolicy policy;
  policy.master = config_.role == "master";
  policy.name = config_.node_name;
  // This run: the peer tells a restart of this supervisor from a reply of the previous run.
  randombytes_buf(&policy.incarnation, sizeof policy.incarnation);
  policy.incarnation |= 1;
  incarnation_ = policy.incarnation;
  if (config_.peer) policy.peer_name = config_.peer->name;
  policy.has_peer = config_.peer.has_value();
  policy.has_witness = !config_.failover.witness.empty();
  policy.failback_auto = config_.failover.failback == "auto";
  policy.stop_without_peer = config_.failover.stop_without_peer;
  policy.startup_grace = config_.failover.startup_grace;
  policy.isolation_after = config_.failover.isolation_after;
  // The node's start period is the shortest of its active-scope probes' (each probe keeps
  // its own in its verdict), so the core never ignores a failure a probe would count.
  std::optional<Duration> start_period;
  for (auto& [name, p] : config_.probes)
    if (p.scope == "active" && p.critical)
      start_period = std::min(start_period.value_or(p.start_period), p.start_period);
  if (start_period) policy.start_period = *start_period;
  // Break-before-make waits for the services to stop: give the slowest stop its full time
  // (SIGTERM, timeout-stop, SIGKILL, finish) before the peer is told anyway.
  Duration stops{0};
  for (auto& s : work_.services) stops += s->spec().timeout_stop + s->spec().timeout_finish;
  policy.stop_timeout = std::max(policy.stop_timeout, stops + std::chrono::seconds(1));
  if (config_.peer) {
    policy.dead_after = config_.peer->dead_after;
    if (!load_peer_key(config_.peer->key_file, key_, err)) return false;
  }
  NodeRecord rec = load_node_record(config_.state_dir, record_note_);
  if (!record_note_.empty()) log_warn("node", record_note_);
  core_ = std::make_unique<NodeCore>(policy, rec.state, rec.epoch, now());
  // A node that cannot write its record must not serve: it cannot tell whether an earlier run
  // failed and could not record it, so it starts failed, and serves again only after the
  // operator's recover once the record can be written (the core retries the write).
  std::string werr;
  if (!persist(werr)) {
    core_ = std::make_unique<NodeCore>(policy, NodeState::failed, rec.epoch, now());
    record_note_ = cat("cannot persist the node record at start-up (", werr,
                       "): starting failed; fix ", config_.state_dir, ", then `vacataire recover`");
    log_error("node", record_note_);
    Event e(Event::persisted, false);
    e.detail = werr;
    core_->handle(e, now());
  }
  fed_in_ = core_->state();
  log_info("node", config_.node_name, " (", config_.role, ") starts ", to_string(core_->state()),
           ", epoch ", core_->epoch());
  tick_.start(0, tick_period(config_));
  // linkd carries the peer link, and serves the endpoints (with a peer or without).
  if (config_.peer || !config_.endpoint_http.empty() || !config_.endpoint_agent_check.empty()) {
    make_link();
    link_->start();
  }
  return true;
}

void Pair::make_link() {
  auto heard = [this](const PeerMessage& m) {
    lost_deferred_ = false;
    if (!core_->peer_reachable())
      emit("peer_found", cat("peer ", config_.peer->name, " heard (", to_string(m.state), ")"));
    feed(Event(m));
  };
  auto lost = [this] { on_peer_lost(); };
  // A linkd started with a new heartbeat: the tick (its lease) follows it.
  auto started = [this] {
    if (tick_.is_active() && tick_.repeat != tick_period(config_)) {
      tick_.repeat = tick_period(config_);
      tick_.again();
    }
  };
  auto busy = [this] {
    NodeState s = core_->state();
    Wait w = core_->wait();
    return s == NodeState::starting || s == NodeState::stopping || w == Wait::handed_over ||
           w == Wait::quiesce_sent || w == Wait::shutdown;
  };
  // The peer's timing bounds this node's fence: the Supervisor re-arms the guard when it
  // reconciles.
  auto timing = [this](const LinkTiming& t) {
    peer_timing_ = t;
    check_timing();
    host_.changed();
  };
  link_ = std::make_unique<PeerLink>(
      config_, key_, host_,
      PeerLink::Handlers{heard, lost, [this] { host_.changed(); }, started, busy, timing},
      incarnation_);
  link_->heartbeat(core_->heartbeat());
}

void Pair::reload_link(const Key& key, std::function<void(const std::string&)> rejected) {
  key_ = key;
  if (config_.peer) check_timing();  // this node's side of the comparison may have changed
  // Until the old linkd is gone its lease is the old one: tick at the faster of both.
  if (tick_.is_active() && tick_period(config_) < tick_.repeat) {
    tick_.repeat = tick_period(config_);
    tick_.again();
  }
  bool wanted =
      config_.peer || !config_.endpoint_http.empty() || !config_.endpoint_agent_check.empty();
  if (shutdown_ == Shutdown::done || (!link_ && !wanted)) return;
  if (!link_) make_link();
  link_->reconfigure(std::move(rejected));
}

// The service over its restart budget, if any (rule 1's second trigger).
std::string Pair::over_budget() const {
  auto t = std::chrono::duration_cast<Duration>(Clock::now().time_since_epoch());
  for (auto& s : work_.services)
    if (s->budget().exceeded(t, config_.restart.budget, config_.restart.budget_window))
      return s->name();
  return "";
}

bool Pair::node_probes_ok() const {
  std::vector<ProbeHealth> probes;
  for (auto& p : work_.probes)
    if (!p->active_scope()) probes.push_back({p->critical(), p->running(), p->state()});
  return node_health(probes, core_ && core_->wait() == Wait::recovering);
}

bool Pair::active_probes_ok() const {
  std::vector<ProbeHealth> probes;
  for (auto& p : work_.probes)
    if (p->active_scope()) probes.push_back({p->critical(), p->running(), p->state()});
  return node_health(probes, false);
}

bool Pair::serving() const {
  return core_ && core_->serving() && shutdown_ == Shutdown::none;
}

bool Pair::persist(std::string& err) {
  if (save_node_record(config_.state_dir, {core_->durable_state(), core_->epoch()}, err))
    return true;
  if (core_ && core_->record_error().empty()) {
    log_error("node", "cannot persist the node record: ", err, "; retrying");
    emit("persist_failed", cat("cannot persist the node record: ", err));
  }
  return false;
}

void Pair::feed(Event e) {
  if (!core_) return;
  NodeState before = core_->state();
  std::string was_unhealthy = core_->unhealthy_reason();
  auto actions = core_->handle(e, now());
  std::optional<Event> written;  // the core hears the write's result before anything else
  for (auto& a : actions) {
    switch (a.kind) {
      case Action::persist: {
        std::string err;
        bool ok = persist(err);
        if (ok && !core_->record_error().empty()) log_info("node", "node record written again");
        written = Event(Event::persisted, ok);
        written->detail = err;
        break;
      }
      case Action::start_services:
        services_wanted_ = true;
        break;
      case Action::stop_services:
        services_wanted_ = false;
        break;
      case Action::send:
        if (link_) link_->send(a.message);
        break;
      case Action::notify:
        log_info("node", to_string(before), " -> ", to_string(core_->state()), ": ",
                 core_->reason());
        emit("state", core_->reason(), to_string(before));
        break;
    }
  }
  if (core_->state() != before) {
    ++transitions_[{to_string(before), to_string(core_->state())}];
    state_since_ = Clock::now();
  }
  if (core_->role_conflict() != role_conflict_logged_) {
    role_conflict_logged_ = core_->role_conflict();
    if (!role_conflict_logged_.empty()) log_error("node", role_conflict_logged_);
  }
  if (core_->epoch_refused() != epoch_refused_logged_) {
    epoch_refused_logged_ = core_->epoch_refused();
    if (!epoch_refused_logged_.empty()) log_error("node", epoch_refused_logged_);
  }
  if (written) return feed(*written);
  if (std::string why = core_->unhealthy_reason();
      why != was_unhealthy && shutdown_ == Shutdown::none) {
    if (why.empty())
      log_info("node", "healthy again");
    else
      log_warn("node", "unhealthy: ", why);
  }
  // Probes of the services themselves run while this node serves, from a clean verdict.
  bool serving = core_->state() == NodeState::active;
  for (auto& p : work_.probes) {
    if (!p->active_scope() || shutdown_ != Shutdown::none) continue;
    if (serving && !p->running()) p->start();
    if (!serving && p->running()) p->pause();
  }
  // Every event and every tick, changed or not: the heartbeat line is linkd's lease.
  if (link_) link_->heartbeat(core_->heartbeat());
  feed_status();
  if (shutdown_ == Shutdown::handing_over && core_->may_exit())
    finish_shutdown(core_->peer_reachable() && core_->peer() &&
                            (core_->peer()->state == NodeState::starting ||
                             core_->peer()->state == NodeState::active)
                        ? "the peer took over"
                        : "handover done or given up");
  host_.changed();
}

void Pair::feed_verdicts() {
  if (core_->state() != fed_in_) {
    fed_in_ = core_->state();
    fed_active_.reset();  // going active or down resets the core's view of these
  }
  // Each is marked as given before it is fed: feeding reconciles, which comes back here.
  auto give = [&](std::optional<bool>& fed, bool now_ok, Event::Kind kind) {
    if (fed == now_ok) return;
    fed = now_ok;
    feed(Event(kind, now_ok));
  };
  give(fed_health_, node_probes_ok(), Event::health);
  give(fed_active_, active_probes_ok(), Event::active_probe);
  std::string svc = over_budget();
  if (svc != budget_logged_) {
    if (!svc.empty()) {
      std::string why = cat("service ", svc, " restarted more than ", config_.restart.budget,
                            " times within ", format_duration(config_.restart.budget_window));
      log_warn("node", why);
      emit("service_over_budget", why, "", svc);
    }
    budget_logged_ = svc;
  }
  give(fed_budget_, !svc.empty(), Event::budget);
}

// Services have reached what the node wanted: tell the core.
void Pair::after_reconcile() {
  if (!core_) return;
  bool all_up = true, all_down = work_.retiring.empty();
  for (auto& s : work_.services) {
    if (s->want_up) all_up &= s->ready();
    all_down &= s->idle();
  }
  if (shutdown_ == Shutdown::none) feed_verdicts();
  if (core_->state() == NodeState::starting && services_wanted_ && all_up)
    feed(Event::services_up);
  else if (core_->state() == NodeState::stopping && !services_wanted_ && all_down)
    feed(Event::services_down);
}

void Pair::on_probe_change(Probe& p) {
  if (p.name() == config_.failover.witness)
    feed(Event(Event::witness, p.state() == ProbeState::passing));
  if (shutdown_ == Shutdown::none) feed_verdicts();
}

void Pair::service_restarted() {
  if (!core_) return;
  if (active())
    for (auto& p : work_.probes)
      if (p->active_scope() && p->running()) p->begin_start_period();
  feed(Event::op_svc_restart);
}

void Pair::on_tick(ev::timer&, int) {
  auto now = Clock::now();
  if (config_.peer && last_tick_ != Clock::time_point{} &&
      now - last_tick_ > supervisor_lease(config_.peer->heartbeat, config_.peer->dead_after)) {
    resumed_at_ = now;
    log_warn(
        "node", "this supervisor's loop stalled for ",
        format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(now - last_tick_)),
        ", past linkd's lease: the peer may have stopped hearing this node");
    // Near or past the guard's fence, the services were (or are being) killed: their restart
    // gets the start period, as an operator's `svc restart` does, so that it does not count
    // as a failure and leave this node failed.
    auto fence = guard_fence();
    if (now - last_tick_ + supervisor_tick(config_.peer->heartbeat) >= fence) {
      // The peer's dead_after may be running out as this node wakes: it takes over (and says
      // so at once) or hears this node again. Restarting the services before knowing which
      // could make both serve; dead_after from now, either has happened.
      held_until_ = now + config_.peer->dead_after;
      log_warn("node", "the guard's fence (", format_duration(fence),
               ") may have killed the services: they restart in ",
               format_duration(config_.peer->dead_after),
               " unless the peer took over, within their start period");
      service_restarted();
    }
  }
  last_tick_ = now;
  if (lost_deferred_ && !stalled_lately(now)) {
    lost_deferred_ = false;
    log_warn("node", "peer ", config_.peer->name, " still silent ",
             format_duration(config_.peer->dead_after), " after this supervisor's stall");
    on_peer_lost();
  }
  feed(Event::tick);  // also renews linkd's lease: a heartbeat line on every tick
}

bool Pair::fence_held(Clock::time_point now) const {
  if (!config_.peer) return false;
  if (now < held_until_) return true;
  return last_tick_ != Clock::time_point{} &&
         now - last_tick_ + supervisor_tick(config_.peer->heartbeat) >= guard_fence();
}

// Within dead_after of a stall of this loop (or during one: the line was waiting while the loop
// was stopped), a peer's silence is most likely this node's own doing: linkd stopped
// heartbeating when its lease lapsed, and the peer's linkd dropped the session. Acting on it
// would take the role from a healthy active peer (both active until the epochs settle it).
bool Pair::stalled_lately(Clock::time_point now) const {
  if (!config_.peer || last_tick_ == Clock::time_point{}) return false;
  auto lease = supervisor_lease(config_.peer->heartbeat, config_.peer->dead_after);
  return now - last_tick_ > lease ||
         (resumed_at_ != Clock::time_point{} && now - resumed_at_ < config_.peer->dead_after);
}

// linkd heard nothing from the peer for dead_after. Believed at once, unless this loop has just
// stalled: then the peer gets dead_after to be heard afresh (a heartbeat clears the doubt).
void Pair::on_peer_lost() {
  auto now = Clock::now();
  if (stalled_lately(now)) {
    if (!lost_deferred_)
      log_warn("node", "peer ", config_.peer->name,
               " reported lost just after this supervisor stalled; waiting ",
               format_duration(config_.peer->dead_after), " to hear it afresh");
    if (now - last_tick_ > supervisor_lease(config_.peer->heartbeat, config_.peer->dead_after))
      resumed_at_ = now;  // the lost line came before this loop's first tick since the stall
    lost_deferred_ = true;
    return;
  }
  if (core_->peer_reachable())
    emit("peer_lost", cat("peer ", config_.peer->name, " silent on every link"));
  feed(Event::peer_lost);
}

void Pair::begin_shutdown() {
  if (shutdown_ != Shutdown::none || !core_) return;
  shutdown_ = Shutdown::handing_over;
  NodeState s = core_->state();
  bool serving = s == NodeState::active || s == NodeState::starting;
  if (serving && link_ && config_.peer)
    log_info("node", "shutting down: handing over to ", config_.peer->name,
             " once the services are stopped");
  feed(Event::op_shutdown);
}

void Pair::finish_shutdown(const char* why) {
  shutdown_ = Shutdown::done;
  if (link_) log_info("node", "shutdown: ", why, "; stopping linkd");
  tick_.stop();
  if (link_) link_->stop();
}

json Pair::node_status(bool healthy) const {
  std::string reason = core_ ? core_->reason() : "";
  if (core_) {
    healthy = healthy && core_->healthy();
    std::string why = core_->unhealthy_reason();
    if (!core_->record_error().empty())
      reason = cat("cannot persist the node record: ", core_->record_error(), "; ", reason);
    else if (!why.empty() && reason.find(why) == std::string::npos)
      reason = cat(reason, "; ", why);
  }
  for (auto& p : work_.probes)
    if (p->critical() && p->state() == ProbeState::failing)
      reason = cat(reason, "; critical probe ", p->name(), " is failing");
  auto now = Clock::now();
  bool held = services_wanted_ && fence_held(now);
  if (held)
    reason = cat(reason, "; services held after the guard's fence until the peer is known not to ",
                 "take over");
  if (std::string svc = over_budget(); !svc.empty())
    reason = cat(reason, "; service ", svc, " is over its restart budget");
  json n = {{"name", config_.node_name},
            {"role", config_.role},
            {"state", core_ ? to_string(core_->state()) : "passive"},
            {"wait", core_ ? to_string(core_->wait()) : "none"},
            {"epoch", core_ ? core_->epoch() : 0},
            {"healthy", healthy},
            {"serving", core_ && core_->state() == NodeState::active && healthy},
            {"reason", reason},
            {"recovering", core_ && core_->wait() == Wait::recovering},
            {"pid", getpid()},
            {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()}};
  if (!record_note_.empty()) n["record_note"] = record_note_;
  if (held)
    n["services_held_s"] = seconds(
        std::max<Duration>(std::chrono::duration_cast<Duration>(held_until_ - now), Duration(0)));
  if (core_) {
    // Loud problems of the pair, as the core sees them.
    if (!core_->healthy()) n["unhealthy"] = core_->unhealthy_reason();
    if (!core_->role_conflict().empty()) n["role_conflict"] = core_->role_conflict();
    if (!core_->epoch_refused().empty()) n["epoch_refused"] = core_->epoch_refused();
    if (core_->state() == NodeState::stopping) n["target"] = to_string(core_->durable_state());
  }
  n["state_s"] = std::chrono::duration<double>(Clock::now() - state_since_).count();
  json transitions = json::array();
  for (auto& [edge, count] : transitions_)
    transitions.push_back({{"from", edge.first}, {"to", edge.second}, {"count", count}});
  n["transitions"] = transitions;
  return n;
}

Duration Pair::guard_fence() const {
  if (!config_.peer) return Duration(0);
  const PeerConfig& p = *config_.peer;
  Duration peer_dead = peer_timing_.known() ? Duration(peer_timing_.dead_after_us) : p.dead_after;
  return vac::guard_fence(p.heartbeat, p.dead_after, peer_dead);
}

std::string Pair::timing_mismatch() const {
  if (!config_.peer) return "";
  const PeerConfig& p = *config_.peer;
  return vac::timing_mismatch(p.name, p.heartbeat, p.dead_after, peer_timing_);
}

void Pair::check_timing() {
  std::string why = timing_mismatch();
  if (why == timing_logged_) return;
  if (why.empty())
    log_info("node", "peer ", config_.peer->name, " now runs this node's heartbeat and dead_after");
  else if (why.find("between two") != std::string::npos)
    log_error("node", why);
  else
    log_warn("node", why);
  timing_logged_ = why;
}

json Pair::peer_status() const {
  if (!config_.peer) {
    json p = {{"state", "none"}};
    if (link_) link_->add_status(p);  // linkd serving the endpoints alone
    return p;
  }
  json p = {{"name", config_.peer->name}};
  bool reachable = core_ && core_->peer_reachable();
  p["state"] = reachable ? "up" : (core_ && core_->peer() ? "lost" : "unknown");
  if (core_ && core_->peer()) {
    p["node_state"] = to_string(core_->peer()->state);
    p["epoch"] = core_->peer()->epoch;
    p["healthy"] = core_->peer()->healthy;
    p["role"] = to_string(core_->peer()->role);
  }
  if (peer_timing_.known())
    p["timing"] = {{"heartbeat_s", seconds(Duration(peer_timing_.heartbeat_us))},
                   {"dead_after_s", seconds(Duration(peer_timing_.dead_after_us))}};
  if (std::string why = timing_mismatch(); !why.empty()) p["timing_mismatch"] = why;
  if (link_) link_->add_status(p);
  return p;
}

json Pair::command(const std::string& cmd, bool failback, bool on) {
  Event e;
  if (cmd == "takeover")
    e.kind = Event::op_takeover;
  else if (cmd == "release")
    e.kind = Event::op_release;
  else if (cmd == "recover")
    e.kind = Event::op_recover, e.flag = failback;
  else if (cmd == "maintenance")
    e.kind = on ? Event::op_maintenance_on : Event::op_maintenance_off;
  else
    return {{"ok", false}, {"code", 2}, {"error", cat("unknown command ", quote(cmd))}};
  bool recover = e.kind == Event::op_recover && core_->state() == NodeState::failed;
  log_info("control", cmd, e.kind == Event::op_recover && failback ? " --failback" : "");
  feed(e);
  if (!core_->refused().empty()) return {{"ok", false}, {"code", 1}, {"error", core_->refused()}};
  if (recover) {
    // The probes are re-run from scratch: their fresh verdict, not the old one, decides.
    for (auto& p : work_.probes) p->reset_verdict();
    for (auto& s : work_.services) s->budget().clear();
    fed_health_.reset(), fed_budget_.reset();
    feed_verdicts();
  }
  return {{"ok", true},
          {"message",
           cat(config_.node_name, ": ", to_string(core_->state()), " (", core_->reason(), ")")}};
}

// What the endpoints' verdicts depend on, cheap to build every tick (status() is not).
std::string Pair::status_signature() const {
  std::string s = cat(to_string(core_->state()), ' ', core_->epoch(), ' ', core_->healthy(), ' ',
                      core_->peer_reachable(), ' ', shutdown_ != Shutdown::none, ';');
  for (auto& svc : work_.services) s += cat(svc->name(), ' ', svc->ready(), svc->want_up, ';');
  for (auto& p : work_.probes) s += cat(p->name(), ' ', to_string(p->state()), ';');
  return s;
}

void Pair::feed_status() {
  if (!link_ || !link_->running() || !status_doc_ ||
      (config_.endpoint_http.empty() && config_.endpoint_agent_check.empty()))
    return;
  std::string sig = status_signature();
  Duration period =
      config_.peer ? config_.peer->heartbeat : Duration(std::chrono::milliseconds(200));
  if (sig == last_status_signature_ && Clock::now() - last_status_sent_ < period) return;
  last_status_signature_ = sig;
  last_status_sent_ = Clock::now();
  link_->status(status_doc_());
}

}  // namespace vac
