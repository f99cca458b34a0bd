#include <doctest/doctest.h>

#include <algorithm>

#include "deps.hpp"

using namespace vac;

static size_t pos(const std::vector<std::string>& v, const std::string& s) {
  return static_cast<size_t>(std::find(v.begin(), v.end(), s) - v.begin());
}

TEST_CASE("every service comes after what it depends on") {
  std::map<std::string, std::vector<std::string>> deps = {
      {"web", {"app"}}, {"app", {"db", "cache"}}, {"db", {}}, {"cache", {}}, {"cron", {}}};
  std::vector<std::string> order, errors;
  REQUIRE(dependency_order(deps, order, errors));
  CHECK(order.size() == 5);
  CHECK(pos(order, "db") < pos(order, "app"));
  CHECK(pos(order, "cache") < pos(order, "app"));
  CHECK(pos(order, "app") < pos(order, "web"));
}

TEST_CASE("cycles are reported with their path") {
  std::map<std::string, std::vector<std::string>> deps = {
      {"a", {"b"}}, {"b", {"c"}}, {"c", {"a"}}, {"d", {}}};
  std::vector<std::string> order, errors;
  CHECK_FALSE(dependency_order(deps, order, errors));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0] == "dependency cycle: a -> b -> c -> a");
}

TEST_CASE("unknown and self dependencies are errors with a suggestion") {
  std::map<std::string, std::vector<std::string>> deps = {{"web", {"ap"}}, {"app", {"app"}}};
  std::vector<std::string> order, errors;
  CHECK_FALSE(dependency_order(deps, order, errors));
  REQUIRE(errors.size() == 2);
  CHECK(errors[0] == "service \"app\" depends on itself");
  CHECK(errors[1] == "service \"web\" depends on unknown service \"ap\" (did you mean \"app\"?)");
}
