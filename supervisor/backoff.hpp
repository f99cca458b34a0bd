// Restart pacing, pure: a service that ran for a stable while restarts at once; one that keeps
// dying young waits backoff, 2*backoff, 4*backoff ... up to backoff_max. It never spins.
#pragma once

#include "common/config.hpp"

namespace vac {

struct Backoff {
  int young_deaths = 0;  // consecutive runs shorter than stable_after

  // Records a run that lasted `uptime` and returns how long to wait before the next start.
  Duration next_delay(const RestartConfig& policy, Duration uptime);
};

}  // namespace vac
