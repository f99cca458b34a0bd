// Notify hooks (notify_dir, see vacataire-notify(7)): every executable in the directory runs
// once per event worth telling an operator about — each node state change, the peer lost or
// found again, a probe going failing or passing, a service over its restart budget, a node
// record that cannot be persisted. The event is one JSON object on the hook's stdin, and the
// VACATAIRE_* variables in its environment.
//
// Hooks never hold anything up: they run asynchronously, one at a time per hook so that each
// hook sees the events in order, each bounded by a timeout after which its process group is
// killed. A hook that hangs or keeps failing delays only its own later events; a queue that
// overflows drops its oldest events and counts them.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/duration.hpp"
#include "common/line_reader.hpp"
#include "service.hpp"

namespace vac {

struct NotifyEvent {
  std::string event;  // state, peer_lost, peer_found, probe_failing, probe_passing,
                      // service_over_budget, persist_failed, test
  std::string state, previous, reason;
  std::string probe, service;  // when the event is about one
  uint64_t epoch = 0;
};

// Who this node is, for every event.
struct NotifyIdentity {
  std::string node, role, peer;
};

// The event as the hooks see it on stdin (seq numbers the events of this supervisor).
nlohmann::json notify_json(const NotifyEvent& e, const NotifyIdentity& who, uint64_t seq,
                           const std::string& time);
// The VACATAIRE_* variables for one event.
std::vector<std::string> notify_env(const NotifyEvent& e, const NotifyIdentity& who);

// The hooks in dir: regular executable files, sorted by name, skipping dotfiles and the
// leftovers of editors and dpkg (names ending in ~ or containing .dpkg-), as run-parts does.
std::vector<std::string> list_hooks(const std::string& dir);

class Notifier {
 public:
  static constexpr size_t kQueueMax = 64;

  explicit Notifier(ServiceHost& host);
  ~Notifier();
  Notifier(const Notifier&) = delete;
  Notifier& operator=(const Notifier&) = delete;

  // An empty dir disables hooks; a new dir or timeout applies to the next events.
  void configure(std::string dir, Duration timeout, NotifyIdentity who);
  // Queues the event for every hook in the directory now; starts the idle ones.
  void emit(const NotifyEvent& e);
  // Shutting down: no new events; running and queued ones get until `deadline` from now, then
  // the rest is killed and dropped. Idle when nothing runs or waits.
  void drain(Duration deadline);
  bool idle() const;

  nlohmann::json status() const;

 private:
  struct Hook {
    std::string name;
    std::deque<std::pair<nlohmann::json, std::vector<std::string>>> queue;  // event, env
    pid_t pid = 0;
    std::string running_event;
    int out_r = -1;
    ev::io out_io;
    ev::timer timeout;
    LineReader reader{2048};
    uint64_t runs = 0, failures = 0, timeouts = 0, dropped = 0;
    int lines = 0;  // logged in this run; a hook that floods its output is cut short
    void log_output(std::string_view line, bool truncated);
    std::string last;  // how the last run ended
    void on_output(ev::io&, int);
    void on_timeout(ev::timer&, int);
    Notifier* owner = nullptr;
  };

  void run_next(Hook& h);
  void on_exit(Hook& h, int status);
  void close_output(Hook& h);
  void on_drain_deadline(ev::timer&, int);

  ServiceHost& host_;
  std::string dir_;
  Duration timeout_ = std::chrono::seconds(10);
  NotifyIdentity who_;
  uint64_t seq_ = 0;
  bool draining_ = false;
  ev::timer drain_timer_;
  std::map<std::string, std::unique_ptr<Hook>> hooks_;
};

}  // namespace vac
