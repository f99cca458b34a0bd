#include "status_view.hpp"

#include <algorithm>
#include <cstdio>
#include <vector>

#include "common/json_util.hpp"
#include "common/text.hpp"

namespace vac {

namespace {
using json = nlohmann::json;

std::string field(const json& j, const char* key, const char* fallback = "-") {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (j[key].is_string()) return j[key].get<std::string>();
  if (j[key].is_boolean()) return j[key].get<bool>() ? "yes" : "no";
  return j[key].dump();
}

std::string table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], r[i].size());
    }
  std::string out;
  for (auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}
}  // namespace

std::string format_age(double s) {
  if (s < 0) s = 0;
  long long t = static_cast<long long>(s);
  if (t < 60) return cat(t, "s");
  if (t < 3600) return cat(t / 60, "m", t % 60 < 10 ? "0" : "", t % 60, "s");
  if (t < 86400) return cat(t / 3600, "h", (t % 3600) / 60 < 10 ? "0" : "", (t % 3600) / 60, "m");
  return cat(t / 86400, "d", (t % 86400) / 3600, "h");
}

std::string render_status(const json& st) {
  std::string out;
  const json& node = st.value("node", json::object());
  out += cat("node ", field(node, "name"), " (", field(node, "role"), ")  state ",
             field(node, "state"), "  healthy ", field(node, "healthy"), "  epoch ",
             field(node, "epoch"), "\n");
  if (node.contains("reason")) out += cat("  ", field(node, "reason"), "\n");
  // A standby that could not take over is the one thing an operator must see at a glance.
  const json& standby = node.value("standby", json::object());
  if (field(node, "state") == "passive" && standby.value("ready", true) == false)
    out += cat("  cannot take over: ", field(standby, "blocker"), "\n");
  // The supervisor's stderr not read fast enough: say so where an operator looks.
  if (auto sup = st.find("supervisor"); sup != st.end() && sup->is_object()) {
    auto dropped = sup->find("log_dropped_lines");
    if (dropped != sup->end() && dropped->is_number_unsigned() && dropped->get<uint64_t>() > 0)
      out += cat("  ", dropped->get<uint64_t>(),
                 " log lines dropped: the supervisor's stderr is not read fast enough\n");
  }
  // A SIGHUP that was refused or undone: the running configuration is not the file's.
  const json& reload = member(member(st, "supervisor"), "reload");
  const json& errors = member(reload, "errors");
  if (string_member(reload, "result") != "applied" && errors.is_array() && !errors.empty() &&
      errors[0].is_string())
    out +=
        cat("  last reload ", string_member(reload, "result"), ": ", errors[0].get<std::string>(),
            errors.size() > 1 ? cat(" (and ", errors.size() - 1, " more)") : "", "\n");
  if (std::string e = string_member(member(st, "peer"), "linkd_error"); !e.empty())
    out += cat("  linkd: ", e, "\n");
  const json& peer = st.value("peer", json::object());
  if (field(peer, "state") == "none")
    out += "peer none configured\n";
  else {
    out += cat("peer ", field(peer, "name"), "  link ", field(peer, "state"), "  state ",
               field(peer, "node_state"), "  healthy ", field(peer, "healthy"), "  epoch ",
               field(peer, "epoch"), "\n");
    if (std::string why = string_member(peer, "timing_mismatch"); !why.empty())
      out += cat("  timing: ", why, "\n");
    for (auto& l : peer.value("links", json::array())) {
      std::string rtt = "-";
      if (l.contains("rtt_ms") && l["rtt_ms"].is_number()) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.2fms", l["rtt_ms"].get<double>());
        rtt = buf;
      }
      std::string heard = l.contains("last_heard_ms") && l["last_heard_ms"].is_number()
                              ? cat(static_cast<long>(l["last_heard_ms"].get<double>()), "ms ago")
                              : "never";
      out += cat("  link ", field(l, "listen"), " -> ", field(l, "peer"), "  ",
                 l.value("up", false) ? "up" : "down", "  heard ", heard, "  rtt ", rtt, "\n");
    }
    const json counters = peer.value("counters", json::object());
    if (!counters.empty()) {
      std::string c;
      for (auto& [k, v] : counters.items()) c += cat(c.empty() ? "" : ", ", k, " ", v.dump());
      out += cat("  datagrams: ", c, "\n");
    }
  }

  std::vector<std::vector<std::string>> rows = {
      {"SERVICE", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT"}};
  const json services = st.value("services", json::object());
  for (auto& [name, s] : services.items()) {
    std::string state = field(s, "state");
    if (field(s, "want") == "down" && state != "down") state += " (want down)";
    if (field(s, "want") == "up" && state == "down" && field(node, "state") == "active")
      state += " (want up)";
    if (s.contains("backoff_s")) state += cat(" ", format_age(s["backoff_s"].get<double>()));
    rows.push_back({name, state, field(s, "pid"),
                    s.contains("uptime_s") ? format_age(s["uptime_s"].get<double>()) : "-",
                    field(s, "restarts"), field(s, "last_exit")});
  }
  out += "\n" + table(rows);

  const json probes = st.value("probes", json::object());
  if (!probes.empty()) {
    std::vector<std::vector<std::string>> prow = {
        {"PROBE", "STATE", "LAST", "LATENCY", "OK/WARN/FAIL", "DETAIL"}};
    for (auto& [name, p] : probes.items()) {
      std::string latency = "-";
      if (p.contains("latency_ms") && p["latency_ms"].is_number()) {
        char buf[32];
        snprintf(buf, sizeof buf, "%.1fms", p["latency_ms"].get<double>());
        latency = buf;
      }
      std::string counts =
          cat(p.value("ok_count", 0), "/", p.value("warn_count", 0), "/", p.value("fail_count", 0));
      std::string state = field(p, "state");
      if (p.contains("critical") && !p["critical"].get<bool>()) state += " (non-critical)";
      prow.push_back({name, state, field(p, "last"), latency, counts, field(p, "detail", "")});
    }
    out += "\n" + table(prow);
  }
  return out;
}

}  // namespace vac
