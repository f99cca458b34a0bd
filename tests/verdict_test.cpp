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

TEST_CASE("start period: failures in it do not count; the first pass ends it") {
  using std::chrono::seconds;
  Verdict v{1, 1, seconds(10)};
  v.begin_start_period(seconds(100));
  CHECK(v.in_start_period(seconds(100)));
  for (int i = 0; i < 5; ++i) CHECK_FALSE(v.record(Status::fail, seconds(101 + i)));
  CHECK(v.state == ProbeState::unknown);
  CHECK(v.consecutive_fail == 0);
  CHECK(v.ignored == 5);
  CHECK(v.record(Status::ok, seconds(106)));  // the first pass ends the period early
  CHECK(v.state == ProbeState::passing);
  CHECK_FALSE(v.in_start_period(seconds(107)));
  CHECK(v.record(Status::fail, seconds(107)));  // now a failure counts at once (fall 1)
  CHECK(v.state == ProbeState::failing);
}

TEST_CASE("start period: once it has passed without a pass, failures count again") {
  using std::chrono::seconds;
  Verdict v{2, 1, seconds(10)};
  v.begin_start_period(seconds(0));
  CHECK_FALSE(v.record(Status::fail, seconds(9)));
  CHECK(v.consecutive_fail == 0);
  CHECK_FALSE(v.record(Status::fail, seconds(10)));  // the period is over: this one counts
  CHECK(v.consecutive_fail == 1);
  CHECK(v.record(Status::fail, seconds(11)));
  CHECK(v.state == ProbeState::failing);
}

TEST_CASE("start period: a restart of the services keeps a passing verdict through the restart") {
  using std::chrono::seconds;
  Verdict v{2, 1, seconds(5)};
  v.record(Status::ok, seconds(0));
  REQUIRE(v.state == ProbeState::passing);
  v.begin_start_period(seconds(50));  // `svc restart` on the active node
  for (int i = 0; i < 4; ++i) CHECK_FALSE(v.record(Status::fail, seconds(50 + i)));
  CHECK(v.state == ProbeState::passing);
  v.record(Status::ok, seconds(54));
  CHECK_FALSE(v.starting);
}

TEST_CASE("a zero start period begins nothing: Docker's default behaviour") {
  using std::chrono::seconds;
  Verdict v{1, 1};
  v.begin_start_period(seconds(0));
  CHECK_FALSE(v.starting);
  CHECK(v.record(Status::fail, seconds(0)));
  CHECK(v.state == ProbeState::failing);
}
