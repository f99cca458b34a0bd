#include <doctest/doctest.h>

#include "verdict.hpp"

using namespace vac;

TEST_CASE("fall consecutive failures make a probe failing; rise passes make it passing") {
  Verdict v{3, 2};
  CHECK(v.state == ProbeState::unknown);
  CHECK_FALSE(v.record(Status::fail));
  CHECK_FALSE(v.record(Status::fail));
  CHECK(v.record(Status::fail));
  CHECK(v.state == ProbeState::failing);
  CHECK_FALSE(v.record(Status::ok));
  CHECK(v.state == ProbeState::failing);
  CHECK(v.record(Status::ok));
  CHECK(v.state == ProbeState::passing);
}

TEST_CASE("a pass in between resets the failure count") {
  Verdict v{3, 1};
  v.record(Status::ok);
  REQUIRE(v.state == ProbeState::passing);
  for (int i = 0; i < 10; ++i) {
    v.record(Status::fail);
    v.record(Status::fail);
    v.record(Status::ok);
    CHECK(v.state == ProbeState::passing);
  }
}

TEST_CASE("warn counts as a pass; fail and rise 1 flip at once") {
  Verdict v{1, 1};
  CHECK(v.record(Status::warn));
  CHECK(v.state == ProbeState::passing);
  CHECK(v.record(Status::fail));
  CHECK(v.state == ProbeState::failing);
  CHECK(v.consecutive_fail == 1);
  CHECK(v.record(Status::ok));
}

TEST_CASE("node health: critical running probes only; recovering wants them passing") {
  using S = ProbeState;
  CHECK(node_health({}, false));
  CHECK(node_health({{true, true, S::passing}, {true, true, S::unknown}}, false));
  CHECK_FALSE(node_health({{true, true, S::passing}, {true, true, S::failing}}, false));
  CHECK(node_health({{false, true, S::failing}}, false));      // non-critical: reports only
  CHECK(node_health({{true, false, S::failing}}, false));      // not running: active scope, passive
  CHECK_FALSE(node_health({{true, true, S::unknown}}, true));  // recovering: a fresh pass needed
  CHECK(node_health({{true, true, S::passing}, {false, true, S::unknown}}, true));
}
