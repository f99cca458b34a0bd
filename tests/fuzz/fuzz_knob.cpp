// Knob files of a service directory, from bytes: the first byte picks the knob, the rest is
// the file. Any bytes give a value or an error naming the file.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "service_dir.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const char* knobs[] = {"depends",        "notification-fd", "timeout-stop",
                                "timeout-finish", "down-signal",     "env/GREETING"};
  if (size == 0 || size > vac::kMaxKnobBytes) return -1;
  const char* knob = knobs[data[0] % 6];
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  std::string path = std::string("/etc/vacataire/services.d/app/") + knob;
  vac::ServiceSpec spec;
  std::vector<std::string> errors;
  bool ok = vac::apply_knob(knob, bytes, path, spec, errors);
  if (ok != errors.empty()) __builtin_trap();
  for (auto& e : errors)
    if (e.rfind(path, 0) != 0) __builtin_trap();
  for (auto& d : spec.depends)
    if (!vac::check_service_name(d).empty()) __builtin_trap();
  vac::check_service_name(bytes);
  return 0;
}
