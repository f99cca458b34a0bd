#include "verdict.hpp"

namespace vac {

const char* to_string(ProbeState s) {
  switch (s) {
    case ProbeState::unknown:
      return "unknown";
    case ProbeState::passing:
      return "passing";
    case ProbeState::failing:
      return "failing";
  }
  return "unknown";
}

bool Verdict::record(Status s) {
  ProbeState before = state;
  if (s == Status::fail) {
    ++consecutive_fail;
    consecutive_pass = 0;
    if (consecutive_fail >= fall) state = ProbeState::failing;
  } else {
    ++consecutive_pass;
    consecutive_fail = 0;
    if (consecutive_pass >= rise) state = ProbeState::passing;
  }
  return state != before;
}

bool node_health(const std::vector<ProbeHealth>& probes, bool recovering) {
  for (auto& p : probes) {
    if (!p.critical || !p.running) continue;
    if (p.state == ProbeState::failing) return false;
    if (recovering && p.state != ProbeState::passing) return false;
  }
  return true;
}

}  // namespace vac
