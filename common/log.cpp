#include "log.hpp"

#include <sys/time.h>
#include <unistd.h>
#include <ctime>

#include "json_util.hpp"

namespace vac {

namespace {
bool g_json = false;
Level g_level = Level::info;
int g_fd = 2;
std::function<void(std::string_view)> g_sink;
const char* const kNames[] = {"debug", "info", "warn", "error"};

std::string timestamp() {
  timeval tv{};
  gettimeofday(&tv, nullptr);
  tm t{};
  gmtime_r(&tv.tv_sec, &t);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(tv.tv_usec / 1000));
  return buf;
}
}  // namespace

bool parse_level(std::string_view s, Level& out) {
  for (int i = 0; i < 4; ++i)
    if (s == kNames[i]) return out = static_cast<Level>(i), true;
  return false;
}

void log_set_json(bool json) {
  g_json = json;
}
void log_set_level(Level level) {
  g_level = level;
}
void log_set_fd(int fd) {
  g_fd = fd;
}
void log_set_sink(std::function<void(std::string_view line)> sink) {
  g_sink = std::move(sink);
}

void log_line(Level level, std::string_view component, std::string_view message) {
  if (level < g_level) return;
  std::string line;
  const char* name = kNames[static_cast<int>(level)];
  if (g_json) {
    nlohmann::json j = {{"ts", timestamp()},
                        {"level", name},
                        {"component", std::string(component)},
                        {"msg", std::string(message)}};
    line = dump_json(j);
  } else {
    line = cat(timestamp(), ' ', name, ' ', component, ": ", message);
  }
  line += '\n';
  if (g_sink) return g_sink(line);
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(g_fd, p, left);
    if (n <= 0) return;  // nowhere to log to: never block or crash the supervisor over it
    p += n, left -= static_cast<size_t>(n);
  }
}

}  // namespace vac
