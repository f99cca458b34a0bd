#include "deps.hpp"

#include <algorithm>

#include "common/text.hpp"

namespace vac {

bool dependency_order(const std::map<std::string, std::vector<std::string>>& deps,
                      std::vector<std::string>& order, std::vector<std::string>& errors) {
  size_t before = errors.size();
  std::vector<std::string> names;
  for (const auto& [name, _] : deps) names.push_back(name);
  for (const auto& [name, list] : deps)
    for (const auto& d : list) {
      if (d == name) {
        errors.push_back(cat("service ", quote(name), " depends on itself"));
      } else if (!deps.count(d)) {
        std::string hint = closest_match(d, names);
        errors.push_back(cat("service ", quote(name), " depends on unknown service ", quote(d),
                             hint.empty() ? "" : cat(" (did you mean ", quote(hint), "?)")));
      }
    }
  if (errors.size() != before) return false;

  // Depth-first search; a grey node met again closes a cycle, reported along its path.
  enum Mark { white, grey, black };
  std::map<std::string, Mark> mark;
  std::vector<std::string> path;
  order.clear();
  bool ok = true;
  auto visit = [&](auto&& self, const std::string& n) -> void {
    if (mark[n] == black || !ok) return;
    if (mark[n] == grey) {
      auto start = std::find(path.begin(), path.end(), n);
      std::string cycle;
      for (auto it = start; it != path.end(); ++it) cycle += *it + " -> ";
      errors.push_back(cat("dependency cycle: ", cycle, n));
      ok = false;
      return;
    }
    mark[n] = grey;
    path.push_back(n);
    std::vector<std::string> sorted = deps.at(n);
    std::sort(sorted.begin(), sorted.end());
    for (const auto& d : sorted) self(self, d);
    path.pop_back();
    mark[n] = black;
    order.push_back(n);
  };
  for (const auto& n : names) visit(visit, n);
  return ok;
}

}  // namespace vac
