#include "probe.hpp"

#include <unistd.h>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include <string>
#include "common/line_reader.hpp"

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
  // Plain read(2)/write(2) on the pipes: the round trip is the probe's whole cost.
  LineReader reader(65536);
  auto answer = [&](std::string_view line, bool truncated) {
    long long n = 0;
    std::string err;
    if (truncated || !decode_request(line, n, err)) {
      std::fprintf(stderr, "ignoring a bad request (%s)\n", truncated ? "too long" : err.c_str());
      return;
    }
    std::string out = encode_result(n, guarded(check));
    for (size_t off = 0; off < out.size();) {
      ssize_t w = ::write(1, out.data() + off, out.size() - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) std::exit(0);  // the supervisor went away
      off += static_cast<size_t>(w);
    }
  };
  while (reader.read_from(0, answer) == LineReader::ReadResult::again) {
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

bool compile_regex(const char* program, const char* option, const std::string& text,
                   std::regex& re) {
  try {
    re = std::regex(text, std::regex::ECMAScript);
    return true;
  } catch (const std::regex_error& e) {
    std::fprintf(stderr, "%s: %s: bad regular expression: %s\n", program, option, e.what());
    return false;
  }
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
