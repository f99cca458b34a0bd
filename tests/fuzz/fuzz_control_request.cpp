// Control requests (what any local user can send) and replies (what the CLI reads): decoded
// or refused, never thrown on; a decoded request re-encodes to itself.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/control_messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  std::string err;
  if (auto r = vac::decode_control_request(line, err)) {
    std::string again = vac::encode_control_request(*r);
    again.pop_back();
    auto r2 = vac::decode_control_request(again, err);
    if (!r2 || !(*r2 == *r)) __builtin_trap();
  } else if (err.empty()) {
    __builtin_trap();
  }
  if (auto reply = vac::decode_control_reply(line, err)) {
    vac::encode_control_reply(reply->body);
    vac::decode_probe_reply(reply->body, err);
  }
  return 0;
}
