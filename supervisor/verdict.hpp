// A probe's verdict with hysteresis, pure: `fall` consecutive failures make a probe failing,
// `rise` consecutive passes (ok or warn) make it passing; until either has happened since
// start, it is unknown.
#pragma once

#include <vector>

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

// The node's health from its probes, pure: no running critical probe failing; while
// recovering, every running critical probe passing again (a fresh verdict, not an unknown one).
// Probes not running (active-scope probes on a node that does not serve) do not count.
struct ProbeHealth {
  bool critical;
  bool running;
  ProbeState state;
};
bool node_health(const std::vector<ProbeHealth>& probes, bool recovering);

}  // namespace vac
