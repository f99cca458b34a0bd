// Durations as written in the config file and the service directories: "200ms", "1s", "1m30s",
// "2.5s". One parser for every executable, so every knob reads the same way.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace vac {

using Duration = std::chrono::microseconds;

// Accepts a sequence of <number><unit> with units us, ms, s, m, h. A bare number is refused
// (an operator writing "5" may mean seconds or milliseconds) unless bare_unit is given.
bool parse_duration(std::string_view text, Duration& out, std::string& err,
                    std::string_view bare_unit = {});

// Shortest exact spelling: 1500ms -> "1.5s", 90s -> "1m30s".
std::string format_duration(Duration d);

inline double seconds(Duration d) {
  return std::chrono::duration<double>(d).count();
}

}  // namespace vac
