#include "peer_link.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>

#include "common/install_dirs.hpp"
#include "common/json_util.hpp"
#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "linkd.hpp"
#include "preflight.hpp"
#include "state_dir.hpp"

namespace vac {

namespace {
NodeReport report_of(const PeerMessage& m) {
  return {to_string(m.state), m.epoch, m.healthy, m.role == Role::standby ? "standby" : "master"};
}

PeerMessage::Kind kind_of(PeerKind k) {
  switch (k) {
    case PeerKind::heartbeat:
      return PeerMessage::heartbeat;
    case PeerKind::takeover:
      return PeerMessage::takeover;
    case PeerKind::quiesce:
      return PeerMessage::quiesce;
    case PeerKind::stopped:
      return PeerMessage::stopped;
  }
  return PeerMessage::heartbeat;
}

PeerKind peer_kind(PeerMessage::Kind k) {
  switch (k) {
    case PeerMessage::heartbeat:
      return PeerKind::heartbeat;
    case PeerMessage::takeover:
      return PeerKind::takeover;
    case PeerMessage::quiesce:
      return PeerKind::quiesce;
    case PeerMessage::stopped:
      return PeerKind::stopped;
  }
  return PeerKind::heartbeat;
}

}  // namespace

bool load_peer_key(const std::string& path, Key& key, std::string& err) {
  return load_key_file(path, key, err);  // the one key-file check (preflight.hpp)
}

RestartConfig linkd_restart_policy(Duration dead_after) {
  RestartConfig r;
  r.backoff = std::chrono::milliseconds(10);
  r.backoff_max = std::max<Duration>(dead_after / 4, r.backoff);
  // A linkd that lived a few dead_afters was not crash-looping: its next death restarts at once.
  r.stable_after = std::max<Duration>(4 * dead_after, std::chrono::seconds(1));
  r.min_start_interval = Duration(0);  // the capped doubling above is linkd's pacing
  return r;
}

PeerLink::PeerLink(const Config& config, const Key& key, ServiceHost& host, Handlers handlers,
                   uint64_t incarnation)
    : config_(config),
      key_(key),
      host_(host),
      handlers_(std::move(handlers)),
      restart_(linkd_restart_policy(config.peer ? config.peer->dead_after : Duration(1s))),
      wanted_(config.peer || !config.endpoint_http.empty() || !config.endpoint_agent_check.empty()),
      incarnation_(incarnation) {
  io_.set<PeerLink, &PeerLink::on_output>(this);
  restart_timer_.set<PeerLink, &PeerLink::on_restart>(this);
  kill_timer_.set<PeerLink, &PeerLink::on_kill>(this);
  watchdog_.set<PeerLink, &PeerLink::on_watchdog>(this);
}

PeerLink::~PeerLink() {
  restart_timer_.stop();
  kill_timer_.stop();
  watchdog_.stop();
  io_.stop();
  // linkd_'s destructor kills its group and closes the pipes.
}

void PeerLink::close_pipes() {
  io_.stop();
  in_ = out_ = -1;
  child_.release();
}

// The linkd child goes through Child (child.hpp) like every other; its pipes are child_'s.
void PeerLink::start() {
  if (stopping_ || child_.running() || !wanted_) return;
  restart_timer_.stop();
  std::string err;
  int in = child_.add_pipe(0, true, err);
  int out = in < 0 ? -1 : child_.add_pipe(1, false, err);
  SpawnSpec s;
  s.exe = helper_executable("vacataire-linkd");
  s.env = host_.base_env();
  s.fds = {{2, 2}};
  bool started = out >= 0 && child_.start(
                                 host_.children(), s, ChildLabel{"linkd", "linkd"},
                                 [this](int status) { on_exit(status); }, err);
  if (!started) {
    child_.release();
    log_error("linkd", "cannot start: ", err, "; retrying in ",
              format_duration(restart_.backoff_max));
    restart_timer_.start(seconds(restart_.backoff_max), 0);
    return;
  }
  started_ = Clock::now();
  last_line_ = {};  // watched from its first line on
  watch_cpu_ = 0;
  silence_killed_ = false;
  if (config_.peer) {
    Duration look = linkd_silence_limit(config_.peer->dead_after) / 4;
    watchdog_.start(seconds(look), seconds(look));
  }
  heard_ = error_this_run_ = false;
  stats_ = nlohmann::json();  // counters of this linkd only, from its first stats line
  pace_ = config_.peer ? config_.peer->dead_after / 2 : Duration(0);
  in_ = in, out_ = out;
  reader_.reset();
  io_.start(out_, ev::READ);
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
  ls.incarnation = incarnation_;
  ls.endpoints = {config_.endpoint_http, config_.endpoint_agent_check,
                  config_.endpoint_agent_inactive};
  write_line(encode_config_line(ls));
  if (last_heartbeat_) write_line(encode_heartbeat_line(report_of(*last_heartbeat_)));
  if (!last_status_.empty()) write_line(last_status_);
  if (handlers_.started) handlers_.started();
}

void PeerLink::on_exit(int status) {
  close_pipes();
  kill_timer_.stop();
  watchdog_.stop();
  if (stopping_) {
    if (handlers_.exited) handlers_.exited();
    return;
  }
  if (planned_) {  // replaced by a reload: the new one at once, no backoff
    planned_ = terminating_ = false;
    // SIGTERM before its handler was installed (replaced while starting) is expected too.
    bool clean = WIFEXITED(status) ? WEXITSTATUS(status) == 0
                                   : WIFSIGNALED(status) && WTERMSIG(status) == SIGTERM;
    if (!clean) log_warn("linkd", "the replaced linkd ended: ", describe_wait_status(status));
    if (wanted_) start();
    if (!wanted_) log_info("linkd", "stopped: no peer and no endpoints any more");
    return;
  }
  if (!wanted_) return;
  if (rejected_) {  // the new settings never made a linkd ready: not worth a retry
    auto rejected = std::move(rejected_);
    rejected_ = nullptr;
    return rejected(last_error_.empty() ? cat("linkd ", describe_wait_status(status))
                                        : last_error_);
  }
  auto up = std::chrono::duration_cast<Duration>(Clock::now() - started_);
  Duration d = backoff_.next_delay(restart_, up);
  log_warn("linkd", "exited (", describe_wait_status(status), "); restarting",
           d.count() ? cat(" in ", format_duration(d)) : "");
  ++restarts_;
  if (d.count() == 0) return start();
  restart_timer_.start(seconds(d), 0);
}

void PeerLink::on_restart(ev::timer&, int) {
  if (child_.running()) return replace();
  start();
}

void PeerLink::reconfigure(std::function<void(const std::string&)> rejected) {
  rejected_ = std::move(rejected);
  wanted_ = config_.peer || !config_.endpoint_http.empty() || !config_.endpoint_agent_check.empty();
  restart_ = linkd_restart_policy(config_.peer ? config_.peer->dead_after : Duration(1s));
  backoff_ = Backoff{};  // a new config is not the old one's crash loop
  ++reloads_;
  if (stopping_) return;
  if (!child_.running()) return start();  // none, or one waiting out a backoff: at once
  planned_ = true;
  replace();
}

void PeerLink::replace() {
  if (!planned_ || terminating_ || !child_.running()) return;
  auto up = std::chrono::duration_cast<Duration>(Clock::now() - started_);
  // One that heard the peer has a confirmed session: a quarter of dead_after (and two
  // heartbeats) of it lets the peer confirm ours too before the next replacement.
  Duration settled = config_.peer ? std::max(2 * config_.peer->heartbeat, pace_ / 2) : Duration(0);
  if (up < pace_ && !(heard_ && up >= settled)) {
    restart_timer_.start(seconds(pace_ - up), 0);
    return;
  }
  if (config_.peer && handlers_.busy && handlers_.busy()) {
    if (!waited_busy_) log_info("linkd", "restart waits for the handshake with the peer to end");
    waited_busy_ = true;
    restart_timer_.start(seconds(std::max<Duration>(config_.peer->heartbeat, 10ms)), 0);
    return;
  }
  waited_busy_ = false;
  terminating_ = true;
  if (in_ >= 0) child_.close_fd(in_);  // linkd ends when its stdin closes, or on SIGTERM
  in_ = -1;
  kill(child_.pid(), SIGTERM);
  Duration grace = config_.peer ? config_.peer->dead_after / 4 : Duration(0);
  kill_timer_.start(seconds(std::max<Duration>(grace, std::chrono::milliseconds(100))), 0);
}

void PeerLink::on_kill(ev::timer&, int) {
  if (!child_.running()) return;
  log_warn("linkd", "pid ", child_.pid(), " did not stop when told to; killing it");
  child_.kill();
}

// A linkd that writes nothing for linkd_silence_limit (dead_after / 2) while it should report
// every dead_after / 6 is stopped (SIGSTOP, a debugger, a frozen cgroup) or stuck. It no longer
// heartbeats, so the peer takes over once its dead_after runs out, while this node, which hears
// nothing either, goes on serving: both would serve until linkd wakes. Killed now, it is
// restarted at once (a first quick death) and heard by the peer again before then.
void PeerLink::on_watchdog(ev::timer&, int) {
  if (!config_.peer || !child_.running() || stopping_ || terminating_ || silence_killed_) return;
  auto now = Clock::now();
  Duration limit = linkd_silence_limit(config_.peer->dead_after);
  // This loop stalled (the gap between looks): what linkd wrote meanwhile may still be waiting,
  // and its silence is not measured yet. Give it a fresh window.
  bool stalled = last_watch_ != Clock::time_point{} && now - last_watch_ > limit / 2;
  last_watch_ = now;
  if (last_line_ == Clock::time_point{}) return;  // not a word yet: the start has its own checks
  if (stalled) {
    last_line_ = now;
    return;
  }
  // Its CPU time at each look: runnable yet not advancing is starved, not stuck.
  ProcStat st;
  bool known = read_proc_stat(child_.pid(), st);
  unsigned long long cpu_before = watch_cpu_;
  watch_cpu_ = known ? st.cpu_ticks : 0;
  if (now - last_line_ < limit) return;
  on_output(io_, ev::READ);  // lines waiting in the pipe count
  if (!child_.running() || now - last_line_ < limit) return;
  // Waiting for a CPU like everything else on a loaded machine: a new linkd would wait too, and
  // lose the session this one holds. Stopped (T), traced (t), blocked (D, or S without its
  // timers firing) or spinning (R with its CPU time growing) is killed.
  if (known && st.state == 'R' && st.cpu_ticks == cpu_before) {
    if (!starved_logged_)
      log_warn(
          "linkd", "pid ", child_.pid(), " silent for ",
          format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(now - last_line_)),
          " but waiting for a CPU: left running");
    starved_logged_ = true;
    return;
  }
  ++stalls_;
  silence_killed_ = true;  // once: SIGKILL of a process in a system call may take a moment
  log_error(
      "linkd", "pid ", child_.pid(), " silent for ",
      format_duration(std::chrono::duration_cast<std::chrono::milliseconds>(now - last_line_)),
      " (stopped or stuck): killing it, so that a new one heartbeats before the peer's "
      "dead_after runs out");
  child_.kill();
}

void PeerLink::stop() {
  stopping_ = true;
  restart_timer_.stop();
  kill_timer_.stop();
  if (!child_.running()) return;
  if (in_ >= 0) child_.close_fd(in_);  // linkd ends when its stdin closes
  in_ = -1;
  kill(child_.pid(), SIGTERM);
}

void PeerLink::heartbeat(const PeerMessage& hb) {
  last_heartbeat_ = hb;
  write_line(encode_heartbeat_line(report_of(hb)));
}

void PeerLink::send(const PeerMessage& m) {
  write_line(encode_send_line(peer_kind(m.kind), report_of(m)));
}

void PeerLink::status(const json& doc) {
  last_status_ = encode_status_line(doc);
  write_line(last_status_);
}

void PeerLink::write_line(const std::string& line) {
  if (in_ < 0) return;
  // Never block on linkd: a line it cannot take now is dropped and counted. Heartbeats repeat
  // every tick; a command lost this way is covered by the plain rules' deadlines.
  ssize_t n = write(in_, line.data(), line.size());
  if (n == static_cast<ssize_t>(line.size())) return;
  if (dropped_++ % 100 == 0)
    log_warn("linkd",
             n < 0 && errno != EAGAIN ? sys_error("cannot write to linkd")
                                      : "not reading its input; a line was dropped",
             " (", dropped_, " so far)");
  if (n > 0) {  // half a line would garble the next one: start linkd afresh
    log_warn("linkd", "a line was cut short; restarting linkd");
    child_.kill();
    child_.close_fd(in_);
    in_ = -1;
  }
}

void PeerLink::on_output(ev::io&, int) {
  auto r = reader_.read_from(out_, [this](std::string_view line, bool truncated) {
    if (!truncated) on_line(line);
  });
  if (r != LineReader::ReadResult::again) io_.stop();
}

void PeerLink::on_line(std::string_view line) {
  last_line_ = Clock::now();
  starved_logged_ = false;
  std::string err;
  auto m = decode_from_linkd(line, err);
  if (!m) return log_warn("linkd", "garbled line from linkd: ", err);
  switch (m->kind) {
    case FromLinkd::ready:
      log_info("linkd", "ready on ", m->links, " links, as uid ", m->uid);
      if (!error_this_run_) last_error_.clear();
      rejected_ = nullptr;  // the new settings work
      break;
    case FromLinkd::error:
      log_error("linkd", m->message);
      last_error_ = m->message;
      error_this_run_ = true;
      break;
    case FromLinkd::stats:
      stats_ = stats_json(m->stats_value);
      break;
    case FromLinkd::lost:
      if (!config_.peer) break;
      log_warn("node", "peer ", config_.peer->name, " lost: silent on every link");
      if (handlers_.lost) handlers_.lost();
      break;
    case FromLinkd::peer: {
      if (!config_.peer) break;
      heard_ = true;
      PeerMessage p;
      p.kind = kind_of(m->peer_value.kind);
      const NodeReport& r = m->peer_value.report;
      if (!parse_node_state(r.state, p.state))
        return log_warn("linkd", "bad peer message from linkd: unknown state ", quote(r.state));
      p.epoch = r.epoch;
      p.healthy = r.healthy;
      if (!parse_role(r.role, p.role)) p.role = Role::unknown;
      p.incarnation = m->peer_value.incarnation;
      const LinkTiming& t = m->peer_value.timing;
      if (t.known() && !(t == peer_timing_)) {
        peer_timing_ = t;
        if (handlers_.timing) handlers_.timing(t);
      }
      if (handlers_.message) handlers_.message(p);
      break;
    }
  }
}

void PeerLink::add_status(json& p) const {
  p["linkd_pid"] = child_.running() ? json(child_.pid()) : json(nullptr);
  p["linkd_restarts"] = restarts_;
  p["linkd_reloads"] = reloads_;
  p["linkd_stalls"] = stalls_;
  if (!last_error_.empty()) p["linkd_error"] = last_error_;
  if (dropped_) p["linkd_dropped_lines"] = dropped_;
  if (stats_.is_object()) {
    auto field = [&](const char* k, json def) {
      auto it = stats_.find(k);
      return it != stats_.end() && it->type() == def.type() ? *it : def;
    };
    p["links"] = field("links", json::array());
    // Datagrams by verdict (ok, bad_tag, replay, ...); "counters" is the older name.
    p["datagrams"] = field("datagrams", json::object());
    p["counters"] = p["datagrams"];
    p["kernel_drops"] = field("kernel_drops", json(uint64_t(0)));
    p["linkd_lease_fresh"] = field("supervisor_fresh", json(true));
  }
}

}  // namespace vac
