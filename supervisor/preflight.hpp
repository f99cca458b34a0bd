// The one validation path. `vacataire check-config`, `vacataire run` and a SIGHUP reload all
// load the configuration through load_node, so everything run would refuse, check-config
// refuses first, with the file and the reason (vacataire(8), CHECK-CONFIG).
#pragma once

#include <sys/types.h>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "service_dir.hpp"
#include "wire.hpp"

namespace vac {

// The peer key file is at most this long (a hex key of 64 bytes is 129 with its newline).
constexpr size_t kMaxKeyFileBytes = 4096;

struct LoadedNode {
  Config config;
  std::vector<ServiceSpec> specs;    // in start order
  Key key;                           // when config.peer
  std::optional<gid_t> control_gid;  // when config.control_group
};

// Loads and checks the config file, the services directory and everything they name: link
// addresses, the key file, probe programs, the state directory, the control socket path, the
// control group and the user. Each problem is one line in errors, naming its file (and key).
bool load_node(const std::string& config_path, LoadedNode& out, std::vector<std::string>& errors);

// Reads the peer key file: a regular file (not a symlink, not a FIFO: never waited on) owned
// by the effective uid, with no permission bits for group or others, at most
// kMaxKeyFileBytes, holding a key of at least kMinKeyBytes in hex. err names the file.
bool load_key_file(const std::string& path, Key& key, std::string& err);

// Where a probe's program is, as the supervisor finds it: a path as given (made absolute at
// load), else the built-ins directory, else PATH.
std::string resolve_probe_program(const Config& config, const std::string& exe);

}  // namespace vac
