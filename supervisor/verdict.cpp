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

}  // namespace vac
