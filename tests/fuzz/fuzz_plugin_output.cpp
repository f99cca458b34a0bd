// Output of an exit-protocol (monitoring plugin) probe, perfdata included: any bytes give a
// detail and metrics that serialise, never an exception.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/json_util.hpp"
#include "common/probe_result.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view out(reinterpret_cast<const char*>(data), size);
  std::string detail;
  nlohmann::json metrics = nlohmann::json::object();
  vac::parse_plugin_output(out, detail, metrics);
  vac::dump_json(metrics);
  if (!metrics.is_object()) __builtin_trap();
  nlohmann::json more = nlohmann::json::object();
  vac::parse_perfdata(out, more);
  vac::dump_json(more);
  return 0;
}
