#include <doctest/doctest.h>

#include "common/duration.hpp"

using namespace vac;
using namespace std::chrono_literals;

static Duration parse_ok(const char* text) {
  Duration d{};
  std::string err;
  REQUIRE_MESSAGE(parse_duration(text, d, err), err);
  return d;
}

static std::string parse_err(const char* text, std::string_view bare = {}) {
  Duration d{};
  std::string err;
  CHECK_FALSE(parse_duration(text, d, err, bare));
  return err;
}

TEST_CASE("durations in every unit and in combination") {
  CHECK(parse_ok("200ms") == 200ms);
  CHECK(parse_ok("1s") == 1s);
  CHECK(parse_ok("2.5s") == 2500ms);
  CHECK(parse_ok("1m30s") == 90s);
  CHECK(parse_ok("1h") == 3600s);
  CHECK(parse_ok("250us") == 250us);
  CHECK(parse_ok(" 3s ") == 3s);
}

TEST_CASE("bad durations say what is wrong") {
  CHECK(parse_err("5").find("missing unit") != std::string::npos);
  CHECK(parse_err("5x").find("unknown unit \"x\"") != std::string::npos);
  CHECK(parse_err("").find("empty") != std::string::npos);
  CHECK(parse_err("ms").find("expected a number") != std::string::npos);
  CHECK(parse_err("1..2s").find("bad number") != std::string::npos);
}

TEST_CASE("a bare number takes the given unit where one is allowed") {
  Duration d{};
  std::string err;
  CHECK(parse_duration("3", d, err, "s"));
  CHECK(d == 3s);
  CHECK(parse_duration("0.5", d, err, "s"));
  CHECK(d == 500ms);
}

TEST_CASE("formatting is short and round-trips") {
  CHECK(format_duration(1500ms) == "1.5s");
  CHECK(format_duration(90s) == "1m30s");
  CHECK(format_duration(200ms) == "200ms");
  CHECK(format_duration(250us) == "250us");
  CHECK(format_duration(0s) == "0s");
  for (auto d : {Duration(1500ms), Duration(90s), Duration(200ms), Duration(3723s)})
    CHECK(parse_ok(format_duration(d).c_str()) == d);
}
