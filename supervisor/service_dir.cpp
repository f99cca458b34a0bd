#include "service_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>

#include "common/file_util.hpp"
#include "common/json_util.hpp"
#include "common/text.hpp"
#include "deps.hpp"

namespace vac {

namespace {

// Reads a knob file. Absent: false with no error; present but unreadable, not a regular file
// (a FIFO is refused, not waited on) or too large: an error naming the file.
bool read_knob(const std::string& path, std::string& out, std::vector<std::string>& errors) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) errors.push_back(cat(path, ": ", path_error(errno)));
    return false;
  }
  std::string err;
  if (!read_small_file(path, kMaxKnobBytes, out, err)) {
    // A dangling symlink reads as absent to lstat's caller, but it is an operator's mistake.
    errors.push_back(cat(path, ": ", err));
    return false;
  }
  return true;
}

bool exists(const std::string& path) {
  struct stat st {};
  return lstat(path.c_str(), &st) == 0;
}

// An optional executable: absent is fine, present but not an executable file is an error.
bool optional_executable(const std::string& path, std::vector<std::string>& errors) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return false;
  if (stat(path.c_str(), &st) != 0) {
    errors.push_back(cat(path, ": ", path_error(errno)));
    return false;
  }
  if (!S_ISREG(st.st_mode) || access(path.c_str(), X_OK) != 0) {
    errors.push_back(cat(path, ": not an executable file (chmod +x it, or remove it)"));
    return false;
  }
  return true;
}

// Text knobs must be UTF-8 without NUL bytes: they are names, numbers and durations that end
// up in logs and in the status document.
bool text_knob(std::string_view bytes, const std::string& path, std::vector<std::string>& errors) {
  if (bytes.find('\0') != std::string_view::npos) {
    errors.push_back(cat(path, ": contains a NUL byte (expected text)"));
    return false;
  }
  if (!valid_utf8(bytes)) {
    errors.push_back(cat(path, ": is not valid UTF-8 text"));
    return false;
  }
  return true;
}

bool parse_seconds_knob(const std::string& path, std::string_view text, Duration& out,
                        std::vector<std::string>& errors) {
  std::string err;
  Duration d{};
  if (!parse_duration(trim(text), d, err, "s")) {
    errors.push_back(cat(path, ": ", err));
    return false;
  }
  out = d;
  return true;
}

std::vector<std::string> list_dirs(const std::string& dir, std::vector<std::string>& errors) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (!d) {
    errors.push_back(cat("cannot open services directory ", dir, ": ", path_error(errno)));
    return names;
  }
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    struct stat st {};
    std::string p = cat(dir, '/', e->d_name);
    if (stat(p.c_str(), &st) != 0) {
      if (errno == ELOOP) errors.push_back(cat(p, ": ", path_error(errno)));
      continue;
    }
    if (!S_ISDIR(st.st_mode)) continue;
    if (std::string err = check_service_name(e->d_name); !err.empty()) {
      errors.push_back(cat(dir, '/', quote(e->d_name), ": ", err));
      continue;
    }
    names.emplace_back(e->d_name);
  }
  closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

std::string check_service_name(std::string_view name) {
  if (name.empty()) return "an empty service name";
  if (name.size() > 255) return "a service name is at most 255 bytes";
  if (!valid_utf8(name)) return "a service name must be valid UTF-8";
  if (name[0] == '.') return "a service name cannot start with '.'";
  for (unsigned char c : name)
    if (c < 0x20 || c == 0x7F || c == '/')
      return "a service name cannot contain '/' or control characters";
  return "";
}

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

bool apply_knob(std::string_view knob, std::string_view bytes, const std::string& path,
                ServiceSpec& s, std::vector<std::string>& errors) {
  if (knob.substr(0, 4) == "env/") {
    std::string var(knob.substr(4));
    if (var.empty() || var.find('=') != std::string::npos || !valid_utf8(var)) {
      errors.push_back(cat(path, ": not a valid variable name (UTF-8, no '=')"));
      return false;
    }
    // runit's envdir: the first line is the value, trailing blanks dropped, NUL bytes become
    // newlines; an empty file unsets the variable.
    if (bytes.empty()) {
      s.unset_env.push_back(var);
      return true;
    }
    std::string first(bytes.substr(0, bytes.find('\n')));
    while (!first.empty() && (first.back() == ' ' || first.back() == '\t')) first.pop_back();
    std::replace(first.begin(), first.end(), '\0', '\n');
    if (!valid_utf8(first)) {
      errors.push_back(cat(path, ": is not valid UTF-8 text"));
      return false;
    }
    s.env[var] = first;
    return true;
  }
  if (!text_knob(bytes, path, errors)) return false;
  if (knob == "depends") {
    bool ok = true;
    for (auto& line : split_lines(bytes)) {
      std::string d(trim(line));
      if (d.empty() || d[0] == '#') continue;
      if (std::string err = check_service_name(d); !err.empty()) {
        errors.push_back(cat(path, ": ", quote(d), ": ", err));
        ok = false;
        continue;
      }
      s.depends.push_back(d);
    }
    return ok;
  }
  if (knob == "notification-fd") {
    std::string t(trim(bytes));
    bool digits = !t.empty() && t.size() <= 4 &&
                  std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
    int fd = digits ? std::stoi(t) : -1;
    if (fd < 3 || fd > 1023) {
      errors.push_back(cat(path, ": expected a file descriptor number from 3 to 1023, got ",
                           quote(utf8_prefix(t, 40))));
      return false;
    }
    s.notification_fd = fd;
    return true;
  }
  if (knob == "timeout-stop") return parse_seconds_knob(path, bytes, s.timeout_stop, errors);
  if (knob == "timeout-finish") return parse_seconds_knob(path, bytes, s.timeout_finish, errors);
  if (knob == "down-signal") {
    if (parse_signal(std::string(bytes), s.stop_signal)) return true;
    errors.push_back(cat(path, ": unknown signal ", quote(utf8_prefix(trim(bytes), 40)),
                         " (use a name such as TERM, INT, HUP, QUIT or USR1)"));
    return false;
  }
  errors.push_back(cat(path, ": not a knob file of a service directory"));
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
    errors.push_back(errno == ENOENT
                         ? cat(run, ": missing (every service needs an executable `run`)")
                         : cat(run, ": ", path_error(errno)));
  else if (!S_ISREG(st.st_mode) || access(run.c_str(), X_OK) != 0)
    errors.push_back(cat(run, ": not executable (chmod +x ", run, ")"));

  s.down = exists(cat(dir, "/down"));
  s.has_finish = optional_executable(cat(dir, "/finish"), errors);
  s.has_ready = optional_executable(cat(dir, "/ready"), errors);
  std::string text;
  for (const char* knob :
       {"depends", "notification-fd", "timeout-stop", "timeout-finish", "down-signal"}) {
    std::string path = cat(dir, '/', knob);
    if (read_knob(path, text, errors)) apply_knob(knob, text, path, s, errors);
  }
  if (s.notification_fd >= 0 && s.has_ready)
    errors.push_back(cat(dir, ": has both `ready` and `notification-fd`; keep one"));

  std::string env_dir = cat(dir, "/env");
  if (lstat(env_dir.c_str(), &st) == 0) {
    DIR* d = opendir(env_dir.c_str());
    if (!d) errors.push_back(cat(env_dir, ": ", path_error(errno)));
    std::vector<std::string> vars;
    while (d) {
      dirent* e = readdir(d);
      if (!e) break;
      if (e->d_name[0] != '.') vars.emplace_back(e->d_name);
    }
    if (d) closedir(d);
    std::sort(vars.begin(), vars.end());
    for (auto& var : vars) {
      std::string path = cat(env_dir, '/', var);
      if (read_knob(path, text, errors)) apply_knob(cat("env/", var), text, path, s, errors);
    }
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
