// The node core's rules (supervisor/node_rules.cpp), one at a time: each test pins down what one
// line decides, so that a one-line change to that line fails here (see tests/mutate).
#include <doctest/doctest.h>

#include "node_test_util.hpp"

using namespace vac;
using namespace vac::test;
using namespace std::chrono_literals;
