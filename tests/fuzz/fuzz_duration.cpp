// Durations as operators write them: parsed or refused with a reason; what parses formats to
// a spelling that parses back to the same value.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/duration.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  for (std::string_view bare : {std::string_view(), std::string_view("s")}) {
    vac::Duration d{};
    std::string err;
    if (vac::parse_duration(text, d, err, bare)) {
      if (d.count() < 0) __builtin_trap();
      vac::Duration back{};
      if (!vac::parse_duration(vac::format_duration(d), back, err) || back != d) __builtin_trap();
    } else if (err.empty()) {
      __builtin_trap();
    }
  }
  return 0;
}
