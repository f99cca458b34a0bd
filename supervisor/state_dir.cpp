#include "state_dir.hpp"

#include <cerrno>
#include <csignal>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include "common/log.hpp"
#include "common/text.hpp"

namespace vac {

namespace {
bool mkdir_p(const std::string& path, mode_t mode, std::string& err) {
  std::string cur;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      cur = path.substr(0, i);
      if (mkdir(cur.c_str(), mode) != 0 && errno != EEXIST)
        return err = sys_error(cat("mkdir ", cur)), false;
    }
  }
  return true;
}

// Writes a small file atomically (temporary file, then rename).
bool write_file(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  return ok && rename(tmp.c_str(), path.c_str()) == 0;
}

pid_t process_group_of(pid_t pid) {
  std::ifstream in(cat("/proc/", pid, "/stat"));
  std::string s;
  std::getline(in, s);
  auto close_paren = s.rfind(')');
  if (close_paren == std::string::npos) return -1;
  std::istringstream rest(s.substr(close_paren + 2));
  std::string state;
  pid_t ppid = 0, pgrp = -1;
  rest >> state >> ppid >> pgrp;
  return pgrp;
}

bool any_member(pid_t pgid) {
  DIR* d = opendir("/proc");
  if (!d) return false;
  bool found = false;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    if (process_group_of(static_cast<pid_t>(pid)) == pgid) {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}
}  // namespace

bool group_alive(pid_t pgid) { return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM); }

unsigned long long process_start_time(pid_t pid) {
  std::ifstream in(cat("/proc/", pid, "/stat"));
  std::string s;
  if (!std::getline(in, s)) return 0;
  auto close_paren = s.rfind(')');
  if (close_paren == std::string::npos) return 0;
  std::istringstream rest(s.substr(close_paren + 2));
  std::string field;
  // Fields after the command name start at field 3 (state); starttime is field 22.
  for (int i = 3; i < 22 && rest >> field; ++i) {
  }
  unsigned long long start = 0;
  rest >> start;
  return start;
}

std::string boot_id() {
  std::ifstream in("/proc/sys/kernel/random/boot_id");
  std::string id;
  std::getline(in, id);
  return id;
}

bool StateDir::init(std::string& err) {
  return mkdir_p(dir_, 0755, err) && mkdir_p(dir_ + "/groups", 0755, err);
}

void StateDir::record_group(pid_t pgid, const std::string& service, const std::string& role) {
  std::string text = cat(pgid, ' ', process_start_time(pgid), ' ', boot_id(), ' ', service, ' ',
                         role, '\n');
  if (!write_file(cat(dir_, "/groups/", pgid), text))
    log_warn("state", sys_error(cat("cannot record process group ", pgid, " in ", dir_)));
}

void StateDir::forget_group(pid_t pgid) { unlink(cat(dir_, "/groups/", pgid).c_str()); }

std::vector<StateDir::Stale> StateDir::stale_groups() {
  std::vector<Stale> out;
  std::string dir = dir_ + "/groups";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  std::string boot = boot_id();
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string path = cat(dir, '/', e->d_name);
    std::ifstream in(path);
    pid_t pgid = 0;
    unsigned long long start = 0;
    std::string rec_boot, service, role;
    in >> pgid >> start >> rec_boot >> service >> role;
    bool ours = false;
    if (in && pgid > 1 && rec_boot == boot) {
      unsigned long long now_start = process_start_time(pgid);
      if (now_start != 0)
        ours = now_start == start && process_group_of(pgid) == pgid;
      else
        ours = any_member(pgid);  // leader gone; its number cannot be reused while members live
    }
    if (ours && pgid != getpgrp())
      out.push_back({pgid, service, role});
    else
      unlink(path.c_str());
  }
  closedir(d);
  return out;
}

void StateDir::stop_stale_groups(Duration grace) {
  auto stale = stale_groups();
  if (stale.empty()) return;
  for (auto& s : stale) {
    log_warn("state", "stopping process group ", s.pgid, " of ", s.service, " (", s.role,
             ") left by a previous instance");
    kill(-s.pgid, SIGTERM);
    kill(-s.pgid, SIGCONT);
  }
  auto deadline = std::chrono::steady_clock::now() + grace;
  for (auto& s : stale) {
    while (group_alive(s.pgid) && std::chrono::steady_clock::now() < deadline) {
      waitpid(-1, nullptr, WNOHANG);  // members reparented to us (subreaper) become zombies
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (group_alive(s.pgid)) {
      log_warn("state", "process group ", s.pgid, " of ", s.service,
               " ignored SIGTERM; sending SIGKILL");
      kill(-s.pgid, SIGKILL);
    }
    forget_group(s.pgid);
  }
}

}  // namespace vac
