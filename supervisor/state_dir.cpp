#include "state_dir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

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

}  // namespace

// Members of a group that are still running. Zombies do not count: a process re-parented to
// an init that does not reap stays a zombie, yet it holds nothing the next run needs.
bool live_members(pid_t pgid) {
  DIR* d = opendir("/proc");
  if (!d) return false;
  bool found = false;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (*end || pid <= 0) continue;
    ProcStat st;
    if (read_proc_stat(static_cast<pid_t>(pid), st) && st.pgrp == pgid && st.state != 'Z' &&
        st.state != 'X') {
      found = true;
      break;
    }
  }
  closedir(d);
  return found;
}

bool group_alive(pid_t pgid) {
  return pgid > 0 && (kill(-pgid, 0) == 0 || errno == EPERM);
}

bool read_proc_stat(pid_t pid, ProcStat& out) {
  std::ifstream in(cat("/proc/", pid, "/stat"));
  std::string s;
  if (!std::getline(in, s)) return false;
  // The command name (field 2) may hold spaces and parentheses: fields resume after the last ')'.
  auto close_paren = s.rfind(')');
  if (close_paren == std::string::npos || close_paren + 2 >= s.size()) return false;
  std::istringstream rest(s.substr(close_paren + 2));
  pid_t ppid = 0;
  rest >> out.state >> ppid >> out.pgrp;
  std::string skip;
  for (int field = 6; field < 14 && rest >> skip; ++field) {
  }
  unsigned long long utime = 0, stime = 0;
  rest >> utime >> stime;
  for (int field = 16; field < 22 && rest >> skip; ++field) {
  }
  rest >> out.start_time;
  out.cpu_ticks = utime + stime;
  return static_cast<bool>(rest);
}

unsigned long long process_start_time(pid_t pid) {
  ProcStat st;
  return read_proc_stat(pid, st) ? st.start_time : 0;
}

std::string boot_id() {
  static const std::string id = [] {
    std::ifstream in("/proc/sys/kernel/random/boot_id");
    std::string s;
    std::getline(in, s);
    return s;
  }();
  return id;
}

StateDir::~StateDir() {
  if (lock_fd_ >= 0) close(lock_fd_);
}

// The lock is held through a read-only descriptor (flock needs no write access): a descriptor
// open for writing, held for the supervisor's whole life, would make the state directory's
// file system refuse `mount -o remount,ro` (EBUSY), so an operator could not freeze it.
bool StateDir::lock(std::string& err) {
  std::string path = dir_ + "/lock";
  int fd = open(path.c_str(), O_RDONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK, 0644);
  if (fd < 0) return err = cat("cannot open ", path, ": ", std::strerror(errno)), false;
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    char buf[32] = {};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (e != EWOULDBLOCK) return err = cat("cannot lock ", path, ": ", std::strerror(e)), false;
    busy_ = true;
    std::string holder(trim(std::string_view(buf, n > 0 ? static_cast<size_t>(n) : 0)));
    bool numeric = !holder.empty() && holder.find_first_not_of("0123456789") == std::string::npos;
    return err = cat("state directory ", dir_, " is in use by another supervisor",
                     numeric ? cat(" (pid ", holder, ")") : std::string(),
                     "; each supervisor needs its own node.state_dir. Nothing was started."),
           false;
  }
  // Ours now: say who holds it, for the next instance's message and for operators, through a
  // descriptor closed at once.
  std::string pid = cat(getpid(), '\n');
  int w = open(path.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (w < 0 || write(w, pid.data(), pid.size()) < 0)
    log_warn("state", sys_error(cat("cannot write our pid to ", path)));
  if (w >= 0) close(w);
  lock_fd_ = fd;
  return true;
}

bool StateDir::init(std::string& err) {
  return mkdir_p(dir_, 0755, err) && lock(err) && mkdir_p(dir_ + "/groups", 0755, err);
}

void StateDir::record_group(pid_t pgid, const std::string& service, const std::string& role) {
  std::string text =
      cat(pgid, ' ', process_start_time(pgid), ' ', boot_id(), ' ', service, ' ', role, '\n');
  if (!write_file(cat(dir_, "/groups/", pgid), text))
    log_warn("state", sys_error(cat("cannot record process group ", pgid, " in ", dir_)));
}

void StateDir::forget_group(pid_t pgid) {
  unlink(cat(dir_, "/groups/", pgid).c_str());
}

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
      // The leader, if it still exists, must be the very process we started; if it is gone,
      // its number cannot have been reused while members of its group live.
      unsigned long long now_start = process_start_time(pgid);
      ours = (now_start == 0 || now_start == start) && live_members(pgid);
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
    while (live_members(s.pgid) && std::chrono::steady_clock::now() < deadline) {
      while (waitpid(-1, nullptr, WNOHANG) > 0) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    if (live_members(s.pgid)) {
      log_warn("state", "process group ", s.pgid, " of ", s.service,
               " ignored SIGTERM; sending SIGKILL");
      kill(-s.pgid, SIGKILL);
    }
    forget_group(s.pgid);
  }
}

}  // namespace vac
