#include "guard.hpp"

#include <signal.h>
#include <unistd.h>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "common/install_dirs.hpp"
#include "common/log.hpp"

namespace vac {

namespace {
constexpr auto kGuardRestart = 0.05;  // seconds: the guard is tiny; restart it almost at once

}  // namespace

GuardLink::GuardLink(ChildTable& table) : table_(table) {
  restart_.set<GuardLink, &GuardLink::on_restart>(this);
}

GuardLink::~GuardLink() {
  restart_.stop();
  writer_.detach();
  table_.set_guard(nullptr);
  // The Child closes the pipe on its way out; the guard then kills whatever is still
  // registered, which at a clean exit is nothing.
}

bool GuardLink::start(std::string& err) {
  stopping_ = false;
  if (!spawn_guard(err)) return false;
  table_.set_guard(this);
  return true;
}

bool GuardLink::spawn_guard(std::string& err) {
  int in = child_.add_pipe(0, true, err);
  if (in < 0) return false;
  SpawnSpec s;
  s.exe = helper_executable("vacataire-guard");
  s.args = {std::to_string(getpid())};
  s.fds = {{1, 2}, {2, 2}};
  s.die_with_parent = false;  // it must outlive us: that is its whole job
  ChildLabel label;
  label.owner = "guard";
  label.role = "guard";
  label.record = false;
  label.contain = false;
  if (!child_.start(
          table_, s, label, [this](int st) { on_exit(st); }, err))
    return false;
  writer_.attach(in);
  // Everything to contain so far: a restarted guard learns it all again.
  if (!table_.cgroup_base().empty()) add_cgroup(table_.cgroup_base());
  for (auto& c : table_.cgroups()) add_cgroup(c);
  for (pid_t g : table_.groups()) add_group(g, table_.serves(g));
  if (fence_ > Duration(0)) set_fence(fence_);
  return true;
}

void GuardLink::set_fence(Duration after) {
  fence_ = after;
  send(cat("f ", std::chrono::duration_cast<std::chrono::milliseconds>(after).count()));
}

void GuardLink::send(const std::string& line) {
  if (!child_.running()) return;  // the restart sends everything again
  if (writer_.write(line + "\n")) return;
  // A guard that cannot keep up has missed a group: replace it rather than trust it.
  log_warn("guard", "vacataire-guard is not reading its input; restarting it");
  child_.kill();
}

void GuardLink::on_exit(int status) {
  writer_.detach();
  child_.abandon();  // its group went with it
  if (stopping_) return;
  log_warn("guard", "vacataire-guard exited (", describe_wait_status(status), "); restarting it");
  ++restarts_;
  restart_.start(kGuardRestart, 0);
}

void GuardLink::on_restart(ev::timer&, int) {
  std::string err;
  if (stopping_ || spawn_guard(err)) return;
  log_error("guard", "cannot restart vacataire-guard: ", err);
  restart_.start(1, 0);
}

void GuardLink::stop() {
  if (fence_ > Duration(0)) set_fence(Duration(0));  // what follows may block: no fence now
  stopping_ = true;
  restart_.stop();
  writer_.flush();
  writer_.detach();
  table_.set_guard(nullptr);
  child_.abandon();
}

// ---- the fatal guard ----

namespace {
constexpr size_t kMaxGroups = 8192, kMaxCgroups = 1024;
std::atomic<pid_t> g_groups[kMaxGroups];
std::atomic<int> g_cgroup_kill_fds[kMaxCgroups];
std::atomic<bool> g_fatal_init{false};
std::atomic<int> g_log_fd{2};
const int kFatalSignals[] = {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL};

void put(auto& table, size_t size, auto value, auto empty) {
  for (size_t i = 0; i < size; ++i) {
    auto expected = empty;
    if (table[i].compare_exchange_strong(expected, value)) return;
  }
}
void take(auto& table, size_t size, auto value, auto empty) {
  for (size_t i = 0; i < size; ++i) {
    auto expected = value;
    if (table[i].compare_exchange_strong(expected, empty)) return;
  }
}

void say(const char* a, int n, const char* b) {
  char num[16];
  int len = 0;
  char digits[16];
  unsigned v = n < 0 ? 0u : static_cast<unsigned>(n);
  do digits[len++] = static_cast<char>('0' + v % 10), v /= 10;
  while (v && len < 15);
  for (int i = 0; i < len; ++i) num[i] = digits[len - 1 - i];
  int fd = g_log_fd.load();
  ssize_t r = write(fd, a, strlen(a));
  r = write(fd, num, static_cast<size_t>(len));
  r = write(fd, b, strlen(b));
  (void)r;
}

void on_fatal_signal(int sig) {
  int n = fatal_guard_kill_all();
  say("vacataire: fatal signal ", sig, "");
  say(": killed ", n, " process groups and cgroups of services before dying\n");
  // SA_RESETHAND restored the default action: the signal kills us once this handler returns
  // (a fault re-executes the faulting instruction; a signal sent from outside is raised again).
  raise(sig);
}

void on_terminate() {
  int n = fatal_guard_kill_all();
  say("vacataire: uncaught exception: killed ", n,
      " process groups and cgroups of services before dying\n");
  // Services are down: now say what it was, for whoever reads the log (this may allocate).
  const char* what = "std::terminate without an exception (a noexcept function threw?)";
  std::string text;
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      text = x.what();
      what = text.c_str();
    } catch (...) {
      what = "an exception of an unknown type";
    }
  }
  ssize_t r = write(g_log_fd.load(), "vacataire: the exception: ", 26);
  r = write(g_log_fd.load(), what, strlen(what));
  r = write(g_log_fd.load(), "\n", 1);
  (void)r;
  signal(SIGABRT, SIG_DFL);
  abort();
}
}  // namespace

void fatal_guard_set_log_fd(int fd) {
  g_log_fd = fd >= 0 ? fd : 2;
}

void fatal_guard_add(pid_t pgid) {
  put(g_groups, kMaxGroups, pgid, pid_t(0));
}
void fatal_guard_remove(pid_t pgid) {
  take(g_groups, kMaxGroups, pgid, pid_t(0));
}
void fatal_guard_add_cgroup(int kill_fd) {
  put(g_cgroup_kill_fds, kMaxCgroups, kill_fd + 1, 0);  // +1: 0 means empty
}
void fatal_guard_remove_cgroup(int kill_fd) {
  take(g_cgroup_kill_fds, kMaxCgroups, kill_fd + 1, 0);
}

int fatal_guard_kill_all() {
  int n = 0;
  for (auto& fd : g_cgroup_kill_fds) {
    int f = fd.load();
    if (f > 0 && write(f - 1, "1", 1) == 1) ++n;
  }
  for (auto& g : g_groups) {
    pid_t p = g.load();
    if (p > 0 && kill(-p, SIGKILL) == 0) ++n;
  }
  return n;
}

void install_fatal_guard() {
  if (g_fatal_init.exchange(true)) return;
  // Its own stack, so a stack overflow still reaches the handler.
  static char stack[64 * 1024];
  stack_t ss{};
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : kFatalSignals) sigaction(sig, &sa, nullptr);
  std::set_terminate(on_terminate);
}

}  // namespace vac
