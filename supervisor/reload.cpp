#include "reload.hpp"

#include <sys/socket.h>
#include <unistd.h>
#include <set>

#include "common/address.hpp"
#include "common/text.hpp"

namespace vac {

namespace {

constexpr const char* kRestart =
    "cannot change while the supervisor runs; the running configuration stays. Restart the "
    "supervisor to apply it (an active node hands over to its peer as it stops)";

std::string shown(const std::string& s) {
  return s.empty() ? "(none)" : s;
}

// Fixed at run time: the node's identity and the core's policy (built once, at start), where
// the node record lives, where the control socket listens.
void refuse_fixed(const Config& now, const Config& next, std::vector<std::string>& refused) {
  auto fixed = [&](const char* key, const std::string& a, const std::string& b) {
    if (a != b)
      refused.push_back(cat(next.file, ": ", key, ": ", quote(a), " -> ", quote(b), " ", kRestart));
  };
  fixed("node.name", now.node_name, next.node_name);
  fixed("node.role", now.role, next.role);
  fixed("node.state_dir", now.state_dir, next.state_dir);
  fixed("control_socket", now.control_socket, next.control_socket);
  if (now.peer.has_value() != next.peer.has_value())
    refused.push_back(cat(next.file, ": peer: the peer section was ",
                          next.peer ? "added" : "removed", "; ", kRestart));
  else if (now.peer && next.peer)
    fixed("peer.name", now.peer->name, next.peer->name);
  const FailoverConfig &a = now.failover, &b = next.failover;
  fixed("failover.failback", a.failback, b.failback);
  fixed("failover.startup_grace", format_duration(a.startup_grace),
        format_duration(b.startup_grace));
  fixed("failover.isolation_after", format_duration(a.isolation_after),
        format_duration(b.isolation_after));
  fixed("failover.witness", a.witness, b.witness);
  fixed("failover.stop_without_peer", a.stop_without_peer ? "true" : "false",
        b.stop_without_peer ? "true" : "false");
}

bool same_link(const LinkConfig& a, const LinkConfig& b) {
  return a.listen == b.listen && a.peer == b.peer;
}

std::string link_text(const LinkConfig& l) {
  return cat(l.listen, " <-> ", l.peer);
}

// What linkd would run with differently, in words for the log (never the key itself).
std::vector<std::string> link_changes(const Config& now, const Key& now_key, const Config& next,
                                      const Key& next_key) {
  std::vector<std::string> out;
  auto changed = [&](const char* key, const std::string& a, const std::string& b) {
    if (a != b) out.push_back(cat(key, " ", shown(a), " -> ", shown(b)));
  };
  if (now.peer && next.peer) {
    const PeerConfig &a = *now.peer, &b = *next.peer;
    changed("heartbeat", format_duration(a.heartbeat), format_duration(b.heartbeat));
    changed("dead_after", format_duration(a.dead_after), format_duration(b.dead_after));
    for (size_t i = 0; i < std::max(a.links.size(), b.links.size()); ++i) {
      std::string which = cat("link ", i + 1);
      if (i >= b.links.size())
        out.push_back(cat(which, " removed (", link_text(a.links[i]), ")"));
      else if (i >= a.links.size())
        out.push_back(cat(which, " added (", link_text(b.links[i]), ")"));
      else if (!same_link(a.links[i], b.links[i]))
        out.push_back(cat(which, " ", link_text(a.links[i]), " -> ", link_text(b.links[i])));
    }
    changed("key_file", a.key_file, b.key_file);
    if (now_key != next_key) out.push_back("key changed");
  }
  changed("user", now.user, next.user);
  changed("endpoints.http", now.endpoint_http, next.endpoint_http);
  changed("endpoints.agent_check", now.endpoint_agent_check, next.endpoint_agent_check);
  changed("endpoints.agent_inactive", now.endpoint_agent_inactive, next.endpoint_agent_inactive);
  return out;
}

// While the peer is up it still uses the old key and links: a change that leaves no way to
// reach it would have each node lose the other, and both serve.
void refuse_split(const Config& now, const Key& now_key, const Config& next, const Key& next_key,
                  std::vector<std::string>& refused) {
  const PeerConfig &a = *now.peer, &b = *next.peer;
  std::string risk =
      cat(" while peer ", a.name,
          " is up: it still uses the old ones, so both nodes would lose each other and both "
          "would serve; the running configuration stays. ");
  std::string standby =
      "stop the standby node, reload the active one, then update the standby and start it";
  if (now_key != next_key)
    refused.push_back(
        cat(next.file, ": peer.key_file: the key changed", risk, "Safe procedure: ", standby));
  // Links are matched by position (each datagram names its link): one kept in place keeps the
  // pair talking while the other end is changed.
  bool kept = false;
  for (size_t i = 0; i < std::min(a.links.size(), b.links.size()); ++i)
    kept |= same_link(a.links[i], b.links[i]);
  if (!kept)
    refused.push_back(cat(next.file, ": peer.links: every link changes at once", risk,
                          "Safe procedure: change one link at a time, on both nodes, while the "
                          "pair talks over the others (links are matched by position); with a "
                          "single link, ",
                          standby));
}

// Whether something else holds address now (type SOCK_DGRAM or SOCK_STREAM): bound, then
// let go at once; a TCP port is not listened on, so no client is accepted by the test.
std::string try_bind(const char* key, const std::string& address, int type) {
  Address a;
  std::string err;
  if (!parse_address(address, a, err)) return cat(key, ": ", err);
  int fd = socket(a.sa.ss_family, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return sys_error(cat(key, ": socket"));
  int one = 1;
  if (type == SOCK_STREAM) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  std::string why;
  if (bind(fd, reinterpret_cast<const sockaddr*>(&a.sa), a.len) != 0)
    why = sys_error(cat(key, ": cannot bind ", address));
  close(fd);
  return why;
}

}  // namespace

ReloadPlan plan_reload(const Config& now, const Key& now_key, const Config& next,
                       const Key& next_key, bool peer_up) {
  ReloadPlan plan;
  refuse_fixed(now, next, plan.refused);
  if (!plan.refused.empty()) return plan;
  if (peer_up && now.peer && next.peer) refuse_split(now, now_key, next, next_key, plan.refused);
  plan.link_changes = link_changes(now, now_key, next, next_key);
  plan.restart_link = !plan.link_changes.empty();
  return plan;
}

std::vector<std::string> check_new_addresses(const Config& now, const Config& next) {
  std::vector<std::string> errors;
  auto fail = [&](const std::string& why) {
    if (!why.empty())
      errors.push_back(
          cat(next.file, ": ", why, " (linkd could not start with it; the running linkd stays)"));
  };
  std::set<std::string> held;  // what the running linkd holds: binding it here would fail
  if (now.peer)
    for (auto& l : now.peer->links) held.insert(l.listen);
  if (next.peer)
    for (auto& l : next.peer->links)
      if (!held.count(l.listen)) fail(try_bind("peer.links.listen", l.listen, SOCK_DGRAM));
  std::set<std::string> tcp_held = {now.endpoint_http, now.endpoint_agent_check};
  if (!next.endpoint_http.empty() && !tcp_held.count(next.endpoint_http))
    fail(try_bind("endpoints.http", next.endpoint_http, SOCK_STREAM));
  if (!next.endpoint_agent_check.empty() && !tcp_held.count(next.endpoint_agent_check))
    fail(try_bind("endpoints.agent_check", next.endpoint_agent_check, SOCK_STREAM));
  return errors;
}

}  // namespace vac
