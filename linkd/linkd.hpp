// vacataire-linkd: the peer link. It binds one UDP socket per configured link, sends
// heartbeats on all of them, tells the supervisor (JSON lines on stdout) what the peer says
// and when it has been silent on every link for dead_after, and retries the supervisor's
// commands (takeover, quiesce, stopped) until the peer acknowledges them. It gets its whole
// configuration, key included, on its first stdin line, so it needs no file access and drops
// to an unprivileged user as soon as its sockets are bound. See vacataire-linkd(8).
#pragma once

#include <sys/socket.h>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/config.hpp"
#include "common/line_reader.hpp"
#include "endpoint_server.hpp"
#include "wire.hpp"

namespace vac {

struct LinkdConfig {
  std::string node, peer;
  std::vector<LinkConfig> links;
  Key key;
  Duration heartbeat = std::chrono::milliseconds(200);
  Duration dead_after = std::chrono::seconds(1);
  Duration ts_window = std::chrono::seconds(60);
  std::string user;
  EndpointsConfig endpoints;  // with no links, linkd serves only these (a single node)
};

bool parse_linkd_config(const nlohmann::json& j, LinkdConfig& out, std::string& err);
nlohmann::json linkd_config_json(const LinkdConfig& c);  // what the supervisor sends

class LinkDaemon {
 public:
  explicit LinkDaemon(LinkdConfig config);
  ~LinkDaemon();
  bool bind_links(std::string& err);
  bool drop_privileges(std::string& err);
  void start();  // watchers on the default loop; the loop ends when stdin closes

 private:
  struct Link {
    LinkDaemon* owner = nullptr;
    void on_io(ev::io&, int) { owner->on_readable(*this); }
    LinkConfig config;
    int fd = -1;
    sockaddr_storage peer{};
    socklen_t peer_len = 0;
    ev::io io;
    std::chrono::steady_clock::time_point last_heard{};
    bool heard = false;
    double rtt_ms = -1;
    uint64_t rx = 0, tx = 0;
    uint64_t index = 0, seq = 0;
    ReplayGuard replay;
  };
  void on_stdin(ev::io&, int);
  void on_supervisor_line(std::string_view line);
  void on_readable(Link& link);
  void on_datagram(Link& link, std::string_view bytes);
  void on_tick(ev::timer&, int);
  void on_silence(ev::timer&, int);
  void peer_lost();
  void send_on(Link& link, const nlohmann::json& msg);
  void send_all(const nlohmann::json& msg);
  void emit(const nlohmann::json& j);
  nlohmann::json stats() const;

  LinkdConfig config_;
  std::vector<std::unique_ptr<Link>> links_;
  LineReader stdin_reader_{65536};
  ev::io stdin_io_;
  ev::timer tick_;
  ev::timer silence_;  // fires dead_after after the last valid datagram, not a tick later
  uint64_t boot_;
  nlohmann::json heartbeat_;  // null until the supervisor has said what this node is
  std::map<uint64_t, nlohmann::json> pending_;  // commands waiting for the peer's ack
  uint64_t next_id_ = 1;
  std::map<uint64_t, uint64_t> delivered_;  // peer boot -> highest command id passed on
  nlohmann::json last_peer_;
  bool peer_alive_ = false;
  std::chrono::steady_clock::time_point started_, last_heard_{}, last_stats_{};
  std::map<std::string, uint64_t> counters_;
  std::unique_ptr<EndpointServer> endpoints_;
};

}  // namespace vac
