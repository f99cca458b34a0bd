// The configuration file (vacataire.json, see vacataire.json(5)). Strict: unknown keys, wrong
// types and bad values are errors that name the key's path, with a "did you mean" where a
// known key is close, and syntax errors carry line and column.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "address.hpp"
#include "duration.hpp"

namespace vac {

using namespace std::chrono_literals;

struct ProbeConfig {
  std::vector<std::string> exec;
  std::string protocol = "jsonl";  // "jsonl" or "exit"
  Duration interval = 1s;
  Duration timeout = 1s;
  int fall = 3;
  int rise = 2;
  bool critical = true;
  // "node": always run, always counts. "active": checks the services themselves, so it runs
  // and counts only while this node serves (on the passive node it would always fail).
  std::string scope = "node";
  // Active scope only: after this node starts serving (or an operator restarts a service),
  // failures do not count until the first pass or until start_period has passed.
  Duration start_period = 10s;

  bool operator==(const ProbeConfig&) const = default;
};

struct LinkConfig {
  std::string listen;
  std::string peer;
};

struct PeerConfig {
  std::string name;
  std::vector<LinkConfig> links;
  std::string key_file;
  Duration heartbeat = 200ms;
  Duration dead_after = 1s;
};

struct FailoverConfig {
  std::string failback = "manual";  // "manual" or "auto"
  Duration startup_grace = 3s;
  Duration isolation_after = 3s;
  std::string witness;  // a probe name, or empty
  bool stop_without_peer = false;
};

// How services are restarted: the first death after a stable run restarts at once; deaths of
// a service younger than stable_after back off from backoff to backoff_max, doubling.
struct RestartConfig {
  Duration backoff = 100ms;
  Duration backoff_max = 30s;
  Duration stable_after = 1s;
  int budget = 10;  // more restarts of one service than this within budget_window: unhealthy
  Duration budget_window = 60s;
  // Two starts of one thing are at least this far apart whatever the above say (runit's one
  // second). Not a config key: only linkd's own policy lowers it, since its restarts must stay
  // within dead_after and are paced by their own short, capped backoff.
  Duration min_start_interval = 1s;
};

struct Config {
  std::string file;  // where it was read from
  std::string node_name;
  std::string role = "master";
  std::string state_dir = "/var/lib/vacataire";
  std::string services_dir = "/etc/vacataire/services.d";
  std::string control_socket = "/run/vacataire/control.sock";
  std::string control_group;  // may use mutating commands besides root
  std::string probes_dir;     // built-in probes; empty: the installed default
  std::optional<PeerConfig> peer;
  FailoverConfig failover;
  std::map<std::string, ProbeConfig> probes;
  std::string endpoint_http;
  std::string endpoint_agent_check;
  std::string endpoint_agent_inactive = "down";  // the agent's word for "not this node"
  std::string notify_dir;
  Duration notify_timeout = 10s;  // a hook still running then is killed
  std::string user;
  RestartConfig restart;
};

// Parses text (read from file, which relative paths are resolved against). Every path in the
// result is absolute, relative ones taken from the config file's directory. On failure,
// errors holds one message per problem, each starting with the file name.
bool parse_config(const std::string& text, const std::string& file, Config& out,
                  std::vector<std::string>& errors);
bool load_config(const std::string& file, Config& out, std::vector<std::string>& errors);

// The config file is read whole; beyond this it is refused rather than read.
constexpr size_t kMaxConfigBytes = 1 << 20;

// Floors of the restart durations (vacataire.json(5)): below them backoff would not hold back a
// crashing service, which would then restart many times a second.
constexpr Duration kMinBackoff = std::chrono::milliseconds(10);
constexpr Duration kMinBackoffMax = std::chrono::milliseconds(250);
constexpr Duration kMinStableAfter = std::chrono::milliseconds(250);

// path made absolute against the current directory ("./" prefixes dropped); not resolved
// through symlinks.
std::string absolute_path(const std::string& path);

std::string default_config_path();  // $VACATAIRE_CONFIG or /etc/vacataire/vacataire.json

}  // namespace vac
