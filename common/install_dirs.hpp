// Where Le Vacataire finds its own helper executables: vacataire-linkd and the built-in probes
// (in probes/). One rule for all of them, so a build tree and an installed system behave alike:
//  - run from a CMake build tree (the executable's directory holds CMakeFiles/), the helpers
//    built beside it: a build is tested as built, never against an older installed copy;
//  - otherwise the installed directory, VACATAIRE_LIBEXEC_DIR (/usr/libexec/vacataire in the
//    Debian package), whatever PATH says.
#pragma once

#include <string>

namespace vac {

// The directory of the running executable (empty if unknown).
std::string executable_dir();

// The directory the helpers are found in, by the rule above.
std::string helpers_dir();

// helpers_dir()/name: where vacataire-linkd is.
std::string helper_executable(const std::string& name);

// helpers_dir()/probes: where the built-in probes are (the config's probes_dir overrides it).
std::string default_probes_dir();

}  // namespace vac
