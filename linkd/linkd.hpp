// vacataire-linkd: the peer link. It binds one UDP socket per configured link, heartbeats on
// all of them while the supervisor keeps feeding it (its lease), tells the supervisor (JSON
// lines on stdout, common/link_messages.hpp) what the peer says and when the peer has been
// silent on every link for dead_after, and retries the supervisor's commands (takeover,
// quiesce, stopped) until the peer acknowledges them or is lost. Which datagrams count is
// session.hpp's business; every time here is monotonic. With endpoints configured it also
// serves the load balancer (endpoint_server.hpp), even without a peer. See vacataire-linkd(8).
#pragma once

#include <sys/socket.h>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/line_reader.hpp"
#include "common/link_messages.hpp"
#include "endpoint_server.hpp"
#include "session.hpp"
#include "wire.hpp"

namespace vac {

// Monotonic time since some fixed point; injectable so tests can show no wall clock is used.
using MonoClock = std::function<MonoTime()>;
MonoClock steady_mono_clock();

class LinkDaemon {
 public:
  LinkDaemon(LinkdSettings settings, MonoClock clock = steady_mono_clock());
  ~LinkDaemon();
  LinkDaemon(const LinkDaemon&) = delete;
  LinkDaemon& operator=(const LinkDaemon&) = delete;

  // Moves the key into locked memory and wipes the hex copy.
  bool load_key(std::string& err);
  bool bind_links(std::string& err);
  void start();  // watchers on the default loop; the loop ends when stdin closes

  // What the load balancer's endpoints need to know.
  bool supervisor_fresh() const { return supervisor_fresh_; }
  const nlohmann::json& status_document() const { return status_; }
  const LinkdSettings& settings() const { return settings_; }
  LinkdStats stats() const;

 private:
  struct Link {
    LinkDaemon* owner = nullptr;
    void on_io(ev::io&, int) { owner->on_readable(*this, kReadBatch); }
    size_t index = 0;
    LinkConfig config;
    int fd = -1;
    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    ev::io io;
    MonoTime last_heard{};
    bool heard = false;
    double rtt_ms = -1;
    uint64_t rx = 0, tx = 0, kernel_drops = 0;
  };
  static constexpr int kReadBatch = 256;     // per wake-up: a flood cannot starve the loop
  static constexpr int kDrainLimit = 65536;  // before a verdict of silence: the whole buffer

  void on_stdin(ev::io&, int);
  void read_stdin();
  void on_stdout(ev::io&, int);
  void on_supervisor_line(std::string_view line);
  void on_readable(Link& link, int budget);
  void on_datagram(Link& link, std::string_view bytes);
  void on_data(Link& link, const Datagram& d);
  void on_tick(ev::timer&, int);
  void on_report(ev::timer&, int);
  void on_silence(ev::timer&, int);
  void on_lease(ev::timer&, int);
  void on_signal(ev::sig&, int);
  void drain_links();
  void peer_lost();
  void pair_changed();
  void send_heartbeat();
  void send_on(Link& link, const std::string& rsid, const WireMessage& msg);
  void send_all(const std::string& rsid, const WireMessage& msg);
  void send_pending();
  void emit(const std::string& line);
  void count(const char* verdict) { ++datagrams_[verdict]; }
  MonoTime now() const { return clock_(); }

  LinkdSettings settings_;
  MonoClock clock_;
  SecretKey key_;
  std::vector<std::unique_ptr<Link>> links_;
  std::unique_ptr<PeerSession> session_;
  uint64_t generation_ = 0;  // the session's, when we last looked
  uint64_t seq_ = 0;         // of our session, over all links
  LineReader stdin_reader_{1 << 20};
  ev::io stdin_io_, stdout_io_;
  std::string out_buf_;  // lines for the supervisor not yet written
  ev::timer tick_, silence_, lease_, report_;
  ev::sig sigterm_, sigint_;
  Duration lease_length_;
  bool supervisor_fresh_ = false;
  std::optional<NodeReport> heartbeat_;  // none until the supervisor has said what we are
  nlohmann::json status_ = nlohmann::json::object();
  struct Pending {
    PeerKind kind;
    NodeReport report;
  };
  std::map<uint64_t, Pending> pending_;  // our commands waiting for the peer's ack
  uint64_t next_id_ = 1;
  CommandInbox inbox_;
  std::optional<NodeReport> last_peer_;
  LinkTiming peer_timing_;         // as the peer's last heartbeat announced it
  uint64_t peer_incarnation_ = 0;  // ... and the peer supervisor's run
  bool peer_alive_ = false;
  MonoTime last_heartbeat_{}, last_line_{};
  std::map<std::string, uint64_t> datagrams_;
  // Tags of recent authentic datagrams: an exact copy is refused with one lookup, before any
  // HMAC or JSON work, so a flood of captured datagrams costs little more than garbage.
  std::unordered_set<uint64_t> recent_tags_;
  std::deque<uint64_t> recent_order_;
  uint64_t lines_dropped_ = 0;
  std::unique_ptr<EndpointServer> endpoints_;  // the load balancer's, when configured
};

}  // namespace vac
