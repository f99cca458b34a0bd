// Probe round trips and the supervisor's cost of probing: the jsonl round trip (request
// written to the result parsed) beside the exit-mode round trip (fork, exec, exit, reap), and
// the supervisor's CPU with 10 and 100 jsonl probes checked at 10 Hz. A program run by hand
// that prints a table.
//
//   probe_bench [--samples N] [--seconds S]
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "bench_util.hpp"
#include "control.hpp"

using json = nlohmann::json;
using namespace std::chrono_literals;

namespace {

struct Supervisor {
  std::string dir;
  pid_t pid = 0;

  explicit Supervisor(const json& probes) {
    dir = bench::make_temp_dir("vacataire-probe-bench");
    mkdir((dir + "/services.d").c_str(), 0755);
    json config = {{"node", {{"name", "bench"}, {"state_dir", "state"}}},
                   {"services_dir", "services.d"},
                   {"control_socket", "control.sock"},
                   {"probes", probes}};
    std::FILE* f = std::fopen((dir + "/vacataire.json").c_str(), "w");
    std::fputs(config.dump().c_str(), f);
    std::fclose(f);
    pid = fork();
    if (pid == 0) {
      setsid();
      int null = open("/dev/null", O_RDWR);
      dup2(null, 0), dup2(null, 1), dup2(null, 2);
      std::string cfg = dir + "/vacataire.json";
      execl(VACATAIRE_BIN, "vacataire", "run", "-c", cfg.c_str(), "--log-level", "warn", nullptr);
      _exit(127);
    }
  }
  ~Supervisor() {
    kill(pid, SIGTERM);
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (waitpid(pid, nullptr, WNOHANG) == 0 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    kill(-pid, SIGKILL);
    waitpid(pid, nullptr, WNOHANG);
    bench::remove_tree(dir);
  }
  json status() {
    json reply;
    std::string err;
    if (vac::control_call(dir + "/control.sock", {{"cmd", "status"}}, reply, err, 5) != 0)
      return json::object();
    return reply.value("status", json::object());
  }
  // Waits until every probe has done at least n checks (bounded by a deadline).
  bool wait_checks(long n, std::chrono::seconds limit) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      json st = status();
      bool all = st.contains("probes") && !st["probes"].empty();
      const json probes = st.value("probes", json::object());
      for (auto& [name, p] : probes.items()) all &= p.value("checks", 0L) >= n;
      if (all) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }
};

json probe(const std::vector<std::string>& exec, const char* protocol, const char* interval) {
  return {{"exec", exec}, {"protocol", protocol}, {"interval", interval}, {"timeout", "2s"}};
}

void round_trip(const char* label, const json& p, long samples) {
  Supervisor s(json{{"p", p}});
  // The supervisor keeps the latencies of the last 1000 checks; wait for a full window.
  if (!s.wait_checks(samples, std::chrono::seconds(120))) {
    std::printf("%-34s did not reach %ld checks\n", label, samples);
    return;
  }
  json st = s.status()["probes"]["p"];
  std::printf("%-34s %8ld %10.1f %10.1f  %s\n", label, st.value("checks", 0L),
              st.value("latency_p50_ms", 0.0) * 1000, st.value("latency_p99_ms", 0.0) * 1000,
              st.value("last", "?").c_str());
}

// The floors on this machine, measured in the same run: a bare pipe round trip between two
// processes after the same idle gap, and a bare fork+exec+wait of /bin/true.
void floors(long samples) {
  int a[2], b[2];
  if (pipe(a) != 0 || pipe(b) != 0) return;
  pid_t echo = fork();
  if (echo == 0) {
    close(a[1]);
    close(b[0]);
    char c[64];
    for (;;) {
      ssize_t n = read(a[0], c, sizeof c);
      if (n <= 0 || write(b[1], c, static_cast<size_t>(n)) != n) _exit(0);
    }
  }
  close(a[0]);
  close(b[1]);
  std::vector<double> pp, spawn;
  char c[64];
  for (long i = 0; i < samples; ++i) {
    std::this_thread::sleep_for(20ms);
    auto t0 = std::chrono::steady_clock::now();
    if (write(a[1], "{\"check\":1}\n", 12) != 12 || read(b[0], c, sizeof c) <= 0) break;
    pp.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  close(a[1]);
  waitpid(echo, nullptr, 0);
  close(b[0]);
  for (long i = 0; i < std::min(samples, 300L); ++i) {
    auto t0 = std::chrono::steady_clock::now();
    pid_t p = fork();
    if (p == 0) {
      execl("/bin/true", "true", nullptr);
      _exit(127);
    }
    waitpid(p, nullptr, 0);
    spawn.push_back(
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  std::printf("%-34s %8zu %10.1f %10.1f\n", "floor: bare pipe round trip", pp.size(),
              bench::percentile(pp, 0.5), bench::percentile(pp, 0.99));
  std::printf("%-34s %8zu %10.1f %10.1f\n", "floor: bare fork+exec /bin/true", spawn.size(),
              bench::percentile(spawn, 0.5), bench::percentile(spawn, 0.99));
}

void cpu(int probes, double seconds) {
  json ps = json::object();
  for (int i = 0; i < probes; ++i) {
    // Appended rather than `"p" + std::to_string(i)`: g++ 12 at -O3 inlines that prepend into a
    // memcpy it wrongly believes may overlap (-Wrestrict, GCC bug 105651).
    std::string name = "p";
    name += std::to_string(i);
    ps[name] = probe({BUILD_DIR "/probes/examples/always_ok"}, "jsonl", "100ms");
  }
  Supervisor s(ps);
  s.wait_checks(5, std::chrono::seconds(60));
  long before = bench::cpu_ticks(s.pid);
  long checks_before = 0;
  const json first = s.status()["probes"];
  for (auto& [n, p] : first.items()) checks_before += p.value("checks", 0L);
  auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  long after = bench::cpu_ticks(s.pid);
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  long checks_after = 0;
  const json last = s.status()["probes"];
  for (auto& [n, p] : last.items()) checks_after += p.value("checks", 0L);
  double cpu_ms = bench::ticks_to_ms(after - before);
  std::printf(
      "%6d jsonl probes at 10 Hz: %6.0f checks/s, supervisor CPU %6.2f%% of one core "
      "(%.0f ms over %.1fs)\n",
      probes, static_cast<double>(checks_after - checks_before) / elapsed,
      100.0 * cpu_ms / 1000.0 / elapsed, cpu_ms, elapsed);
}

}  // namespace

int main(int argc, char** argv) {
  long samples = 1000;
  double seconds = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--samples") samples = std::atol(argv[i + 1]);
    if (a == "--seconds") seconds = std::atof(argv[i + 1]);
  }
  std::printf(
      "probe_bench: round trips over the last %ld checks (the supervisor's window is 1000); "
      "CPU over %.0fs; %ld cores\n\n",
      std::min(samples, 1000L), seconds, sysconf(_SC_NPROCESSORS_ONLN));
  std::printf("%-34s %8s %10s %10s  %s\n", "round trip (check every 20ms)", "checks", "p50 us",
              "p99 us", "last");
  floors(std::min(samples, 1000L));
  round_trip("jsonl, C++ helper (always_ok)",
             probe({BUILD_DIR "/probes/examples/always_ok"}, "jsonl", "20ms"), samples);
  round_trip("jsonl, built-in memcheck", probe({"memcheck"}, "jsonl", "20ms"), samples);
  round_trip("exit, /bin/true", probe({"/bin/true"}, "exit", "20ms"), samples);
  round_trip("exit, always_ok --once",
             probe({BUILD_DIR "/probes/examples/always_ok", "--once"}, "exit", "20ms"), samples);
  std::printf("\n");
  cpu(10, seconds);
  cpu(100, seconds);
  return 0;
}
