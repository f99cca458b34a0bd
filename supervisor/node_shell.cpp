// The imperative shell around NodeCore: what the supervisor feeds it and how its actions are
// carried out (services wanted or not, the node record, messages through linkd).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <fstream>
#include <sstream>

#include "common/install_dirs.hpp"
#include "common/json_util.hpp"
#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "node_store.hpp"
#include "supervisor.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
// What this node's heartbeats and commands tell the peer (common/link_messages.hpp).
NodeReport report_of(const PeerMessage& m, const std::string& configured_role) {
  std::string role = m.role == Role::unknown ? configured_role : to_string(m.role);
  return {to_string(m.state), m.epoch, m.healthy, role};
}

PeerKind kind_of(const PeerMessage& m) {
  static const PeerKind kinds[] = {PeerKind::heartbeat, PeerKind::takeover, PeerKind::quiesce,
                                   PeerKind::stopped};
  return kinds[m.kind];
}

bool message_from_line(const PeerLine& p, PeerMessage& m) {
  static const PeerMessage::Kind kinds[] = {PeerMessage::heartbeat, PeerMessage::takeover,
                                            PeerMessage::quiesce, PeerMessage::stopped};
  m.kind = kinds[static_cast<int>(p.kind)];
  if (!parse_node_state(p.report.state, m.state)) return false;
  m.epoch = p.report.epoch;
  m.healthy = p.report.healthy;
  if (!parse_role(p.report.role, m.role)) m.role = Role::unknown;
  return true;
}
}  // namespace

// Reads the peer key: at least 32 bytes, and readable by root alone.
bool load_peer_key(const std::string& path, Key& key, std::string& err) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return err = sys_error(cat("peer.key_file ", path)), false;
  if (st.st_mode & 077)
    return err = cat("peer.key_file ", path, " is readable by group or others (chmod 600 ", path,
                     ")"),
           false;
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (!parse_key_hex(ss.str(), key, err))
    return err = cat("peer.key_file ", path, ": ", err), false;
  return true;
}

Time Supervisor::now() const {
  return std::chrono::duration_cast<Duration>(Clock::now() - started_);
}

bool Supervisor::start_node(std::string& err) {
  NodePolicy policy;
  policy.master = config_.role == "master";
  policy.name = config_.node_name;
  if (config_.peer) policy.peer_name = config_.peer->name;
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
  tick_.set<Supervisor, &Supervisor::on_tick>(this);
  // The tick is linkd's lease on this supervisor (interfaces): min(50 ms, heartbeat / 2).
  double tick = config_.peer ? std::min(0.05, seconds(config_.peer->heartbeat) / 2) : 0.05;
  tick_.start(tick, tick);
  linkd_restart_.set<Supervisor, &Supervisor::on_linkd_restart>(this);
  linkd_io_.set<Supervisor, &Supervisor::on_linkd_output>(this);
  state_since_ = Clock::now();
  // linkd also serves the endpoints: it runs with a peer, or with endpoints alone.
  if (config_.peer || serves_endpoints()) start_linkd();
  return true;
}

// The service over its restart budget, if any (rule 1's second trigger).
std::string Supervisor::over_budget() const {
  auto now = std::chrono::duration_cast<Duration>(Clock::now().time_since_epoch());
  for (auto& s : services_)
    if (s->budget().exceeded(now, config_.restart.budget, config_.restart.budget_window))
      return s->name();
  return "";
}

std::vector<ProbeHealth> Supervisor::probe_health() const {
  std::vector<ProbeHealth> out;
  for (auto& p : probes_) out.push_back({p->critical(), p->running(), p->state()});
  return out;
}

bool Supervisor::node_healthy() const {
  return over_budget().empty() && node_health(probe_health(), recovering_);
}

void Supervisor::feed(Event e) {
  if (!core_) return;
  NodeState before = core_->state();
  auto actions = core_->handle(e, now());
  std::optional<Event> written;  // the core's next event: the result of its write
  for (auto& a : actions) {
    switch (a.kind) {
      case Action::persist: {
        std::string err;
        bool ok =
            save_node_record(config_.state_dir, {core_->durable_state(), core_->epoch()}, err);
        if (!ok && core_->record_error().empty()) {
          log_error("node", "cannot persist the node record: ", err);
          notifier_.emit({"persist_failed", to_string(core_->state()), to_string(before),
                          cat("cannot persist the node record: ", err), "", "", core_->epoch()});
        }
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
        to_linkd(encode_send_line(kind_of(a.message), report_of(a.message, config_.role)));
        break;
      case Action::notify:
        log_info("node", to_string(before), " -> ", to_string(core_->state()), ": ",
                 core_->reason());
        notifier_.emit({"state", to_string(core_->state()), to_string(before), core_->reason(), "",
                        "", core_->epoch()});
        break;
    }
  }
  if (core_->state() != before) {
    ++transitions_[{to_string(before), to_string(core_->state())}];
    state_since_ = Clock::now();
  }
  if (core_->state() != NodeState::failed) recovering_ = false;
  // Probes of the services themselves run while this node serves, from a clean verdict.
  bool serving = core_->state() == NodeState::active;
  for (auto& p : probes_) {
    if (!p->active_scope() || shutting_down_) continue;
    if (serving && !p->running()) p->start();
    if (!serving && p->running()) p->pause();
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
  // Every tick, changed or not: the heartbeat line is the supervisor's lease in linkd.
  to_linkd(encode_heartbeat_line(report_of(core_->heartbeat(), config_.role)));
  feed_status();
  changed();
}

// Services have reached what the node wanted: tell the core.
void Supervisor::after_reconcile() {
  if (!core_ || shutting_down_) return;
  std::string svc = over_budget();
  if (svc != budget_logged_) {
    if (!svc.empty()) {
      std::string why = cat("service ", svc, " restarted more than ", config_.restart.budget,
                            " times within ", format_duration(config_.restart.budget_window));
      log_warn("node", why);
      notifier_.emit({"service_over_budget", to_string(core_->state()), to_string(core_->state()),
                      why, "", svc, core_->epoch()});
    }
    budget_logged_ = svc;
  }
  bool health = node_healthy();
  if (health != health_fed_ && !recovering_) {
    health_fed_ = health;
    return feed(Event(Event::health, health));
  }
  bool all_up = true, all_down = retiring_.empty();
  for (auto& s : services_) {
    if (s->want_up) all_up &= s->ready();
    all_down &= s->idle();
  }
  if (core_->state() == NodeState::starting && services_wanted_ && all_up)
    feed(Event::services_up);
  else if (core_->state() == NodeState::stopping && !services_wanted_ && all_down)
    feed(Event::services_down);
}

void Supervisor::on_tick(ev::timer&, int) {
  if (core_) feed(Event::tick);
}

void Supervisor::start_linkd() {
  int in[2], out[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0) {
    log_error("linkd", sys_error("pipe"));
    return;
  }
  SpawnSpec s;
  s.exe = helper_executable("vacataire-linkd");
  s.env = base_env();
  s.fds = {{0, in[0]}, {1, out[1]}, {2, 2}};
  std::string err;
  pid_t pid = start_child(
      s,
      [this](pid_t p, int status) {
        if (p != linkd_pid_) return;
        linkd_pid_ = 0;
        forget_group(p);
        linkd_io_.stop();
        close(linkd_in_), close(linkd_out_);
        linkd_in_ = linkd_out_ = -1;
        if (shutting_down_) return changed();
        // A restart of linkd alone is not the peer's loss: the core hears nothing of it.
        auto up = std::chrono::duration_cast<Duration>(Clock::now() - linkd_started_);
        Duration d = linkd_backoff_.next_delay(config_.restart, up);
        log_warn("linkd", "exited (", describe_wait_status(status), "); restarting",
                 d.count() ? cat(" in ", format_duration(d)) : "");
        ++linkd_restarts_;
        linkd_restart_.start(std::max(seconds(d), 0.001), 0);
      },
      err);
  close(in[0]), close(out[1]);
  if (pid < 0) {
    close(in[1]), close(out[0]);
    log_error("linkd", "cannot start: ", err);
    linkd_restart_.start(1, 0);
    return;
  }
  linkd_pid_ = pid;
  linkd_started_ = Clock::now();
  record_group(pid, "linkd", "linkd");
  linkd_in_ = in[1], linkd_out_ = out[0];
  fcntl(linkd_in_, F_SETFL, fcntl(linkd_in_, F_GETFL) | O_NONBLOCK);
  fcntl(linkd_out_, F_SETFL, fcntl(linkd_out_, F_GETFL) | O_NONBLOCK);
  linkd_reader_.reset();
  linkd_io_.start(linkd_out_, ev::READ);
  LinkdSettings ls;
  ls.node = config_.node_name;
  if (config_.peer) {
    ls.peer = config_.peer->name;
    ls.links = config_.peer->links;
    ls.key_hex = key_hex(key_);
    ls.heartbeat = config_.peer->heartbeat;
    ls.dead_after = config_.peer->dead_after;
  }
  ls.user = config_.user;
  ls.endpoints = {config_.endpoint_http, config_.endpoint_agent_check,
                  config_.endpoint_agent_inactive};
  to_linkd(encode_config_line(ls));
  to_linkd(encode_heartbeat_line(report_of(core_->heartbeat(), config_.role)));
  last_status_sent_ = {};  // a new linkd knows nothing yet
}

void Supervisor::on_linkd_restart(ev::timer&, int) {
  if (!shutting_down_ && linkd_pid_ == 0) start_linkd();
}

void Supervisor::stop_linkd() {
  if (linkd_pid_ <= 0) return;
  close(linkd_in_);  // linkd ends when its stdin closes
  linkd_in_ = -1;
  kill(linkd_pid_, SIGTERM);
}

void Supervisor::to_linkd(const std::string& line) {
  if (linkd_in_ < 0) return;
  // Never block on linkd: a line it cannot take now is dropped; heartbeats repeat anyway.
  if (write(linkd_in_, line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    log_warn("linkd", "not reading its input; a line was dropped");
}

void Supervisor::on_linkd_output(ev::io&, int) {
  auto r = linkd_reader_.read_from(linkd_out_, [this](std::string_view line, bool truncated) {
    if (!truncated) on_linkd_line(line);
  });
  if (r != LineReader::ReadResult::again) linkd_io_.stop();
}

void Supervisor::on_linkd_line(std::string_view line) {
  std::string err;
  auto m = decode_from_linkd(line, err);
  if (!m) return log_warn("linkd", err);
  switch (m->kind) {
    case FromLinkd::ready:
      log_info("linkd", "ready on ", m->links, " links");
      break;
    case FromLinkd::error:
      log_error("linkd", m->message);
      break;
    case FromLinkd::stats:
      link_stats_ = stats_json(m->stats_value);
      break;
    case FromLinkd::lost:
      if (!config_.peer) break;
      log_warn("node", "peer ", config_.peer->name, " lost: silent on every link");
      if (core_->peer_reachable())
        notifier_.emit({"peer_lost", to_string(core_->state()), to_string(core_->state()),
                        cat("peer ", config_.peer->name, " silent on every link"), "", "",
                        core_->epoch()});
      feed(Event::peer_lost);
      break;
    case FromLinkd::peer: {
      if (!config_.peer) break;
      PeerMessage pm;
      if (!message_from_line(m->peer_value, pm))
        return log_warn("linkd", "peer message with an unknown state ",
                        quote(m->peer_value.report.state));
      if (!core_->peer_reachable())
        notifier_.emit({"peer_found", to_string(core_->state()), to_string(core_->state()),
                        cat("peer ", config_.peer->name, " heard (", to_string(pm.state), ")"), "",
                        "", core_->epoch()});
      feed(Event(pm));
      break;
    }
  }
}

json Supervisor::node_status() const {
  bool stopping = shutting_down_;
  json n = {{"name", config_.node_name},
            {"role", config_.role},
            {"state", core_ ? to_string(core_->state()) : "passive"},
            {"epoch", core_ ? core_->epoch() : 0},
            {"healthy", healthy()},
            {"serving", core_ && core_->state() == NodeState::active && healthy()},
            {"reason", stopping ? "shutting down"
                       : core_  ? core_->reason()
                                : ""},
            {"recovering", recovering_},
            {"wait", core_ ? to_string(core_->wait()) : "none"},
            {"pid", getpid()},
            {"uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()}};
  if (!record_note_.empty()) n["record_note"] = record_note_;
  if (core_) {
    // Loud problems of the pair, as the core sees them.
    if (!core_->healthy()) n["unhealthy"] = core_->unhealthy_reason();
    if (!core_->role_conflict().empty()) n["role_conflict"] = core_->role_conflict();
    if (!core_->epoch_refused().empty()) n["epoch_refused"] = core_->epoch_refused();
  }
  if (core_ && core_->state() == NodeState::stopping)
    n["target"] = to_string(core_->durable_state());
  n["state_s"] = std::chrono::duration<double>(Clock::now() - state_since_).count();
  json transitions = json::array();
  for (auto& [edge, count] : transitions_)
    transitions.push_back({{"from", edge.first}, {"to", edge.second}, {"count", count}});
  n["transitions"] = transitions;
  return n;
}

json Supervisor::peer_status() const {
  if (!config_.peer) return {{"state", "none"}};
  json p = {{"name", config_.peer->name}};
  bool reachable = core_ && core_->peer_reachable();
  p["state"] = reachable ? "up" : (core_ && core_->peer() ? "lost" : "unknown");
  if (core_ && core_->peer()) {
    p["node_state"] = to_string(core_->peer()->state);
    p["epoch"] = core_->peer()->epoch;
    p["healthy"] = core_->peer()->healthy;
  }
  p["linkd_pid"] = linkd_pid_ > 0 ? json(linkd_pid_) : json(nullptr);
  p["linkd_restarts"] = linkd_restarts_;
  if (link_stats_.is_object()) {
    p["links"] = link_stats_["links"];
    p["counters"] = link_stats_["datagrams"];  // datagrams received, by verdict
    p["kernel_drops"] = link_stats_["kernel_drops"];
    p["linkd_lease"] = link_stats_["supervisor_fresh"];
  }
  return p;
}

json Supervisor::handle_node_command(const std::string& cmd, const json& req) {
  Event e;
  if (cmd == "takeover")
    e.kind = Event::op_takeover;
  else if (cmd == "release")
    e.kind = Event::op_release;
  else if (cmd == "recover")
    e.kind = Event::op_recover, e.flag = req.value("failback", false);
  else if (cmd == "maintenance")
    e.kind = req.value("on", true) ? Event::op_maintenance_on : Event::op_maintenance_off;
  if (e.kind == Event::op_recover && core_->state() == NodeState::failed) {
    // The probes are re-run from scratch: their fresh verdict, not the old one, decides.
    for (auto& p : probes_) p->reset_verdict();
    for (auto& s : services_) s->budget().clear();
    recovering_ = true;
  }
  log_info("control", cmd, req.value("failback", false) ? " --failback" : "");
  feed(e);
  if (!core_->refused().empty()) {
    if (e.kind == Event::op_recover) recovering_ = false;
    return {{"ok", false}, {"code", 1}, {"error", core_->refused()}};
  }
  if (e.kind == Event::op_recover) feed(Event(Event::health, health_fed_ = node_healthy()));
  return {{"ok", true},
          {"message",
           cat(config_.node_name, ": ", to_string(core_->state()), " (", core_->reason(), ")")}};
}

}  // namespace vac
