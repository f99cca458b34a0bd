// The smallest C++ probe: the probe-side helper does the protocol, this file the check.
#include "probes/probe.hpp"

int main(int argc, char** argv) {
  return vac::probe::main(argc, argv, [] { return vac::ProbeResult{vac::Status::ok, "fine", {}}; });
}
