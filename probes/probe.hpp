// The probe side of vacataire-probes(7), for probes written in C++: give it a function that
// performs one check, and it speaks the jsonl protocol on stdin/stdout (or, with --once,
// prints one result and exits with the monitoring-plugins code). A complete probe:
//
//   #include "probes/probe.hpp"
//   int main(int argc, char** argv) {
//     return vac::probe::main(argc, argv, [] { return vac::ProbeResult{vac::Status::ok, "fine"};
//     });
//   }
#pragma once

#include <functional>
#include <regex>
#include <string>

#include "common/probe_result.hpp"

namespace vac::probe {

using Check = std::function<ProbeResult()>;

// Answers {"check":N} lines until stdin closes, or runs one check when once is true.
// Returns the process exit code.
int serve(bool once, const Check& check);

// For probes without options of their own: accepts only --once (and --help).
int main(int argc, char** argv, const Check& check);

// Compiles an option's ECMAScript regular expression; on failure prints
// "PROGRAM: OPTION: bad regular expression: ..." and returns false (exit 3, a usage error).
bool compile_regex(const char* program, const char* option, const std::string& text,
                   std::regex& re);

// "10%" or "10" -> 10; false if not a number from 0 to 100.
bool parse_percent(const std::string& text, double& out);

}  // namespace vac::probe
