#include "endpoint_server.hpp"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include <microhttpd.h>

#include "common/config.hpp"
#include "common/json_util.hpp"
#include "common/log.hpp"
#include "endpoints.hpp"
#include "metrics.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
int listen_tcp(const std::string& what, const std::string& address, std::string& err) {
  std::string host;
  int port = 0;
  if (!parse_address(address, host, port, err)) return err = cat(what, ": ", err), -1;
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
  int rc = getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &res);
  if (rc != 0) return err = cat(what, ": bad address ", quote(address), ": ", gai_strerror(rc)), -1;
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  int one = 1;
  bool ok = fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) == 0 &&
            ::bind(fd, res->ai_addr, res->ai_addrlen) == 0 && listen(fd, 64) == 0;
  freeaddrinfo(res);
  if (!ok) {
    err = sys_error(cat(what, ": cannot listen on ", address));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

MHD_Result on_request(void* cls, MHD_Connection* c, const char* url, const char* method,
                      const char*, const char*, size_t*, void** state) {
  return static_cast<EndpointServer*>(cls)->answer(c, url, method, state) ? MHD_YES : MHD_NO;
}

void on_connection(void* cls, MHD_Connection* c, void**, MHD_ConnectionNotificationCode code) {
  static_cast<EndpointServer*>(cls)->connection_event(c, code == MHD_CONNECTION_NOTIFY_STARTED);
}

bool send(MHD_Connection* c, int code, const std::string& body, const char* type, bool allow) {
  MHD_Response* r = MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()),
                                                    MHD_RESPMEM_MUST_COPY);
  if (!r) return false;
  MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
  MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  if (allow) MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD, OPTIONS");
  MHD_Result ok = MHD_queue_response(c, static_cast<unsigned>(code), r);
  MHD_destroy_response(r);
  return ok == MHD_YES;
}
}  // namespace

EndpointServer::EndpointServer(EndpointsConfig config, Clock::duration lease, EndpointLimits limits)
    : config_(std::move(config)), lease_(lease), limits_(limits) {}

EndpointServer::~EndpointServer() {
  http_io_.stop(), http_timer_.stop(), reaper_.stop(), agent_io_.stop();
  if (daemon_) MHD_stop_daemon(daemon_);  // closes the listening socket it was given
  if (http_fd_ >= 0) close(http_fd_);
  if (agent_fd_ >= 0) close(agent_fd_);
}

bool EndpointServer::bind(std::string& err) {
  if (!config_.http.empty() && (http_fd_ = listen_tcp("endpoints.http", config_.http, err)) < 0)
    return false;
  if (!config_.agent_check.empty() &&
      (agent_fd_ = listen_tcp("endpoints.agent_check", config_.agent_check, err)) < 0)
    return false;
  return true;
}

bool EndpointServer::start(std::string& err) {
  if (http_fd_ >= 0) {
    // External epoll mode: no thread, MHD's one epoll fd is watched by the caller's loop.
    daemon_ = MHD_start_daemon(
        MHD_USE_EPOLL, 0, nullptr, nullptr, &on_request, this, MHD_OPTION_LISTEN_SOCKET, http_fd_,
        MHD_OPTION_CONNECTION_LIMIT, limits_.connections, MHD_OPTION_PER_IP_CONNECTION_LIMIT,
        limits_.per_address, MHD_OPTION_CONNECTION_TIMEOUT, limits_.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, limits_.request_memory, MHD_OPTION_NOTIFY_CONNECTION,
        &on_connection, this, MHD_OPTION_END);
    if (!daemon_)
      return err = cat("endpoints.http: libmicrohttpd would not start on ", config_.http), false;
    http_fd_ = -1;  // the daemon owns it now
    const MHD_DaemonInfo* info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) return err = "endpoints.http: libmicrohttpd has no epoll fd", false;
    http_io_.set<EndpointServer, &EndpointServer::on_http>(this);
    http_io_.start(info->epoll_fd, ev::READ);
    http_timer_.set<EndpointServer, &EndpointServer::on_http_timer>(this);
    reaper_.set<EndpointServer, &EndpointServer::on_reaper>(this);
    reaper_.start(1, 1);
    run_http();
  }
  if (agent_fd_ >= 0) {
    agent_io_.set<EndpointServer, &EndpointServer::on_agent>(this);
    agent_io_.start(agent_fd_, ev::READ);
  }
  return true;
}

void EndpointServer::set_status(json status) {
  status_ = std::move(status);
  status_at_ = Clock::now();
}

// The lease, and a document recent enough: status lines come at least every heartbeat, so one
// much older than the lease means they are being lost.
bool EndpointServer::fresh() const {
  auto now = Clock::now();
  return status_.is_object() && now - last_heard_ < lease_ &&
         now - status_at_ < 4 * lease_ + std::chrono::seconds(1);
}

int EndpointServer::answer(MHD_Connection* c, const char* url, const char* method, void**) {
  std::string m = method ? method : "", path = url ? url : "";
  if (m != "GET" && m != "HEAD" && m != "OPTIONS")
    return send(c, 405,
                dump_json({{"error",
                            cat("method ", quote(m), " not allowed (use GET, HEAD or OPTIONS)")}}) +
                    "\n",
                "application/json", true);
  bool ok = fresh();
  if (path == "/metrics") {
    json stats = link_stats_ ? link_stats_() : json();
    return send(c, 200, m == "OPTIONS" ? "" : render_metrics(status_, stats, ok),
                "text/plain; version=0.0.4; charset=utf-8", m == "OPTIONS");
  }
  EndpointAnswer a = endpoint_answer(path, status_, ok);
  return send(c, a.code, m == "OPTIONS" ? "" : dump_json(a.body) + "\n", "application/json",
              m == "OPTIONS");
}

void EndpointServer::connection_event(MHD_Connection* c, bool started) {
  if (started)
    connections_[c] = Clock::now();
  else
    connections_.erase(c);
}

void EndpointServer::run_http() {
  MHD_run(daemon_);
  MHD_UNSIGNED_LONG_LONG ms = 0;
  http_timer_.stop();
  if (MHD_get_timeout(daemon_, &ms) == MHD_YES)
    http_timer_.start(static_cast<double>(ms) / 1000, 0);
}

void EndpointServer::on_http(ev::io&, int) {
  run_http();
}
void EndpointServer::on_http_timer(ev::timer&, int) {
  run_http();
}

// libmicrohttpd's timeout counts idleness only: a client sending a byte a second would hold
// a connection for ever. Past its lifetime a connection's socket is shut down under MHD,
// which then sees the end of the stream and frees it.
void EndpointServer::on_reaper(ev::timer&, int) {
  auto now = Clock::now();
  bool any = false;
  for (auto& [c, since] : connections_) {
    if (std::chrono::duration<double>(now - since).count() < limits_.max_lifetime_s) continue;
    if (const MHD_ConnectionInfo* i = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD))
      shutdown(i->connect_fd, SHUT_RDWR), any = true;
  }
  if (any) run_http();
}

// One line per connection, then close: nothing the client sends is read as a request.
void EndpointServer::on_agent(ev::io&, int) {
  for (int i = 0; i < 64; ++i) {  // bounded per wake-up: a flood cannot starve the loop
    int c = accept4(agent_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) return;
    std::string line = agent_reply(status_, fresh(), config_.agent_inactive);
    ssize_t n = write(c, line.data(), line.size());  // a fresh socket's buffer takes it whole
    (void)n;
    shutdown(c, SHUT_WR);
    // Unread input would turn the close into a reset that can discard the reply in flight.
    char sink[512];
    for (int k = 0; k < 8 && read(c, sink, sizeof sink) > 0; ++k) {
    }
    close(c);
  }
}

}  // namespace vac
