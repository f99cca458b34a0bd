// Golden output of the human status view.
#include <doctest/doctest.h>

#include "status_view.hpp"

using json = nlohmann::json;

TEST_CASE("the status table, aligned, with wanted state and backoff shown") {
  json st = {{"node",
              {{"name", "web1"},
               {"role", "master"},
               {"state", "active"},
               {"epoch", 3},
               {"healthy", true}}},
             {"peer", {{"state", "none"}}},
             {"services",
              {{"app",
                {{"state", "up"},
                 {"pid", 1234},
                 {"want", "up"},
                 {"uptime_s", 75.2},
                 {"restarts", 0},
                 {"last_exit", "-"}}},
               {"web",
                {{"state", "backoff"},
                 {"pid", nullptr},
                 {"want", "up"},
                 {"backoff_s", 0.4},
                 {"restarts", 4},
                 {"last_exit", "exit 1"}}}}},
             {"probes", json::object()}};
  CHECK(vac::render_status(st) ==
        "node web1 (master)  state active  healthy yes  epoch 3\n"
        "peer none configured\n"
        "\n"
        "SERVICE  STATE       PID   UPTIME  RESTARTS  LAST EXIT\n"
        "app      up          1234  1m15s   0         -\n"
        "web      backoff 0s  -     -       4         exit 1\n");
}

TEST_CASE("ages") {
  CHECK(vac::format_age(5) == "5s");
  CHECK(vac::format_age(65) == "1m05s");
  CHECK(vac::format_age(3600 * 2 + 60 * 3) == "2h03m");
  CHECK(vac::format_age(86400 * 2 + 3600) == "2d1h");
}
