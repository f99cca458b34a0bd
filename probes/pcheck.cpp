// pcheck: is a process present? By exact name, by command-line regex, or by pidfile; with an
// optional minimum and maximum count. Reads /proc (or --proc-root). See pcheck(8).
#include <dirent.h>
#include <unistd.h>
#include <fstream>
#include <regex>
#include <sstream>

#include <CLI/CLI.hpp>

#include "common/text.hpp"
#include "probes/probe.hpp"

namespace {

using namespace vac;

struct Options {
  std::string name, cmdline, pidfile, proc_root = "/proc";
  int min = 1, max = -1;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Alive and not a zombie.
bool alive(const std::string& dir) {
  std::string stat = read_all(dir + "/stat");
  auto p = stat.rfind(')');
  return p != std::string::npos && p + 2 < stat.size() && stat[p + 2] != 'Z' && stat[p + 2] != 'X';
}

std::string command_line(const std::string& dir) {
  std::string c = read_all(dir + "/cmdline");
  while (!c.empty() && c.back() == '\0') c.pop_back();
  for (char& ch : c)
    if (ch == '\0') ch = ' ';
  return c;
}

bool matches(const Options& o, const std::regex* re, const std::string& dir) {
  if (!o.name.empty()) {
    std::string comm(trim(read_all(dir + "/comm")));
    std::string argv0 = command_line(dir);
    argv0 = argv0.substr(0, argv0.find(' '));
    argv0 = argv0.substr(argv0.rfind('/') + 1);
    if (comm != o.name && argv0 != o.name) return false;
  }
  if (re && !std::regex_search(command_line(dir), *re)) return false;
  return true;
}

ProbeResult check(const Options& o, const std::regex* re) {
  std::vector<long> pids;
  std::string what;
  if (!o.pidfile.empty()) {
    std::string text(trim(read_all(o.pidfile)));
    if (text.empty()) return {Status::fail, cat("pidfile ", o.pidfile, " is missing or empty"), {}};
    char* end = nullptr;
    long pid = std::strtol(text.c_str(), &end, 10);
    if (*end || pid <= 0)
      return {Status::fail, cat("pidfile ", o.pidfile, " holds no pid: ", quote(text)), {}};
    std::string dir = cat(o.proc_root, '/', pid);
    if (alive(dir) && matches(o, re, dir)) pids.push_back(pid);
    what = cat("pid ", pid, " from ", o.pidfile);
  } else {
    DIR* d = opendir(o.proc_root.c_str());
    if (!d) return {Status::fail, sys_error(cat("cannot read ", o.proc_root)), {}};
    while (dirent* e = readdir(d)) {
      char* end = nullptr;
      long pid = std::strtol(e->d_name, &end, 10);
      if (*end || pid <= 0 || pid == getpid()) continue;
      std::string dir = cat(o.proc_root, '/', e->d_name);
      if (alive(dir) && matches(o, re, dir)) pids.push_back(pid);
    }
    closedir(d);
    std::sort(pids.begin(), pids.end());
  }
  if (what.empty())
    what = !o.name.empty() && re ? cat("named ", o.name, " matching /", o.cmdline, "/")
           : !o.name.empty()     ? cat("named ", o.name)
                                 : cat("matching /", o.cmdline, "/");
  std::string list;
  for (size_t i = 0; i < pids.size() && i < 10; ++i)
    list += (i ? ", " : "") + std::to_string(pids[i]);
  if (pids.size() > 10) list += ", ...";
  nlohmann::json metrics = {{"count", {{"value", pids.size()}, {"min", o.min}}}};
  if (o.max >= 0) metrics["count"]["max"] = o.max;
  long n = static_cast<long>(pids.size());
  if (!o.pidfile.empty() && pids.empty())
    return {Status::fail, cat("no process alive for ", what), metrics};
  if (n < o.min)
    return {Status::fail,
            n == 0 ? cat("no process ", what)
                   : cat(n, " processes ", what, " (pids ", list, "), at least ", o.min, " wanted"),
            metrics};
  if (o.max >= 0 && n > o.max)
    return {Status::fail,
            cat(n, " processes ", what, " (pids ", list, "), at most ", o.max, " allowed"),
            metrics};
  if (!o.pidfile.empty()) return {Status::ok, cat("process alive: ", what), metrics};
  return {
      Status::ok,
      cat(n, n == 1 ? " process " : " processes ", what, " (pid", n == 1 ? " " : "s ", list, ")"),
      metrics};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"pcheck: is a process present? (a Le Vacataire probe)", "pcheck"};
  Options o;
  bool once = false;
  app.add_option("--name", o.name, "exact process name (comm, or the base name of argv[0])");
  app.add_option("--cmdline", o.cmdline, "regular expression searched in the command line");
  app.add_option("--pidfile", o.pidfile, "file holding the pid of the process");
  app.add_option("--min", o.min, "fewest matching processes (default 1)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--max", o.max, "most matching processes (default: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--proc-root", o.proc_root, "where /proc is (for tests)");
  app.add_flag("--once", once, "check once, print the result and exit 0/1/2");
  try {
    app.parse(argc, argv);
    if (o.name.empty() && o.cmdline.empty() && o.pidfile.empty())
      throw CLI::ValidationError("give --name, --cmdline or --pidfile");
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 3;
  }
  std::regex re;
  if (!o.cmdline.empty() && !vac::probe::compile_regex("pcheck", "--cmdline", o.cmdline, re))
    return 3;
  return vac::probe::serve(once, [&] { return check(o, o.cmdline.empty() ? nullptr : &re); });
}
