// Lines between the supervisor and linkd, both directions (common/link_messages.hpp): any bytes
// decode to a message or to an error, never an exception; an error always says something.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/link_messages.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view line(reinterpret_cast<const char*>(data), size);
  std::string err;
  if (!vac::decode_to_linkd(line, err) && err.empty()) __builtin_trap();
  err.clear();
  if (!vac::decode_from_linkd(line, err) && err.empty()) __builtin_trap();
  return 0;
}
