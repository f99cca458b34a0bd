// Reading services.d/NAME/ directories (see vacataire-services(5)), runit/s6 style: the
// filesystem is the configuration, one file per knob. Loading is separate from running, so
// `vacataire check-config` reports the same errors `run` would, each naming its file.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/duration.hpp"

namespace vac {

struct ServiceSpec {
  std::string name;
  std::string dir;                   // absolute or as configured
  bool down = false;                 // `down` present: not started automatically
  std::vector<std::string> depends;  // `depends`: one name per line
  bool has_finish = false;
  bool has_ready = false;
  int notification_fd = -1;                           // `notification-fd`
  Duration timeout_stop = std::chrono::seconds(10);   // `timeout-stop`
  Duration timeout_finish = std::chrono::seconds(5);  // `timeout-finish`
  int stop_signal = 15;                               // `down-signal`
  std::map<std::string, std::string> env;             // `env/`: set (value) ...
  std::vector<std::string> unset_env;                 // ... or unset (empty file)
  bool has_log = false;                               // `log/run`

  bool operator==(const ServiceSpec&) const = default;
};

// Loads every service below dir (sub-directories whose names do not start with '.'), checks
// them and their dependencies, and returns them in start order. Every problem found is added
// to errors; the result is only usable when errors stayed empty.
std::vector<ServiceSpec> load_services(const std::string& dir, std::vector<std::string>& errors);

// Loads one service directory (no dependency checks).
ServiceSpec load_service(const std::string& dir, const std::string& name,
                         std::vector<std::string>& errors);

bool parse_signal(const std::string& name, int& sig);

// Knob files are read whole up to this size; a bigger one is refused, never read.
constexpr size_t kMaxKnobBytes = 64 * 1024;

// The pure half of loading, from bytes (what the fuzzer drives): applies one knob file's
// content (knob is "depends", "notification-fd", "timeout-stop", "timeout-finish" or
// "down-signal"; "env/NAME" for an environment file) to spec. Text that is not UTF-8, a NUL
// byte (outside env/), or a bad value is an error naming path; nothing throws.
bool apply_knob(std::string_view knob, std::string_view bytes, const std::string& path,
                ServiceSpec& spec, std::vector<std::string>& errors);

// A service name (a directory name, or a line of `depends`): printable UTF-8, no '/', not
// starting with '.', at most 255 bytes. Empty err when valid.
std::string check_service_name(std::string_view name);

}  // namespace vac
