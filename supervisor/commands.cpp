// The supervisor's side of the control protocol: what each request does and who may ask.
#include <grp.h>
#include <unistd.h>

#include <set>

#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "endpoints.hpp"
#include "supervisor.hpp"

namespace vac {

namespace {
nlohmann::json refusal(int code, const std::string& error) {
  return {{"ok", false}, {"code", code}, {"error", error}};
}
}  // namespace

nlohmann::json Supervisor::status() const {
  auto now = Clock::now();
  nlohmann::json node = node_status();
  for (auto& p : probes_)
    if (p->critical() && p->state() == ProbeState::failing)
      node["reason"] =
          cat(node["reason"].get<std::string>(), "; critical probe ", p->name(), " is failing");
  if (std::string svc = over_budget(); !svc.empty())
    node["reason"] =
        cat(node["reason"].get<std::string>(), "; service ", svc, " is over its restart budget");
  nlohmann::json services = nlohmann::json::object();
  for (auto& s : services_) services[s->name()] = s->status(now);
  nlohmann::json probes = nlohmann::json::object();
  for (auto& p : probes_) probes[p->name()] = p->status(now);
  nlohmann::json st = {
      {"node", node},
      {"peer", peer_status()},
      {"services", services},
      {"probes", probes},
      {"notify", notifier_.status()},
      {"control", {{"refused", {{"busy", control_.refused()}, {"permission", control_refused_}}}}}};
  // Whether this node could take over now, and if not why: /standby and `status` say it.
  std::string blocker = standby_blocker(st);
  st["node"]["standby"] = {{"ready", blocker.empty()}, {"blocker", blocker}};
  return st;
}

bool Supervisor::authorized(const Caller& caller, std::string& why) const {
  if (caller.uid == 0) return true;
  if (!config_.control_group.empty()) {
    if (group* g = getgrnam(config_.control_group.c_str()); g && caller_in_group(caller, g->gr_gid))
      return true;
    why = cat("permission denied: this command needs root or membership of group ",
              config_.control_group);
  } else {
    why =
        "permission denied: this command needs root (set control_group in the config to "
        "allow a group)";
  }
  return false;
}

void Supervisor::handle(const nlohmann::json& req, const Caller& caller,
                        ControlServer::Reply reply) {
  if (!req.is_object() || !req.contains("cmd") || !req["cmd"].is_string())
    return reply(refusal(exit_code::usage, "bad request: expected {\"cmd\": ...}"));
  std::string cmd = req["cmd"];
  if (cmd == "status") return reply({{"ok", true}, {"status", status()}});
  bool node_cmd = cmd == "takeover" || cmd == "release" || cmd == "recover" || cmd == "maintenance";
  if (cmd != "svc" && cmd != "probe" && !node_cmd)
    return reply(refusal(exit_code::usage, cat("unknown command ", quote(cmd))));
  std::string why;
  if (!authorized(caller, why)) {
    log_warn("control", "refused `", cmd, "` from uid ", caller.uid, " (pid ", caller.pid, ")");
    ++control_refused_;
    return reply(refusal(exit_code::permission, why));
  }
  if (cmd == "svc") return reply(handle_svc(req));
  if (node_cmd) {
    if (shutting_down_) return reply(refusal(exit_code::failed, "the supervisor is shutting down"));
    return reply(handle_node_command(cmd, req));
  }
  handle_probe(req, std::move(reply));
}

void Supervisor::handle_probe(const nlohmann::json& req, ControlServer::Reply reply) {
  std::string name = req.value("name", "");
  std::vector<std::string> names;
  for (auto& p : probes_) {
    names.push_back(p->name());
    if (p->name() != name) continue;
    if (shutting_down_) return reply(refusal(exit_code::failed, "the supervisor is shutting down"));
    log_info("control", "probe ", name, " run on demand");
    Probe* probe = p.get();
    probe->check_now([this, probe, reply](const ProbeResult& r, double latency_ms) {
      nlohmann::json j = {{"ok", true},
                          {"name", probe->name()},
                          {"status", to_string(r.status)},
                          {"detail", r.detail},
                          {"metrics", r.metrics},
                          {"latency_ms", latency_ms},
                          {"state", to_string(probe->state())}};
      reply(j);
    });
    return;
  }
  std::string hint = closest_match(name, names);
  reply(refusal(exit_code::failed,
                cat("no probe named ", quote(name),
                    hint.empty() ? "" : cat(" (did you mean ", quote(hint), "?)"))));
}

nlohmann::json Supervisor::handle_svc(const nlohmann::json& req) {
  std::string action = req.value("action", ""), name = req.value("name", "");
  Service* s = find(name);
  if (!s) {
    std::vector<std::string> names;
    for (auto& o : services_) names.push_back(o->name());
    std::string hint = closest_match(name, names);
    return refusal(exit_code::failed,
                   cat("no service named ", quote(name),
                       hint.empty() ? "" : cat(" (did you mean ", quote(hint), "?)")));
  }
  if (shutting_down_) return refusal(exit_code::failed, "the supervisor is shutting down");

  // up pulls in what the service depends on; down takes its dependents with it.
  std::set<std::string> also;
  auto closure = [&](auto&& self, Service* root, bool deps) -> void {
    for (auto& o : services_) {
      bool linked = false;
      if (deps)
        for (auto& d : root->spec().depends) linked |= d == o->name();
      else
        for (auto& d : o->spec().depends) linked |= d == root->name();
      if (linked && also.insert(o->name()).second) self(self, o.get(), deps);
    }
  };
  std::string message;
  if (action == "up" || action == "restart") {
    closure(closure, s, true);
    for (auto& n : also) {
      Service* d = find(n);
      d->want_up = true;
      d->skip_backoff();
    }
    s->want_up = true;
    if (action == "restart")
      s->restart();
    else
      s->skip_backoff();
    message = cat(name, action == "up" ? ": up" : ": restarting");
  } else if (action == "down") {
    closure(closure, s, false);
    for (auto& n : also) find(n)->want_up = false;
    s->want_up = false;
    message = cat(name, ": down");
  } else if (action == "kill") {
    if (s->pid() <= 0) return refusal(exit_code::failed, cat(name, " is not running"));
    s->kill_now();
    message = cat(name, ": killed (SIGKILL to its process group)");
  } else {
    return refusal(exit_code::usage,
                   cat("unknown svc action ", quote(action), " (use up, down, restart or kill)"));
  }
  if (!also.empty()) {
    std::string list;
    for (auto& n : also) list += (list.empty() ? "" : ", ") + n;
    message +=
        cat(action == "down" ? " (with its dependents: " : " (with its dependencies: ", list, ")");
  }
  log_info("control", "svc ", action, ' ', name);
  changed();
  return {{"ok", true}, {"message", message}};
}

}  // namespace vac
