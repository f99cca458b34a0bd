// Restart pacing, pure: a service that ran for a stable while restarts at once; one that keeps
// dying young waits backoff, 2*backoff, 4*backoff ... up to backoff_max. It never spins, whatever
// the policy says: two starts of one thing are always at least kMinStartInterval apart (runit's
// one second), so even `stable_after: "0s"` restarts a crashing service once a second at most.
#pragma once

#include <vector>

#include "common/config.hpp"

namespace vac {

constexpr Duration kMinStartInterval = RestartConfig{}.min_start_interval;

struct Backoff {
  int young_deaths = 0;  // consecutive runs shorter than stable_after

  // Records a run that lasted `uptime` (from its start to its death) and returns how long to
  // wait before the next start: at least policy.min_start_interval - uptime.
  Duration next_delay(const RestartConfig& policy, Duration uptime);

 private:
  Duration policy_delay(const RestartConfig& policy, Duration uptime);
};

// Rule 1's second trigger, pure: more than `budget` restarts within `window` is a failure of
// the node, not just of the service. A budget of 0 means no limit.
class RestartBudget {
 public:
  void record(Duration now) { restarts_.push_back(now); }
  bool exceeded(Duration now, int budget, Duration window);
  void clear() { restarts_.clear(); }

 private:
  std::vector<Duration> restarts_;
};

}  // namespace vac
