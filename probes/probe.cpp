#include "probe.hpp"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>

namespace vac::probe {

namespace {
ProbeResult guarded(const Check& check) {
  try {
    return check();
  } catch (const std::exception& e) {
    return ProbeResult{Status::fail, std::string("probe error: ") + e.what(), {}};
  }
}
}  // namespace

int serve(bool once, const Check& check) {
  if (once) {
    ProbeResult r = guarded(check);
    std::fputs(encode_result(0, r).c_str(), stdout);
    return exit_code_for(r.status);
  }
  std::string line;
  while (std::getline(std::cin, line)) {
    long long n = 0;
    std::string err;
    if (!decode_request(line, n, err)) {
      std::fprintf(stderr, "ignoring a bad request (%s)\n", err.c_str());
      continue;
    }
    std::string out = encode_result(n, guarded(check));
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
  }
  return 0;
}

int main(int argc, char** argv, const Check& check) {
  bool once = false;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--once") == 0) {
      once = true;
    } else {
      std::fprintf(stderr, "usage: %s [--once]\n", argv[0]);
      return std::strcmp(argv[i], "--help") == 0 ? 0 : 3;
    }
  }
  return serve(once, check);
}

bool parse_percent(const std::string& text, double& out) {
  std::string t = text;
  if (!t.empty() && t.back() == '%') t.pop_back();
  if (t.empty()) return false;
  char* end = nullptr;
  out = std::strtod(t.c_str(), &end);
  return *end == '\0' && out >= 0 && out <= 100;
}

}  // namespace vac::probe
