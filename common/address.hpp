// Peer-link and endpoint addresses as written in the config: "host:port" or "[v6]:port", the
// host numeric (no name lookups: a DNS answer must not decide which peer we trust) and the
// port 1-65535. One parser for `vacataire check-config`, `vacataire run` and
// vacataire-linkd, so what one accepts the others accept.
#pragma once

#include <sys/socket.h>
#include <string>
#include <string_view>

namespace vac {

struct Address {
  std::string host;  // numeric, without brackets
  int port = 0;
  sockaddr_storage sa{};
  socklen_t len = 0;
};

// Never throws; false with a reason naming the text when it is not a valid address.
bool parse_address(std::string_view text, Address& out, std::string& err);

// The older form, kept for callers that only want host and port.
bool parse_address(const std::string& text, std::string& host, int& port, std::string& err);

}  // namespace vac
