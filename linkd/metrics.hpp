// Prometheus text exposition (format 0.0.4) of a node: rendered from the supervisor's status
// document and linkd's own peer-link counters, as a pure function; and the two small
// measuring aids it needs on either side (a latency histogram the supervisor keeps per probe,
// the kernel's drop count of a UDP socket). Every family is listed in vacataire-endpoints(7).
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace vac {

// Probe check latencies in fixed buckets (seconds, upper bounds), kept by the supervisor and
// carried in the status document as {"le": [...], "counts": [...], "sum_s", "count"}, with
// counts per bucket (not cumulative; the last one is above every bound).
class LatencyHistogram {
 public:
  static constexpr std::array<double, 11> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                     0.1,   0.25,   0.5,   1,    2.5};
  void observe(double seconds);
  nlohmann::json to_json() const;

 private:
  std::array<uint64_t, kBounds.size() + 1> counts_{};
  double sum_ = 0;
  uint64_t count_ = 0;
};

// The whole /metrics page. status: the supervisor's last status document; link_stats:
// linkd's live {"links": [...], "counters": {...}} (null to use the document's); fresh:
// whether the supervisor's lease holds.
std::string render_metrics(const nlohmann::json& status, const nlohmann::json& link_stats,
                           bool fresh);

// Datagrams the kernel dropped on this UDP socket (its receive buffer was full), from
// /proc/self/net/udp{,6}; -1 when the socket is not found there.
int64_t udp_kernel_drops(int fd);

}  // namespace vac
