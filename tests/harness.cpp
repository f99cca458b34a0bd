#include "harness.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>

#include "control.hpp"

namespace vt {

namespace {
int remove_entry(const char* p, const struct stat*, int, FTW*) {
  return ::remove(p);
}
}  // namespace

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file(const std::string& path, const std::string& text, int mode) {
  std::string tmp = path + ".tmp-write";
  {
    std::ofstream out(tmp);
    out << text;
  }
  chmod(tmp.c_str(), static_cast<mode_t>(mode));
  rename(tmp.c_str(), path.c_str());
}

bool process_exists(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!std::getline(in, s)) return false;
  auto p = s.rfind(')');
  return p != std::string::npos && p + 2 < s.size() && s[p + 2] != 'Z' && s[p + 2] != 'X';
}

int free_port(int type) {
  int fd = socket(AF_INET, type | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool eventually(const std::function<bool()>& cond, double timeout_s) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return cond();
}

Result run_command(const std::vector<std::string>& argv, double timeout_s) {
  Result r;
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return r;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  fcntl(fds[0], F_SETFL, O_NONBLOCK);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  int status = 0;
  for (;;) {
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
    pid_t w = waitpid(pid, &status, WNOHANG);
    if (w == pid) break;
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      r.out += "\n[killed: timeout]";
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  close(fds[0]);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

Node::Node() {
  char tmpl[] = "/tmp/vacataire-test.XXXXXX";
  dir = mkdtemp(tmpl);
  chmod(dir.c_str(), 0755);  // tests also call in as an unprivileged user
  mkdir(path("services.d").c_str(), 0755);
  config_ = {{"node", {{"name", "t1"}, {"state_dir", "state"}}},
             {"services_dir", "services.d"},
             {"control_socket", "control.sock"},
             {"restart", {{"backoff", "50ms"}, {"backoff_max", "400ms"}, {"stable_after", "1s"}}}};
  configure();
}

Node::~Node() {
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  // Services outlive a killed supervisor: stop every group it recorded or reported.
  if (DIR* d = opendir(path("state/groups").c_str())) {
    while (dirent* e = readdir(d)) {
      pid_t g = static_cast<pid_t>(std::atoi(e->d_name));
      if (g > 1) seen_.insert(g);
    }
    closedir(d);
  }
  for (pid_t p : seen_)
    if (p > 1 && p != getpgrp()) kill(-p, SIGKILL);
  nftw(dir.c_str(), remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void Node::write(const std::string& rel, const std::string& text, int mode) {
  std::string full = path(rel);
  for (size_t i = dir.size() + 1; i < full.size(); ++i)
    if (full[i] == '/') mkdir(full.substr(0, i).c_str(), 0755);
  write_file(full, text, mode);
}

void Node::service(const std::string& name, const std::string& run_body,
                   const std::vector<std::pair<std::string, std::string>>& files) {
  std::string base = "services.d/" + name + "/";
  for (auto& [rel, text] : files) {
    bool exec = rel == "finish" || rel == "ready" || rel == "log/run";
    write(base + rel, text, exec ? 0755 : 0644);
  }
  write(base + "run", "#!/bin/sh\n" + run_body + "\n", 0755);
}

void Node::configure(const json& extra) {
  config_.merge_patch(extra);
  write("vacataire.json", config_.dump(2));
}

void Node::start() {
  pid_ = fork();
  if (pid_ == 0) {
    setpgid(0, 0);
    int log = stderr_fd >= 0 ? stderr_fd
                             : open(path("supervisor.log").c_str(),
                                    O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    dup2(log, 1);
    dup2(log, 2);
    std::vector<std::string> args = {VACATAIRE_BIN, "run",         "-c",
                                     config_path(), "--log-level", "debug"};
    args.insert(args.end(), run_args.begin(), run_args.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(VACATAIRE_BIN, argv.data());
    _exit(127);
  }
  eventually([&] { return !status().empty(); }, 10);
}

int Node::stop(double timeout_s) {
  if (pid_ <= 0) return -1;
  kill(pid_, SIGTERM);
  int status = 0;
  bool done = eventually([&] { return waitpid(pid_, &status, WNOHANG) == pid_; }, timeout_s);
  if (!done) return -1;
  pid_ = 0;
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (code != 0) {  // the supervisor's last words, for whoever reads the failed test
    std::string l = log();
    fprintf(stderr, "supervisor in %s exited %d; its log ends:\n%s\n", dir.c_str(), code,
            l.substr(l.size() > 4000 ? l.size() - 4000 : 0).c_str());
  }
  return code;
}

void Node::kill9() {
  kill(pid_, SIGKILL);
  waitpid(pid_, nullptr, 0);
  pid_ = 0;
}

json Node::status() {
  vac::ControlReply reply;
  std::string err;
  if (vac::control_call(path("control.sock"),
                        vac::ControlRequest::of(vac::ControlRequest::Cmd::status), reply, err,
                        5) != 0 ||
      !reply.ok || !reply.body["status"].is_object())
    return json::object();
  remember(reply.body["status"]);
  return reply.body["status"];
}

void Node::remember(const json& st) {
  const json services = st.value("services", json::object());
  for (auto& [name, s] : services.items()) {
    if (s.contains("pid") && s["pid"].is_number()) seen_.insert(s["pid"].get<pid_t>());
    if (s.contains("logger_pid") && s["logger_pid"].is_number())
      seen_.insert(s["logger_pid"].get<pid_t>());
  }
}

bool Node::wait_service(const std::string& name, const std::function<bool(const json&)>& pred,
                        double timeout_s) {
  return eventually(
      [&] {
        json st = status();
        return st.contains("services") && st["services"].contains(name) &&
               pred(st["services"][name]);
      },
      timeout_s);
}

bool Node::wait_state(const std::string& name, const std::string& state, double timeout_s) {
  return wait_service(
      name, [&](const json& s) { return s["state"] == state; }, timeout_s);
}

bool Node::wait_probe(const std::string& name, const std::function<bool(const json&)>& pred,
                      double timeout_s) {
  return eventually(
      [&] {
        json st = status();
        return st.contains("probes") && st["probes"].contains(name) && pred(st["probes"][name]);
      },
      timeout_s);
}

std::string Node::log() const {
  return read_file(path("supervisor.log"));
}

bool Node::wait_log(const std::string& text, double timeout_s) {
  return eventually([&] { return log().find(text) != std::string::npos; }, timeout_s);
}

Result Node::cli(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {VACATAIRE_BIN};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.push_back("-c");
  argv.push_back(config_path());
  return run_command(argv);
}

long log_ms(const std::string& log, const std::string& text, size_t from) {
  size_t at = log.find(text, from);
  if (at == std::string::npos) return -1;
  size_t line = log.rfind('\n', at);
  line = line == std::string::npos ? 0 : line + 1;
  int h = 0, m = 0, sec = 0, ms = 0;
  if (sscanf(log.c_str() + line, "%*d-%*d-%*dT%d:%d:%d.%dZ", &h, &m, &sec, &ms) != 4) return -1;
  return ((h * 60L + m) * 60 + sec) * 1000 + ms;
}

}  // namespace vt
