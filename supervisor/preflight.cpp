#include "preflight.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>

#include "common/file_util.hpp"
#include "common/install_dirs.hpp"
#include "common/text.hpp"
#include "probe.hpp"

namespace vac {

namespace {

// A directory the supervisor will create if missing: it must not exist as something else,
// and its nearest existing ancestor must be a directory.
void check_dir_path(const std::string& file, const char* key, const std::string& path,
                    std::vector<std::string>& errors) {
  struct stat st {};
  if (stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      errors.push_back(cat(file, ": ", key, ": ", path, " exists and is not a directory"));
    return;
  }
  if (errno != ENOENT) {
    errors.push_back(cat(file, ": ", key, ": ", path, ": ", path_error(errno)));
    return;
  }
  for (std::string up = path; up.size() > 1;) {
    up = up.substr(0, std::max<size_t>(up.rfind('/'), 1));
    if (stat(up.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode))
        errors.push_back(
            cat(file, ": ", key, ": cannot create ", path, ": ", up, " is not a directory"));
      return;
    }
    if (errno != ENOENT) {
      errors.push_back(cat(file, ": ", key, ": ", up, ": ", path_error(errno)));
      return;
    }
  }
}

void check_socket_path(const Config& c, std::vector<std::string>& errors) {
  constexpr size_t max = sizeof(sockaddr_un::sun_path) - 1;
  if (c.control_socket.size() > max)
    errors.push_back(cat(c.file, ": control_socket: ", c.control_socket, " is ",
                         c.control_socket.size(), " bytes long; a Unix socket path holds at most ",
                         max, " (choose a shorter one)"));
  std::string dir = c.control_socket.substr(0, std::max<size_t>(c.control_socket.rfind('/'), 1));
  check_dir_path(c.file, "control_socket", dir, errors);
  struct stat st {};
  if (lstat(c.control_socket.c_str(), &st) == 0 && !S_ISSOCK(st.st_mode))
    errors.push_back(cat(c.file, ": control_socket: ", c.control_socket,
                         " exists and is not a socket (it would not be replaced)"));
}

void check_probes(const Config& c, std::vector<std::string>& errors) {
  std::string builtins = c.probes_dir.empty() ? default_probes_dir() : c.probes_dir;
  for (auto& [name, p] : c.probes) {
    if (p.exec.empty()) continue;
    std::string exe = resolve_probe_program(c, p.exec[0]);
    std::string where = cat(c.file, ": probes.", name, ".exec: ");
    if (exe.find('/') == std::string::npos) {
      errors.push_back(
          cat(where, quote(exe), " is neither a built-in probe (in ", builtins, ") nor on PATH"));
      continue;
    }
    struct stat st {};
    if (stat(exe.c_str(), &st) != 0)
      errors.push_back(cat(where, exe, ": ", path_error(errno)));
    else if (!S_ISREG(st.st_mode) || access(exe.c_str(), X_OK) != 0)
      errors.push_back(cat(where, exe, " is not an executable file"));
  }
}

}  // namespace

std::string resolve_probe_program(const Config& config, const std::string& exe) {
  std::string base = config.file.substr(0, std::max<size_t>(config.file.rfind('/'), 1));
  std::string builtins = config.probes_dir.empty() ? default_probes_dir() : config.probes_dir;
  return Probe::resolve(exe, base, builtins);
}

bool load_key_file(const std::string& path, Key& key, std::string& err) {
  std::string text, why;
  struct stat st {};
  if (!read_small_file(path, kMaxKeyFileBytes, text, why, ReadOptions{true}, &st))
    return err = cat("peer.key_file ", path, ": ", why), false;
  if (st.st_uid != geteuid())
    return err = cat("peer.key_file ", path, " is owned by uid ", st.st_uid, ", not by uid ",
                     geteuid(), " which runs the supervisor (chown it)"),
           false;
  if (st.st_mode & 077)
    return err = cat("peer.key_file ", path, " is readable by group or others (chmod 600 ", path,
                     ")"),
           false;
  if (!parse_key_hex(text, key, why)) return err = cat("peer.key_file ", path, ": ", why), false;
  return true;
}

bool load_node(const std::string& config_path, LoadedNode& out, std::vector<std::string>& errors) {
  out = LoadedNode{};
  if (!load_config(config_path, out.config, errors)) return false;
  const Config& c = out.config;
  out.specs = load_services(c.services_dir, errors);
  check_dir_path(c.file, "node.state_dir", c.state_dir, errors);
  check_socket_path(c, errors);
  if (!c.probes_dir.empty()) check_dir_path(c.file, "probes_dir", c.probes_dir, errors);
  check_probes(c, errors);
  if (c.peer) {
    std::string err;
    if (!load_key_file(c.peer->key_file, out.key, err)) errors.push_back(cat(c.file, ": ", err));
    // linkd binds each link's socket on its own: one address twice would stop it at start.
    auto& links = c.peer->links;
    for (size_t i = 0; i < links.size(); ++i)
      for (size_t j = 0; j < i; ++j)
        if (links[i].listen == links[j].listen)
          errors.push_back(cat(c.file, ": peer.links[", i, "].listen: ", links[i].listen,
                               " is also peer.links[", j, "].listen; each link needs its own"));
  }
  if (!c.control_group.empty()) {
    if (group* g = getgrnam(c.control_group.c_str()))
      out.control_gid = g->gr_gid;
    else
      errors.push_back(cat(c.file, ": control_group: no group named ", quote(c.control_group)));
  }
  if (!c.user.empty()) {
    passwd* pw = getpwnam(c.user.c_str());
    if (!pw)
      errors.push_back(cat(c.file, ": user: no user named ", quote(c.user)));
    else if (pw->pw_uid == 0 || pw->pw_gid == 0)  // linkd would refuse it at every start
      errors.push_back(cat(c.file, ": user: ", quote(c.user),
                           " has uid or gid 0; vacataire-linkd never runs as root: name an "
                           "unprivileged user"));
  }
  return errors.empty();
}

}  // namespace vac
