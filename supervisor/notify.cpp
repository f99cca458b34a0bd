#include "notify.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <csignal>
#include <ctime>

#include "common/json_util.hpp"
#include "common/log.hpp"

namespace vac {

namespace {
std::string utc_now() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t{};
  gmtime_r(&ts.tv_sec, &t);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof buf - n, ".%03ldZ", ts.tv_nsec / 1000000);
  return buf;
}
}  // namespace

json notify_json(const NotifyEvent& e, const NotifyIdentity& who, uint64_t seq,
                 const std::string& time) {
  json j = {{"event", e.event},   {"node", who.node}, {"role", who.role},
            {"peer", who.peer},   {"state", e.state}, {"previous", e.previous},
            {"reason", e.reason}, {"epoch", e.epoch}, {"time", time},
            {"seq", seq}};
  if (!e.probe.empty()) j["probe"] = e.probe;
  if (!e.service.empty()) j["service"] = e.service;
  return j;
}

std::vector<std::string> notify_env(const NotifyEvent& e, const NotifyIdentity& who) {
  return {cat("VACATAIRE_EVENT=", e.event),       cat("VACATAIRE_STATE=", e.state),
          cat("VACATAIRE_PREVIOUS=", e.previous), cat("VACATAIRE_NODE=", who.node),
          cat("VACATAIRE_PEER=", who.peer),       cat("VACATAIRE_REASON=", e.reason),
          cat("VACATAIRE_ROLE=", who.role),       cat("VACATAIRE_EPOCH=", e.epoch),
          cat("VACATAIRE_PROBE=", e.probe),       cat("VACATAIRE_SERVICE=", e.service)};
}

std::vector<std::string> list_hooks(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* ent = readdir(d)) {
    std::string name = ent->d_name;
    if (name.empty() || name[0] == '.' || name.back() == '~' ||
        name.find(".dpkg-") != std::string::npos)
      continue;
    std::string path = dir + "/" + name;
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
    if (access(path.c_str(), X_OK) != 0) continue;
    out.push_back(name);
  }
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

Notifier::Notifier(ServiceHost& host) : host_(host) {
  drain_timer_.set<Notifier, &Notifier::on_drain_deadline>(this);
}

Notifier::~Notifier() {
  drain_timer_.stop();
  for (auto& [name, h] : hooks_) {
    h->timeout.stop();
    if (h->pid > 0) kill(-h->pid, SIGKILL);
    close_output(*h);
  }
}

void Notifier::configure(std::string dir, Duration timeout, NotifyIdentity who) {
  // Hooks run with the directory as working directory: their path must not depend on it.
  if (!dir.empty() && dir[0] != '/') {
    char cwd[4096];
    if (getcwd(cwd, sizeof cwd)) dir = cat(cwd, "/", dir);
  }
  dir_ = std::move(dir);
  timeout_ = timeout;
  who_ = std::move(who);
}

void Notifier::emit(const NotifyEvent& e) {
  if (dir_.empty() || draining_) return;
  ++seq_;
  json event = notify_json(e, who_, seq_, utc_now());
  std::vector<std::string> env = notify_env(e, who_);
  for (const std::string& name : list_hooks(dir_)) {
    auto& slot = hooks_[name];
    if (!slot) {
      slot = std::make_unique<Hook>();
      slot->name = name;
      slot->owner = this;
      slot->out_io.set<Hook, &Hook::on_output>(slot.get());
      slot->timeout.set<Hook, &Hook::on_timeout>(slot.get());
    }
    Hook& h = *slot;
    if (h.queue.size() >= kQueueMax) {
      h.queue.pop_front();
      if (h.dropped++ % 100 == 0)
        log_warn("notify", name, ": ", kQueueMax, " events waiting; dropping the oldest");
    }
    h.queue.emplace_back(event, env);
    if (h.pid == 0) run_next(h);
  }
}

void Notifier::run_next(Hook& h) {
  while (h.pid == 0 && !h.queue.empty()) {
    auto [event, vars] = std::move(h.queue.front());
    h.queue.pop_front();
    int in[2], out[2];
    if (pipe2(in, O_CLOEXEC) != 0) {
      log_error("notify", h.name, ": ", sys_error("pipe"));
      return;
    }
    if (pipe2(out, O_CLOEXEC) != 0) {
      log_error("notify", h.name, ": ", sys_error("pipe"));
      close(in[0]), close(in[1]);
      return;
    }
    // The event is small and the pipe empty: it fits whole before the hook even runs, so the
    // hook reads it at its own pace and the loop never waits on it.
    std::string line = dump_json(event) + "\n";
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    bool whole = write(in[1], line.data(), line.size()) == static_cast<ssize_t>(line.size());
    close(in[1]);
    SpawnSpec s;
    s.exe = dir_ + "/" + h.name;
    s.cwd = dir_;
    s.env = host_.base_env();
    s.env.insert(s.env.end(), vars.begin(), vars.end());
    s.fds = {{0, in[0]}, {1, out[1]}, {2, out[1]}};
    std::string err;
    Hook* hp = &h;
    pid_t pid = host_.start_child(
        s, [this, hp](pid_t, int status) { on_exit(*hp, status); }, err);
    close(in[0]), close(out[1]);
    if (pid < 0) {
      close(out[0]);
      ++h.failures;
      h.last = cat("not started: ", err);
      log_error("notify", h.name, ": cannot run: ", err);
      continue;
    }
    if (!whole) log_warn("notify", h.name, ": the event did not fit its stdin whole");
    h.pid = pid;
    h.running_event = event.value("event", "");
    host_.record_group(pid, cat("notify/", h.name), "notify");
    h.out_r = out[0];
    fcntl(h.out_r, F_SETFL, fcntl(h.out_r, F_GETFL) | O_NONBLOCK);
    h.reader.reset();
    h.lines = 0;
    h.out_io.start(h.out_r, ev::READ);
    h.timeout.start(std::max(seconds(timeout_), 0.001), 0);
    ++h.runs;
  }
}

void Notifier::Hook::log_output(std::string_view line, bool truncated) {
  constexpr int kMaxLines = 100;
  if (++lines <= kMaxLines)
    log_info("notify", name, ": ", utf8_prefix(line, 512), truncated ? " [truncated]" : "");
  else if (lines == kMaxLines + 1)
    log_warn("notify", name, ": more than ", kMaxLines, " lines of output; the rest is dropped");
}

void Notifier::Hook::on_output(ev::io&, int) {
  auto r = reader.read_from(
      out_r, [this](std::string_view line, bool truncated) { log_output(line, truncated); });
  if (r != LineReader::ReadResult::again) owner->close_output(*this);
}

void Notifier::Hook::on_timeout(ev::timer&, int) {
  if (pid <= 0) return;
  ++timeouts;
  log_warn("notify", name, ": still running after ", format_duration(owner->timeout_), " (event ",
           running_event, "); killing it");
  kill(-pid, SIGKILL);
}

void Notifier::close_output(Hook& h) {
  h.out_io.stop();
  if (h.out_r >= 0) close(h.out_r);
  h.out_r = -1;
}

void Notifier::on_exit(Hook& h, int status) {
  if (h.out_r >= 0) {
    // What the hook wrote just before exiting is still in the pipe; a grandchild holding the
    // pipe open must not keep us reading.
    h.reader.read_from(
        h.out_r, [&h](std::string_view line, bool truncated) { h.log_output(line, truncated); });
    close_output(h);
  }
  host_.forget_group(h.pid);
  kill(-h.pid, SIGKILL);  // whatever it left behind in its group
  h.timeout.stop();
  h.pid = 0;
  h.last = describe_wait_status(status);
  if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    ++h.failures;
    log_warn("notify", h.name, ": ", h.last, " on event ", h.running_event);
  }
  h.running_event.clear();
  if (draining_ && idle()) {
    drain_timer_.stop();
    host_.changed();
    return;
  }
  run_next(h);
  if (draining_) host_.changed();
}

void Notifier::drain(Duration deadline) {
  if (draining_) return;
  draining_ = true;
  if (idle()) return;
  drain_timer_.start(std::max(seconds(deadline), 0.001), 0);
}

void Notifier::on_drain_deadline(ev::timer&, int) {
  for (auto& [name, h] : hooks_) {
    if (!h->queue.empty())
      log_warn("notify", name, ": shutting down; ", h->queue.size(), " events not delivered");
    h->dropped += h->queue.size();
    h->queue.clear();
    if (h->pid > 0) kill(-h->pid, SIGKILL);
  }
}

bool Notifier::idle() const {
  for (auto& [name, h] : hooks_)
    if (h->pid > 0 || !h->queue.empty()) return false;
  return true;
}

json Notifier::status() const {
  json hooks = json::object();
  for (auto& [name, h] : hooks_)
    hooks[name] = {{"running", h->pid > 0},   {"queued", h->queue.size()}, {"runs", h->runs},
                   {"failures", h->failures}, {"timeouts", h->timeouts},   {"dropped", h->dropped},
                   {"last", h->last}};
  return {{"dir", dir_}, {"events", seq_}, {"hooks", hooks}};
}

}  // namespace vac
