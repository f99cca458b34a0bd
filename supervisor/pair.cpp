#include "pair.hpp"

#include <unistd.h>
#include <algorithm>

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

Pair::Pair(const Config& config, Workload work, ServiceHost& host)
    : config_(config), work_(work), host_(host) {
  tick_.set<Pair, &Pair::on_tick>(this);
  shutdown_timer_.set<Pair, &Pair::on_shutdown_deadline>(this);
}

Pair::~Pair() = default;

Time Pair::now() const {
  return std::chrono::duration_cast<Duration>(Clock::now() - started_);
}

bool Pair::start(std::string& err) {
  started_ = Clock::now();
  NodePolicy policy;
  policy.master = config_.role == "master";
  policy.has_peer = config_.peer.has_value();
  policy.has_witness = !config_.failover.witness.empty();
  policy.failback_auto = config_.failover.failback == "auto";
  policy.stop_without_peer = config_.failover.stop_without_peer;
  policy.startup_grace = config_.failover.startup_grace;
  policy.isolation_after = config_.failover.isolation_after;
  if (config_.peer) {
    policy.dead_after = config_.peer->dead_after;
    if (!load_peer_key(config_.peer->key_file, key_, err)) return false;
  }
  NodeRecord rec = load_node_record(config_.state_dir, record_note_);
  if (!record_note_.empty()) log_warn("node", record_note_);
  core_ = std::make_unique<NodeCore>(policy, rec.state, rec.epoch, now());
  log_info("node", config_.node_name, " (", config_.role, ") starts ", to_string(core_->state()),
           ", epoch ", core_->epoch());
  // A node that cannot write its record must not serve: it cannot tell whether an earlier run
  // failed and could not record it, so it starts failed, and serves again only after the
  // operator's recover once the record can be written.
  if (!persist()) {
    core_ = std::make_unique<NodeCore>(policy, NodeState::failed, rec.epoch, now());
    record_note_ = cat("cannot persist the node record at start-up: starting failed; fix ",
                       config_.state_dir, ", then `vacataire recover`");
    log_error("node", record_note_);
  }
  tick_.start(0, tick_period(config_));
  if (config_.peer) {
    link_ = std::make_unique<PeerLink>(
        config_, key_, host_,
        PeerLink::Handlers{[this](const PeerMessage& m) { feed(Event(m)); },
                           [this] { feed(Event::peer_lost); }, [this] { host_.changed(); }});
    link_->heartbeat(core_->heartbeat());
    link_->start();
  }
  return true;
}

// The service over its restart budget, if any (rule 1's second trigger).
std::string Pair::over_budget() const {
  auto t = std::chrono::duration_cast<Duration>(Clock::now().time_since_epoch());
  for (auto& s : work_.services)
    if (s->budget().exceeded(t, config_.restart.budget, config_.restart.budget_window))
      return s->name();
  return "";
}

std::vector<ProbeHealth> Pair::probe_health() const {
  std::vector<ProbeHealth> out;
  for (auto& p : work_.probes) out.push_back({p->critical(), p->running(), p->state()});
  return out;
}

bool Pair::node_healthy() const {
  return persist_error_.empty() && over_budget().empty() &&
         node_health(probe_health(), recovering_);
}

bool Pair::serving() const {
  return core_ && core_->state() == NodeState::active && shutdown_ == Shutdown::none &&
         persist_error_.empty() && node_health(probe_health(), false);
}

// Writes the node record; a failure is remembered (status, health) and retried every tick.
bool Pair::persist() {
  std::string err;
  if (save_node_record(config_.state_dir, {core_->durable_state(), core_->epoch()}, err)) {
    if (!persist_error_.empty()) log_info("node", "node record written again");
    persist_error_.clear();
    return true;
  }
  if (err != persist_error_)
    log_error("node", "cannot persist the node record: ", err, "; not acting on ",
              to_string(core_->state()), " until it is written (retrying)");
  persist_error_ = err;
  return false;
}

void Pair::feed(Event e) {
  if (!core_) return;
  NodeState before = core_->state();
  auto actions = core_->handle(e, now());
  bool persisted = true;
  for (auto& a : actions) {
    switch (a.kind) {
      case Action::persist:
        persisted = persist();
        break;
      case Action::start_services:
        // Durable means durable: what could not be recorded is not acted on.
        if (persisted) services_wanted_ = true;
        break;
      case Action::stop_services:
        services_wanted_ = false;  // always safe, recorded or not
        break;
      case Action::send:
        if (link_) link_->send(a.message);
        break;
      case Action::notify:
        log_info("node", to_string(before), " -> ", to_string(core_->state()), ": ",
                 core_->reason());
        break;
    }
  }
  if (core_->state() != NodeState::failed) recovering_ = false;
  // Probes of the services themselves run while this node serves, from a clean verdict.
  bool serving = core_->state() == NodeState::active;
  for (auto& p : work_.probes) {
    if (!p->active_scope() || shutdown_ != Shutdown::none) continue;
    if (serving && !p->running()) p->start();
    if (!serving && p->running()) p->pause();
  }
  if (link_) link_->heartbeat(core_->heartbeat());
  host_.changed();
}

// Services have reached what the node wanted: tell the core.
void Pair::after_reconcile() {
  if (!core_) return;
  bool all_up = true, all_down = work_.retiring.empty();
  for (auto& s : work_.services) {
    if (s->want_up) all_up &= s->ready();
    all_down &= s->idle();
  }
  if (shutdown_ != Shutdown::none) {
    if (shutdown_ != Shutdown::stopping || !all_down) return;
    if (core_->state() == NodeState::stopping) feed(Event::services_down);
    if (!hand_over_ || core_->state() != NodeState::passive || !link_running())
      return finish_shutdown("services stopped");
    shutdown_ = Shutdown::handing_over;
    // Passive and unhealthy from here on: should the takeover be lost, the peer still takes
    // the role at once rather than after dead_after.
    if (core_->healthy()) feed(Event(Event::health, false));
    log_info("node", "services stopped; waiting up to ", format_duration(config_.peer->dead_after),
             " for ", config_.peer->name, " to take over");
    shutdown_timer_.start(seconds(config_.peer->dead_after), 0);
    return;
  }
  std::string svc = over_budget();
  if (svc != budget_logged_) {
    if (!svc.empty())
      log_warn("node", "service ", svc, " restarted more than ", config_.restart.budget,
               " times within ", format_duration(config_.restart.budget_window));
    budget_logged_ = svc;
  }
  bool health = node_healthy();
  if (health != core_->healthy() && !recovering_) return feed(Event(Event::health, health));
  if (core_->state() == NodeState::starting && services_wanted_ && all_up)
    feed(Event::services_up);
  else if (core_->state() == NodeState::stopping && !services_wanted_ && all_down)
    feed(Event::services_down);
}

void Pair::on_probe_change(Probe& p) {
  if (p.name() == config_.failover.witness)
    feed(Event(Event::witness, p.state() == ProbeState::passing));
  if (shutdown_ == Shutdown::none) feed(Event(Event::health, node_healthy()));
}

void Pair::service_restarted() {
  if (!active()) return;
  for (auto& p : work_.probes)
    if (p->active_scope() && p->running()) p->begin_start_period();
}

void Pair::on_tick(ev::timer&, int) {
  if (!persist_error_.empty() && persist()) feed(Event(Event::health, node_healthy()));
  feed(Event::tick);  // also renews linkd's lease: a heartbeat line on every tick
  if (shutdown_ == Shutdown::handing_over && core_->peer_reachable() && core_->peer() &&
      (core_->peer()->state == NodeState::starting || core_->peer()->state == NodeState::active))
    finish_shutdown("the peer took over");
}

void Pair::begin_shutdown() {
  if (shutdown_ != Shutdown::none) return;
  shutdown_ = Shutdown::stopping;
  if (!link_) return;
  NodeState s = core_->state();
  if (s == NodeState::active || s == NodeState::starting) {
    feed(Event::op_release);
    hand_over_ = core_->refused().empty();
    if (hand_over_)
      log_info("node", "shutting down: handing over to ", config_.peer->name,
               " once the services are stopped");
    else
      log_warn("node", "shutting down without a handover: ", core_->refused());
  }
}

void Pair::on_shutdown_deadline(ev::timer&, int) {
  finish_shutdown("the peer did not take over in time; it will once this node is silent");
}

void Pair::finish_shutdown(const char* why) {
  shutdown_ = Shutdown::done;
  shutdown_timer_.stop();
  log_info("node", "shutdown: ", why, "; stopping linkd");
  tick_.stop();
  if (link_) link_->stop();
  host_.changed();
}

json Pair::node_status(bool healthy) const {
  healthy = healthy && persist_error_.empty();
  std::string reason = shutdown_ != Shutdown::none ? "shutting down" : core_ ? core_->reason() : "";
  if (!persist_error_.empty())
    reason = cat("cannot persist the node record: ", persist_error_, "; ", reason);
  for (auto& p : work_.probes)
    if (p->critical() && p->state() == ProbeState::failing)
      reason = cat(reason, "; critical probe ", p->name(), " is failing");
  if (std::string svc = over_budget(); !svc.empty())
    reason = cat(reason, "; service ", svc, " is over its restart budget");
  json n = {{"name", config_.node_name},
            {"role", config_.role},
            {"state", core_ ? to_string(core_->state()) : "passive"},
            {"epoch", core_ ? core_->epoch() : 0},
            {"healthy", healthy},
            {"serving", core_ && core_->state() == NodeState::active && healthy},
            {"reason", reason},
            {"recovering", recovering_},
            {"pid", getpid()},
            {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()}};
  if (!record_note_.empty()) n["record_note"] = record_note_;
  return n;
}

json Pair::peer_status() const {
  if (!config_.peer) return {{"state", "none"}};
  json p = {{"name", config_.peer->name}};
  bool reachable = core_ && core_->peer_reachable();
  p["state"] = reachable ? "up" : (core_ && core_->peer() ? "lost" : "unknown");
  if (core_ && core_->peer()) {
    p["node_state"] = to_string(core_->peer()->state);
    p["epoch"] = core_->peer()->epoch;
    p["healthy"] = core_->peer()->healthy;
  }
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
  if (e.kind == Event::op_recover && core_->state() == NodeState::failed) {
    // The probes are re-run from scratch: their fresh verdict, not the old one, decides.
    for (auto& p : work_.probes) p->reset_verdict();
    for (auto& s : work_.services) s->budget().clear();
    recovering_ = true;
  }
  log_info("control", cmd, e.kind == Event::op_recover && failback ? " --failback" : "");
  feed(e);
  if (!core_->refused().empty()) {
    if (e.kind == Event::op_recover) recovering_ = false;
    return {{"ok", false}, {"code", 1}, {"error", core_->refused()}};
  }
  if (e.kind == Event::op_recover) feed(Event(Event::health, node_healthy()));
  return {{"ok", true},
          {"message",
           cat(config_.node_name, ": ", to_string(core_->state()), " (", core_->reason(), ")")}};
}

}  // namespace vac
