// Child, ChildTable, spawn and BoundedWriter with real processes on a real libev loop: a
// released or destroyed Child never calls back and leaves nothing running; a set-up failure
// between fork and exec is reported in the parent and nothing of the program runs; a writer
// facing a reader that never reads stays bounded and never blocks.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <memory>

#include <ev++.h>

#include "child.hpp"
#include "common/text.hpp"
#include "harness.hpp"
#include "state_dir.hpp"
#include "writer.hpp"

using namespace vac;

namespace {

// A libev loop that reaps into a ChildTable, run until a condition holds or a deadline.
struct Loop {
  ChildTable table;
  ev::child watcher;
  int orphans = 0;
  Loop() {
    watcher.set<Loop, &Loop::on_child>(this);
    watcher.set(0, 0);
    watcher.start();
  }
  ~Loop() { watcher.stop(); }
  void on_tick(ev::timer&, int) {}
  void on_child(ev::child& w, int) {
    if (!table.on_reaped(w.rpid, w.rstatus)) ++orphans;
  }
  bool run_until(const std::function<bool()>& cond, double timeout_s = 10) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    while (!cond()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      ev::timer t;
      t.set<Loop, &Loop::on_tick>(this);
      t.start(0.005, 0);
      ev::get_default_loop().run(ev::ONCE);
    }
    return true;
  }
};

SpawnSpec shell(const std::string& script) {
  SpawnSpec s;
  s.exe = "/bin/sh";
  s.args = {"-c", script};
  s.fds = {{2, 2}};
  return s;
}

bool alive(pid_t pid) {
  return vt::process_exists(pid);
}

}  // namespace

TEST_CASE("a Child calls back once with the wait status, then keeps its group until released") {
  Loop loop;
  Child c;
  int calls = 0, status = 0;
  std::string err;
  REQUIRE(c.start(
      loop.table, shell("sleep 1000 & exit 7"), ChildLabel{"t", "run", false},
      [&](int st) { ++calls, status = st; }, err));
  pid_t pgid = c.pgid();
  CHECK(c.pid() == pgid);  // its own session and group
  REQUIRE(loop.run_until([&] { return calls > 0; }));
  CHECK(calls == 1);
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 7);
  CHECK_FALSE(c.running());
  CHECK(c.pgid() == pgid);
  CHECK(c.group_alive());  // the sleep it left behind
  c.release();
  REQUIRE(loop.run_until([&] { return kill(-pgid, 0) != 0 && loop.table.draining() == 0; }));
  CHECK(loop.table.groups().empty());
}

TEST_CASE("destroying a Child cancels its callback and kills its whole group") {
  Loop loop;
  bool called = false;
  pid_t pgid = 0;
  {
    auto owner = std::make_unique<Child>();
    std::string err;
    REQUIRE(owner->start(
        loop.table, shell("sleep 1000 & exec sleep 1000"), ChildLabel{"t", "ready", false},
        [&](int) { called = true; }, err));
    pgid = owner->pgid();
    CHECK(loop.table.live() == 1);
    CHECK(loop.table.groups().size() == 1);
  }  // the owner goes away while its process runs, as a Service removed by SIGHUP does
  CHECK(loop.table.live() == 0);
  REQUIRE(loop.run_until([&] { return kill(-pgid, 0) != 0 && loop.table.draining() == 0; }));
  CHECK_FALSE(called);
  CHECK(loop.orphans >= 1);  // reaped all the same
  CHECK(loop.table.groups().empty());
}

TEST_CASE("a callback may destroy its own Child") {
  Loop loop;
  auto c = std::make_unique<Child>();
  bool done = false;
  std::string err;
  REQUIRE(c->start(
      loop.table, shell("exit 0"), ChildLabel{"t", "run", false},
      [&](int) {
        c.reset();
        done = true;
      },
      err));
  REQUIRE(loop.run_until([&] { return done; }));
  CHECK(c == nullptr);
}

TEST_CASE("pipes: the parent's ends are owned by the Child and closed on release") {
  Loop loop;
  Child c;
  std::string err;
  int in = c.add_pipe(0, true, err);
  int out = c.add_pipe(1, false, err, 2);
  REQUIRE(in >= 0);
  REQUIRE(out >= 0);
  CHECK((fcntl(in, F_GETFD) & FD_CLOEXEC) != 0);
  CHECK((fcntl(out, F_GETFL) & O_NONBLOCK) != 0);
  bool exited = false;
  REQUIRE(c.start(
      loop.table, shell("read line; echo \"got $line\"; echo err >&2"),
      ChildLabel{"t", "probe", false}, [&](int) { exited = true; }, err));
  REQUIRE(write(in, "hello\n", 6) == 6);
  REQUIRE(loop.run_until([&] { return exited; }));
  char buf[64] = {};
  ssize_t n = read(out, buf, sizeof buf - 1);
  CHECK(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0) == "got hello\nerr\n");
  c.release();
  CHECK(fcntl(in, F_GETFD) == -1);  // closed
  CHECK(fcntl(out, F_GETFD) == -1);
}

TEST_CASE("a set-up failure between fork and exec is reported and nothing of the program runs") {
  Loop loop;
  vt::Node scratch;  // a temporary directory for the marker
  std::string marker = scratch.path("ran");
  // dup2 to an fd at or above the soft limit fails in the child (EBADF), for real.
  rlimit old{};
  getrlimit(RLIMIT_NOFILE, &old);
  rlimit low = old;
  low.rlim_cur = 256;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  Child c;
  std::string err;
  int out = c.add_pipe(300, false, err);
  bool started = out >= 0 && c.start(
                                 loop.table, shell("echo $$ >> " + marker + "; sleep 1000"),
                                 ChildLabel{"t", "run", false}, [](int) {}, err);
  setrlimit(RLIMIT_NOFILE, &old);
  CHECK_FALSE(started);
  CHECK(err.find("moving fd 300") != std::string::npos);
  CHECK(err.find("Bad file descriptor") != std::string::npos);
  CHECK_FALSE(c.running());
  CHECK(loop.table.live() == 0);
  CHECK(loop.table.groups().empty());
  // The failed child is reaped (here, or already by Boost) and never ran the script.
  loop.run_until([&] { return loop.orphans > 0; }, 2);
  CHECK(vt::read_file(marker).empty());
}

TEST_CASE("an exec failure is reported in the parent with the reason") {
  Loop loop;
  Child c;
  std::string err;
  SpawnSpec s;
  s.exe = "/nonexistent/run";
  CHECK_FALSE(c.start(
      loop.table, s, ChildLabel{"t", "run", false}, [](int) {}, err));
  CHECK(err.find("/nonexistent/run") != std::string::npos);
  CHECK(err.find("No such file") != std::string::npos);
  SpawnSpec d = shell("true");
  d.cwd = "/nonexistent-dir";
  CHECK_FALSE(c.start(
      loop.table, d, ChildLabel{"t", "run", false}, [](int) {}, err));
  CHECK(err.find("chdir") != std::string::npos);
}

TEST_CASE("the child starts with an empty signal mask and default dispositions") {
  Loop loop;
  // The parent ignores SIGUSR1 and blocks SIGUSR2: the child must have neither.
  auto old1 = signal(SIGUSR1, SIG_IGN);
  sigset_t set, old_mask;
  sigemptyset(&set);
  sigaddset(&set, SIGUSR2);
  sigprocmask(SIG_BLOCK, &set, &old_mask);
  Child c;
  std::string err;
  int out = c.add_pipe(1, false, err);
  bool exited = false;
  REQUIRE(c.start(
      loop.table, shell("grep -E '^Sig(Blk|Ign)' /proc/self/status"), ChildLabel{"t", "run", false},
      [&](int) { exited = true; }, err));
  sigprocmask(SIG_SETMASK, &old_mask, nullptr);
  signal(SIGUSR1, old1);
  REQUIRE(loop.run_until([&] { return exited; }));
  char buf[256] = {};
  ssize_t n = read(out, buf, sizeof buf - 1);
  REQUIRE(n > 0);
  // grep itself ignores nothing: a mask or ignore set inherited from us would show here.
  CHECK(std::string(buf) == "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n");
}

TEST_CASE("a service leader dies with the process that started it (parent-death signal)") {
  // An intermediate process spawns the child and is then killed -9.
  int p[2];
  REQUIRE(pipe(p) == 0);
  pid_t mid = fork();
  if (mid == 0) {
    close(p[0]);
    std::string err;
    SpawnSpec s;
    s.exe = "/bin/sleep";
    s.args = {"1000"};
    pid_t child = spawn(s, err);
    ssize_t w = write(p[1], &child, sizeof child);
    (void)w;
    pause();
    _exit(0);
  }
  close(p[1]);
  pid_t child = 0;
  REQUIRE(read(p[0], &child, sizeof child) == sizeof child);
  close(p[0]);
  REQUIRE(child > 0);
  CHECK(alive(child));
  kill(mid, SIGKILL);
  waitpid(mid, nullptr, 0);
  bool gone = vt::eventually([&] { return !alive(child); }, 5);
  if (!gone) kill(child, SIGKILL);
  CHECK(gone);
}

TEST_CASE("a bounded writer facing a reader that never reads drops and counts, never blocks") {
  int p[2];
  REQUIRE(pipe2(p, O_CLOEXEC) == 0);
  BoundedWriter w(64 * 1024);
  w.attach(p[1], false, true);
  std::string line(1000, 'x');
  line += '\n';
  auto start = std::chrono::steady_clock::now();
  int accepted = 0;
  for (int i = 0; i < 2000; ++i) accepted += w.write(line) ? 1 : 0;
  auto took = std::chrono::steady_clock::now() - start;
  CHECK(took < std::chrono::seconds(5));  // 2 MB into a 64 KiB pipe + 64 KiB queue: no wait
  CHECK(accepted < 2000);
  CHECK(w.dropped_messages() == static_cast<uint64_t>(2000 - accepted));
  CHECK(w.dropped_bytes() == w.dropped_messages() * line.size());
  CHECK(w.queued() <= 64 * 1024);
  // Whole lines only: what the reader gets is a sequence of complete lines.
  std::string got;
  char buf[65536];
  fcntl(p[0], F_SETFL, O_NONBLOCK);
  for (int round = 0; round < 1000 && (w.queued() > 0 || got.empty()); ++round) {
    ssize_t n;
    while ((n = read(p[0], buf, sizeof buf)) > 0) got.append(buf, static_cast<size_t>(n));
    w.flush();
  }
  while (true) {
    ssize_t n = read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  CHECK(w.queued() == 0);
  CHECK(got.size() == static_cast<size_t>(accepted) * line.size());
  CHECK(got.find_first_not_of(line) == std::string::npos);
  // A reader that is gone: an error, counted, never SIGPIPE (ignored by the supervisor).
  auto old = signal(SIGPIPE, SIG_IGN);
  close(p[0]);
  w.write(line);
  CHECK(w.error() == EPIPE);
  signal(SIGPIPE, old);
}

TEST_CASE("utf8_clean keeps valid text and replaces every invalid byte") {
  CHECK(utf8_clean("caf\xc3\xa9 ok") == "caf\xc3\xa9 ok");
  CHECK(utf8_clean("cut \xc3") == "cut \xef\xbf\xbd");
  CHECK(utf8_clean("\xff\xfe") == "\xef\xbf\xbd\xef\xbf\xbd");
  CHECK(utf8_clean("\xc0\xaf") == "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  CHECK(utf8_clean("\xed\xa0\x80") == "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  CHECK(utf8_clean("\xf0\x9f\x98\x80") == "\xf0\x9f\x98\x80");
}

TEST_CASE("/proc/PID/stat tells a stopped process from a spinning one, and a gone one") {
  pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    for (;;) {  // spins until killed
    }
  }
  vac::ProcStat first, st;
  REQUIRE(vac::read_proc_stat(pid, first));
  CHECK(first.pgrp == getpgrp());
  CHECK(first.start_time > 0);
  CHECK(first.start_time == vac::process_start_time(pid));
  // Spinning: runnable, and its CPU time grows (clock ticks of 10ms).
  CHECK(vt::eventually(
      [&] { return vac::read_proc_stat(pid, st) && st.cpu_ticks > first.cpu_ticks + 2; }));
  CHECK(st.state == 'R');
  REQUIRE(kill(pid, SIGSTOP) == 0);
  CHECK(vt::eventually([&] { return vac::read_proc_stat(pid, st) && st.state == 'T'; }));
  unsigned long long stopped_at = st.cpu_ticks;
  REQUIRE(kill(pid, SIGKILL) == 0);
  REQUIRE(waitpid(pid, nullptr, 0) == pid);
  CHECK(stopped_at >= first.cpu_ticks);
  CHECK_FALSE(vac::read_proc_stat(pid, st));
  CHECK(vac::process_start_time(pid) == 0);
}
