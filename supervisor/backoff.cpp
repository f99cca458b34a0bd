#include "backoff.hpp"

namespace vac {

namespace {
Duration paced(Duration d, Duration uptime, Duration floor) {
  if (uptime < Duration(0)) uptime = Duration(0);
  return uptime + d < floor ? floor - uptime : d;
}
}  // namespace

Duration Backoff::next_delay(const RestartConfig& policy, Duration uptime) {
  return paced(policy_delay(policy, uptime), uptime, policy.min_start_interval);
}

Duration Backoff::policy_delay(const RestartConfig& policy, Duration uptime) {
  if (uptime >= policy.stable_after) {
    young_deaths = 0;
    return Duration(0);
  }
  ++young_deaths;
  // The first young death may be bad luck (a port still in TIME_WAIT, a dependency restarting):
  // retry at once, then double from `backoff`.
  if (young_deaths == 1) return Duration(0);
  Duration d = policy.backoff > Duration(0) ? policy.backoff : kMinStartInterval;
  for (int i = 2; i < young_deaths && d < policy.backoff_max; ++i) d *= 2;
  return d < policy.backoff_max ? d : policy.backoff_max;
}

bool RestartBudget::exceeded(Duration now, int budget, Duration window) {
  std::erase_if(restarts_, [&](Duration t) { return now - t > window; });
  return budget > 0 && static_cast<int>(restarts_.size()) > budget;
}

}  // namespace vac
