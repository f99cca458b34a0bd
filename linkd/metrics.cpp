#include "metrics.hpp"

#include <sys/stat.h>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "common/json_util.hpp"
#include "common/text.hpp"

namespace vac {

using json = nlohmann::json;

void LatencyHistogram::observe(double seconds) {
  if (!(seconds >= 0)) seconds = 0;  // NaN or a clock step: count it in the first bucket
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  ++counts_[i];
  sum_ += seconds;
  ++count_;
}

json LatencyHistogram::to_json() const {
  return {{"le", kBounds}, {"counts", counts_}, {"sum_s", sum_}, {"count", count_}};
}

namespace {
std::string text(const json& j, const char* key) {
  return string_member(j, key);
}
// A finite number, or nothing: a sample is left out rather than invented.
bool number(const json& j, double& out) {
  if (!j.is_number()) return false;
  out = j.get<double>();
  return std::isfinite(out);
}

std::string format(double v) {
  if (v == std::floor(v) && std::fabs(v) < 1e15) return cat(static_cast<long long>(v));
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// Label values escaped as the text format wants: backslash, double quote, newline.
std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '\\' || c == '"')
      out += '\\', out += c;
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

class Page {
 public:
  void family(const char* name, const char* type, const char* help) {
    out_ += cat("# HELP ", name, " ", help, "\n# TYPE ", name, " ", type, "\n");
  }
  // labels: {"name", "value", "name", "value", ...}
  void sample(const std::string& name, std::initializer_list<std::string> labels, double v) {
    out_ += name;
    if (labels.size()) {
      out_ += '{';
      bool first = true;
      for (auto it = labels.begin(); it != labels.end(); it += 2) {
        out_ += cat(first ? "" : ",", *it, "=\"", escape(*(it + 1)), "\"");
        first = false;
      }
      out_ += '}';
    }
    out_ += cat(" ", format(v), "\n");
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

const char* const kStates[] = {"passive",  "starting", "active",
                               "stopping", "failed",   "maintenance"};

void node_families(Page& p, const json& status, bool fresh) {
  const json& node = member(status, "node");
  p.family("vacataire_supervisor_up", "gauge",
           "1 while the supervisor is heard within its lease, 0 when it is frozen or gone.");
  p.sample("vacataire_supervisor_up", {}, fresh ? 1 : 0);
  if (!node.is_object()) return;
  std::string name = text(node, "name"), role = text(node, "role"), state = text(node, "state");
  p.family("vacataire_node_info", "gauge", "This node's name and configured role (always 1).");
  p.sample("vacataire_node_info", {"node", name, "role", role}, 1);
  p.family("vacataire_node_state", "gauge", "1 for the node's current state, 0 for the others.");
  for (const char* s : kStates) p.sample("vacataire_node_state", {"state", s}, state == s);
  double v;
  p.family("vacataire_node_epoch", "gauge",
           "The node's epoch, bumped each time it becomes active.");
  if (number(member(node, "epoch"), v)) p.sample("vacataire_node_epoch", {}, v);
  p.family("vacataire_node_healthy", "gauge",
           "1 when no critical probe fails and no service is over its restart budget.");
  p.sample("vacataire_node_healthy", {}, member(node, "healthy") == json(true));
  p.family("vacataire_node_state_seconds", "gauge",
           "Seconds since the node entered its current state.");
  if (number(member(node, "state_s"), v)) p.sample("vacataire_node_state_seconds", {}, v);
  p.family("vacataire_node_transitions_total", "counter",
           "State changes of this node since the supervisor started, by from and to state.");
  const json& transitions = member(node, "transitions");
  if (transitions.is_array())
    for (auto& t : transitions)
      if (number(member(t, "count"), v))
        p.sample("vacataire_node_transitions_total", {"from", text(t, "from"), "to", text(t, "to")},
                 v);
}

void service_families(Page& p, const json& status) {
  const json& services = member(status, "services");
  if (!services.is_object()) return;
  double v;
  p.family("vacataire_service_up", "gauge", "1 while the service runs and is ready.");
  for (auto& [name, s] : services.items())
    p.sample("vacataire_service_up", {"service", name}, member(s, "ready") == json(true));
  p.family("vacataire_service_restarts_total", "counter",
           "Restarts of the service since the supervisor started.");
  for (auto& [name, s] : services.items())
    if (number(member(s, "restarts"), v))
      p.sample("vacataire_service_restarts_total", {"service", name}, v);
  p.family("vacataire_service_last_exit_status", "gauge",
           "How the service last ended: its exit code, or 128 plus the signal that killed it.");
  for (auto& [name, s] : services.items()) {
    int n = 0;
    std::string exit = text(s, "last_exit");
    if (std::sscanf(exit.c_str(), "exit %d", &n) == 1)
      p.sample("vacataire_service_last_exit_status", {"service", name}, n);
    else if (std::sscanf(exit.c_str(), "signal %d", &n) == 1)
      p.sample("vacataire_service_last_exit_status", {"service", name}, 128 + n);
  }
}

void probe_families(Page& p, const json& status) {
  const json& probes = member(status, "probes");
  if (!probes.is_object()) return;
  double v;
  p.family("vacataire_probe_state", "gauge",
           "1 for the probe's verdict (passing, failing, unknown), 0 for the others.");
  for (auto& [name, pr] : probes.items())
    for (const char* s : {"passing", "failing", "unknown"})
      p.sample("vacataire_probe_state", {"probe", name, "state", s}, text(pr, "state") == s);
  p.family("vacataire_probe_checks_total", "counter", "Checks the probe has answered, by result.");
  for (auto& [name, pr] : probes.items())
    for (const char* r : {"ok", "warn", "fail"})
      if (number(member(pr, cat(r, "_count").c_str()), v))
        p.sample("vacataire_probe_checks_total", {"probe", name, "result", r}, v);
  p.family("vacataire_probe_latency_seconds", "histogram",
           "Time from a check's start to its answer.");
  for (auto& [name, pr] : probes.items()) {
    const json& h = member(pr, "latency_histogram");
    const json &le = member(h, "le"), &counts = member(h, "counts");
    double count, sum;
    if (!le.is_array() || !counts.is_array() || counts.size() != le.size() + 1 ||
        !number(member(h, "count"), count) || !number(member(h, "sum_s"), sum))
      continue;
    double cumulative = 0;
    for (size_t i = 0; i < le.size(); ++i) {
      double bound, c;
      if (!number(le[i], bound) || !number(counts[i], c)) break;
      cumulative += c;
      p.sample("vacataire_probe_latency_seconds_bucket", {"probe", name, "le", format(bound)},
               cumulative);
    }
    p.sample("vacataire_probe_latency_seconds_bucket", {"probe", name, "le", "+Inf"}, count);
    p.sample("vacataire_probe_latency_seconds_sum", {"probe", name}, sum);
    p.sample("vacataire_probe_latency_seconds_count", {"probe", name}, count);
  }
}

void peer_families(Page& p, const json& status, const json& link_stats) {
  const json& peer = member(status, "peer");
  if (text(peer, "state") == "none" || !peer.is_object()) return;
  const json& stats = link_stats.is_object() ? link_stats : peer;
  double v;
  p.family("vacataire_peer_up", "gauge", "1 while the peer is heard on at least one link.");
  p.sample("vacataire_peer_up", {"peer", text(peer, "name")}, text(peer, "state") == "up");
  p.family("vacataire_peer_timing_mismatch", "gauge",
           "1 while the peer announces a heartbeat or dead_after other than this node's.");
  p.sample("vacataire_peer_timing_mismatch", {}, member(peer, "timing_mismatch").is_string());
  if (number(member(peer, "linkd_restarts"), v) && v >= 0) {
    p.family("vacataire_linkd_restarts_total", "counter",
             "Times linkd ended unexpectedly and was restarted (reloads not counted).");
    p.sample("vacataire_linkd_restarts_total", {}, v);
  }
  if (number(member(peer, "linkd_stalls"), v) && v >= 0) {
    p.family("vacataire_linkd_stalls_total", "counter",
             "Times linkd was silent for half of dead_after (stopped or stuck) and was killed.");
    p.sample("vacataire_linkd_stalls_total", {}, v);
  }
  const json& links = member(stats, "links");
  if (links.is_array()) {
    p.family("vacataire_peer_link_up", "gauge",
             "1 while the peer's heartbeats arrive on this link.");
    for (auto& l : links)
      p.sample("vacataire_peer_link_up", {"listen", text(l, "listen"), "peer", text(l, "peer")},
               member(l, "up") == json(true));
    p.family("vacataire_peer_link_rtt_seconds", "gauge",
             "Last round-trip time of a heartbeat on this link.");
    for (auto& l : links)
      if (number(member(l, "rtt_ms"), v))
        p.sample("vacataire_peer_link_rtt_seconds",
                 {"listen", text(l, "listen"), "peer", text(l, "peer")}, v / 1000);
    p.family("vacataire_peer_link_kernel_drops_total", "counter",
             "Datagrams the kernel dropped on this link's socket (receive buffer full).");
    for (auto& l : links)
      if (number(member(l, "kernel_drops"), v) && v >= 0)
        p.sample("vacataire_peer_link_kernel_drops_total",
                 {"listen", text(l, "listen"), "peer", text(l, "peer")}, v);
  }
  const json& counters = member(stats, "counters");
  if (counters.is_object()) {
    p.family("vacataire_peer_datagrams_total", "counter",
             "Datagrams received from the peer, by verdict (ok, or why they were dropped).");
    for (auto& [verdict, n] : counters.items())
      if (number(n, v)) p.sample("vacataire_peer_datagrams_total", {"verdict", verdict}, v);
  }
}

void control_families(Page& p, const json& status) {
  const json& refused = member(member(status, "control"), "refused");
  if (!refused.is_object()) return;
  double v;
  p.family("vacataire_control_refused_total", "counter",
           "Control requests refused: too many connections at once, or a caller not allowed.");
  for (auto& [reason, n] : refused.items())
    if (number(n, v)) p.sample("vacataire_control_refused_total", {"reason", reason}, v);
}
}  // namespace

std::string render_metrics(const json& status, const json& link_stats, bool fresh) {
  Page p;
  node_families(p, status, fresh);
  service_families(p, status);
  probe_families(p, status);
  peer_families(p, status, link_stats);
  control_families(p, status);
  return p.take();
}

int64_t udp_kernel_drops(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return -1;
  std::string inode = cat(st.st_ino);
  for (const char* path : {"/proc/self/net/udp", "/proc/self/net/udp6"}) {
    std::ifstream in(path);
    std::string line;
    std::getline(in, line);  // the header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string f[13];
      for (auto& x : f) fields >> x;
      if (f[9] == inode) return std::atoll(f[12].c_str());
    }
  }
  return -1;
}

}  // namespace vac
