// The load-balancer-facing servers inside linkd, on its one libev loop: HTTP (libmicrohttpd in
// its external epoll mode: MHD's epoll fd watched by one ev::io, its timeouts by one ev::timer)
// and HAProxy's agent-check (TCP, one line per connection). Both answer from the supervisor's
// last status line, and only while the supervisor's lease is fresh (see endpoints.hpp for what
// each answer means). Sockets are bound by bind(), before linkd drops its privileges.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <string>

#include <ev++.h>
#include <nlohmann/json.hpp>

struct MHD_Daemon;
struct MHD_Connection;

namespace vac {

struct EndpointsConfig {
  std::string http;                     // "host:port", or empty
  std::string agent_check;              // "host:port", or empty
  std::string agent_inactive = "down";  // what the agent says on a node not to use: down | maint
  bool empty() const { return http.empty() && agent_check.empty(); }
};

// Bounds that keep a hostile client from holding the endpoints (vacataire-endpoints(7)).
struct EndpointLimits {
  unsigned connections = 256;         // HTTP connections at once
  unsigned per_address = 16;          // of them from one client address
  unsigned idle_timeout_s = 5;        // an HTTP connection silent this long is closed
  double max_lifetime_s = 10;         // and any connection older than this (slowloris)
  size_t request_memory = 16 * 1024;  // request line and headers; more gets 431
};

class EndpointServer {
 public:
  using Clock = std::chrono::steady_clock;
  EndpointServer(EndpointsConfig config, Clock::duration lease, EndpointLimits limits = {});
  ~EndpointServer();
  EndpointServer(const EndpointServer&) = delete;
  EndpointServer& operator=(const EndpointServer&) = delete;

  bool bind(std::string& err);   // both sockets; before privileges are dropped
  bool start(std::string& err);  // the HTTP daemon and the watchers on the default loop

  // The supervisor said something (any line): its lease runs from now.
  void heard_supervisor() { last_heard_ = Clock::now(); }
  void set_status(nlohmann::json status);
  // linkd's live peer-link statistics, for /metrics.
  void set_link_stats(std::function<nlohmann::json()> f) { link_stats_ = std::move(f); }
  bool fresh() const;

  // For libmicrohttpd's C callbacks.
  int answer(MHD_Connection* c, const char* url, const char* method, void** state);
  void connection_event(MHD_Connection* c, bool started);

 private:
  void on_http(ev::io&, int);
  void on_http_timer(ev::timer&, int);
  void on_reaper(ev::timer&, int);
  void on_agent(ev::io&, int);
  void run_http();

  EndpointsConfig config_;
  Clock::duration lease_;
  EndpointLimits limits_;
  int http_fd_ = -1, agent_fd_ = -1;
  MHD_Daemon* daemon_ = nullptr;
  ev::io http_io_, agent_io_;
  ev::timer http_timer_, reaper_;
  std::map<MHD_Connection*, Clock::time_point> connections_;  // for the lifetime bound
  nlohmann::json status_;
  Clock::time_point last_heard_{}, status_at_{};
  std::function<nlohmann::json()> link_stats_;
};

}  // namespace vac
