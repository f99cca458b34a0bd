// Containment: services never outlive the supervisor that guards them (a service left running
// while the peer takes over is a split brain). Two layers:
//
// - GuardLink runs vacataire-guard, a tiny process of its own session that holds the read end
//   of a pipe whose write end only the supervisor holds. The supervisor tells it every process
//   group and cgroup it starts and every one that is gone; when the pipe reaches end of file —
//   the supervisor died by any means, kill -9 and the OOM killer included — the guard kills
//   them all at once (cgroup.kill, then SIGKILL to each group) and exits. If the guard dies,
//   the supervisor starts another and tells it everything again. In a pair the guard is also
//   a fence: the supervisor's loop ticks it, and when the ticks stop for longer than the
//   fence (the supervisor is stopped or stuck: its linkd has stopped heartbeating and the peer
//   is about to serve) the guard kills the services the same way, before the peer starts its.
// - The fatal guard, inside the supervisor: on std::terminate or a fatal signal (SIGSEGV,
//   SIGBUS, SIGABRT, SIGFPE, SIGILL) it kills every group and cgroup from a preallocated table,
//   with async-signal-safe calls only, before the supervisor dies.
//
// Every service leader also gets PR_SET_PDEATHSIG(SIGKILL) (spawn.cpp). What escapes without
// cgroup v2: a process that left its service's process group (setsid, a double fork) and
// survives the guard's death too. See vacataire(8), CONTAINMENT.
#pragma once

#include <sys/types.h>
#include <set>
#include <string>

#include <ev++.h>

#include "child.hpp"
#include "common/duration.hpp"
#include "common/text.hpp"
#include "writer.hpp"

namespace vac {

class GuardLink {
 public:
  explicit GuardLink(ChildTable& table);
  ~GuardLink();

  // Starts the guard (and keeps restarting it until stop()). false, err set, when it cannot
  // be started at all.
  bool start(std::string& err);
  // A clean exit: the guard is told nothing more and ends when its pipe closes.
  void stop();
  bool running() const { return child_.running(); }
  pid_t pid() const { return child_.pid(); }
  int restarts() const { return restarts_; }

  // Kill the services when no tick() has come for this long (zero: never). Kept across
  // restarts of the guard.
  void set_fence(Duration after);
  Duration fence() const { return fence_; }
  void tick() { send("t"); }

  // A service's group ("s+") is fenced too; any other ("g+") only killed when we die.
  void add_group(pid_t pgid, bool serves) { send(cat(serves ? "s+ " : "g+ ", pgid)); }
  void remove_group(pid_t pgid) { send(cat("g- ", pgid)); }
  void add_cgroup(const std::string& path) { send(cat("c+ ", path)); }
  void remove_cgroup(const std::string& path) { send(cat("c- ", path)); }

 private:
  void send(const std::string& line);
  bool spawn_guard(std::string& err);
  void on_exit(int status);
  void on_restart(ev::timer&, int);

  ChildTable& table_;
  Child child_;
  BoundedWriter writer_{1 << 20};
  ev::timer restart_;
  bool stopping_ = false;
  int restarts_ = 0;
  Duration fence_{0};
};

// The in-process last resort. install_fatal_guard() sets the handlers (once, at start-up).
void install_fatal_guard();
// Where the fatal guard says what it did: a non-blocking fd, so a stalled reader of stderr
// cannot keep a dying supervisor alive (default 2).
void fatal_guard_set_log_fd(int fd);
void fatal_guard_add(pid_t pgid);
void fatal_guard_remove(pid_t pgid);
void fatal_guard_add_cgroup(int kill_fd);
void fatal_guard_remove_cgroup(int kill_fd);
// Kills everything in the table now (async-signal-safe); returns how many groups and cgroups.
int fatal_guard_kill_all();

}  // namespace vac
