// Small string helpers shared by every executable: building messages, trimming, and the
// "did you mean" suggestion used by config errors.
#pragma once

#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace vac {

// cat("a", 1, 'b') -> "a1b": message building without a format library.
template <typename... Args>
std::string cat(const Args&... args) {
  std::ostringstream out;
  (out << ... << args);
  return out.str();
}

std::string_view trim(std::string_view s);
std::vector<std::string> split_lines(std::string_view s);
std::string quote(std::string_view s);  // JSON-style quoting for messages; safe on any bytes
// s as valid UTF-8: every byte that does not belong to a well-formed sequence becomes U+FFFD,
// so text from a child (a probe's detail, a perfdata label) is safe to show and to serialise.
std::string utf8_clean(std::string_view s);

// The closest candidate within a small edit distance, or "" when none is close.
std::string closest_match(std::string_view word, const std::vector<std::string>& candidates);

// errno as text, with the call that failed: "open /x: No such file or directory".
std::string sys_error(std::string_view what);

}  // namespace vac
