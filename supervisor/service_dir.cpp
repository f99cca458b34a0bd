#include "service_dir.hpp"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/text.hpp"
#include "deps.hpp"

namespace vac {

namespace {

// Reads a small knob file. Absent: false with no error; present but unreadable: an error
// naming the file.
bool read_knob(const std::string& path, std::string& out, std::vector<std::string>& errors) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) errors.push_back(sys_error(path));
    return false;
  }
  if (!S_ISREG(st.st_mode)) {
    errors.push_back(cat(path, ": not a regular file"));
    return false;
  }
  std::ifstream in(path);
  std::stringstream ss;
  if (in) ss << in.rdbuf();
  if (!in || in.bad()) {
    errors.push_back(sys_error(cat("cannot read ", path)));
    return false;
  }
  out = ss.str();
  return true;
}

bool exists(const std::string& path) {
  return access(path.c_str(), F_OK) == 0;
}

// An optional executable: absent is fine, present but not executable is an error.
bool optional_executable(const std::string& path, std::vector<std::string>& errors) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return false;
  if (!S_ISREG(st.st_mode) || access(path.c_str(), X_OK) != 0) {
    errors.push_back(cat(path, ": not an executable file (chmod +x it, or remove it)"));
    return false;
  }
  return true;
}

bool parse_seconds_knob(const std::string& path, const std::string& text, Duration& out,
                        std::vector<std::string>& errors) {
  std::string err;
  if (!parse_duration(trim(text), out, err, "s")) {
    errors.push_back(cat(path, ": ", err));
    return false;
  }
  return true;
}

std::vector<std::string> list_dirs(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) {
    errors.push_back(sys_error(cat("cannot open services directory ", dir)));
    return names;
  }
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    struct stat st {};
    std::string p = cat(dir, '/', e->d_name);
    if (stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) names.emplace_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

bool parse_signal(const std::string& text, int& sig) {
  std::string s(trim(text));
  if (s.rfind("SIG", 0) == 0) s = s.substr(3);
  static const std::pair<const char*, int> names[] = {
      {"TERM", SIGTERM}, {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
      {"KILL", SIGKILL}, {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"WINCH", SIGWINCH},
      {"ALRM", SIGALRM}, {"PWR", SIGPWR}};
  for (auto& [n, v] : names)
    if (s == n) return sig = v, true;
  return false;
}

ServiceSpec load_service(const std::string& dir, const std::string& name,
                         std::vector<std::string>& errors) {
  ServiceSpec s;
  s.name = name;
  s.dir = dir;
  std::string run = cat(dir, "/run");
  struct stat st {};
  if (stat(run.c_str(), &st) != 0)
    errors.push_back(cat(run, ": missing (every service needs an executable `run`)"));
  else if (!S_ISREG(st.st_mode) || access(run.c_str(), X_OK) != 0)
    errors.push_back(cat(run, ": not executable (chmod +x ", run, ")"));

  s.down = exists(cat(dir, "/down"));
  s.has_finish = optional_executable(cat(dir, "/finish"), errors);
  s.has_ready = optional_executable(cat(dir, "/ready"), errors);
  std::string text;
  if (read_knob(cat(dir, "/depends"), text, errors))
    for (auto& line : split_lines(text)) {
      std::string d(trim(line));
      if (!d.empty() && d[0] != '#') s.depends.push_back(d);
    }
  if (read_knob(cat(dir, "/notification-fd"), text, errors)) {
    std::string t(trim(text));
    char* end = nullptr;
    long fd = std::strtol(t.c_str(), &end, 10);
    if (t.empty() || *end || fd < 3 || fd > 1023)
      errors.push_back(cat(dir,
                           "/notification-fd: expected a file descriptor number from 3 to "
                           "1023, got ",
                           quote(t)));
    else
      s.notification_fd = static_cast<int>(fd);
  }
  if (s.notification_fd >= 0 && s.has_ready)
    errors.push_back(cat(dir, ": has both `ready` and `notification-fd`; keep one"));
  if (read_knob(cat(dir, "/timeout-stop"), text, errors))
    parse_seconds_knob(cat(dir, "/timeout-stop"), text, s.timeout_stop, errors);
  if (read_knob(cat(dir, "/timeout-finish"), text, errors))
    parse_seconds_knob(cat(dir, "/timeout-finish"), text, s.timeout_finish, errors);
  if (read_knob(cat(dir, "/down-signal"), text, errors) && !parse_signal(text, s.stop_signal))
    errors.push_back(cat(dir, "/down-signal: unknown signal ", quote(trim(text)),
                         " (use a name such as TERM, INT, HUP, QUIT or USR1)"));

  std::string env_dir = cat(dir, "/env");
  if (stat(env_dir.c_str(), &st) == 0) {
    DIR* d = opendir(env_dir.c_str());
    if (!d) errors.push_back(sys_error(cat("cannot open ", env_dir)));
    while (d) {
      dirent* e = readdir(d);
      if (!e) break;
      if (e->d_name[0] == '.') continue;
      std::string var = e->d_name, value;
      if (var.find('=') != std::string::npos) {
        errors.push_back(cat(env_dir, '/', var, ": a variable name cannot contain '='"));
        continue;
      }
      // runit's envdir: the first line is the value, trailing blanks dropped; empty unsets.
      if (!read_knob(cat(env_dir, '/', var), value, errors)) continue;
      std::string first = split_lines(value).empty() ? "" : split_lines(value)[0];
      while (!first.empty() && (first.back() == ' ' || first.back() == '\t')) first.pop_back();
      std::replace(first.begin(), first.end(), '\0', '\n');
      if (value.empty())
        s.unset_env.push_back(var);
      else
        s.env[var] = first;
    }
    if (d) closedir(d);
  }
  std::string log_run = cat(dir, "/log/run");
  if (exists(cat(dir, "/log"))) {
    if (stat(log_run.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
        access(log_run.c_str(), X_OK) != 0)
      errors.push_back(cat(log_run,
                           ": missing or not executable (the log/ directory needs an "
                           "executable run)"));
    else
      s.has_log = true;
  }
  return s;
}

std::vector<ServiceSpec> load_services(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<ServiceSpec> specs;
  std::map<std::string, std::vector<std::string>> deps;
  for (const auto& name : list_dirs(dir, errors)) {
    specs.push_back(load_service(cat(dir, '/', name), name, errors));
    deps[name] = specs.back().depends;
  }
  std::vector<std::string> order;
  std::vector<std::string> dep_errors;
  if (!dependency_order(deps, order, dep_errors)) {
    for (auto& e : dep_errors) errors.push_back(cat(dir, ": ", e));
    return specs;
  }
  std::vector<ServiceSpec> sorted;
  for (const auto& n : order)
    for (auto& s : specs)
      if (s.name == n) sorted.push_back(s);
  return sorted;
}

}  // namespace vac
