// SIGHUP: the Supervisor's reload, the shell around reload.hpp's plan. Everything is checked
// before anything changes; then services, probes and hooks are updated in place and linkd is
// replaced through the Pair when what it runs with changed.
#include "common/install_dirs.hpp"
#include "common/log.hpp"
#include "preflight.hpp"
#include "reload.hpp"
#include "supervisor.hpp"

namespace vac {

// The same validation as check-config and run (preflight.hpp), then what may change at run
// time (reload.hpp): a reload that would fail, or change what cannot change now, is refused
// whole, and the running configuration stays.
void Supervisor::reload() {
  if (shutting_down_) return log_info("reload", "the supervisor is stopping; SIGHUP ignored");
  std::vector<std::string> errors;
  LoadedNode loaded;
  if (!load_node(config_.file, loaded, errors)) return reload_refused(errors);
  Config& next = loaded.config;
  ReloadPlan plan = plan_reload(config_, pair_.key(), next, loaded.key, pair_.peer_up());
  // A linkd that could not do all it was asked (a port then taken) tries again on a SIGHUP,
  // even with the file unchanged: the operator freed the port and reloads.
  if (std::string err = pair_.link_error(); !plan.restart_link && !err.empty()) {
    plan.restart_link = true;
    plan.link_changes.push_back(cat("retrying after linkd's error (", err, ")"));
  }
  if (plan.refused.empty() && plan.restart_link) plan.refused = check_new_addresses(config_, next);
  if (!plan.refused.empty()) return reload_refused(plan.refused);

  auto specs = std::move(loaded.specs);
  config_.restart = next.restart;
  if (next.notify_dir != config_.notify_dir || next.notify_timeout != config_.notify_timeout)
    log_info("reload", "notify_dir ", next.notify_dir.empty() ? "(none)" : next.notify_dir);
  config_.notify_dir = next.notify_dir;
  config_.notify_timeout = next.notify_timeout;
  notifier_.configure(config_.notify_dir, config_.notify_timeout,
                      {config_.node_name, config_.role, config_.peer ? config_.peer->name : ""});
  if (next.control_group != config_.control_group) {
    log_info("reload", "control_group ",
             next.control_group.empty() ? "(none)" : next.control_group);
    control_.set_control_group(loaded.control_gid);
  }
  config_.control_group = next.control_group;
  config_.services_dir = next.services_dir;
  bool probes_moved = next.probes_dir != config_.probes_dir;
  if (probes_moved) {
    log_info("reload", "probes_dir ", next.probes_dir.empty() ? "(default)" : next.probes_dir,
             ": every probe restarts");
    config_.probes_dir = next.probes_dir;
    probes_dir_ = config_.probes_dir.empty() ? default_probes_dir() : config_.probes_dir;
  }
  set_probes(next.probes, probes_moved);
  config_.probes = next.probes;
  if (plan.restart_link) {
    std::string changes;
    for (auto& c : plan.link_changes) changes += (changes.empty() ? "" : ", ") + c;
    log_info("reload", "peer link restarted: ", changes);
    // A linkd that cannot start with the new settings (a port taken since it was checked)
    // would leave the peer without this node: the previous ones come back at once.
    auto back = [this, old = config_, key = pair_.key()](const std::string& why) {
      log_error("reload", "linkd could not start with the new settings (", why,
                "); running it with the previous peer section, user and endpoints");
      set_link_config(old);
      arm_guard();
      pair_.reload_link(key);
      last_reload_["result"] = "reverted";
      last_reload_["errors"] = {why};
    };
    set_link_config(next);
    arm_guard();  // the fence follows heartbeat and dead_after
    pair_.reload_link(loaded.key, back);
  }
  log_info("reload", "reloaded ", config_.file, ": ", specs.size(), " services");
  last_reload_ = {{"count", ++reloads_},
                  {"result", "applied"},
                  {"at_uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
                  {"link_changes", plan.link_changes}};
  set_services(std::move(specs));
  changed();
}

// Pair and PeerLink read these from config_: set before linkd is replaced.
void Supervisor::set_link_config(const Config& from) {
  config_.peer = from.peer;
  config_.user = from.user;
  config_.endpoint_http = from.endpoint_http;
  config_.endpoint_agent_check = from.endpoint_agent_check;
  config_.endpoint_agent_inactive = from.endpoint_agent_inactive;
}

void Supervisor::reload_refused(const std::vector<std::string>& why) {
  for (auto& e : why) log_error("reload", e);
  log_error("reload", "configuration and services not reloaded; still running the previous ones");
  last_reload_ = {{"count", ++reloads_},
                  {"result", "refused"},
                  {"at_uptime_s", std::chrono::duration<double>(Clock::now() - started_).count()},
                  {"errors", why}};
}

}  // namespace vac
