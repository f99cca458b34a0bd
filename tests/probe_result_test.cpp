#include <doctest/doctest.h>

#include "common/probe_result.hpp"

using namespace vac;
using json = nlohmann::json;

TEST_CASE("result lines round-trip and are validated strictly") {
  ProbeResult r{Status::warn, "slow", {{"t", {{"value", 3}}}}};
  std::string line = encode_result(7, r);
  CHECK(line.back() == '\n');
  long long n = 0;
  ProbeResult back;
  std::string err;
  REQUIRE(decode_result(line.substr(0, line.size() - 1), n, back, err));
  CHECK(n == 7);
  CHECK(back.status == Status::warn);
  CHECK(back.detail == "slow");
  CHECK(back.metrics["t"]["value"] == 3);

  auto bad = [&](const char* text) {
    CHECK_FALSE(decode_result(text, n, back, err));
    return err;
  };
  CHECK(bad("nope") == "not valid JSON");
  CHECK(bad("[1]") == "not a JSON object");
  CHECK(bad(R"({"status":"ok"})") == "no integer \"check\"");
  CHECK(bad(R"({"check":"1","status":"ok"})") == "no integer \"check\"");
  CHECK(bad(R"({"check":1})") == "no string \"status\"");
  CHECK(bad(R"({"check":1,"status":"fine"})") == "status \"fine\" is not ok, warn or fail");
  CHECK(bad(R"({"check":1,"status":"ok","detail":3})") == "\"detail\" is not a string");
  CHECK(bad(R"({"check":1,"status":"ok","metrics":[]})") == "\"metrics\" is not an object");
  CHECK(decode_result(R"({"check":1,"status":"ok"})", n, back, err));
  CHECK(back.detail.empty());
}

TEST_CASE("requests") {
  CHECK(encode_request(42) == "{\"check\":42}\n");
  long long n = 0;
  std::string err;
  CHECK(decode_request("{\"check\":42}", n, err));
  CHECK(n == 42);
  CHECK_FALSE(decode_request("{\"check\":\"x\"}", n, err));
}

TEST_CASE("monitoring-plugins exit codes") {
  CHECK(status_from_exit(0) == Status::ok);
  CHECK(status_from_exit(1) == Status::warn);
  CHECK(status_from_exit(2) == Status::fail);
  CHECK(status_from_exit(3) == Status::fail);
  CHECK(status_from_exit(127) == Status::fail);
  CHECK(exit_code_for(Status::warn) == 1);
}

TEST_CASE("perfdata: values, units, thresholds, quoted labels, ranges") {
  json m = json::object();
  parse_perfdata("time=0.012s;0.5;1.0;0; size=1234B 'disk /'=80%;90;95 load=1.5 bad junk=x", m);
  CHECK(m["time"]["value"] == doctest::Approx(0.012));
  CHECK(m["time"]["uom"] == "s");
  CHECK(m["time"]["warn"] == doctest::Approx(0.5));
  CHECK(m["time"]["crit"] == doctest::Approx(1.0));
  CHECK(m["time"]["min"] == 0.0);
  CHECK_FALSE(m["time"].contains("max"));
  CHECK(m["size"]["uom"] == "B");
  CHECK(m["disk /"]["value"] == 80.0);
  CHECK(m["disk /"]["uom"] == "%");
  CHECK(m["load"]["value"] == 1.5);
  CHECK_FALSE(m.contains("bad"));
  CHECK_FALSE(m.contains("junk"));
  json r = json::object();
  parse_perfdata("users=3;@10:20;~:30", r);
  CHECK(r["users"]["warn"] == "@10:20");
}

TEST_CASE("plugin output: detail from the first line, perfdata from every line") {
  std::string detail;
  json m = json::object();
  parse_plugin_output(
      "DISK OK - free space: / 3326 MB | /=2643MB;5948;5958;0;5968\n"
      "/ 15272 MB (77%);\n"
      "/boot 68 MB (69%); | /boot=68MB;88;93;0;98\n",
      detail, m);
  CHECK(detail == "DISK OK - free space: / 3326 MB");
  CHECK(m["/"]["value"] == 2643.0);
  CHECK(m["/"]["max"] == 5968.0);
  CHECK(m["/boot"]["crit"] == 93.0);
  parse_plugin_output("", detail, m);
  CHECK(detail.empty());
}
