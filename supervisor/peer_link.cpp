#include "peer_link.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <sstream>

#include "common/install_dirs.hpp"
#include "common/json_util.hpp"
#include "common/log.hpp"
#include "linkd.hpp"
#include "preflight.hpp"

namespace vac {

namespace {
json message_json(const PeerMessage& m) {
  return {{"kind", to_string(m.kind)},
          {"state", to_string(m.state)},
          {"epoch", m.epoch},
          {"healthy", m.healthy},
          {"role", to_string(m.role)}};
}

bool message_from_json(const json& j, PeerMessage& m, std::string& err) {
  if (!j.is_object()) return err = "not an object", false;
  Fields f(j, "peer message");
  std::string kind = f.str("kind", "", true), state = f.str("state", "", true);
  std::string role = f.str("role");
  m.epoch = f.uinteger("epoch");
  m.healthy = f.boolean("healthy");
  if (!f.ok()) return err = f.error(), false;
  if (kind == "heartbeat")
    m.kind = PeerMessage::heartbeat;
  else if (kind == "takeover")
    m.kind = PeerMessage::takeover;
  else if (kind == "quiesce")
    m.kind = PeerMessage::quiesce;
  else if (kind == "stopped")
    m.kind = PeerMessage::stopped;
  else
    return err = cat("unknown kind ", quote(kind)), false;
  if (!parse_node_state(state, m.state)) return err = cat("unknown state ", quote(state)), false;
  if (!parse_role(role, m.role)) m.role = Role::unknown;  // an older peer does not say
  return true;
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
  return r;
}

PeerLink::PeerLink(const Config& config, const Key& key, ServiceHost& host, Handlers handlers)
    : config_(config),
      key_(key),
      host_(host),
      handlers_(std::move(handlers)),
      restart_(linkd_restart_policy(config.peer ? config.peer->dead_after : Duration(1s))),
      wanted_(config.peer || !config.endpoint_http.empty() ||
              !config.endpoint_agent_check.empty()) {
  io_.set<PeerLink, &PeerLink::on_output>(this);
  restart_timer_.set<PeerLink, &PeerLink::on_restart>(this);
}

PeerLink::~PeerLink() {
  restart_timer_.stop();
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
  in_ = in, out_ = out;
  reader_.reset();
  io_.start(out_, ev::READ);
  LinkdConfig lc;
  lc.node = config_.node_name;
  if (config_.peer) {
    lc.peer = config_.peer->name;
    lc.links = config_.peer->links;
    lc.key = key_;
    lc.heartbeat = config_.peer->heartbeat;
    lc.dead_after = config_.peer->dead_after;
  }
  lc.user = config_.user;
  lc.endpoints = {config_.endpoint_http, config_.endpoint_agent_check,
                  config_.endpoint_agent_inactive};
  write_line({{"config", linkd_config_json(lc)}});
  if (!last_heartbeat_.is_null()) write_line({{"heartbeat", last_heartbeat_}});
  if (!last_status_.is_null()) write_line({{"status", last_status_}});
}

void PeerLink::on_exit(int status) {
  close_pipes();
  if (stopping_) {
    if (handlers_.exited) handlers_.exited();
    return;
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
  start();
}

void PeerLink::stop() {
  stopping_ = true;
  restart_timer_.stop();
  if (!child_.running()) return;
  if (in_ >= 0) child_.close_fd(in_);  // linkd ends when its stdin closes
  in_ = -1;
  kill(child_.pid(), SIGTERM);
}

void PeerLink::heartbeat(const PeerMessage& hb) {
  json j = message_json(hb);
  j.erase("kind");
  last_heartbeat_ = j;
  write_line({{"heartbeat", j}});
}

void PeerLink::send(const PeerMessage& m) {
  write_line({{"send", message_json(m)}});
}

void PeerLink::status(const json& doc) {
  last_status_ = doc;
  write_line({{"status", doc}});
}

void PeerLink::write_line(const json& j) {
  if (in_ < 0) return;
  std::string line = dump_json(j) + "\n";
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
  std::string err;
  auto parsed = parse_json(line, err);
  if (!parsed || !parsed->is_object())
    return log_warn("linkd", "garbled line from linkd: ", err.empty() ? "not an object" : err);
  const json& j = *parsed;
  Fields f(j, "linkd line");
  if (f.has("ready"))
    log_info("linkd", "ready on ", Fields(f.sub("ready", "object"), "ready").integer("links"),
             " links");
  if (f.has("error")) log_error("linkd", f.str("error", "error"));
  if (f.has("stats") && j["stats"].is_object()) stats_ = j["stats"];
  if (!f.ok()) return log_warn("linkd", f.error());
  if (f.has("lost")) {
    if (!config_.peer) return;
    log_warn("node", "peer ", config_.peer->name, " lost: silent on every link");
    if (handlers_.lost) handlers_.lost();
  }
  if (f.has("peer") && config_.peer) {
    PeerMessage m;
    if (!message_from_json(j["peer"], m, err))
      return log_warn("linkd", "bad peer message from linkd: ", err);
    if (handlers_.message) handlers_.message(m);
  }
}

void PeerLink::add_status(json& p) const {
  p["linkd_pid"] = child_.running() ? json(child_.pid()) : json(nullptr);
  p["linkd_restarts"] = restarts_;
  if (dropped_) p["linkd_dropped_lines"] = dropped_;
  if (stats_.is_object()) {
    auto links = stats_.find("links");
    auto counters = stats_.find("counters");
    p["links"] = links != stats_.end() && links->is_array() ? *links : json::array();
    p["counters"] = counters != stats_.end() && counters->is_object() ? *counters : json::object();
  }
}

}  // namespace vac
