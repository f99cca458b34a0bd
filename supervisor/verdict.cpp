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

void Verdict::begin_start_period(Duration now) {
  starting = start_period > Duration(0);
  start_began = now;
  ignored = 0;
}

bool Verdict::record(Status s, Duration now) {
  ProbeState before = state;
  if (starting && s == Status::fail && in_start_period(now)) {
    ++ignored;  // the services are still coming up: this one does not count
    return false;
  }
  starting = false;  // the first pass, or the period is over: failures count from here
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
