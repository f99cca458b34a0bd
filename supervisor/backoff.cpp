#include "backoff.hpp"

namespace vac {

Duration Backoff::next_delay(const RestartConfig& policy, Duration uptime) {
  if (uptime >= policy.stable_after) {
    young_deaths = 0;
    return Duration(0);
  }
  ++young_deaths;
  // The first young death may be bad luck (a port still in TIME_WAIT, a dependency restarting):
  // retry at once, then double from `backoff`.
  if (young_deaths == 1) return Duration(0);
  Duration d = policy.backoff;
  for (int i = 2; i < young_deaths && d < policy.backoff_max; ++i) d *= 2;
  return d < policy.backoff_max ? d : policy.backoff_max;
}

bool RestartBudget::exceeded(Duration now, int budget, Duration window) {
  std::erase_if(restarts_, [&](Duration t) { return now - t > window; });
  return budget > 0 && static_cast<int>(restarts_.size()) > budget;
}

}  // namespace vac
