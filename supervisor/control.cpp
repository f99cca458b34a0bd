#include "control.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/text.hpp"

namespace vac {

namespace {
enum WarnKind { kBusy, kAcceptError, kCreds, kWarnKinds };
constexpr double kWarnEvery = 10;  // seconds between two warnings of one kind

bool make_address(const std::string& path, sockaddr_un& addr, std::string& err) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return err = cat("control socket path is ", path.size(),
                     " bytes; a Unix socket path holds at most ", sizeof addr.sun_path - 1, ": ",
                     path),
           false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}

// Supplementary groups of the peer, as the kernel saw them at connect time.
std::vector<gid_t> peer_groups(int fd) {
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 3; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return groups;
    }
    if (errno != ERANGE) break;
    groups.resize(std::max<size_t>(len / sizeof(gid_t), groups.size() * 2));
  }
  return {};
}
}  // namespace

bool caller_in_group(const Caller& caller, gid_t group) {
  return caller.gid == group ||
         std::find(caller.groups.begin(), caller.groups.end(), group) != caller.groups.end();
}

struct ControlServer::Connection {
  ControlServer* server;
  int fd;
  Caller caller;
  Class cls = Class::other;
  LineReader reader{kMaxControlRequest};
  std::string out;
  size_t sent = 0;
  bool answered = false;
  ev::io io;
  ev::timer deadline;
  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  void send(const json& reply) {
    out = encode_control_reply(reply);
    deadline.stop();
    deadline.start(server->limits_.write_deadline, 0);
    io.stop();
    io.set(fd, ev::WRITE);
    io.start();  // written from the loop: send may be called from inside on_io
  }

  // Writes what the socket takes now; drops the connection when done or broken.
  void flush() {
    while (sent < out.size()) {
      ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      break;
    }
    server->drop(this);
  }

  void on_line(std::string_view line, bool truncated) {
    if (answered) return;
    answered = true;
    io.stop();  // one request per connection; wait for the reply without reading more
    deadline.stop();
    deadline.start(server->limits_.reply_deadline, 0);
    if (truncated) {
      ++server->counters_.bad_requests;
      return send(control_refusal(
          exit_code::usage, cat("request too long (at most ", kMaxControlRequest, " bytes)")));
    }
    std::string err;
    auto request = decode_control_request(line, err);
    if (!request) {
      ++server->counters_.bad_requests;
      return send(control_refusal(exit_code::usage, err));
    }
    std::weak_ptr<bool> token = alive;
    Connection* self = this;
    server->handler_(*request, caller, [token, self](json reply) {
      if (!token.expired()) self->send(reply);
    });
  }

  void on_io(ev::io&, int revents) {
    if (revents & ev::READ && !answered) {
      auto r = reader.read_from(
          fd, [this](std::string_view line, bool truncated) { on_line(line, truncated); },
          kMaxControlRequest + 1);
      // Closed or broken before a whole request line: nothing to answer.
      if (!answered && r != LineReader::ReadResult::again) return server->drop(this);
      return;
    }
    if (revents & ev::WRITE && answered) flush();
  }
  void on_deadline(ev::timer&, int) {
    if (!answered) ++server->counters_.timed_out;
    log_debug("control",
              answered ? "a client did not read its reply in time; closing it"
                       : "a client sent no request in time; closing it",
              " (uid ", caller.uid, ", pid ", caller.pid, ")");
    server->drop(this);
  }
};

ControlServer::ControlServer(Handler handler, ControlLimits limits)
    : handler_(std::move(handler)), limits_(limits) {}
ControlServer::~ControlServer() {
  close_socket();
}

bool ControlServer::listen(const std::string& path, std::string& err) {
  sockaddr_un addr;
  if (!make_address(path, addr, err)) return false;
  if (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0) {
    std::string dir = path.substr(0, slash);
    for (size_t i = 1; i <= dir.size(); ++i)
      if (i == dir.size() || dir[i] == '/') mkdir(dir.substr(0, i).c_str(), 0755);
  }
  // A socket file that nobody answers on was left by a dead instance; one that answers means
  // another supervisor runs with the same config.
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    close(probe);
    return err = cat("another supervisor is already running (it answers on ", path, ")"), false;
  }
  if (probe >= 0) close(probe);
  unlink(path.c_str());
  fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) return err = sys_error("socket"), false;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      chmod(path.c_str(), 0666) != 0 || ::listen(fd_, 128) != 0) {
    err = sys_error(cat("control socket ", path));
    close(fd_);
    fd_ = -1;
    return false;
  }
  path_ = path;
  accept_io_.set<ControlServer, &ControlServer::on_accept>(this);
  accept_io_.start(fd_, ev::READ);
  resume_.set<ControlServer, &ControlServer::on_resume>(this);
  return true;
}

void ControlServer::close_socket() {
  accept_io_.stop();
  resume_.stop();
  while (!conns_.empty()) drop(conns_.begin()->first);
  if (fd_ >= 0) {
    close(fd_);
    unlink(path_.c_str());
    fd_ = -1;
  }
}

void ControlServer::warn(int kind, const std::string& message) {
  ev::tstamp now = ev::get_default_loop().now();
  Warned& w = warned_[kind];
  if (now - w.last < kWarnEvery) {
    ++w.suppressed;
    return;
  }
  if (w.suppressed)
    log_warn("control", message, " (", w.suppressed, " more like it in the last ",
             static_cast<int>(now - w.last), "s)");
  else
    log_warn("control", message);
  w.last = now;
  w.suppressed = 0;
}

bool ControlServer::privileged(const Caller& caller) const {
  return caller.uid == 0 || (control_gid_ && caller_in_group(caller, *control_gid_));
}

bool ControlServer::admit(const Caller& caller, Class& cls) {
  cls = caller.uid == 0 ? Class::root : privileged(caller) ? Class::privileged : Class::other;
  size_t total = conns_.size();
  size_t mine = per_uid_.count(caller.uid) ? per_uid_[caller.uid] : 0;
  switch (cls) {
    case Class::root:
      return total < limits_.max_total;
    case Class::privileged:
      return total + limits_.root_reserve < limits_.max_total && mine < limits_.max_privileged_uid;
    case Class::other:
      return total + limits_.root_reserve < limits_.max_total &&
             unprivileged_ < limits_.max_unprivileged && mine < limits_.max_per_uid;
  }
  return false;
}

void ControlServer::on_resume(ev::timer&, int) {
  if (fd_ >= 0) accept_io_.start();
}

void ControlServer::on_accept(ev::io&, int) {
  // Bounded per wake-up, so a connect flood shares the loop with everything else.
  for (int i = 0; i < 64; ++i) {
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
      // Out of fds or memory: the pending connection stays queued and the socket stays
      // readable; accepting again at once would spin. Pause, then try again.
      ++counters_.accept_errors;
      warn(kAcceptError, sys_error("accepting a control connection (pausing briefly)"));
      accept_io_.stop();
      resume_.start(limits_.accept_pause, 0);
      return;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      warn(kCreds, sys_error("reading a control client's credentials"));
      close(c);
      continue;
    }
    Caller caller{cred.pid, cred.uid, cred.gid, peer_groups(c)};
    Class cls;
    if (!admit(caller, cls)) {
      ++counters_.refused_busy;
      warn(kBusy,
           cat("too many control connections from uid ", caller.uid, "; refusing its new ones"));
      // A short answer helps an honest client; never wait for it to be read.
      std::string refusal = encode_control_reply(
          control_refusal(exit_code::failed, "too many control connections from this user"));
      (void)::send(c, refusal.data(), refusal.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      close(c);
      continue;
    }
    ++counters_.accepted;
    auto conn = std::make_unique<Connection>();
    conn->server = this;
    conn->fd = c;
    conn->caller = std::move(caller);
    conn->cls = cls;
    ++per_uid_[conn->caller.uid];
    if (cls == Class::other) ++unprivileged_;
    conn->io.set<Connection, &Connection::on_io>(conn.get());
    conn->io.start(c, ev::READ);
    conn->deadline.set<Connection, &Connection::on_deadline>(conn.get());
    conn->deadline.start(limits_.request_deadline, 0);
    Connection* key = conn.get();
    conns_[key] = std::move(conn);
  }
}

void ControlServer::drop(Connection* c) {
  c->io.stop();
  c->deadline.stop();
  close(c->fd);
  if (auto it = per_uid_.find(c->caller.uid); it != per_uid_.end() && --it->second == 0)
    per_uid_.erase(it);
  if (c->cls == Class::other) --unprivileged_;
  conns_.erase(c);
}

namespace {
// Milliseconds left before deadline, at least 0.
int ms_left(std::chrono::steady_clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::max<long long>(0, left.count()));
}
}  // namespace

int control_call(const std::string& socket_path, const ControlRequest& request, ControlReply& reply,
                 std::string& err, double timeout_s) {
  sockaddr_un addr;
  if (!make_address(socket_path, addr, err)) return exit_code::usage;
  auto deadline = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(static_cast<long long>(timeout_s * 1000));
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return err = sys_error("socket"), exit_code::system;
  timeval tv{static_cast<time_t>(timeout_s), 0};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);  // bounds a connect to a full queue
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    err = cat("no supervisor answers on ", socket_path, " (", std::strerror(errno),
              "); is `vacataire run` running with this config?");
    close(fd);
    return exit_code::unreachable;
  }
  auto broken = [&](const std::string& what) {
    err = cat("the connection to the supervisor broke ", what,
              "; it may be stopping, or too busy (try again)");
    close(fd);
    return exit_code::unreachable;
  };
  std::string line = encode_control_request(request);
  size_t sent = 0;
  while (sent < line.size()) {
    // MSG_NOSIGNAL: a supervisor that closes on us is an error to report, not a SIGPIPE death.
    ssize_t n = ::send(fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    return broken(cat("while sending the request (", std::strerror(errno), ")"));
  }
  std::string text;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    int left = ms_left(deadline);
    int rc = poll(&p, 1, left);
    if (rc < 0 && errno == EINTR) continue;
    if (rc == 0) {
      close(fd);
      err = cat("the supervisor did not answer within ", timeout_s, "s");
      return exit_code::unreachable;
    }
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return broken(cat("while reading the reply (", std::strerror(errno), ")"));
    if (n == 0) {
      if (text.empty()) return broken("before any reply came");
      return broken("in the middle of the reply");
    }
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxControlReply) {
      close(fd);
      err = "the supervisor's reply is too long";
      return exit_code::system;
    }
    if (text.back() == '\n') break;
  }
  close(fd);
  text.pop_back();
  auto decoded = decode_control_reply(text, err);
  if (!decoded) return exit_code::system;
  reply = std::move(*decoded);
  return exit_code::ok;
}

}  // namespace vac
