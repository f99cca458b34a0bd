#include <doctest/doctest.h>

#include "backoff.hpp"

using namespace vac;
using namespace std::chrono_literals;

TEST_CASE("a service that ran a stable while restarts at once, every time") {
  RestartConfig p{100ms, 30s, 1s};
  Backoff b;
  for (int i = 0; i < 10; ++i) CHECK(b.next_delay(p, 5s) == Duration(0));
}

TEST_CASE("young deaths back off exponentially to the cap, and a stable run resets") {
  RestartConfig p{100ms, 1s, 5s};
  Backoff b;
  CHECK(b.next_delay(p, 1500ms) == Duration(0));  // first one: retry at once
  CHECK(b.next_delay(p, 1500ms) == 100ms);
  CHECK(b.next_delay(p, 1500ms) == 200ms);
  CHECK(b.next_delay(p, 1500ms) == 400ms);
  CHECK(b.next_delay(p, 1500ms) == 800ms);
  CHECK(b.next_delay(p, 1500ms) == 1s);
  for (int i = 0; i < 100; ++i) CHECK(b.next_delay(p, 1500ms) == 1s);  // never overflows
  CHECK(b.next_delay(p, 6s) == Duration(0));
  CHECK(b.young_deaths == 0);
  CHECK(b.next_delay(p, 1500ms) == Duration(0));
  CHECK(b.next_delay(p, 1500ms) == 100ms);
}

TEST_CASE("two starts are at least a second apart, whatever the policy") {
  // stable_after 0: every death counts as after a stable run, which used to mean "at once".
  RestartConfig spin{0ms, 0ms, 0ms};
  Backoff b;
  for (int i = 0; i < 10; ++i) CHECK(b.next_delay(spin, 18ms) == 982ms);
  CHECK(b.next_delay(spin, Duration(0)) == kMinStartInterval);
  CHECK(b.next_delay(spin, -5ms) == kMinStartInterval);  // a clock that went backwards
  CHECK(b.next_delay(spin, 1s) == Duration(0));
  // Young deaths: the floor wins while the backoff is shorter, the backoff once it is longer.
  RestartConfig p{100ms, 4s, 1s};
  Backoff y;
  CHECK(y.next_delay(p, 10ms) == 990ms);
  CHECK(y.next_delay(p, 10ms) == 990ms);   // backoff 100ms
  CHECK(y.next_delay(p, 10ms) == 990ms);   // 200ms
  CHECK(y.next_delay(p, 10ms) == 990ms);   // 400ms
  CHECK(y.next_delay(p, 10ms) == 990ms);   // 800ms
  CHECK(y.next_delay(p, 10ms) == 1600ms);  // the backoff is longer than the floor now
  CHECK(y.next_delay(p, 10ms) == 3200ms);
  CHECK(y.next_delay(p, 10ms) == 4s);
}

TEST_CASE("the restart budget: more than N restarts within the window, and it forgets") {
  RestartBudget b;
  for (int i = 0; i < 3; ++i) b.record(Duration(std::chrono::seconds(i)));
  CHECK_FALSE(b.exceeded(3s, 3, 10s));
  b.record(3s);
  CHECK(b.exceeded(3s, 3, 10s));
  CHECK_FALSE(b.exceeded(3s, 0, 10s));       // 0: no limit
  CHECK_FALSE(b.exceeded(12500ms, 3, 10s));  // the first three fell out of the window
  b.clear();
  CHECK_FALSE(b.exceeded(13s, 0, 10s));
}
