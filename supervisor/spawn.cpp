// The only file that includes Boost.Process (slow to compile, and its wait/terminate calls
// must never be used: libev reaps with waitpid(-1)).
#include "spawn.hpp"

#include <fcntl.h>
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
#include <boost/process/start_dir.hpp>

#include "common/text.hpp"

extern char** environ;

namespace vac {

namespace bp = boost::process;

namespace {
rlimit g_child_nofile{0, 0};  // restored in children when set

// Runs in the child between fork and exec: async-signal-safe calls only, no allocation.
struct ChildSetup {
  const std::vector<std::pair<int, int>>* fds;
  bool new_session;

  template <typename Executor>
  void operator()(Executor& e) const {
    if (new_session && ::setsid() < 0) {
      e.set_error(std::error_code(errno, std::system_category()), "setsid");
      return;
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig = 1; sig < NSIG; ++sig) signal(sig, SIG_DFL);
    if (g_child_nofile.rlim_cur != 0) setrlimit(RLIMIT_NOFILE, &g_child_nofile);
    // Move every source above every target first, so that binding one fd never clobbers the
    // source of another; dup2 then clears close-on-exec on the targets.
    int moved[16];
    size_t n = fds->size() < 16 ? fds->size() : 16;
    for (size_t i = 0; i < n; ++i) {
      moved[i] = fcntl((*fds)[i].second, F_DUPFD_CLOEXEC, 64);
      if (moved[i] < 0) {
        e.set_error(std::error_code(errno, std::system_category()), "fcntl");
        return;
      }
    }
    for (size_t i = 0; i < n; ++i) {
      if (dup2(moved[i], (*fds)[i].first) < 0) {
        e.set_error(std::error_code(errno, std::system_category()), "dup2");
        return;
      }
    }
  }
};
}  // namespace

pid_t spawn(const SpawnSpec& spec, std::string& err) {
  if (spec.fds.size() > 16) return err = "too many fds for a child", -1;
  bp::environment env;
  for (const auto& kv : spec.env) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  try {
    ChildSetup setup{&spec.fds, spec.new_session};
    std::error_code ec;
    bp::child child = spec.cwd.empty() ? bp::child(bp::exe = spec.exe, bp::args = spec.args, env,
                                                   bp::extend::on_exec_setup = setup, ec)
                                       : bp::child(bp::exe = spec.exe, bp::args = spec.args, env,
                                                   bp::start_dir = spec.cwd,
                                                   bp::extend::on_exec_setup = setup, ec);
    if (ec) return err = cat(spec.exe, ": ", ec.message()), -1;
    pid_t pid = child.id();
    child.detach();
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
