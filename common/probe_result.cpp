#include "probe_result.hpp"

#include <cstdlib>

#include "text.hpp"

namespace vac {

using json = nlohmann::json;

const char* to_string(Status s) {
  switch (s) {
    case Status::ok:
      return "ok";
    case Status::warn:
      return "warn";
    case Status::fail:
      return "fail";
  }
  return "fail";
}

bool parse_status(std::string_view s, Status& out) {
  if (s == "ok") return out = Status::ok, true;
  if (s == "warn") return out = Status::warn, true;
  if (s == "fail") return out = Status::fail, true;
  return false;
}

std::string encode_request(long long check) {
  return cat("{\"check\":", check, "}\n");
}

bool decode_request(std::string_view line, long long& check, std::string& err) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err = "request is not a JSON object", false;
  auto it = j.find("check");
  if (it == j.end() || !it->is_number_integer())
    return err = "request has no integer \"check\"", false;
  check = it->get<long long>();
  return true;
}

static bool decode_result_fields(std::string_view line, long long& check, ProbeResult& out,
                                 std::string& err);

std::string encode_result(long long check, const ProbeResult& r) {
  json j = {{"check", check}, {"status", to_string(r.status)}, {"detail", r.detail}};
  if (!r.metrics.empty()) j["metrics"] = r.metrics;
  return j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
}

bool decode_result(std::string_view line, long long& check, ProbeResult& out, std::string& err) {
  // Total: a line from a probe is any bytes; nothing here may throw into the loop.
  try {
    return decode_result_fields(line, check, out, err);
  } catch (const std::exception& e) {
    return err = cat("cannot decode: ", e.what()), false;
  }
}

static bool decode_result_fields(std::string_view line, long long& check, ProbeResult& out,
                                 std::string& err) {
  json j = json::parse(line, nullptr, false);
  if (j.is_discarded()) return err = "not valid JSON", false;
  if (!j.is_object()) return err = "not a JSON object", false;
  auto c = j.find("check");
  if (c == j.end() || !c->is_number_integer()) return err = "no integer \"check\"", false;
  check = c->get<long long>();
  auto s = j.find("status");
  if (s == j.end() || !s->is_string()) return err = "no string \"status\"", false;
  if (!parse_status(s->get<std::string>(), out.status))
    return err = cat("status ", quote(s->get<std::string>()), " is not ok, warn or fail"), false;
  out.detail.clear();
  if (auto d = j.find("detail"); d != j.end()) {
    if (!d->is_string()) return err = "\"detail\" is not a string", false;
    out.detail = d->get<std::string>();
  }
  out.metrics = json::object();
  if (auto m = j.find("metrics"); m != j.end()) {
    if (!m->is_object()) return err = "\"metrics\" is not an object", false;
    out.metrics = *m;
  }
  return true;
}

Status status_from_exit(int code) {
  if (code == 0) return Status::ok;
  if (code == 1) return Status::warn;
  return Status::fail;
}

int exit_code_for(Status s) {
  return s == Status::ok ? 0 : s == Status::warn ? 1 : 2;
}

namespace {
bool parse_number(std::string_view s, double& out) {
  std::string t(s);
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return end == t.c_str() + t.size();
}

// One "label=value[UOM];warn;crit;min;max" item.
void parse_item(std::string_view item, json& metrics) {
  auto eq = item.rfind('=');
  if (eq == std::string_view::npos || eq == 0) return;
  // Plugins print whatever bytes they like: every string kept is made valid UTF-8.
  std::string label = utf8_clean(item.substr(0, eq));
  if (label.size() >= 2 && label.front() == '\'' && label.back() == '\'')
    label = label.substr(1, label.size() - 2);
  std::string_view rest = item.substr(eq + 1);
  std::vector<std::string> fields;
  while (true) {
    auto semi = rest.find(';');
    fields.emplace_back(rest.substr(0, semi));
    if (semi == std::string_view::npos) break;
    rest.remove_prefix(semi + 1);
  }
  std::string& v = fields[0];
  size_t num_end = 0;
  while (num_end < v.size() &&
         (std::isdigit(static_cast<unsigned char>(v[num_end])) || v[num_end] == '.' ||
          v[num_end] == '-' || v[num_end] == '+' || v[num_end] == 'e' || v[num_end] == 'E'))
    ++num_end;
  double value = 0;
  if (!parse_number(std::string_view(v).substr(0, num_end), value)) return;
  json m = {{"value", value}};
  if (num_end < v.size()) m["uom"] = utf8_clean(v.substr(num_end));
  const char* names[] = {"warn", "crit", "min", "max"};
  for (size_t i = 1; i < fields.size() && i <= 4; ++i) {
    double x = 0;
    if (parse_number(fields[i], x))
      m[names[i - 1]] = x;
    else if (!fields[i].empty())
      m[names[i - 1]] = utf8_clean(fields[i]);  // a range such as "10:20"
  }
  metrics[label] = m;
}
}  // namespace

void parse_perfdata(std::string_view perf, json& metrics) {
  size_t i = 0;
  while (i < perf.size()) {
    while (i < perf.size() && perf[i] == ' ') ++i;
    size_t start = i;
    bool quoted = false;
    while (i < perf.size() && (quoted || perf[i] != ' ')) {
      if (perf[i] == '\'') quoted = !quoted;
      ++i;
    }
    if (i > start) parse_item(perf.substr(start, i - start), metrics);
  }
}

void parse_plugin_output(std::string_view output, std::string& detail, json& metrics) {
  auto lines = split_lines(output);
  detail.clear();
  for (size_t n = 0; n < lines.size(); ++n) {
    std::string_view line = lines[n];
    auto bar = line.find('|');
    if (n == 0) detail = utf8_clean(trim(line.substr(0, bar)));
    if (bar != std::string_view::npos) parse_perfdata(trim(line.substr(bar + 1)), metrics);
  }
}

}  // namespace vac
