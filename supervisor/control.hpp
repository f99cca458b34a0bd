// The control socket: a Unix stream socket speaking one JSON request line and one JSON reply
// line per connection. The server side lives in the supervisor's libev loop; the client side
// is what the `vacataire` subcommands use. Who may do what is decided by the supervisor from
// the caller's SO_PEERCRED credentials, which the server passes along with each request.
#pragma once

#include <sys/socket.h>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include <ev++.h>
#include <nlohmann/json.hpp>

#include "common/line_reader.hpp"

namespace vac {

struct Caller {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

class ControlServer {
 public:
  // A request is answered by calling reply, at once or later (a probe run on demand); a reply
  // for a connection that has gone away is dropped.
  using Reply = std::function<void(nlohmann::json)>;
  using Handler = std::function<void(const nlohmann::json& request, const Caller&, Reply reply)>;

  explicit ControlServer(Handler handler);
  ~ControlServer();
  // Binds path (refusing if another supervisor answers there), mode 0666: anyone may ask for
  // status; mutating commands are checked per caller.
  bool listen(const std::string& path, std::string& err);
  void close_socket();
  uint64_t refused() const { return refused_; }  // connections turned away: too many at once

 private:
  struct Connection;
  void on_accept(ev::io&, int);
  void drop(Connection* c);

  Handler handler_;
  std::string path_;
  int fd_ = -1;
  ev::io accept_io_;
  std::map<Connection*, std::unique_ptr<Connection>> conns_;
  uint64_t refused_ = 0;
};

// Sends one request and reads the reply. Returns an exit code (exit_code::ok, unreachable or
// system) and fills reply or err.
int control_call(const std::string& socket_path, const nlohmann::json& request,
                 nlohmann::json& reply, std::string& err, double timeout_s = 10);

// Whether caller belongs to group (primary or supplementary, from /proc/PID/status).
bool caller_in_group(const Caller& caller, gid_t group);

}  // namespace vac
