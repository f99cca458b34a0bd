#include "link_messages.hpp"

#include <algorithm>

#include "json_util.hpp"
#include "text.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
// Longer durations than this are configuration mistakes, and would overflow the timers.

std::string line_of(const json& j) {
  return dump_json(j) + "\n";
}

// The one key of a line, which names its kind; err when there is not exactly one.
const json* only_member(const json& j, std::string& key, std::string& err, const std::string& who) {
  if (!j.is_object()) return err = cat(who, ": expected a JSON object"), nullptr;
  if (j.size() != 1)
    return err = cat(who, ": expected exactly one key (the line's kind), got ", j.size()), nullptr;
  key = j.begin().key();
  return &j.begin().value();
}

// A node state name: lowercase letters and underscores, as the core spells them.
bool state_shaped(const std::string& s) {
  return !s.empty() && s.size() <= 32 &&
         std::all_of(s.begin(), s.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
}

json report_json(const NodeReport& r) {
  return {{"state", r.state}, {"epoch", r.epoch}, {"healthy", r.healthy}, {"role", r.role}};
}

// Reads state, epoch, healthy and role from f, all required.
NodeReport read_report(Fields& f) {
  NodeReport r;
  r.state = f.str("state", "", true);
  r.epoch = f.uinteger("epoch", 0, true);
  r.healthy = f.boolean("healthy", false, true);
  r.role = f.str("role", "", true);
  if (f.ok() && !state_shaped(r.state))
    f.fail(cat("field \"state\" is not a node state name: ", quote(utf8_prefix(r.state, 40))));
  if (f.ok() && r.role != "master" && r.role != "standby")
    f.fail(cat("field \"role\" must be \"master\" or \"standby\", not ", quote(r.role)));
  return r;
}

Duration read_duration(Fields& f, const char* key) {
  int64_t us = f.integer(key, 0, true);
  if (f.ok() && (us <= 0 || us > kMaxDurationUs))
    f.fail(cat("field ", quote(key), " must be between 1 and ", kMaxDurationUs, " microseconds"));
  return Duration(us);
}

std::optional<LinkdSettings> read_settings(const json& j, std::string& err) {
  LinkdSettings s;
  Fields f(j, "config line");
  s.node = f.str("node", "", true);
  s.peer = f.str("peer");
  s.key_hex = f.str("key");
  s.heartbeat = read_duration(f, "heartbeat_us");
  s.dead_after = read_duration(f, "dead_after_us");
  s.user = f.str("user");
  s.incarnation = f.uinteger("incarnation");
  const json& links = f.sub("links", "array");
  const json& endpoints = f.sub("endpoints", "object");
  bool pair = f.ok() && !links.empty();
  if (f.ok() && s.node.empty()) f.fail("field \"node\" must not be empty");
  if (pair && s.peer.empty()) f.fail("field \"peer\" must not be empty");
  if (pair && s.node == s.peer) f.fail("fields \"node\" and \"peer\" must differ");
  if (pair && (s.key_hex.empty() || s.key_hex.size() % 2 != 0 ||
               !std::all_of(s.key_hex.begin(), s.key_hex.end(), [](char c) {
                 return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
               })))
    f.fail("field \"key\" must be hexadecimal");
  if (!f.ok()) return err = f.error(), std::nullopt;
  for (size_t i = 0; i < links.size(); ++i) {
    Fields l(links[i], cat("config line: links[", i, "]"));
    LinkConfig lc{l.str("listen", "", true), l.str("peer", "", true)};
    if (!l.ok()) return err = l.error(), std::nullopt;
    s.links.push_back(std::move(lc));
  }
  if (endpoints.is_object()) {
    Fields e(endpoints, "config line: endpoints");
    s.endpoints.http = e.str("http");
    s.endpoints.agent_check = e.str("agent_check");
    s.endpoints.agent_inactive = e.str("agent_inactive", "down");
    if (e.ok() && s.endpoints.agent_inactive != "down" && s.endpoints.agent_inactive != "maint")
      e.fail("field \"agent_inactive\" must be \"down\" or \"maint\"");
    if (!e.ok()) return err = e.error(), std::nullopt;
  }
  if (s.links.empty() && s.endpoints.empty())
    return err = "config line: field \"links\" must hold at least one link (or endpoints be set)",
           std::nullopt;
  return s;
}

std::optional<double> read_optional_number(Fields& f, const char* key) {
  if (!f.has(key) || f.sub(key).is_null()) return std::nullopt;
  return f.number(key);
}

json optional_json(const std::optional<double>& v) {
  return v ? json(*v) : json(nullptr);
}

std::optional<LinkdStats> read_stats(const json& j, std::string& err) {
  LinkdStats s;
  Fields f(j, "stats line");
  const json& links = f.sub("links", "array", true);
  const json& datagrams = f.sub("datagrams", "object", true);
  s.kernel_drops = f.uinteger("kernel_drops");
  s.peer_alive = f.boolean("peer_alive", false, true);
  s.supervisor_fresh = f.boolean("supervisor_fresh");
  s.commands_pending = f.uinteger("commands_pending");
  if (!f.ok()) return err = f.error(), std::nullopt;
  for (size_t i = 0; i < links.size(); ++i) {
    Fields l(links[i], cat("stats line: links[", i, "]"));
    LinkStats ls;
    ls.listen = l.str("listen", "", true);
    ls.peer = l.str("peer", "", true);
    ls.up = l.boolean("up", false, true);
    ls.last_heard_ms = read_optional_number(l, "last_heard_ms");
    ls.rtt_ms = read_optional_number(l, "rtt_ms");
    ls.rx = l.uinteger("rx");
    ls.tx = l.uinteger("tx");
    ls.kernel_drops = l.uinteger("kernel_drops");
    if (!l.ok()) return err = l.error(), std::nullopt;
    s.links.push_back(std::move(ls));
  }
  Fields d(datagrams, "stats line: datagrams");
  for (auto& item : datagrams.items()) {
    s.datagrams[item.key()] = d.uinteger(item.key().c_str());
    if (!d.ok()) return err = d.error(), std::nullopt;
  }
  return s;
}
}  // namespace

Duration supervisor_tick(Duration heartbeat) {
  return std::min<Duration>(std::chrono::milliseconds(50), heartbeat / 2);
}

Duration supervisor_lease(Duration heartbeat, Duration dead_after) {
  return std::max<Duration>(dead_after / 2, 3 * supervisor_tick(heartbeat));
}

Duration linkd_report_period(Duration dead_after) {
  return std::min<Duration>(std::chrono::seconds(1), dead_after / 6);
}

Duration linkd_silence_limit(Duration dead_after) {
  return dead_after / 2;
}

Duration guard_fence(Duration heartbeat, Duration dead_after, Duration peer_dead_after) {
  Duration margin = std::min(dead_after, peer_dead_after) - heartbeat;
  return supervisor_lease(heartbeat, dead_after) + std::max<Duration>(margin / 2, Duration(0));
}

// Both nodes should run the same heartbeat and dead_after (vacataire.json(5)): each counts its
// dead_after from the other's last heartbeat, and the guard's fence must come before the peer's
// dead_after runs out. Unequal settings still work, with the shorter dead_after setting the
// fence; settings where one side's dead_after is not longer than the other's heartbeat lose the
// peer between two heartbeats, and failovers follow.
std::string timing_mismatch(const std::string& peer, Duration heartbeat, Duration dead_after,
                            const LinkTiming& peer_timing) {
  if (!peer_timing.known()) return "";
  Duration peer_hb(peer_timing.heartbeat_us), peer_dead(peer_timing.dead_after_us);
  if (peer_hb == heartbeat && peer_dead == dead_after) return "";
  std::string why =
      cat("peer ", peer, " runs heartbeat ", format_duration(peer_hb), ", dead_after ",
          format_duration(peer_dead), "; this node runs heartbeat ", format_duration(heartbeat),
          ", dead_after ", format_duration(dead_after), ": set the same on both nodes");
  if (peer_dead <= heartbeat)
    why += "; the peer loses this node between two of its heartbeats";
  else if (dead_after <= peer_hb)
    why += "; this node loses the peer between two of its heartbeats";
  if (peer_dead < dead_after)
    why += cat("; the guard's fence is shortened to ",
               format_duration(guard_fence(heartbeat, dead_after, peer_dead)));
  return why;
}

const char* to_string(PeerKind k) {
  switch (k) {
    case PeerKind::heartbeat:
      return "heartbeat";
    case PeerKind::takeover:
      return "takeover";
    case PeerKind::quiesce:
      return "quiesce";
    case PeerKind::stopped:
      return "stopped";
  }
  return "heartbeat";
}

bool parse_peer_kind(std::string_view s, PeerKind& out) {
  for (PeerKind k : {PeerKind::heartbeat, PeerKind::takeover, PeerKind::quiesce, PeerKind::stopped})
    if (s == to_string(k)) return out = k, true;
  return false;
}

// ---- supervisor -> linkd ----

std::string encode_config_line(const LinkdSettings& s) {
  json links = json::array();
  for (auto& l : s.links) links.push_back({{"listen", l.listen}, {"peer", l.peer}});
  json c = {{"node", s.node},
            {"peer", s.peer},
            {"links", links},
            {"key", s.key_hex},
            {"heartbeat_us", s.heartbeat.count()},
            {"dead_after_us", s.dead_after.count()},
            {"user", s.user},
            {"incarnation", s.incarnation}};
  if (!s.endpoints.empty())
    c["endpoints"] = {{"http", s.endpoints.http},
                      {"agent_check", s.endpoints.agent_check},
                      {"agent_inactive", s.endpoints.agent_inactive}};
  return line_of({{"config", c}});
}

std::string encode_heartbeat_line(const NodeReport& r) {
  return line_of({{"heartbeat", report_json(r)}});
}

std::string encode_send_line(PeerKind command, const NodeReport& r) {
  json m = report_json(r);
  m["kind"] = to_string(command);
  return line_of({{"send", m}});
}

std::string encode_status_line(const json& status) {
  return line_of({{"status", status}});
}

std::string encode_stats_request_line() {
  return line_of({{"stats", true}});
}

std::optional<ToLinkd> decode_to_linkd(std::string_view line, std::string& err) {
  auto j = parse_json(line, err);
  if (!j) return err = cat("line from the supervisor is not JSON: ", err), std::nullopt;
  std::string key;
  const json* v = only_member(*j, key, err, "line from the supervisor");
  if (!v) return std::nullopt;
  ToLinkd out;
  if (key == "config") {
    out.kind = ToLinkd::config;
    auto s = read_settings(*v, err);
    if (!s) return std::nullopt;
    out.settings = std::move(*s);
  } else if (key == "heartbeat") {
    out.kind = ToLinkd::heartbeat;
    Fields f(*v, "heartbeat line");
    out.report = read_report(f);
    if (!f.ok()) return err = f.error(), std::nullopt;
  } else if (key == "send") {
    out.kind = ToLinkd::send;
    Fields f(*v, "send line");
    std::string kind = f.str("kind", "", true);
    out.report = read_report(f);
    if (f.ok() && (!parse_peer_kind(kind, out.command) || !is_command(out.command)))
      f.fail(cat("field \"kind\" must be \"takeover\", \"quiesce\" or \"stopped\", not ",
                 quote(utf8_prefix(kind, 40))));
    if (!f.ok()) return err = f.error(), std::nullopt;
  } else if (key == "status") {
    out.kind = ToLinkd::status;
    if (!v->is_object()) return err = "status line: expected a JSON object", std::nullopt;
    out.status_doc = *v;
  } else if (key == "stats") {
    out.kind = ToLinkd::stats;
  } else {
    return err = cat("line from the supervisor: unknown kind ", quote(utf8_prefix(key, 40))),
           std::nullopt;
  }
  return out;
}

// ---- linkd -> supervisor ----

json stats_json(const LinkdStats& s) {
  json links = json::array();
  for (auto& l : s.links)
    links.push_back({{"listen", l.listen},
                     {"peer", l.peer},
                     {"up", l.up},
                     {"last_heard_ms", optional_json(l.last_heard_ms)},
                     {"rtt_ms", optional_json(l.rtt_ms)},
                     {"rx", l.rx},
                     {"tx", l.tx},
                     {"kernel_drops", l.kernel_drops}});
  json datagrams = json::object();
  for (auto& [verdict, n] : s.datagrams) datagrams[verdict] = n;
  return {{"links", links},
          {"datagrams", datagrams},
          {"kernel_drops", s.kernel_drops},
          {"peer_alive", s.peer_alive},
          {"supervisor_fresh", s.supervisor_fresh},
          {"commands_pending", s.commands_pending}};
}

std::string encode_ready_line(uint64_t links, uid_t uid) {
  return line_of({{"ready", {{"links", links}, {"uid", uid}}}});
}

std::string encode_error_line(std::string_view message) {
  return line_of({{"error", std::string(message)}});
}

std::string encode_stats_line(const LinkdStats& s) {
  return line_of({{"stats", stats_json(s)}});
}

std::string encode_lost_line() {
  return line_of({{"lost", true}});
}

std::string encode_peer_line(const PeerLine& p) {
  json m = report_json(p.report);
  m["kind"] = to_string(p.kind);
  if (p.timing.known()) {
    m["heartbeat_us"] = p.timing.heartbeat_us;
    m["dead_after_us"] = p.timing.dead_after_us;
  }
  if (p.incarnation != 0) m["incarnation"] = p.incarnation;
  return line_of({{"peer", m}});
}

std::optional<FromLinkd> decode_from_linkd(std::string_view line, std::string& err) {
  auto j = parse_json(line, err);
  if (!j) return err = cat("line from linkd is not JSON: ", err), std::nullopt;
  std::string key;
  const json* v = only_member(*j, key, err, "line from linkd");
  if (!v) return std::nullopt;
  FromLinkd out;
  if (key == "ready") {
    out.kind = FromLinkd::ready;
    Fields f(*v, "ready line");
    out.links = f.uinteger("links", 0, true);
    out.uid = f.integer("uid", -1);
    if (!f.ok()) return err = f.error(), std::nullopt;
  } else if (key == "error") {
    out.kind = FromLinkd::error;
    if (!v->is_string()) return err = "error line: expected a string", std::nullopt;
    out.message = v->get_ref<const std::string&>();
  } else if (key == "stats") {
    out.kind = FromLinkd::stats;
    auto s = read_stats(*v, err);
    if (!s) return std::nullopt;
    out.stats_value = std::move(*s);
  } else if (key == "lost") {
    out.kind = FromLinkd::lost;
    if (*v != true) return err = "lost line: expected true", std::nullopt;
  } else if (key == "peer") {
    out.kind = FromLinkd::peer;
    Fields f(*v, "peer line");
    std::string kind = f.str("kind", "", true);
    out.peer_value.report = read_report(f);
    out.peer_value.timing.heartbeat_us = f.uinteger("heartbeat_us");
    out.peer_value.timing.dead_after_us = f.uinteger("dead_after_us");
    out.peer_value.incarnation = f.uinteger("incarnation");
    if (f.ok() && !parse_peer_kind(kind, out.peer_value.kind))
      f.fail(cat("field \"kind\" is not a peer message kind: ", quote(utf8_prefix(kind, 40))));
    if (!f.ok()) return err = f.error(), std::nullopt;
  } else {
    return err = cat("line from linkd: unknown kind ", quote(utf8_prefix(key, 40))), std::nullopt;
  }
  return out;
}

}  // namespace vac
