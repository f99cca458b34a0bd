// What a SIGHUP may change in a running node, decided before anything is touched (pure: two
// configurations and two keys in, a plan out). Three kinds of change:
// - fixed at run time (the node's identity, the core's policy, the state directory and the
//   control socket): refused, whole, with what to do instead;
// - dangerous while the peer is up (the key, or every link at once): the other node still
//   uses the old ones, so both would lose each other and both would serve; refused while the
//   peer is heard, with the safe procedure, and applied when it is not;
// - the rest applies: the peer section's other keys, user and endpoints by a planned restart
//   of linkd (the peer re-handshakes, the core hears nothing), services, probes, notify_dir
//   and the restart policy in place.
#pragma once

#include <string>
#include <vector>

#include "common/config.hpp"
#include "wire.hpp"

namespace vac {

struct ReloadPlan {
  // Each names the key, the change and what to do. Not empty: nothing of the reload applies.
  std::vector<std::string> refused;
  // linkd runs with something that changed: it is restarted with the new settings.
  bool restart_link = false;
  std::vector<std::string> link_changes;  // "heartbeat 20ms -> 50ms", for the log
};

// now/now_key: what runs; next/next_key: what was read. peer_up: this node hears its peer now.
ReloadPlan plan_reload(const Config& now, const Key& now_key, const Config& next,
                       const Key& next_key, bool peer_up);

// The addresses linkd would bind with next that the running linkd does not hold already (new
// link listen addresses, new endpoints): each is tried now, so a reload that would leave
// linkd unable to start is refused while the old one still runs. One error per address.
std::vector<std::string> check_new_addresses(const Config& now, const Config& next);

}  // namespace vac
