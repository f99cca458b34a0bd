#include "duration.hpp"

#include <cmath>
#include <cstdlib>

#include "text.hpp"

namespace vac {

namespace {
bool unit_micros(std::string_view unit, double& per) {
  if (unit == "us") return per = 1, true;
  if (unit == "ms") return per = 1e3, true;
  if (unit == "s") return per = 1e6, true;
  if (unit == "m") return per = 60e6, true;
  if (unit == "h") return per = 3600e6, true;
  return false;
}
}  // namespace

bool parse_duration(std::string_view text, Duration& out, std::string& err,
                    std::string_view bare_unit) {
  std::string_view s = trim(text);
  if (s.empty()) return err = "empty duration (write e.g. \"200ms\" or \"1s\")", false;
  double total = 0;
  while (!s.empty()) {
    size_t i = 0;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (i == 0) return err = cat("bad duration ", quote(text), ": expected a number"), false;
    std::string num(s.substr(0, i));
    char* end = nullptr;
    double value = std::strtod(num.c_str(), &end);
    if (end != num.c_str() + num.size())
      return err = cat("bad duration ", quote(text), ": bad number ", quote(num)), false;
    s.remove_prefix(i);
    size_t j = 0;
    while (j < s.size() && std::isalpha(static_cast<unsigned char>(s[j]))) ++j;
    std::string_view unit = s.substr(0, j);
    if (unit.empty()) {
      if (bare_unit.empty() || total != 0 || !s.empty())
        return err = cat("bad duration ", quote(text),
                         ": missing unit (use us, ms, s, m or h, e.g. \"", num, "s\")"),
               false;
      unit = bare_unit;
    }
    double per = 0;
    if (!unit_micros(unit, per))
      return err = cat("bad duration ", quote(text), ": unknown unit ", quote(unit),
                       " (use us, ms, s, m or h)"),
             false;
    total += value * per;
    s.remove_prefix(j);
  }
  if (total > 1e15) return err = cat("duration ", quote(text), " is too long"), false;
  out = Duration(static_cast<long long>(std::llround(total)));
  return true;
}

std::string format_duration(Duration d) {
  long long us = d.count();
  if (us == 0) return "0s";
  std::string sign = us < 0 ? "-" : "";
  if (us < 0) us = -us;
  if (us % 1000 != 0) return cat(sign, us, "us");
  if (us < 1000000) return cat(sign, us / 1000, "ms");
  long long ms = us / 1000;
  if (ms % 1000 != 0 && ms < 60000) {
    std::string frac = cat(ms % 1000 + 1000).substr(1);
    while (frac.back() == '0') frac.pop_back();
    return cat(sign, ms / 1000, ".", frac, "s");
  }
  long long s = ms / 1000;
  std::string r = sign;
  if (s >= 3600) r += cat(s / 3600, "h"), s %= 3600;
  if (s >= 60) r += cat(s / 60, "m"), s %= 60;
  if (s) r += cat(s, "s");
  if (ms % 1000) r += cat(ms % 1000, "ms");
  return r;
}

}  // namespace vac
