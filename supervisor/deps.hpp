// Dependency order of services, pure: a topological order for starting (dependencies first),
// with unknown names and cycles reported as config errors that name the services involved.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace vac {

// deps: service -> the services it depends on. On success, order lists every service after
// all of its dependencies (ties broken by name, so the order is stable).
bool dependency_order(const std::map<std::string, std::vector<std::string>>& deps,
                      std::vector<std::string>& order, std::vector<std::string>& errors);

}  // namespace vac
