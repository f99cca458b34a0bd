#include <doctest/doctest.h>

#include "common/json_util.hpp"
#include "common/text.hpp"

using namespace vac;

TEST_CASE("dump_json and quote never throw on bytes that are not UTF-8") {
  std::string bad = "caf\xc3";  // a two-byte sequence cut in half
  CHECK_NOTHROW(dump_json(json(bad)));
  CHECK(dump_json(json(bad)) == "\"caf\xef\xbf\xbd\"");
  CHECK(quote("\xff\xfe") == "\"\xef\xbf\xbd\xef\xbf\xbd\"");
  CHECK(quote("d\xc3\xa9j\xc3\xa0") == "\"d\xc3\xa9j\xc3\xa0\"");
}

TEST_CASE("utf8_prefix cuts on character boundaries") {
  std::string s = "\xc3\xa9\xc3\xa9";  // two two-byte characters
  CHECK(utf8_prefix(s, 4) == s);
  CHECK(utf8_prefix(s, 3) == "\xc3\xa9");
  CHECK(utf8_prefix(s, 1) == "");
  std::string euro = "a\xe2\x82\xac";  // a three-byte character after one ASCII byte
  CHECK(utf8_prefix(euro, 3) == "a");
  CHECK(utf8_prefix(euro, 2) == "a");
  CHECK(utf8_prefix("abc", 2) == "ab");
  CHECK(utf8_prefix("", 2) == "");
}

TEST_CASE("parse_json reports line and column and never throws") {
  std::string err;
  CHECK(parse_json("{\"a\": 1}", err).has_value());
  CHECK_FALSE(parse_json("{\n  \"a\": ,\n}", err).has_value());
  CHECK(err.rfind("line 2, column ", 0) == 0);
  CHECK_FALSE(parse_json("\xff", err).has_value());
  CHECK_FALSE(parse_json("", err).has_value());
}

TEST_CASE("Fields reads typed fields and names the first wrong one") {
  json j = {
      {"cmd", "svc"}, {"action", 5}, {"on", true}, {"n", -3}, {"big", 18446744073709551615ull}};
  Fields f(j, "control request");
  CHECK(f.str("cmd", "", true) == "svc");
  CHECK(f.boolean("on") == true);
  CHECK(f.integer("n") == -3);
  CHECK(f.ok());
  CHECK(f.integer("big", 7) == 7);  // over INT64_MAX: not an int64
  CHECK_FALSE(f.ok());
  CHECK(f.error() == "control request: field \"big\" must be an integer");

  Fields g(j, "control request");
  CHECK(g.str("action") == "");
  CHECK(g.error() == "control request: field \"action\" must be a string");
  CHECK(g.uinteger("n") == 0);  // later reads keep the first error
  CHECK(g.error().find("\"action\"") != std::string::npos);

  Fields h(j, "x");
  CHECK(h.uinteger("big") == 18446744073709551615ull);
  CHECK(h.uinteger("n", 9) == 9);
  CHECK_FALSE(h.ok());

  Fields m(j, "x");
  m.str("missing", "", true);
  CHECK(m.error() == "x: missing field \"missing\"");

  Fields arr(json::array(), "linkd line");
  CHECK_FALSE(arr.ok());
  CHECK(arr.str("a") == "");
  CHECK(arr.sub("a", "object").is_null());
}
