// Peer-link datagrams: open_datagram on raw bytes (almost always a bad tag), and on bytes
// sealed with the key (the first input byte says which), so that the decoding behind the tag
// is reached too.
#include <sodium.h>
#include <cstddef>
#include <cstdint>
#include <string>

#include "wire.hpp"

namespace {
void tag(std::string_view body, const vac::Key& key, unsigned char out[vac::kTagBytes]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&st, out);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const vac::Key key(32, 0x5a);
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    unsigned char t[vac::kTagBytes];
    tag(bytes, key, t);
    bytes.append(reinterpret_cast<char*>(t), sizeof t);
  }
  vac::Datagram d;
  if (vac::open_datagram(bytes, key, d) == vac::OpenResult::ok) {
    vac::Datagram again;
    if (vac::open_datagram(vac::seal(d, key), key, again) != vac::OpenResult::ok ||
        again.seq != d.seq || again.boot != d.boot)
      __builtin_trap();
  }
  return 0;
}
