// Peer-link datagrams: open_datagram on raw bytes (almost always a bad tag), and on bytes
// sealed with the key (the first input byte says which), so that the decoding behind the tag
// is reached too. A datagram that opens must seal and open again to the same fields.
#include <cstddef>
#include <cstdint>
#include <string>

#include "wire.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static vac::SecretKey* key = [] {
    auto* k = new vac::SecretKey;
    std::string err;
    if (!k->load_hex(std::string(64, '5') + std::string(64, 'a'), err)) __builtin_trap();
    return k;
  }();
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if (data[0] & 1) {
    unsigned char t[vac::kTagBytes];
    key->tag(bytes, t);
    bytes.append(reinterpret_cast<char*>(t), sizeof t);
  }
  vac::Datagram d;
  std::string err;
  if (vac::open_datagram(bytes, *key, d, &err) == vac::OpenResult::ok) {
    vac::Datagram again;
    if (vac::open_datagram(vac::seal(d, *key), *key, again, &err) != vac::OpenResult::ok ||
        again.seq != d.seq || again.sid != d.sid || again.link != d.link)
      __builtin_trap();
  }
  return 0;
}
