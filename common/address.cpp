#include "address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <cstring>

#include "text.hpp"

namespace vac {

bool parse_address(std::string_view text, Address& out, std::string& err) {
  auto bad = [&](const char* why) {
    err = cat("bad address ", quote(text), ": ", why);
    return false;
  };
  std::string_view host, port_s;
  bool v6 = !text.empty() && text[0] == '[';
  if (v6) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("expected \"[v6-address]:port\"");
    host = text.substr(1, close - 1);
    port_s = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0)
      return bad("expected \"address:port\" (or \"[v6-address]:port\")");
    host = text.substr(0, colon);
    port_s = text.substr(colon + 1);
  }
  // Digits only: strtol would take "+80", " 80" or "80abc" in part.
  long port = 0;
  if (port_s.empty() || port_s.size() > 5) return bad("the port must be a number from 1 to 65535");
  for (char c : port_s) {
    if (c < '0' || c > '9') return bad("the port must be a number from 1 to 65535");
    port = port * 10 + (c - '0');
  }
  if (port < 1 || port > 65535) return bad("the port must be a number from 1 to 65535");

  std::string h(host);
  if (h.find('\0') != std::string::npos) return bad("the address contains a NUL byte");
  Address a;
  a.host = h;
  a.port = static_cast<int>(port);
  if (!v6 && inet_pton(AF_INET, h.c_str(), &reinterpret_cast<sockaddr_in*>(&a.sa)->sin_addr) == 1) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&a.sa);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in);
  } else if (inet_pton(AF_INET6, h.c_str(), &reinterpret_cast<sockaddr_in6*>(&a.sa)->sin6_addr) ==
             1) {
    if (!v6) return bad("write an IPv6 address in brackets, \"[v6-address]:port\"");
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&a.sa);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<uint16_t>(port));
    a.len = sizeof(sockaddr_in6);
  } else {
    return bad(v6 ? "not a numeric IPv6 address"
                  : "the host must be a numeric IPv4 address (names are not looked up)");
  }
  out = std::move(a);
  return true;
}

bool parse_address(const std::string& text, std::string& host, int& port, std::string& err) {
  Address a;
  if (!parse_address(std::string_view(text), a, err)) return false;
  host = a.host;
  port = a.port;
  return true;
}

}  // namespace vac
