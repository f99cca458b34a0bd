// The peer link as the supervisor sees it (and the load-balancer endpoints, which linkd also
// serves, with or without a peer): the vacataire-linkd child, the JSON lines it is fed
// (config, then this node's heartbeat on every tick: the lease that keeps linkd advertising the
// node), the lines it answers (what the peer says, the peer lost, link statistics), and its
// restarts. A restart of linkd alone is not the peer's loss: the node core hears nothing of it,
// and restarts are paced so that a new linkd is heard by the peer within dead_after. A reload
// that changes what linkd runs with replaces it the same way, planned: the old one is told to
// stop and the new one starts the moment the old one is reaped (never two at once).
#pragma once

#include <sys/types.h>
#include <functional>
#include <optional>
#include <string>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "backoff.hpp"
#include "child.hpp"
#include "common/config.hpp"
#include "common/line_reader.hpp"
#include "node.hpp"
#include "service.hpp"
#include "wire.hpp"

namespace vac {

// Reads the peer key file: at least 32 bytes, readable by its owner alone.
bool load_peer_key(const std::string& path, Key& key, std::string& err);

// How linkd is restarted, pure: at once after a stable run or a first quick death, then from
// 10 ms doubling, never more than dead_after / 4, so that even a linkd killed again and again
// is back (and heard by the peer) well within dead_after.
RestartConfig linkd_restart_policy(Duration dead_after);

class PeerLink {
 public:
  struct Handlers {
    std::function<void(const PeerMessage&)> message;  // the peer said something
    std::function<void()> lost;                       // silent on every link for dead_after
    std::function<void()> exited;                     // linkd is gone (while stopping: for good)
    std::function<void()> started;                    // a linkd started, with the config as now
    // A handshake with the peer is under way (a handover, a quiesce): the commands linkd is
    // retrying would die with it, so a replacement waits for the handshake to end.
    std::function<bool()> busy;
    // The peer's heartbeats announced a heartbeat and dead_after other than the last ones.
    std::function<void(const LinkTiming&)> timing;
  };

  // incarnation: this supervisor run's, which linkd puts in every message to the peer.
  PeerLink(const Config& config, const Key& key, ServiceHost& host, Handlers handlers,
           uint64_t incarnation = 0);
  ~PeerLink();
  PeerLink(const PeerLink&) = delete;
  PeerLink& operator=(const PeerLink&) = delete;

  void start();
  // Closes linkd's input (it exits when its stdin ends) and stops restarting it.
  void stop();
  bool running() const { return child_.running(); }
  // What the running linkd reported it could not do (an endpoint it could not bind), or "".
  std::string error() const { return error_this_run_ ? last_error_ : ""; }
  // The config (and key) it reads changed: linkd is replaced by one started with them. Not
  // before the running one has run dead_after / 4 and heard the peer, or run dead_after / 2
  // (a linkd replaced every few milliseconds would never let the peer confirm a session); many
  // reloads in a row make one replacement with the latest config. rejected, if given, is called
  // instead of a restart when the new linkd ends before it is ready (the settings do not work here,
  // as a port taken since they were checked): the caller puts the old ones back.
  void reconfigure(std::function<void(const std::string& why)> rejected = {});

  // What this node's heartbeats say; sent on every tick, changed or not (the lease).
  void heartbeat(const PeerMessage& hb);
  // A command for the peer (takeover, quiesce, stopped); linkd retries it until acknowledged.
  void send(const PeerMessage& m);
  // The `status --json` document, for linkd's load-balancer endpoints.
  void status(const nlohmann::json& doc);

  // linkd_pid, linkd_restarts, links and counters for `status`.
  void add_status(nlohmann::json& peer) const;

 private:
  void on_exit(int status);
  void on_output(ev::io&, int);
  void on_line(std::string_view line);
  void on_restart(ev::timer&, int);
  void on_kill(ev::timer&, int);
  void on_watchdog(ev::timer&, int);
  void replace();
  void write_line(const std::string& line);
  void close_pipes();

  const Config& config_;
  const Key& key_;
  ServiceHost& host_;
  Handlers handlers_;
  RestartConfig restart_;
  bool wanted_;  // a peer, or endpoints to serve
  bool stopping_ = false;
  bool planned_ = false;      // a reload wants the running linkd replaced
  bool terminating_ = false;  // ... and it was told to stop
  uint64_t incarnation_;
  bool heard_ = false;        // the running linkd has heard the peer
  LinkTiming peer_timing_;    // as the peer last announced it
  bool waited_busy_ = false;  // said once per replacement that it waits for a handshake
  Duration pace_{0};          // the running linkd is not replaced younger than this
  std::function<void(const std::string&)> rejected_;  // until the new settings' linkd is ready
  Child child_;
  int in_ = -1, out_ = -1;  // owned by child_
  ev::io io_;
  LineReader reader_{65536};
  ev::timer restart_timer_;  // a restart after a death, or a paced replacement
  ev::timer kill_timer_;     // a linkd told to stop that does not is killed
  ev::timer watchdog_;       // a linkd silent for linkd_silence_limit is killed (link_messages.hpp)
  Clock::time_point last_line_{}, last_watch_{};  // from linkd; the watchdog's last look
  int stalls_ = 0;                                // linkd processes killed for their silence
  bool silence_killed_ = false;                   // the running one was
  bool starved_logged_ = false;                   // silent, but only waiting for a CPU
  unsigned long long watch_cpu_ = 0;              // its CPU time at the last look
  Backoff backoff_;
  Clock::time_point started_{};
  int restarts_ = 0;
  int reloads_ = 0;         // planned replacements
  std::string last_error_;  // linkd's last error line, until a linkd starts without one
  bool error_this_run_ = false;
  long long dropped_ = 0;                      // lines linkd was not ready to read
  std::optional<PeerMessage> last_heartbeat_;  // repeated to a new linkd at once
  std::string last_status_;
  nlohmann::json stats_;
};

}  // namespace vac
