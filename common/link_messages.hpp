// The lines between the supervisor and vacataire-linkd (JSON lines on linkd's stdin and
// stdout; see vacataire-linkd(8)), one typed codec used by both ends. Every line is one JSON
// object whose single key names its kind. Decoders never throw: they return a value, or
// nullopt with err naming the line kind and the field that is wrong.
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.hpp"
#include "duration.hpp"

namespace vac {

// The supervisor's loop period: it feeds linkd a heartbeat line on every tick.
Duration supervisor_tick(Duration heartbeat);  // min(50 ms, heartbeat / 2)
// How long linkd keeps heartbeating without a line from the supervisor: max(dead_after / 2,
// 3 ticks). After that the node is not advertised, so the peer loses it after dead_after.
Duration supervisor_lease(Duration heartbeat, Duration dead_after);
// How long the supervisor's loop may stall before vacataire-guard kills its services: halfway
// between the lease lapsing and the earliest moment the peer can take over (lease +
// peer_dead_after - heartbeat: the peer counts its own dead_after from this node's last
// heartbeat). peer_dead_after is the peer's when its heartbeats announced it, else this node's;
// the smaller of the two counts. Never below the lease. See vacataire(8), CONTAINMENT.
Duration guard_fence(Duration heartbeat, Duration dead_after, Duration peer_dead_after);
inline Duration guard_fence(Duration heartbeat, Duration dead_after) {
  return guard_fence(heartbeat, dead_after, dead_after);
}

// How often linkd writes its stats line to the supervisor: min(1 s, dead_after / 6). The lines
// are also linkd's sign of life: the supervisor kills a linkd silent for linkd_silence_limit
// (stopped, or stuck), which a restart brings back before the peer's dead_after runs out.
Duration linkd_report_period(Duration dead_after);
Duration linkd_silence_limit(Duration dead_after);  // dead_after / 2

// What this node's heartbeats and commands say about it. state is a node state name as the
// supervisor spells it (checked for shape here; the supervisor's core checks the name).
struct NodeReport {
  std::string state = "passive";
  uint64_t epoch = 0;
  bool healthy = false;
  std::string role = "master";  // the configured role: "master" or "standby"

  bool operator==(const NodeReport&) const = default;
};

enum class PeerKind { heartbeat, takeover, quiesce, stopped };
const char* to_string(PeerKind k);
bool parse_peer_kind(std::string_view s, PeerKind& out);
inline bool is_command(PeerKind k) {
  return k != PeerKind::heartbeat;
}

// The HTTP and agent-check listeners linkd serves the load balancer on (empty: none).
struct EndpointsSettings {
  std::string http;
  std::string agent_check;
  std::string agent_inactive = "down";  // what agent-check says of a node not to use
  bool empty() const { return http.empty() && agent_check.empty(); }
};

// The first line: everything linkd needs, so it opens no file. Without links (a single node)
// linkd serves only the endpoints, and peer and key may be empty.
struct LinkdSettings {
  std::string node, peer;
  std::vector<LinkConfig> links;
  std::string key_hex;  // the pre-shared key, hex; linkd keeps it decoded in locked memory
  Duration heartbeat = std::chrono::milliseconds(200);
  Duration dead_after = std::chrono::seconds(1);
  std::string user;  // empty: linkd's default unprivileged user
  EndpointsSettings endpoints;
  uint64_t incarnation = 0;  // this supervisor run's (random), in every heartbeat and command
};

// ---- supervisor -> linkd ----
struct ToLinkd {
  enum Kind { config, heartbeat, send, status, stats } kind = heartbeat;
  LinkdSettings settings;                 // config
  NodeReport report;                      // heartbeat, send
  PeerKind command = PeerKind::takeover;  // send
  nlohmann::json status_doc;              // status: the `vacataire status --json` document
};

std::string encode_config_line(const LinkdSettings& s);
std::string encode_heartbeat_line(const NodeReport& r);  // the supervisor's lease, every tick
std::string encode_send_line(PeerKind command, const NodeReport& r);
std::string encode_status_line(const nlohmann::json& status);
std::string encode_stats_request_line();  // {"stats":true}: a stats line now, please
std::optional<ToLinkd> decode_to_linkd(std::string_view line, std::string& err);

// ---- linkd -> supervisor ----
struct LinkStats {
  std::string listen, peer;
  bool up = false;
  std::optional<double> last_heard_ms, rtt_ms;
  uint64_t rx = 0, tx = 0;
  uint64_t kernel_drops = 0;  // datagrams the kernel dropped on this socket (SO_RXQ_OVFL)
};

struct LinkdStats {
  std::vector<LinkStats> links;
  // Datagrams received, by verdict: ok, foreign_address, oversized, bad_tag, malformed,
  // wrong_sender, wrong_link, replay, stale_session, unconfirmed.
  std::map<std::string, uint64_t> datagrams;
  uint64_t kernel_drops = 0;
  bool peer_alive = false;
  bool supervisor_fresh = false;  // lines came from the supervisor within its lease
  uint64_t commands_pending = 0;
};
nlohmann::json stats_json(const LinkdStats& s);  // also what status shows

// The heartbeat and dead_after a node's linkd runs with, as its heartbeats announce them (0:
// not announced). The peer's guard fence depends on this node's dead_after; see guard_fence.
constexpr int64_t kMaxDurationUs = int64_t(24) * 3600 * 1000000;  // durations on the link
struct LinkTiming {
  uint64_t heartbeat_us = 0, dead_after_us = 0;
  // Announced, and in range (a value past a day is ignored, as if not announced).
  bool known() const {
    return heartbeat_us > 0 && dead_after_us > 0 && heartbeat_us <= kMaxDurationUs &&
           dead_after_us <= kMaxDurationUs;
  }
  bool operator==(const LinkTiming&) const = default;
};

// What is wrong with the peer's announced heartbeat and dead_after next to this node's, in words
// for the log and status; "" when they are the same, or not announced.
std::string timing_mismatch(const std::string& peer, Duration heartbeat, Duration dead_after,
                            const LinkTiming& peer_timing);

struct PeerLine {
  PeerKind kind = PeerKind::heartbeat;
  NodeReport report;
  LinkTiming timing;         // heartbeat: the peer's, when it announced it
  uint64_t incarnation = 0;  // the peer supervisor's run, when it said (0: not said)
};

struct FromLinkd {
  enum Kind { ready, error, stats, lost, peer } kind = error;
  uint64_t links = 0;      // ready
  int64_t uid = -1;        // ready: the uid linkd runs as
  std::string message;     // error
  LinkdStats stats_value;  // stats
  PeerLine peer_value;     // peer
};

std::string encode_ready_line(uint64_t links, uid_t uid);
std::string encode_error_line(std::string_view message);
std::string encode_stats_line(const LinkdStats& s);
std::string encode_lost_line();
std::string encode_peer_line(const PeerLine& p);
std::optional<FromLinkd> decode_from_linkd(std::string_view line, std::string& err);

}  // namespace vac
