// endpoints_bench: what the load-balancer endpoints cost and how fast they fail closed.
// Starts one node (no peer) with endpoints, then measures: /active and /metrics round trips
// over a new connection each, as HAProxy checks (median, p99); the time from SIGSTOP of the
// supervisor to /active answering 503 (the lease); and linkd's CPU while idle and while
// answering checks at a given rate. Prints a table; never fails on a figure.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.hpp"

using Clock = std::chrono::steady_clock;

namespace {
int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// One request on a new connection; the status code (0: no answer).
int get(int port, const char* path, size_t* bytes = nullptr) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(static_cast<uint16_t>(port));
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) return close(fd), 0;
  std::string req = std::string("GET ") + path + " HTTP/1.0\r\n\r\n";
  if (write(fd, req.data(), req.size()) < 0) return close(fd), 0;
  std::string all;
  char buf[16384];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) all.append(buf, static_cast<size_t>(n));
  close(fd);
  if (bytes) *bytes = all.size();
  return all.size() > 12 ? std::atoi(all.c_str() + 9) : 0;
}

double ms_since(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

pid_t child_named(pid_t parent, const char* name) {
  std::string children = bench::read_text("/proc/" + std::to_string(parent) + "/task/" +
                                          std::to_string(parent) + "/children");
  std::istringstream in(children);
  for (pid_t p; in >> p;)
    if (bench::read_text("/proc/" + std::to_string(p) + "/comm").rfind(name, 0) == 0) return p;
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  int samples = 2000, rate = 10;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--samples")) samples = std::atoi(argv[i + 1]);
    if (!std::strcmp(argv[i], "--rate")) rate = std::atoi(argv[i + 1]);
  }
  std::string dir = bench::make_temp_dir("endpoints-bench");
  int http = free_port();
  std::system(("mkdir -p " + dir +
               "/services.d/app && printf '#!/bin/sh\\nexec sleep 100000\\n' > " + dir +
               "/services.d/app/run && chmod +x " + dir + "/services.d/app/run")
                  .c_str());
  std::FILE* f = std::fopen((dir + "/vacataire.json").c_str(), "w");
  std::fprintf(f,
               "{\"node\": {\"name\": \"bench\", \"state_dir\": \"%s/state\"}, \"services_dir\": "
               "\"%s/services.d\", \"control_socket\": \"%s/control.sock\", \"endpoints\": "
               "{\"http\": \"127.0.0.1:%d\"}, \"probes\": {\"ok\": {\"exec\": [\"/bin/true\"], "
               "\"protocol\": \"exit\", \"interval\": \"1s\"}}}\n",
               dir.c_str(), dir.c_str(), dir.c_str(), http);
  std::fclose(f);
  pid_t sup = fork();
  if (sup == 0) {
    int null = open("/dev/null", O_WRONLY);
    dup2(null, 1), dup2(null, 2);
    execl(VACATAIRE_BIN, VACATAIRE_BIN, "run", "-c", (dir + "/vacataire.json").c_str(), nullptr);
    _exit(127);
  }
  auto deadline = Clock::now() + std::chrono::seconds(20);
  while (get(http, "/active") != 200 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  pid_t linkd = child_named(sup, "vacataire-link");

  std::printf("endpoints_bench: %d samples, one new connection per request (as HAProxy checks)\n",
              samples);
  std::printf("%-34s %10s %10s\n", "measure", "median", "p99");
  for (const char* path : {"/active", "/status", "/metrics"}) {
    std::vector<double> v;
    size_t bytes = 0;
    for (int i = 0; i < samples; ++i) {
      auto t = Clock::now();
      get(http, path, &bytes);
      v.push_back(ms_since(t));
    }
    std::printf("%-34s %8.3fms %8.3fms  (%zu bytes)\n", (std::string("GET ") + path).c_str(),
                bench::percentile(v, 0.5), bench::percentile(v, 0.99), bytes);
  }
  std::vector<double> fail;
  for (int i = 0; i < 10; ++i) {
    kill(sup, SIGSTOP);
    auto t = Clock::now();
    while (get(http, "/active") == 200 && ms_since(t) < 5000)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    fail.push_back(ms_since(t));
    kill(sup, SIGCONT);
    while (get(http, "/active") != 200 && ms_since(t) < 10000)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::printf("%-34s %8.1fms %8.1fms  (lease 500 ms, 10 runs)\n", "SIGSTOP to /active 503",
              bench::percentile(fail, 0.5), bench::percentile(fail, 0.99));

  long t0 = bench::cpu_ticks(linkd);
  std::this_thread::sleep_for(std::chrono::seconds(5));
  double idle = bench::ticks_to_ms(bench::cpu_ticks(linkd) - t0) / 5;
  t0 = bench::cpu_ticks(linkd);
  for (int i = 0; i < 5 * rate; ++i) {
    get(http, "/active");
    std::this_thread::sleep_for(std::chrono::milliseconds(1000 / rate));
  }
  double busy = bench::ticks_to_ms(bench::cpu_ticks(linkd) - t0) / 5;
  std::printf("linkd CPU, idle (status feed only)  %6.1f ms/s\n", idle);
  std::printf("linkd CPU, /active at %d Hz         %6.1f ms/s\n", rate, busy);
  std::printf("linkd RSS                           %6ld kB\n",
              bench::field_kb("/proc/" + std::to_string(linkd) + "/status", "VmRSS:"));
  kill(sup, SIGTERM);
  waitpid(sup, nullptr, 0);
  bench::remove_tree(dir);
  return 0;
}
