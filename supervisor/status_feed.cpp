// The status document linkd's load-balancer endpoints answer from: sent as a `status` line at
// once when anything an endpoint looks at changes, and at least every peer heartbeat so the
// durations and counters in /metrics stay current. linkd believes it only while the
// supervisor's lease (its per-tick heartbeat line) holds; see vacataire-endpoints(7).
#include "common/text.hpp"
#include "supervisor.hpp"

namespace vac {

bool Supervisor::serves_endpoints() const {
  return !config_.endpoint_http.empty() || !config_.endpoint_agent_check.empty();
}

// What the endpoints' verdicts depend on, cheap to build every tick (status() is not).
std::string Supervisor::status_signature() const {
  std::string s;
  if (core_)
    s = cat(to_string(core_->state()), ' ', core_->epoch(), ' ', core_->healthy(), ' ',
            core_->peer_reachable(), ' ', shutting_down_, ' ', healthy(), ';');
  for (auto& svc : services_) s += cat(svc->name(), ' ', svc->ready(), svc->want_up, ';');
  for (auto& p : probes_) s += cat(p->name(), ' ', to_string(p->state()), ';');
  return s;
}

void Supervisor::feed_status() {
  if (!serves_endpoints() || linkd_in_ < 0) return;
  std::string sig = status_signature();
  Duration period =
      config_.peer ? config_.peer->heartbeat : Duration(std::chrono::milliseconds(200));
  if (sig == last_status_signature_ && Clock::now() - last_status_sent_ < period) return;
  last_status_signature_ = sig;
  last_status_sent_ = Clock::now();
  to_linkd(encode_status_line(status()));
}

}  // namespace vac
