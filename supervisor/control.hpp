// The control socket: a Unix stream socket speaking one JSON request line and one JSON reply
// line per connection (common/control_messages.hpp). The server side lives in the
// supervisor's libev loop; the client side is what the `vacataire` subcommands use.
//
// Nobody can deny the socket to root (vacataire(8), CONTROL SOCKET): connections are capped
// per uid and for unprivileged callers together, so capacity stays reserved for root and
// control_group; a client has a short deadline to send its request line and another to read
// its reply; replies are written without blocking; credentials (with supplementary groups)
// are captured once, at accept.
#pragma once

#include <sys/socket.h>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ev++.h>

#include "common/control_messages.hpp"
#include "common/line_reader.hpp"

namespace vac {

struct Caller {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary groups (SO_PEERGROUPS)
};

// Whether caller belongs to group, primary or supplementary, as captured at accept.
bool caller_in_group(const Caller& caller, gid_t group);

struct ControlLimits {
  size_t max_total = 128;          // every connection, root's included
  size_t root_reserve = 16;        // of max_total, only root may use these
  size_t max_privileged_uid = 32;  // one control_group member (not root)
  size_t max_unprivileged = 32;    // every caller neither root nor in control_group, together
  size_t max_per_uid = 8;          // one such caller
  double request_deadline = 2;     // seconds to send the request line
  double reply_deadline = 60;      // seconds for the answer (a probe run on demand) and its write
  double write_deadline = 5;       // seconds for a client to read its reply
  double accept_pause = 0.25;      // seconds without accepting after EMFILE, ENFILE, ...
};

class ControlServer {
 public:
  // A request is answered by calling reply, at once or later (a probe run on demand); a reply
  // for a connection that has gone away is dropped.
  using Reply = std::function<void(json)>;
  using Handler = std::function<void(const ControlRequest& request, const Caller&, Reply reply)>;

  explicit ControlServer(Handler handler, ControlLimits limits = {});
  ~ControlServer();
  // control_group's gid (resolved once, not per connection); nullopt: root alone.
  void set_control_group(std::optional<gid_t> gid) { control_gid_ = gid; }
  // Root, or a member of control_group: may use the mutating commands.
  bool privileged(const Caller& caller) const;
  // Binds path (refusing if another supervisor answers there), mode 0666: anyone may ask for
  // status; mutating commands are checked per caller.
  bool listen(const std::string& path, std::string& err);
  void close_socket();

  struct Counters {
    unsigned long long accepted = 0, refused_busy = 0, timed_out = 0, bad_requests = 0,
                       accept_errors = 0;
  };
  const Counters& counters() const { return counters_; }
  uint64_t refused() const { return counters_.refused_busy; }  // turned away: too many at once

 private:
  struct Connection;
  enum class Class { root, privileged, other };
  void on_accept(ev::io&, int);
  void on_resume(ev::timer&, int);
  bool admit(const Caller& caller, Class& cls);
  void drop(Connection* c);
  void warn(int kind, const std::string& message);

  Handler handler_;
  ControlLimits limits_;
  std::optional<gid_t> control_gid_;
  std::string path_;
  int fd_ = -1;
  ev::io accept_io_;
  ev::timer resume_;
  std::map<Connection*, std::unique_ptr<Connection>> conns_;
  std::map<uid_t, size_t> per_uid_;
  size_t unprivileged_ = 0;
  Counters counters_;
  // Rate-limited warnings, per kind: when each kind last logged and how many were held back.
  struct Warned {
    ev::tstamp last = -1e9;
    unsigned long long suppressed = 0;
  };
  Warned warned_[4];
};

// Sends one request and reads the reply. Returns an exit code: ok, usage (bad socket path),
// unreachable (nobody answers, or the connection broke before a whole reply came), system
// (the reply is not a reply); fills reply or err.
int control_call(const std::string& socket_path, const ControlRequest& request, ControlReply& reply,
                 std::string& err, double timeout_s = 70);

}  // namespace vac
