// The supervisor's and its helpers' own log lines: timestamp, level, component, message, as
// text or as one JSON object per line. One write(2) per line, so lines from several processes
// sharing stderr never interleave.
#pragma once

#include <functional>
#include <string>
#include <string_view>

#include "text.hpp"

namespace vac {

enum class Level { debug, info, warn, error };

bool parse_level(std::string_view s, Level& out);
void log_set_json(bool json);
void log_set_level(Level level);
void log_set_fd(int fd);
// Where finished lines go instead of a plain write(2) to the fd: the supervisor's loop sets a
// non-blocking, bounded writer here. nullptr restores the plain write.
void log_set_sink(std::function<void(std::string_view line)> sink);
void log_line(Level level, std::string_view component, std::string_view message);

template <typename... Args>
void log_debug(std::string_view component, const Args&... args) {
  log_line(Level::debug, component, cat(args...));
}
template <typename... Args>
void log_info(std::string_view component, const Args&... args) {
  log_line(Level::info, component, cat(args...));
}
template <typename... Args>
void log_warn(std::string_view component, const Args&... args) {
  log_line(Level::warn, component, cat(args...));
}
template <typename... Args>
void log_error(std::string_view component, const Args&... args) {
  log_line(Level::error, component, cat(args...));
}

}  // namespace vac
