// Starting child processes: services, finish and ready scripts, loggers, probes, hooks and
// linkd all go through spawn(). The child gets its own session (so its whole process group can
// be signalled), a clean signal mask and default dispositions, and exactly the fds it is given;
// it is detached at once and reaped only by the supervisor's libev child watcher.
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
};

// Returns the pid (also the process group and session id), or -1 with err set. Every fd of
// the parent is expected to be close-on-exec; the ones in spec.fds are the only ones the child
// inherits.
pid_t spawn(const SpawnSpec& spec, std::string& err);

// Raises this process's soft fd limit to the hard one (a pipe or two per service adds up),
// while children keep getting the original soft limit: many programs still use select().
void raise_fd_limit();

// A child's wait status for logs and status: "exit 3", "signal 9 (Killed)".
std::string describe_wait_status(int status);

// The supervisor's environment as "NAME=value" strings, for building a child's.
std::vector<std::string> current_environment();

}  // namespace vac
