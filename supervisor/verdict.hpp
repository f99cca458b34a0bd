// A probe's verdict with hysteresis, pure: `fall` consecutive failures make a probe failing,
// `rise` consecutive passes (ok or warn) make it passing; until either has happened since
// start, it is unknown. A start period (Docker HEALTHCHECK's --start-period) covers services
// that are starting: failures in it do not count, and the first pass ends it.
#pragma once

#include <vector>

#include "common/duration.hpp"
#include "common/probe_result.hpp"

namespace vac {

enum class ProbeState { unknown, passing, failing };
const char* to_string(ProbeState s);

struct Verdict {
  int fall = 3;
  int rise = 2;
  Duration start_period{0};
  ProbeState state = ProbeState::unknown;
  int consecutive_pass = 0;
  int consecutive_fail = 0;
  bool starting = false;    // in a start period, which began at start_began
  Duration start_began{0};  // on the caller's monotonic clock
  int ignored = 0;          // failures not counted in the current start period

  // The services this probe checks are (re)starting: until the first pass, or start_period
  // after now, failures do not count. A zero start_period begins nothing.
  void begin_start_period(Duration now);
  bool in_start_period(Duration now) const { return starting && now - start_began < start_period; }
  // Records one result at time now; returns true when the state changed.
  bool record(Status s, Duration now = Duration(0));
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
