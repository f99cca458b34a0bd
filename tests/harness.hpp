// Integration-test harness: a temporary node directory (config, services.d, state), a real
// `vacataire run` started from it, and helpers that wait for events (a status change, a log
// line, a file's content) with a deadline instead of sleeping. Everything a test starts is
// killed by pid or process group when the Node goes away.
#pragma once

#include <sys/types.h>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace vt {

using json = nlohmann::json;

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& text, int mode = 0644);
bool process_exists(pid_t pid);  // alive and not a zombie

// A loopback port free right now (SOCK_STREAM or SOCK_DGRAM), for a test's own listeners.
int free_port(int type);

// Polls cond every few milliseconds until it holds or timeout_s passes.
bool eventually(const std::function<bool()>& cond, double timeout_s = 10);

// The log time (ms of the day) of the first line after from that holds text; -1 if none.
long log_ms(const std::string& log, const std::string& text, size_t from = 0);

struct Result {
  int code = -1;
  std::string out;  // stdout and stderr together
};
// Runs a command (argv[0] a path) and captures its output; killed after timeout_s.
Result run_command(const std::vector<std::string>& argv, double timeout_s = 20);

class Node {
 public:
  Node();
  ~Node();
  Node(const Node&) = delete;

  std::string dir;  // the node's directory
  std::string config_path() const { return dir + "/vacataire.json"; }
  std::string path(const std::string& rel) const { return dir + "/" + rel; }

  // Writes services.d/NAME/run with a /bin/sh body, plus other files as (relative path, text).
  void service(const std::string& name, const std::string& run_body,
               const std::vector<std::pair<std::string, std::string>>& files = {});
  void write(const std::string& rel, const std::string& text, int mode = 0644);
  // The config file; extra keys are merged into the default one.
  void configure(const json& extra = json::object());

  void start();
  std::vector<std::string> run_args;  // more arguments for `vacataire run`
  int stderr_fd = -1;  // the supervisor's stdout and stderr instead of supervisor.log
  pid_t pid() const { return pid_; }
  int stop(double timeout_s = 20);  // SIGTERM, wait; returns the exit code (-1 on timeout)
  void kill9();                     // SIGKILL the supervisor alone, as a crash would

  json status();  // {} when the supervisor does not answer
  json service_status(const std::string& name) { return status()["services"][name]; }
  bool wait_service(const std::string& name, const std::function<bool(const json&)>& pred,
                    double timeout_s = 10);
  bool wait_state(const std::string& name, const std::string& state, double timeout_s = 10);
  json probe_status(const std::string& name) { return status()["probes"][name]; }
  bool wait_probe(const std::string& name, const std::function<bool(const json&)>& pred,
                  double timeout_s = 10);
  bool wait_log(const std::string& text, double timeout_s = 10);
  std::string log() const;
  Result cli(const std::vector<std::string>& args);

 private:
  void remember(const json& st);
  pid_t pid_ = 0;
  std::set<pid_t> seen_;  // every service pid/pgid ever reported, for clean-up
  json config_;
};

}  // namespace vt
