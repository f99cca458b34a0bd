// vacataire-guard: kills a supervisor's services when the supervisor dies or freezes (see
// guard.hpp). It reads lines on stdin from its supervisor — "g+ PGID" (a process group),
// "s+ PGID" (a service's process group), "g- PGID", "c+ CGROUP-PATH" (a service's cgroup),
// "c- CGROUP-PATH", "f MS" (fence after MS milliseconds of silence; 0: never) and "t" (a tick:
// the supervisor's loop is alive) — and:
// - when stdin reaches end of file (the supervisor exited, cleanly or not) it writes 1 to every
//   cgroup's cgroup.kill, sends SIGKILL to every process group, removes the emptied cgroups and
//   exits;
// - when a fence is set and nothing has come for that long (the supervisor is stopped, stuck or
//   swapped out, and its peer is about to take over) it kills the services' cgroups and process
//   groups the same way (not linkd's or the probes') and goes on reading: the supervisor, if it
//   resumes, sees its services gone.
// It ignores the usual stop signals: only SIGKILL ends it early, and then the supervisor starts
// another one.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>

namespace {

bool populated(const std::string& cg) {
  int fd = open((cg + "/cgroup.events").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[256];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  return strstr(buf, "populated 1") != nullptr;
}

// One line on stderr, never waiting for its reader: the pipe may be full and nobody left to
// read it. A pipe or terminal is reopened non-blocking (its own open file description, so the
// flags of whoever shares fd 2 stay as they are); a file is appended to; a socket is sent to.
void say(const std::string& line) {
  struct stat st {};
  if (fstat(2, &st) != 0) return;
  ssize_t r = 0;
  if (S_ISSOCK(st.st_mode)) {
    r = send(2, line.data(), line.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  } else if (S_ISREG(st.st_mode)) {
    r = write(2, line.data(), line.size());
  } else if (int fd = open("/proc/self/fd/2", O_WRONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
             fd >= 0) {
    r = write(fd, line.data(), line.size());
    close(fd);
  }
  (void)r;
}

void kill_cgroup(const std::string& cg) {
  int fd = open((cg + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t r = write(fd, "1", 1);
  (void)r;
  close(fd);
}

long long now_ms() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<long long>(ts.tv_sec) * 1000 + ts.tv_nsec / 1000000;
}

// Everything at once, cgroups first (they hold what left its group); how many were alive.
int kill_all(const std::set<pid_t>& groups, const std::set<std::string>& cgroups) {
  int live = 0;
  for (auto it = cgroups.rbegin(); it != cgroups.rend(); ++it)
    if (populated(*it)) kill_cgroup(*it), ++live;
  for (pid_t g : groups)
    if (kill(-g, SIGKILL) == 0) ++live;
  return live;
}

}  // namespace

int main(int argc, char** argv) {
  const char* supervisor = argc > 1 ? argv[1] : "?";
  for (int sig :
       {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU})
    signal(sig, SIG_IGN);
  // The OOM killer must take the supervisor rather than its guard.
  if (int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC); fd >= 0) {
    ssize_t r = write(fd, "-1000", 5);
    (void)r;
    close(fd);
  }

  std::set<pid_t> groups, services;  // services: fenced too
  std::set<std::string> cgroups;     // the services' (and their base)
  std::string buf;
  char chunk[4096];
  long fence_ms = 0;           // 0: no fence
  long long heard = now_ms();  // when the supervisor last said anything
  bool fenced = false;         // killed for this silence already
  for (;;) {
    int timeout = -1;
    if (fence_ms > 0 && !fenced)
      timeout = static_cast<int>(std::max(0LL, heard + fence_ms - now_ms()));
    pollfd p{0, POLLIN, 0};
    int r = poll(&p, 1, timeout);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {  // silent for fence_ms: the peer is about to serve, so nothing here may
      int live = kill_all(services, cgroups);
      fenced = true;
      say("vacataire-guard: supervisor " + std::string(supervisor) + " has said nothing for " +
          std::to_string(now_ms() - heard) + " ms (fence " + std::to_string(fence_ms) +
          " ms): it is frozen, and its peer takes over; killed " + std::to_string(live) +
          " process groups and cgroups of its services\n");
      continue;
    }
    ssize_t n = read(0, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    heard = now_ms();
    fenced = false;
    buf.append(chunk, static_cast<size_t>(n));
    size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.size() >= 2 && line[0] == 'f' && line[1] == ' ') {
        fence_ms = std::max(0L, std::strtol(line.c_str() + 2, nullptr, 10));
        continue;
      }
      if (line.size() < 4 || line[2] != ' ') continue;  // "t", and anything unknown
      std::string arg = line.substr(3);
      if (line[0] == 'g' || line[0] == 's') {
        pid_t g = static_cast<pid_t>(std::strtol(arg.c_str(), nullptr, 10));
        if (g <= 1) continue;
        if (line[1] == '+') {
          groups.insert(g);
          if (line[0] == 's') services.insert(g);
        } else {
          groups.erase(g);
          services.erase(g);
        }
      } else if (line[0] == 'c' && !arg.empty() && arg[0] == '/') {
        if (line[1] == '+')
          cgroups.insert(arg);
        else
          cgroups.erase(arg);
      }
    }
  }

  // The supervisor is gone. Everything at once, then remove the emptied cgroups.
  int live = kill_all(groups, cgroups);
  // Deepest first (bounded: members exit within milliseconds).
  for (int tries = 0; tries < 200 && !cgroups.empty(); ++tries) {
    for (auto it = cgroups.rbegin(); it != cgroups.rend();) {
      if (rmdir(it->c_str()) == 0 || errno == ENOENT)
        it = std::set<std::string>::reverse_iterator(cgroups.erase(std::next(it).base()));
      else
        ++it;
    }
    if (!cgroups.empty()) {
      timespec ts{0, 10 * 1000 * 1000};
      nanosleep(&ts, nullptr);
    }
  }
  if (live > 0)
    say("vacataire-guard: supervisor " + std::string(supervisor) + " is gone; killed " +
        std::to_string(live) + " process groups and cgroups of its services\n");
  return 0;
}
