#include "control.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "common/exit_codes.hpp"
#include "common/log.hpp"
#include "common/text.hpp"

namespace vac {

namespace {
constexpr size_t kMaxRequest = 65536;
constexpr size_t kMaxConnections = 64;
constexpr double kConnectionTimeout = 60.0;  // a probe run on demand may take its timeout

bool make_address(const std::string& path, sockaddr_un& addr, std::string& err) {
  addr = {};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path)
    return err = cat("control socket path too long (", path.size(), " bytes): ", path), false;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return true;
}
}  // namespace

struct ControlServer::Connection {
  ControlServer* server;
  int fd;
  Caller caller;
  LineReader reader{kMaxRequest};
  std::string out;
  size_t sent = 0;
  bool answered = false;
  ev::io io;
  ev::timer timeout;

  std::shared_ptr<bool> alive = std::make_shared<bool>(true);

  void send(const nlohmann::json& reply) {
    out = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
    io.stop();
    io.set(fd, ev::WRITE);
    io.start();
  }

  void on_io(ev::io&, int revents) {
    if (revents & ev::READ && !answered) {
      auto r = reader.read_from(fd, [this](std::string_view line, bool truncated) {
        if (answered) return;
        answered = true;
        io.stop();  // one request per connection; wait for the reply without reading more
        if (truncated) return send({{"ok", false}, {"error", "request too long"}});
        nlohmann::json request = nlohmann::json::parse(line, nullptr, false);
        if (request.is_discarded())
          return send({{"ok", false}, {"error", "bad request: not valid JSON"}});
        std::weak_ptr<bool> token = alive;
        Connection* self = this;
        server->handler_(request, caller, [token, self](nlohmann::json reply) {
          if (!token.expired()) self->send(reply);
        });
      });
      if (!answered && r != LineReader::ReadResult::again) return server->drop(this);
      return;
    }
    if (revents & ev::WRITE && answered) {
      while (sent < out.size()) {
        ssize_t n = ::write(fd, out.data() + sent, out.size() - sent);
        if (n > 0) {
          sent += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        break;
      }
      server->drop(this);
    }
  }
  void on_timeout(ev::timer&, int) { server->drop(this); }
};

ControlServer::ControlServer(Handler handler) : handler_(std::move(handler)) {}
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
      chmod(path.c_str(), 0666) != 0 || ::listen(fd_, 64) != 0) {
    err = sys_error(cat("control socket ", path));
    close(fd_);
    fd_ = -1;
    return false;
  }
  path_ = path;
  accept_io_.set<ControlServer, &ControlServer::on_accept>(this);
  accept_io_.start(fd_, ev::READ);
  return true;
}

void ControlServer::close_socket() {
  accept_io_.stop();
  conns_.clear();
  if (fd_ >= 0) {
    close(fd_);
    unlink(path_.c_str());
    fd_ = -1;
  }
}

void ControlServer::on_accept(ev::io&, int) {
  for (;;) {
    int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (c < 0) return;
    if (conns_.size() >= kMaxConnections) {
      log_warn("control", "too many control connections; refusing one");
      ++refused_;
      close(c);
      continue;
    }
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(c);
      continue;
    }
    auto conn = std::make_unique<Connection>();
    conn->server = this;
    conn->fd = c;
    conn->caller = {cred.pid, cred.uid, cred.gid};
    conn->io.set<Connection, &Connection::on_io>(conn.get());
    conn->io.start(c, ev::READ);
    conn->timeout.set<Connection, &Connection::on_timeout>(conn.get());
    conn->timeout.start(kConnectionTimeout, 0);
    Connection* key = conn.get();
    conns_[key] = std::move(conn);
  }
}

void ControlServer::drop(Connection* c) {
  c->io.stop();
  c->timeout.stop();
  close(c->fd);
  conns_.erase(c);
}

int control_call(const std::string& socket_path, const nlohmann::json& request,
                 nlohmann::json& reply, std::string& err, double timeout_s) {
  sockaddr_un addr;
  if (!make_address(socket_path, addr, err)) return exit_code::usage;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return err = sys_error("socket"), exit_code::system;
  timeval tv{static_cast<time_t>(timeout_s),
             static_cast<suseconds_t>((timeout_s - static_cast<long>(timeout_s)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    err = cat("no supervisor answers on ", socket_path, " (", std::strerror(errno),
              "); is `vacataire run` running with this config?");
    close(fd);
    return exit_code::unreachable;
  }
  std::string line = request.dump() + "\n";
  if (write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    err = sys_error("write to control socket");
    close(fd);
    return exit_code::unreachable;
  }
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
      if (text.back() == '\n') break;
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      err = sys_error("read from control socket");
      close(fd);
      return exit_code::unreachable;
    }
    break;
  }
  close(fd);
  try {
    reply = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {
    err = "the supervisor's reply was not valid JSON";
    return exit_code::system;
  }
  return exit_code::ok;
}

bool caller_in_group(const Caller& caller, gid_t group) {
  if (caller.gid == group) return true;
  std::ifstream in(cat("/proc/", caller.pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream gs(line.substr(7));
    long g;
    while (gs >> g)
      if (static_cast<gid_t>(g) == group) return true;
  }
  return false;
}

}  // namespace vac
