// Restart latency after SIGKILL, and the idle cost (memory, CPU) of supervising 10 and 1,000
// services: vacataire against runit (runsvdir + runsv) and s6 (s6-svscan + s6-supervise),
// measured in the same run on the same idle service. A program to run by hand; it prints
// tables and never fails on a figure.
//
//   restart_bench [--kills N] [--large N] [--idle-seconds S] [--only vacataire|runit|s6]
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

using bench::cpu_ticks;
using bench::field_kb;
using bench::percentile;
using bench::read_text;

struct Tool {
  std::string name;
  bool present;
};

struct Run {
  std::string tool, dir, scan;
  pid_t root = 0;
  int fifo = -1;
  std::string pending;
  std::map<std::string, pid_t> pid;
  std::map<std::string, Clock::time_point> started;
};

double ms(Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Reads "NAME PID" lines from the fifo until deadline; returns the names heard from.
std::vector<std::string> read_announcements(Run& r, Clock::time_point deadline) {
  std::vector<std::string> heard;
  while (Clock::now() < deadline) {
    pollfd p{r.fifo, POLLIN, 0};
    int left = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count());
    if (poll(&p, 1, std::max(left, 0)) <= 0) break;
    char buf[65536];
    ssize_t n = read(r.fifo, buf, sizeof buf);
    if (n <= 0) continue;
    auto now = Clock::now();
    r.pending.append(buf, static_cast<size_t>(n));
    size_t nl;
    while ((nl = r.pending.find('\n')) != std::string::npos) {
      std::istringstream line(r.pending.substr(0, nl));
      r.pending.erase(0, nl + 1);
      std::string name;
      pid_t pid = 0;
      line >> name >> pid;
      r.pid[name] = pid;
      r.started[name] = now;
      heard.push_back(name);
    }
    if (!heard.empty()) return heard;
  }
  return heard;
}

bool start(Run& r, const std::string& tool, int services, const std::string& sleeper,
           const std::string& vacataire) {
  r.tool = tool;
  r.dir = bench::make_temp_dir("vacataire-bench");
  r.scan = r.dir + "/scan";
  mkdir(r.scan.c_str(), 0755);
  for (int i = 0; i < services; ++i) {
    char name[32];
    snprintf(name, sizeof name, "svc%04d", i);
    std::string d = r.scan + "/" + name;
    mkdir(d.c_str(), 0755);
    if (symlink(sleeper.c_str(), (d + "/run").c_str()) != 0) return false;
  }
  std::string fifo = r.scan + "/fifo";
  mkfifo(fifo.c_str(), 0600);
  r.fifo = open(fifo.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  std::string config = r.dir + "/vacataire.json";
  {
    std::ofstream out(config);
    out << R"({"node": {"name": "bench", "state_dir": "state"}, "services_dir": "scan", )"
        << R"("control_socket": "control.sock"})";
  }
  r.root = fork();
  if (r.root == 0) {
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0), dup2(null, 1), dup2(null, 2);
    if (tool == "vacataire")
      execl(vacataire.c_str(), "vacataire", "run", "-c", config.c_str(), "--log-level", "warn",
            nullptr);
    else if (tool == "runit")
      execlp("runsvdir", "runsvdir", "-P", r.scan.c_str(), nullptr);
    else
      execlp("s6-svscan", "s6-svscan", "-c", "4096", r.scan.c_str(), nullptr);  // default max: 500
    _exit(127);
  }
  auto deadline = Clock::now() + 120s;
  while (static_cast<int>(r.pid.size()) < services && Clock::now() < deadline)
    read_announcements(r, deadline);
  return static_cast<int>(r.pid.size()) == services;
}

void stop(Run& r) {
  // runsvdir: SIGHUP makes it TERM every runsv (which stop their service) and exit.
  kill(r.root, r.tool == "runit" ? SIGHUP : SIGTERM);
  auto deadline = Clock::now() + 20s;
  int status;
  while (waitpid(r.root, &status, WNOHANG) == 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  kill(-r.root, SIGKILL);
  waitpid(r.root, &status, WNOHANG);
  for (auto& [name, pid] : r.pid) kill(pid, SIGKILL);  // any service left behind
  // runsv and s6-supervise children were in other groups (runsvdir -P): sweep them by pid.
  close(r.fifo);
  bench::remove_tree(r.dir);
}

// The supervisor's own processes: the root and its children that are not services.
std::vector<pid_t> supervisor_processes(pid_t root) {
  std::vector<pid_t> out = {root};
  DIR* d = opendir("/proc");
  while (dirent* e = d ? readdir(d) : nullptr) {
    pid_t pid = static_cast<pid_t>(std::atoi(e->d_name));
    if (pid <= 0) continue;
    std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
    auto rp = stat.rfind(')');
    if (rp == std::string::npos) continue;
    std::string comm = stat.substr(stat.find('(') + 1, rp - stat.find('(') - 1);
    std::istringstream rest(stat.substr(rp + 2));
    char state;
    pid_t ppid;
    rest >> state >> ppid;
    if (ppid == root && comm != "run") out.push_back(pid);
  }
  if (d) closedir(d);
  return out;
}

struct Idle {
  size_t processes = 0;
  long rss_kb = 0, pss_kb = 0;
  double cpu_ms = 0;
};

Idle measure_idle(Run& r, double seconds) {
  std::this_thread::sleep_for(2s);  // let start-up work settle
  Idle m;
  auto procs = supervisor_processes(r.root);
  m.processes = procs.size();
  long before = 0, after = 0;
  for (pid_t p : procs) {
    m.rss_kb += field_kb("/proc/" + std::to_string(p) + "/status", "VmRSS:");
    m.pss_kb += field_kb("/proc/" + std::to_string(p) + "/smaps_rollup", "Pss:");
    before += cpu_ticks(p);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  for (pid_t p : procs) after += cpu_ticks(p);
  m.cpu_ms =
      static_cast<double>(after - before) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
  return m;
}

std::vector<double> measure_restarts(Run& r, int kills) {
  std::vector<double> lat;
  std::vector<std::string> names;
  for (auto& [n, _] : r.pid) names.push_back(n);
  for (int k = 0; k < kills; ++k) {
    const std::string& name = names[static_cast<size_t>(k) % names.size()];
    // Every tool here delays the restart of a service that ran less than a second; kill
    // only services that have run longer, so that what is measured is the restart itself.
    auto ready = r.started[name] + 1200ms;
    if (Clock::now() < ready) std::this_thread::sleep_until(ready);
    pid_t old = r.pid[name];
    auto t0 = Clock::now();
    kill(old, SIGKILL);
    auto deadline = t0 + 10s;
    while (Clock::now() < deadline) {
      read_announcements(r, deadline);
      if (r.pid[name] != old) break;
    }
    if (r.pid[name] == old) {
      std::fprintf(stderr, "%s: %s did not come back within 10s\n", r.tool.c_str(), name.c_str());
      continue;
    }
    lat.push_back(ms(r.started[name] - t0));
  }
  return lat;
}

bool have(const char* cmd) {
  std::string c = std::string("command -v ") + cmd + " >/dev/null 2>&1";
  return std::system(c.c_str()) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  int kills = 100, large = 1000;
  double idle_s = 10;
  std::string only;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--kills")
      kills = std::atoi(argv[i + 1]);
    else if (a == "--large")
      large = std::atoi(argv[i + 1]);
    else if (a == "--idle-seconds")
      idle_s = std::atof(argv[i + 1]);
    else if (a == "--only")
      only = argv[i + 1];
  }
  std::vector<Tool> tools = {
      {"vacataire", true}, {"runit", have("runsvdir")}, {"s6", have("s6-svscan")}};
  std::printf(
      "restart_bench: %d kills over 10 services; idle cost with 10 and %d services over %gs\n",
      kills, large, idle_s);
  std::printf(
      "machine: %ld cores; kernel idle service: bench/sleeper (announces itself on a fifo)\n\n",
      sysconf(_SC_NPROCESSORS_ONLN));

  std::map<std::string, std::vector<double>> latency;
  std::map<std::string, std::map<int, Idle>> idle;
  for (auto& t : tools) {
    if (!t.present || (!only.empty() && only != t.name)) continue;
    for (int n : {10, large}) {
      Run r;
      if (!start(r, t.name, n, SLEEPER_BIN, VACATAIRE_BIN)) {
        std::fprintf(stderr, "%s: only %zu of %d services started\n", t.name.c_str(), r.pid.size(),
                     n);
        stop(r);
        continue;
      }
      if (n == 10) latency[t.name] = measure_restarts(r, kills);
      idle[t.name][n] = measure_idle(r, idle_s);
      stop(r);
    }
  }

  std::printf("Restart latency after SIGKILL (ms, kill to the new process announcing itself)\n");
  std::printf("%-10s %6s %8s %8s %8s %8s\n", "tool", "kills", "median", "p99", "max", "vs vac");
  double vac_median = percentile(latency["vacataire"], 0.5);
  for (auto& [tool, v] : latency)
    std::printf("%-10s %6zu %8.2f %8.2f %8.2f %8.2f\n", tool.c_str(), v.size(), percentile(v, 0.5),
                percentile(v, 0.99), percentile(v, 1.0),
                vac_median > 0 ? percentile(v, 0.5) / vac_median : 0);

  std::printf("\nIdle cost of the supervision itself (services excluded)\n");
  std::printf("%-10s %8s %6s %10s %10s %12s %10s\n", "tool", "services", "procs", "RSS kB",
              "PSS kB", "CPU ms/10s", "RSS vs vac");
  for (auto& [tool, by_n] : idle)
    for (auto& [n, m] : by_n) {
      double vac_rss = static_cast<double>(idle["vacataire"][n].rss_kb);
      std::printf("%-10s %8d %6zu %10ld %10ld %12.0f %10.2f\n", tool.c_str(), n, m.processes,
                  m.rss_kb, m.pss_kb, m.cpu_ms * 10.0 / idle_s,
                  vac_rss > 0 ? static_cast<double>(m.rss_kb) / vac_rss : 0);
    }
  return 0;
}
