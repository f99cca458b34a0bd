// jsonl probe result lines: decoded strictly or refused with a reason; what decodes re-encodes
// to a line that decodes to the same result.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/json_util.hpp"
#include "common/probe_result.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  long long check = 0;
  vac::ProbeResult r;
  std::string err;
  if (vac::decode_result(line, check, r, err)) {
    std::string again = vac::encode_result(check, r);
    long long check2 = 0;
    vac::ProbeResult r2;
    // The encoder replaces invalid UTF-8, so compare after a round trip of the encoding.
    if (!again.empty() && again.back() == '\n') again.pop_back();
    if (!vac::decode_result(again, check2, r2, err) || check2 != check || r2.status != r.status)
      __builtin_trap();
    vac::dump_json(r.metrics);
  } else if (err.empty()) {
    __builtin_trap();
  }
  vac::decode_request(line, check, err);
  return 0;
}
