// What the load-balancer-facing endpoints say, as pure functions of the supervisor's last
// status document (`vacataire status --json`) and whether the supervisor's lease is fresh.
// No I/O here: endpoint_server.* serves these answers over HTTP and HAProxy's agent-check,
// and the supervisor uses standby_blocker() for the line `vacataire status` prints.
// Every reader is total: a missing or wrongly typed field reads as "not true", so a broken
// document fails closed (503, `down`) instead of throwing. See vacataire-endpoints(7).
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vac {

// One HTTP endpoint's verdict: 200 when what it asks is true, else 503; 404 for an unknown
// path. body is the small JSON document sent on GET.
struct EndpointAnswer {
  int code = 503;
  nlohmann::json body;
};

// path is "/active", "/standby", "/health" or "/status" (anything else: 404). fresh: the
// supervisor has been heard within its lease; a stale document is never believed.
EndpointAnswer endpoint_answer(std::string_view path, const nlohmann::json& status, bool fresh);

// Why this node could not take over right now ("" when it could): not passive, unhealthy
// (a critical probe failing), or its peer not heard. What /standby and `status` report.
std::string standby_blocker(const nlohmann::json& status);

// Why this node is not the one to send traffic to ("" when it is): not active, unhealthy, or a
// wanted service not ready.
std::string active_blocker(const nlohmann::json& status);

// What HAProxy's agent-check hears, one line with its newline: "up ready" on the active node,
// "drain" while a planned handover stops this node, else `inactive` ("down" or "maint")
// followed by " #" and the reason.
std::string agent_reply(const nlohmann::json& status, bool fresh, const std::string& inactive);

}  // namespace vac
