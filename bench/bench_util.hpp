// Helpers shared by the benchmark programs: /proc readings, percentiles, temporary trees.
#pragma once

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace bench {

inline std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// utime + stime of a process, in clock ticks.
inline long cpu_ticks(pid_t pid) {
  std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  auto rp = stat.rfind(')');
  if (rp == std::string::npos) return 0;
  std::istringstream rest(stat.substr(rp + 2));
  std::string f;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 13; ++i) rest >> f;
  rest >> utime >> stime;
  return utime + stime;
}

inline double ticks_to_ms(long ticks) {
  return static_cast<double>(ticks) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// A "Key:   123 kB" field of a /proc status-like file.
inline long field_kb(const std::string& file, const char* key) {
  std::istringstream in(read_text(file));
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return std::atol(line.c_str() + std::char_traits<char>::length(key));
  return 0;
}

inline double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = static_cast<size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

inline std::string make_temp_dir(const char* prefix) {
  std::string tmpl = std::string("/tmp/") + prefix + ".XXXXXX";
  std::vector<char> buf(tmpl.begin(), tmpl.end());
  buf.push_back('\0');
  return mkdtemp(buf.data());
}

inline void remove_tree(const std::string& dir) {
  nftw(
      dir.c_str(), [](const char* p, const struct stat*, int, FTW*) { return ::remove(p); }, 16,
      FTW_DEPTH | FTW_PHYS);
}

}  // namespace bench
