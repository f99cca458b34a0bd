#include "endpoints.hpp"

#include "common/json_util.hpp"
#include "common/text.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
// The total readers of common/json_util.hpp: a missing or wrongly typed field is the fallback.
std::string text(const json& j, const char* key) {
  return string_member(j, key);
}
bool flag(const json& j, const char* key) {
  return bool_member(j, key);
}

std::string failing_critical_probe(const json& status) {
  const json& probes = member(status, "probes");
  if (!probes.is_object()) return "";
  for (auto& [name, p] : probes.items()) {
    const json& critical = member(p, "critical");
    bool counts = !critical.is_boolean() || critical.get<bool>();
    if (counts && text(p, "state") == "failing") return name;
  }
  return "";
}

std::string unhealthy_reason(const json& status) {
  if (std::string p = failing_critical_probe(status); !p.empty())
    return cat("critical probe ", p, " is failing");
  return "unhealthy";
}

// One line for HAProxy: no control characters (a newline would end the reply), bounded.
std::string one_line(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  if (s.size() > 200) s.resize(200);
  return s;
}
}  // namespace

std::string active_blocker(const json& status) {
  const json& node = member(status, "node");
  std::string state = text(node, "state");
  if (state != "active") return cat("state is ", state.empty() ? "unknown" : state);
  if (!flag(node, "healthy")) return unhealthy_reason(status);
  const json& services = member(status, "services");
  if (services.is_object())
    for (auto& [name, s] : services.items())
      if (text(s, "want") == "up" && !flag(s, "ready"))
        return cat("service ", name, " is not ready");
  return "";
}

std::string standby_blocker(const json& status) {
  const json& node = member(status, "node");
  std::string state = text(node, "state");
  if (state != "passive") return cat("state is ", state.empty() ? "unknown" : state);
  if (!flag(node, "healthy")) return unhealthy_reason(status);
  const json& peer = member(status, "peer");
  std::string link = text(peer, "state");
  if (link == "none") return "no peer is configured";
  if (link != "up") return cat("peer link is ", link.empty() ? "unknown" : link);
  return "";
}

EndpointAnswer endpoint_answer(std::string_view path, const json& status, bool fresh) {
  const json& node = member(status, "node");
  EndpointAnswer a;
  a.body = {{"node", text(node, "name")},
            {"role", text(node, "role")},
            {"state", text(node, "state")},
            {"epoch", member(node, "epoch")},
            {"healthy", flag(node, "healthy")}};
  if (path == "/status") {
    if (!fresh || !status.is_object()) {
      a.body = {{"error", "the supervisor is not responding"}};
      return a;
    }
    a.code = 200;
    a.body = status;
    return a;
  }
  std::string why;
  if (path == "/active")
    why = active_blocker(status);
  else if (path == "/standby")
    why = standby_blocker(status);
  else if (path == "/health")
    why = failing_critical_probe(status).empty()
              ? ""
              : cat("critical probe ", failing_critical_probe(status), " is failing");
  else
    return {404,
            {{"error", cat("no endpoint ", quote(path),
                           " (try /active, /standby, /health, /status or /metrics)")}}};
  // A supervisor not heard within its lease may be frozen: nothing it said is believed.
  if (!fresh) why = "the supervisor is not responding";
  a.code = why.empty() ? 200 : 503;
  if (!why.empty()) a.body["reason"] = why;
  return a;
}

std::string agent_reply(const json& status, bool fresh, const std::string& inactive) {
  if (!fresh) return inactive + " #the supervisor is not responding\n";
  std::string why = active_blocker(status);
  if (why.empty()) return "up ready\n";
  const json& node = member(status, "node");
  // Stopping towards anything but failed is a planned handover: let sessions finish.
  if (text(node, "state") == "stopping" && text(node, "target") != "failed") return "drain\n";
  return cat(inactive, " #", one_line(why), "\n");
}

}  // namespace vac
