// The exit codes of every vacataire command, documented in vacataire(8). Stable: scripts
// depend on them.
#pragma once

namespace vac::exit_code {
constexpr int ok = 0;
constexpr int failed = 1;        // the command was understood but refused or did not succeed
constexpr int usage = 2;         // bad command line
constexpr int config = 3;        // the config file or services directory is invalid
constexpr int unreachable = 4;   // no supervisor answers on the control socket
constexpr int permission = 5;    // the caller may not use this command
constexpr int probe_failed = 6;  // `vacataire probe`: the check came back fail
constexpr int system = 111;      // a system call failed (s6's convention)
}  // namespace vac::exit_code
