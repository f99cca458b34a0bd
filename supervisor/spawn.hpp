// Starting child processes: every Child (child.hpp) goes through spawn(). The child gets its own
// session (so its whole process group can be signalled), its service's cgroup, a parent-death
// signal, default dispositions and an empty signal mask, its working directory and exactly the
// fds it is given; it is detached at once and reaped only by the supervisor's libev child
// watcher. Every step of that set-up that fails is reported to the parent, and the child then
// exits before running anything: a failed spawn never leaves a process behind.
#pragma once

#include <sys/types.h>
#include <string>
#include <utility>
#include <vector>

namespace vac {

struct SpawnSpec {
  std::string exe;                       // a path; no PATH search here
  std::vector<std::string> args;         // argv[1..]
  std::string cwd;                       // empty: inherit
  std::vector<std::string> env;          // "NAME=value"; the whole environment
  std::vector<std::pair<int, int>> fds;  // (fd in the child, fd in the parent); others close
  bool new_session = true;
  int cgroup_procs_fd = -1;     // cgroup.procs of the cgroup to enter, or -1
  bool die_with_parent = true;  // PR_SET_PDEATHSIG(SIGKILL): not for the guard
};

// Returns the pid (also the process group and session id), or -1 with err set ("EXE: what
// failed: why"). Every fd of the parent is expected to be close-on-exec; the ones in spec.fds
// are the only ones the child inherits. All signals are blocked in the parent across fork.
pid_t spawn(const SpawnSpec& spec, std::string& err);

// Raises this process's soft fd limit to the hard one (a pipe or two per service adds up),
// while children keep getting the original soft limit: many programs still use select().
void raise_fd_limit();

// A child's wait status for logs and status: "exit 3", "signal 9 (Killed)".
std::string describe_wait_status(int status);

// The supervisor's environment as "NAME=value" strings, for building a child's.
std::vector<std::string> current_environment();

}  // namespace vac
