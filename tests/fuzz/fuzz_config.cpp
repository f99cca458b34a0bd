// The config file: any bytes give a Config or errors naming the file, never an exception.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > vac::kMaxConfigBytes) return -1;
  std::string text(reinterpret_cast<const char*>(data), size);
  vac::Config c;
  std::vector<std::string> errors;
  bool ok = vac::parse_config(text, "/etc/vacataire/vacataire.json", c, errors);
  if (ok != errors.empty()) __builtin_trap();
  for (auto& e : errors)
    if (e.rfind("/etc/vacataire/vacataire.json", 0) != 0) __builtin_trap();    // names the file
  if (ok && (c.state_dir.empty() || c.state_dir[0] != '/')) __builtin_trap();  // absolute
  return 0;
}
