// memcheck: is there memory and swap headroom? Available memory and free swap as percentages
// of the totals, from /proc/meminfo, against warn and fail levels. See memcheck(8).
#include <fstream>
#include <map>
#include <sstream>

#include <CLI/CLI.hpp>

#include "common/text.hpp"
#include "probes/probe.hpp"

namespace {

using namespace vac;

struct Options {
  double fail_mem = 5, warn_mem = -1, fail_swap = -1, warn_swap = -1;
  bool require_swap = false;
  std::string meminfo = "/proc/meminfo";
};

std::string gib(double kb) {
  std::ostringstream o;
  o.precision(1);
  o << std::fixed << kb / 1048576.0 << " GiB";
  return o.str();
}

std::string pct(double p) {
  std::ostringstream o;
  o.precision(1);
  o << std::fixed << p << "%";
  return o.str();
}

ProbeResult check(const Options& o) {
  std::ifstream in(o.meminfo);
  if (!in) return {Status::fail, sys_error(cat("cannot read ", o.meminfo)), {}};
  std::map<std::string, double> kb;
  std::string key;
  double value;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    if (ls >> key >> value) kb[key.substr(0, key.find(':'))] = value;
  }
  if (!kb.count("MemTotal") || kb["MemTotal"] <= 0)
    return {Status::fail, cat(o.meminfo, " has no MemTotal"), {}};
  // MemAvailable is the kernel's own estimate (since 3.14); older kernels: free + caches.
  double avail =
      kb.count("MemAvailable") ? kb["MemAvailable"] : kb["MemFree"] + kb["Buffers"] + kb["Cached"];
  double mem_pct = 100.0 * avail / kb["MemTotal"];
  nlohmann::json metrics = {
      {"mem_available", {{"value", mem_pct}, {"uom", "%"}, {"crit", o.fail_mem}}}};
  if (o.warn_mem >= 0) metrics["mem_available"]["warn"] = o.warn_mem;
  Status status = Status::ok;
  std::vector<std::string> problems;
  std::string detail =
      cat("available memory ", pct(mem_pct), " (", gib(avail), " of ", gib(kb["MemTotal"]), ")");
  if (mem_pct < o.fail_mem) {
    status = Status::fail;
    problems.push_back(cat("available memory ", pct(mem_pct), " is below ", pct(o.fail_mem)));
  } else if (mem_pct < o.warn_mem) {
    status = Status::warn;
    problems.push_back(
        cat("available memory ", pct(mem_pct), " is below the warning level ", pct(o.warn_mem)));
  }

  double swap_total = kb["SwapTotal"];
  if (swap_total <= 0) {
    // Many VMs run without swap; that is not a lack of headroom unless asked for.
    detail += ", no swap configured";
    if (o.require_swap) {
      status = Status::fail;
      problems.push_back("no swap configured (--require-swap)");
    }
  } else if (o.fail_swap >= 0 || o.warn_swap >= 0) {
    double swap_pct = 100.0 * kb["SwapFree"] / swap_total;
    metrics["swap_free"] = {{"value", swap_pct}, {"uom", "%"}};
    if (o.fail_swap >= 0) metrics["swap_free"]["crit"] = o.fail_swap;
    if (o.warn_swap >= 0) metrics["swap_free"]["warn"] = o.warn_swap;
    detail +=
        cat(", free swap ", pct(swap_pct), " (", gib(kb["SwapFree"]), " of ", gib(swap_total), ")");
    if (o.fail_swap >= 0 && swap_pct < o.fail_swap) {
      status = Status::fail;
      problems.push_back(cat("free swap ", pct(swap_pct), " is below ", pct(o.fail_swap)));
    } else if (o.warn_swap >= 0 && swap_pct < o.warn_swap && status == Status::ok) {
      status = Status::warn;
      problems.push_back(
          cat("free swap ", pct(swap_pct), " is below the warning level ", pct(o.warn_swap)));
    }
  }
  if (!problems.empty()) {
    std::string p;
    for (auto& s : problems) p += (p.empty() ? "" : "; ") + s;
    detail = p + " — " + detail;
  }
  return {status, detail, metrics};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"memcheck: memory and swap headroom (a Le Vacataire probe)", "memcheck"};
  Options o;
  bool once = false;
  std::string fail_mem = "5%", warn_mem, fail_swap, warn_swap, proc_root;
  app.add_option("--min-available", fail_mem,
                 "fail below this share of memory available (default 5%)");
  app.add_option("--warn-available", warn_mem, "warn below this share of memory available");
  app.add_option("--min-swap-free", fail_swap, "fail below this share of swap free");
  app.add_option("--warn-swap-free", warn_swap, "warn below this share of swap free");
  app.add_flag("--require-swap", o.require_swap, "fail when the machine has no swap");
  app.add_option("--meminfo", o.meminfo, "the meminfo file (default /proc/meminfo)");
  app.add_option("--proc-root", proc_root, "where /proc is (for tests)");
  app.add_flag("--once", once, "check once, print the result and exit 0/1/2");
  try {
    app.parse(argc, argv);
    auto percent = [](const std::string& name, const std::string& text, double& out) {
      if (!text.empty() && !vac::probe::parse_percent(text, out))
        throw CLI::ValidationError(
            name, "expected a percentage from 0 to 100, such as 10%, got \"" + text + "\"");
    };
    percent("--min-available", fail_mem, o.fail_mem);
    percent("--warn-available", warn_mem, o.warn_mem);
    percent("--min-swap-free", fail_swap, o.fail_swap);
    percent("--warn-swap-free", warn_swap, o.warn_swap);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 3;
  }
  if (!proc_root.empty()) o.meminfo = proc_root + "/meminfo";
  return vac::probe::serve(once, [&] { return check(o); });
}
