// The only file that includes Boost.Process (slow to compile, and its wait/terminate calls
// must never be used: libev reaps with waitpid(-1)).
#include "spawn.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstring>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/env.hpp>
#include <boost/process/environment.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>

#include "common/text.hpp"

extern char** environ;

namespace vac {

namespace bp = boost::process;

namespace {
rlimit g_child_nofile{0, 0};  // restored in children when set

// Which step of a child's set-up failed: written by the child into a page it shares with the
// parent (spawn() runs on one thread, one child at a time), read by the parent when Boost
// reports the error, whose own message does not reach us.
enum Step : int { s_none, s_signals, s_setsid, s_cgroup, s_pdeathsig, s_chdir, s_fd, s_mask };
volatile int* g_step = nullptr;  // [0] step, [1] the fd for s_fd

const char* step_name(int step) {
  switch (step) {
    case s_signals:
      return "resetting signal dispositions";
    case s_setsid:
      return "setsid";
    case s_cgroup:
      return "entering its cgroup";
    case s_pdeathsig:
      return "PR_SET_PDEATHSIG";
    case s_chdir:
      return "chdir to its directory";
    case s_fd:
      return "moving fd";
    case s_mask:
      return "clearing the signal mask";
    default:
      return "";
  }
}

// Runs in the child between fork and exec: async-signal-safe calls only, no allocation. Boost's
// set_error() only writes the error to its pipe and carries on to exec: a failed step must
// therefore end the child right there, so nothing half set-up ever runs.
struct ChildSetup {
  const SpawnSpec* spec;
  const char* cwd;
  pid_t parent;

  template <typename Executor>
  [[noreturn]] void fail(Executor& e, Step step, int fd = -1) const {
    int err = errno;
    if (g_step) {
      g_step[0] = step;
      g_step[1] = fd;
    }
    e.set_error(std::error_code(err, std::system_category()), step_name(step));
    _exit(127);
  }

  template <typename Executor>
  void operator()(Executor& e) const {
    // Dispositions first, while every signal is still blocked (the parent blocked them across
    // fork): a signal arriving now must not run the supervisor's handlers in the child.
    for (int sig = 1; sig < NSIG; ++sig)
      if (sig != SIGKILL && sig != SIGSTOP) ::signal(sig, SIG_DFL);
    if (spec->new_session && ::setsid() < 0) fail(e, s_setsid);
    if (spec->cgroup_procs_fd >= 0 && ::write(spec->cgroup_procs_fd, "0", 1) != 1)
      fail(e, s_cgroup);
    if (spec->die_with_parent) {
      if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(e, s_pdeathsig);
      // The supervisor died between fork and prctl: the signal would never come.
      if (getppid() != parent) _exit(127);
    }
    if (cwd && ::chdir(cwd) != 0) fail(e, s_chdir);
    // Move every source above every target first, so that binding one fd never clobbers the
    // source of another; dup2 then clears close-on-exec on the targets. This happens before
    // the soft fd limit is lowered again: the supervisor may hold fds far above it.
    int moved[16];
    size_t n = spec->fds.size() < 16 ? spec->fds.size() : 16;
    for (size_t i = 0; i < n; ++i) {
      moved[i] = fcntl(spec->fds[i].second, F_DUPFD_CLOEXEC, 64);
      if (moved[i] < 0) fail(e, s_fd, spec->fds[i].first);
    }
    for (size_t i = 0; i < n; ++i)
      if (dup2(moved[i], spec->fds[i].first) < 0) fail(e, s_fd, spec->fds[i].first);
    if (g_child_nofile.rlim_cur != 0) setrlimit(RLIMIT_NOFILE, &g_child_nofile);
    sigset_t none;
    sigemptyset(&none);
    if (sigprocmask(SIG_SETMASK, &none, nullptr) != 0) fail(e, s_mask);
  }
};

// Blocks every signal for its lifetime: no handler of the supervisor runs in a forked child
// before the child has reset its dispositions.
struct BlockSignals {
  sigset_t old;
  BlockSignals() {
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
  }
  ~BlockSignals() { sigprocmask(SIG_SETMASK, &old, nullptr); }
};
}  // namespace

pid_t spawn(const SpawnSpec& spec, std::string& err) {
  if (spec.fds.size() > 16) return err = "too many fds for a child", -1;
  if (!g_step) {
    void* page = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (page != MAP_FAILED) g_step = static_cast<volatile int*>(page);
  }
  if (g_step) {
    g_step[0] = s_none;
    g_step[1] = -1;
  }
  bp::environment env;
  for (const auto& kv : spec.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  try {
    ChildSetup setup{&spec, spec.cwd.empty() ? nullptr : spec.cwd.c_str(), getpid()};
    std::error_code ec;
    pid_t pid = -1;
    {
      BlockSignals blocked;
      bp::child child(bp::exe = spec.exe, bp::args = spec.args, env,
                      bp::extend::on_exec_setup = setup, ec);
      if (!ec) {
        pid = child.id();
        child.detach();
      }
    }
    if (ec) {
      int step = g_step ? g_step[0] : s_none;
      std::string what = step == s_none ? std::string() : cat(step_name(step), " ");
      if (step == s_fd)
        what = cat("moving fd ", g_step[1], ": ");
      else if (!what.empty())
        what.back() = ':', what += ' ';
      return err = cat(spec.exe, ": ", what, ec.message()), -1;
    }
    return pid;
  } catch (const std::exception& e) {
    err = cat(spec.exe, ": ", e.what());
    return -1;
  }
}

void raise_fd_limit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur >= lim.rlim_max) return;
  g_child_nofile = lim;
  lim.rlim_cur = lim.rlim_max;
  setrlimit(RLIMIT_NOFILE, &lim);
}

std::string describe_wait_status(int status) {
  if (WIFEXITED(status)) return cat("exit ", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return cat("signal ", WTERMSIG(status), " (", strsignal(WTERMSIG(status)), ")");
  return cat("status ", status);
}

std::vector<std::string> current_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e && *e; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace vac
