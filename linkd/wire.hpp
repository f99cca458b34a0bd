// The peer link's datagrams: {"v","from","boot","seq","ts","msg"} JSON followed by a 32-byte
// HMAC-SHA256 tag over it (libsodium), with a pre-shared key of at least 32 bytes. Nothing
// from a datagram is looked at before its tag checks out; replays are refused by (boot, seq)
// order and a timestamp window.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace vac {

using Key = std::vector<unsigned char>;
constexpr size_t kMinKeyBytes = 32;
constexpr size_t kTagBytes = 32;
constexpr size_t kMaxDatagram = 8192;

// The key file holds the key in hex (vacataire keygen writes 64 random bytes).
bool parse_key_hex(std::string_view hex, Key& key, std::string& err);
std::string new_key_hex();  // 64 random bytes, hex

struct Datagram {
  std::string from;
  uint64_t link = 0;  // which of the configured links it was sent on: sequences are per link
  uint64_t boot = 0;  // the sender's start time (µs since the epoch): grows across restarts
  uint64_t seq = 0;   // per boot, increasing
  int64_t ts_ms = 0;  // the sender's wall clock
  nlohmann::json msg = nlohmann::json::object();
};

std::string seal(const Datagram& d, const Key& key);

enum class OpenResult { ok, bad_tag, malformed };
const char* to_string(OpenResult r);
OpenResult open_datagram(std::string_view bytes, const Key& key, Datagram& out);

// Refuses anything not newer than what was last accepted from the peer on one link.
class ReplayGuard {
 public:
  bool accept(uint64_t boot, uint64_t seq);

 private:
  uint64_t boot_ = 0, seq_ = 0;
};

}  // namespace vac
