// The peer link's datagrams: a JSON header and message followed by a 32-byte HMAC-SHA256 tag
// over them, made with the pre-shared key (libsodium). Nothing in a datagram is looked at
// before its tag checks out, and decoding checks every field's type: open_datagram never
// throws. Which datagrams count (sessions, sequence numbers) is session.hpp's business.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/link_messages.hpp"

namespace vac {

using Key = std::vector<unsigned char>;  // the supervisor's copy, read from the key file
constexpr size_t kMinKeyBytes = 32;
constexpr size_t kMaxKeyBytes = 1024;
constexpr size_t kTagBytes = 32;
constexpr size_t kMaxDatagram = 8192;
constexpr size_t kSessionBytes = 16;  // session ids and nonces: 16 random bytes, in hex

// The key file holds the key in hex (vacataire keygen writes 64 random bytes).
bool parse_key_hex(std::string_view hex, Key& key, std::string& err);
std::string key_hex(const Key& key);
std::string new_key_hex();  // 64 random bytes, hex
std::string random_hex(size_t bytes);

// The key as linkd holds it: the HMAC state keyed once, in memory that is locked (never
// swapped), guarded by libsodium's guard pages, and wiped when freed.
class SecretKey {
 public:
  SecretKey() = default;
  ~SecretKey();
  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  // Decodes hex straight into locked memory; err says why not.
  bool load_hex(std::string_view hex, std::string& err);
  bool loaded() const { return state_ != nullptr; }
  bool locked() const { return locked_; }
  void tag(std::string_view body, unsigned char out[kTagBytes]) const;

 private:
  void* state_ = nullptr;  // crypto_auth_hmacsha256_state, sodium_malloc'd
  bool locked_ = false;
};

// What travels inside a datagram.
struct WireMessage {
  enum Kind { heartbeat, pong, command, ack, challenge, response } kind = heartbeat;
  NodeReport report;                           // heartbeat, command
  PeerKind command_kind = PeerKind::takeover;  // command
  uint64_t id = 0;                             // command, ack: per sender session, from 1
  uint64_t t = 0;                              // heartbeat: sender's monotonic µs; pong: echoed
  LinkTiming timing;                           // heartbeat: the sender's (optional on the wire)
  uint64_t incarnation = 0;                    // heartbeat, command: the sender's supervisor run
  std::string nonce;                           // challenge, response: hex
};
const char* to_string(WireMessage::Kind k);

struct Datagram {
  std::string from;   // the sender's node name
  uint64_t link = 0;  // the configured link it was sent on
  std::string sid;    // the sender's session (random, per linkd start)
  std::string rsid;   // the receiver's session as the sender knows it ("" when it does not)
  uint64_t seq = 0;   // per sender session, strictly increasing over all links
  WireMessage msg;
};

std::string seal(const Datagram& d, const SecretKey& key);

enum class OpenResult { ok, oversized, bad_tag, malformed };
const char* to_string(OpenResult r);
// err (when given) says which field is wrong in a malformed datagram.
OpenResult open_datagram(std::string_view bytes, const SecretKey& key, Datagram& out,
                         std::string* err = nullptr);

}  // namespace vac
