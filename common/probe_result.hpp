// The probe protocols' messages, shared by the supervisor and the probe-side helper (see
// vacataire-probes(7)): the jsonl request and result lines, and the monitoring-plugins
// conventions of one-shot probes (exit codes, "TEXT | perfdata").
#pragma once

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vac {

enum class Status { ok, warn, fail };
const char* to_string(Status s);
bool parse_status(std::string_view s, Status& out);

struct ProbeResult {
  Status status = Status::fail;
  std::string detail;
  nlohmann::json metrics = nlohmann::json::object();
};

// {"check":N}
std::string encode_request(long long check);
bool decode_request(std::string_view line, long long& check, std::string& err);

// {"check":N,"status":...,"detail":...,"metrics":{...}}
std::string encode_result(long long check, const ProbeResult& r);
// Validates a result line strictly: a JSON object with an integer check, a known status, an
// optional string detail and an optional object of metrics. err says what is wrong.
bool decode_result(std::string_view line, long long& check, ProbeResult& out, std::string& err);

// Monitoring-plugins exit codes: 0 ok, 1 warn, 2 fail, 3 (unknown) and anything else fail.
Status status_from_exit(int code);
int exit_code_for(Status s);

// "label=value[UOM];[warn];[crit];[min];[max]" items, space separated, labels possibly in
// single quotes. Each becomes metrics[label] = {"value", "uom", "warn", "crit", "min", "max"}
// (only the fields present). Malformed items are skipped.
void parse_perfdata(std::string_view perf, nlohmann::json& metrics);

// Splits a one-shot probe's output: the first line's text before '|' is the detail; perfdata
// after '|' on the first line and on later lines is parsed into metrics.
void parse_plugin_output(std::string_view output, std::string& detail, nlohmann::json& metrics);

}  // namespace vac
