// The supervisor's records in its state directory. Every process group it starts is written
// to groups/PGID (with the leader's start time and the boot id, so a reused pid is never
// mistaken for ours); a supervisor killed with -9 leaves them behind, and the next instance
// stops those groups before it starts anything.
#pragma once

#include <sys/types.h>
#include <string>
#include <vector>

#include "common/duration.hpp"

namespace vac {

// The directory is locked for the supervisor's lifetime (flock on DIR/lock, as s6's
// supervise/lock), so a second instance sharing it refuses to start before it touches
// anything of the first one's: their records of process groups would look stale to each other.
class StateDir {
 public:
  explicit StateDir(std::string dir) : dir_(std::move(dir)) {}
  ~StateDir();
  StateDir(const StateDir&) = delete;
  StateDir& operator=(const StateDir&) = delete;
  // Creates the directory, takes the lock (err names the holder's pid when another instance
  // has it), then creates the rest.
  bool init(std::string& err);
  const std::string& path() const { return dir_; }
  bool busy() const { return busy_; }  // init failed because another instance holds the lock

  void record_group(pid_t pgid, const std::string& service, const std::string& role);
  void forget_group(pid_t pgid);

  struct Stale {
    pid_t pgid;
    std::string service, role;
  };
  // Finds groups of a previous instance that still have members on this boot.
  std::vector<Stale> stale_groups();
  // Stops them: SIGTERM (and SIGCONT), SIGKILL after grace; blocks until they are gone or the
  // kill was sent. Removes their records.
  void stop_stale_groups(Duration grace);

 private:
  bool lock(std::string& err);
  std::string dir_;
  int lock_fd_ = -1;  // O_CLOEXEC: no child inherits the lock
  bool busy_ = false;
};

// Helpers on /proc, shared with tests.
bool group_alive(pid_t pgid);                      // kill(-pgid, 0): any member, zombies included
bool live_members(pid_t pgid);                     // a /proc scan: members that are not zombies
unsigned long long process_start_time(pid_t pid);  // 0 if no such process

// What /proc/PID/stat says of a process (proc(5)); false if it is gone.
struct ProcStat {
  char state = 0;  // R running or runnable, S sleeping, D disk sleep, T stopped, t traced, Z...
  pid_t pgrp = 0;
  unsigned long long cpu_ticks = 0;   // utime + stime
  unsigned long long start_time = 0;  // since boot, in clock ticks
};
bool read_proc_stat(pid_t pid, ProcStat& out);
std::string boot_id();

}  // namespace vac
