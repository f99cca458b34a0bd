// The human form of `vacataire status`: the status JSON rendered as a short header and a
// table per section. Pure, so golden tests can pin its layout.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace vac {

std::string render_status(const nlohmann::json& status);
std::string format_age(double seconds);  // 75.2 -> "1m15s"

}  // namespace vac
