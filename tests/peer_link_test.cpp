#include <doctest/doctest.h>

#include "backoff.hpp"
#include "peer_link.hpp"

using namespace vac;
using std::chrono::milliseconds;

TEST_CASE("linkd's restarts never wait more than a quarter of dead_after") {
  for (Duration dead_after :
       {Duration(milliseconds(100)), Duration(milliseconds(150)), Duration(std::chrono::seconds(1)),
        Duration(std::chrono::seconds(10))}) {
    RestartConfig policy = linkd_restart_policy(dead_after);
    Backoff b;
    Duration total{0};
    for (int i = 0; i < 50; ++i) {
      Duration d = b.next_delay(policy, milliseconds(1));  // it dies at once, every time
      CHECK(d <= dead_after / 4);
      if (i < 3) total += d;
    }
    // Three kills in a row: back within 30 ms of waiting in all.
    CHECK(total <= milliseconds(30));
  }
}

TEST_CASE("a linkd that ran a while restarts at once") {
  RestartConfig policy = linkd_restart_policy(std::chrono::seconds(1));
  Backoff b;
  for (int i = 0; i < 10; ++i) b.next_delay(policy, milliseconds(1));
  CHECK(b.next_delay(policy, std::chrono::seconds(5)) == Duration(0));
  CHECK(b.next_delay(policy, milliseconds(1)) == Duration(0));  // a first quick death: at once
  CHECK(b.next_delay(policy, milliseconds(1)) == milliseconds(10));
}
