// How long both nodes' services serve at once (overlap), and how long neither does (gap),
// across a handover: planned (release, SIGTERM of the active supervisor) and on failure (the
// active node's content probe fails). Each app writes "start NODE <monotonic ns>" just before
// it listens and "stop NODE <ns>" once it has exited, so overlap = stop(old) - start(new) when
// positive is an upper bound of the time both answered. Median and p99 over N runs each, on
// loopback with heartbeat 20ms, dead_after 150ms, probe interval 50ms (fall 2).
//   build/bench/overlap_bench [RUNS]
#include <sys/socket.h>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "harness.hpp"
#include "wire.hpp"

namespace {

using vt::json;

std::string loop(int port) {
  return "127.0.0.1:" + std::to_string(port);
}

struct Mark {
  std::string what, node;
  long long ns;
};

struct Bench {
  vt::Node a, b;
  std::string journal;

  Bench() {
    journal = a.path("journal");
    int link_a = vt::free_port(SOCK_DGRAM), link_b = vt::free_port(SOCK_DGRAM);
    std::string key = vac::new_key_hex() + "\n";
    setup(a, "web1", "master", "web2", link_a, link_b, key);
    setup(b, "web2", "standby", "web1", link_b, link_a, key);
  }
  void setup(vt::Node& n, const std::string& name, const std::string& role, const std::string& peer,
             int listen, int peer_port, const std::string& key) {
    int app = vt::free_port(SOCK_STREAM);
    n.write("peer.key", key, 0600);
    n.write("body", "pong from " + name + "\n");
    n.service("app",
              "mono() { python3 -c 'import time; print(time.monotonic_ns())'; }\n"
              "trap 'kill -TERM $child 2>/dev/null; wait $child; echo \"stop " +
                  name + " $(mono)\" >> " + journal +
                  "; exit 0' TERM INT\n"
                  "echo \"start " +
                  name + " $(mono)\" >> " + journal +
                  "\npython3 " SOURCE_DIR "/services.d/app/app.py &\nchild=$!\nwait $child\n",
              {{"env/APP_PORT", std::to_string(app)},
               {"env/APP_BODY_FILE", n.path("body")},
               {"ready", "#!/bin/sh\nexec bash -c 'exec 3<>/dev/tcp/127.0.0.1/" +
                             std::to_string(app) + "' 2>/dev/null\n"},
               {"timeout-stop", "2"}});
    n.configure({{"node", {{"name", name}, {"role", role}}},
                 {"peer",
                  {{"name", peer},
                   {"links", {{{"listen", loop(listen)}, {"peer", loop(peer_port)}}}},
                   {"key_file", "peer.key"},
                   {"heartbeat", "20ms"},
                   {"dead_after", "150ms"}}},
                 {"failover", {{"startup_grace", "500ms"}}},
                 {"probes",
                  {{"content",
                    {{"exec",
                      {"content", "--url", "http://" + loop(app) + "/app/ping", "--bytes",
                       std::to_string(("pong from " + name + "\n").size()), "--timeout", "500ms"}},
                     {"interval", "50ms"},
                     {"fall", 2},
                     {"rise", 1},
                     {"scope", "active"}}}}}});
  }
  static std::string state(vt::Node& n) { return n.status()["node"].value("state", "?"); }
  bool states(const std::string& sa, const std::string& sb) {
    return vt::eventually([&] { return state(a) == sa && state(b) == sb; }, 20);
  }
  std::vector<Mark> marks() const {
    std::vector<Mark> out;
    std::istringstream in(vt::read_file(journal));
    Mark m;
    while (in >> m.what >> m.node >> m.ns) out.push_back(m);
    return out;
  }
  // The last stop of `from` and the first start of `to` after `after`: (overlap, gap) in ms.
  bool measure(const std::string& from, const std::string& to, long long after, double& overlap,
               double& gap) {
    long long stop = -1, start = -1;
    for (auto& m : marks()) {
      if (m.ns < after) continue;
      if (m.what == "stop" && m.node == from && stop < 0) stop = m.ns;
      if (m.what == "start" && m.node == to && start < 0) start = m.ns;
    }
    if (stop < 0 || start < 0) return false;
    overlap = std::max(0.0, (stop - start) / 1e6);
    gap = std::max(0.0, (start - stop) / 1e6);
    return true;
  }
};

long long mono_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Series {
  std::vector<double> overlap, gap;
  void print(const char* name) const {
    auto stat = [](std::vector<double> v, double q) {
      if (v.empty()) return -1.0;
      std::sort(v.begin(), v.end());
      return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
    };
    std::printf("%-26s %4zu  %10.1f %10.1f %10.1f  %10.1f %10.1f\n", name, overlap.size(),
                stat(overlap, 0.5), stat(overlap, 0.99), stat(overlap, 1.0), stat(gap, 0.5),
                stat(gap, 0.99));
  }
};

// One handover per run: web1 active, then the trigger, then web2 serving.
template <typename Trigger>
void run(const char* name, int runs, Trigger trigger) {
  Series s;
  for (int i = 0; i < runs; ++i) {
    Bench bench;
    bench.a.start();
    bench.b.start();
    if (!bench.states("active", "passive") || !bench.a.wait_state("app", "up", 20) ||
        !bench.a.wait_probe(
            "content", [](const vt::json& c) { return c["state"] == "passing"; }, 20)) {
      std::fprintf(stderr, "%s: the pair did not settle; skipping a run\n", name);
      continue;
    }
    long long t0 = mono_ns();
    trigger(bench);
    double overlap = 0, gap = 0;
    bool ok = vt::eventually(
        [&] {
          return bench.b.service_status("app")["state"] == "up" &&
                 bench.measure("web1", "web2", t0, overlap, gap);
        },
        20);
    if (ok) s.overlap.push_back(overlap), s.gap.push_back(gap);
    bench.a.stop();
    bench.b.stop();
  }
  s.print(name);
}

}  // namespace

int main(int argc, char** argv) {
  int runs = argc > 1 ? std::atoi(argv[1]) : 10;
  std::printf("%-26s %4s  %10s %10s %10s  %10s %10s\n", "handover", "runs", "overlap p50", "p99",
              "max", "gap p50", "p99");
  std::printf("%-26s %4s  %10s %10s %10s  %10s %10s\n", "", "", "(ms)", "(ms)", "(ms)", "(ms)",
              "(ms)");
  run("planned: release", runs, [](Bench& b) { b.a.cli({"release"}); });
  run("planned: SIGTERM", runs, [](Bench& b) { b.a.stop(); });
  run("failure: content probe", runs, [](Bench& b) { vt::write_file(b.a.path("body"), "pong\n"); });
  return 0;
}
