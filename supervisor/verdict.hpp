// A probe's verdict with hysteresis, pure: `fall` consecutive failures make a probe failing,
// `rise` consecutive passes (ok or warn) make it passing; until either has happened since
// start, it is unknown.
#pragma once

#include "common/probe_result.hpp"

namespace vac {

enum class ProbeState { unknown, passing, failing };
const char* to_string(ProbeState s);

struct Verdict {
  int fall = 3;
  int rise = 2;
  ProbeState state = ProbeState::unknown;
  int consecutive_pass = 0;
  int consecutive_fail = 0;

  // Records one result; returns true when the state changed.
  bool record(Status s);
};

}  // namespace vac
