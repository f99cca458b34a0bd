#include "wire.hpp"

#include <sodium.h>

#include "common/text.hpp"

namespace vac {

namespace {
void tag_of(std::string_view body, const Key& key, unsigned char out[kTagBytes]) {
  crypto_auth_hmacsha256_state st;
  crypto_auth_hmacsha256_init(&st, key.data(), key.size());
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&st, out);
}
}  // namespace

bool parse_key_hex(std::string_view text, Key& key, std::string& err) {
  std::string hex(trim(text));
  key.assign(hex.size() / 2 + 1, 0);
  size_t len = 0;
  if (sodium_hex2bin(key.data(), key.size(), hex.data(), hex.size(), nullptr, &len, nullptr) != 0 ||
      len * 2 != hex.size())
    return err = "the key is not hexadecimal", false;
  key.resize(len);
  if (len < kMinKeyBytes)
    return err = cat("the key is ", len, " bytes; at least ", kMinKeyBytes,
                     " are needed (make one with `vacataire keygen`)"),
           false;
  return true;
}

std::string new_key_hex() {
  unsigned char k[64];
  randombytes_buf(k, sizeof k);
  char hex[sizeof k * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, k, sizeof k);
  return hex;
}

std::string seal(const Datagram& d, const Key& key) {
  nlohmann::json j = {{"v", 1},       {"from", d.from}, {"link", d.link}, {"boot", d.boot},
                      {"seq", d.seq}, {"ts", d.ts_ms},  {"msg", d.msg}};
  std::string body = j.dump();
  unsigned char tag[kTagBytes];
  tag_of(body, key, tag);
  body.append(reinterpret_cast<char*>(tag), kTagBytes);
  return body;
}

const char* to_string(OpenResult r) {
  switch (r) {
    case OpenResult::ok:
      return "ok";
    case OpenResult::bad_tag:
      return "bad_tag";
    case OpenResult::malformed:
      return "malformed";
  }
  return "malformed";
}

OpenResult open_datagram(std::string_view bytes, const Key& key, Datagram& out) {
  if (bytes.size() <= kTagBytes || bytes.size() > kMaxDatagram) return OpenResult::bad_tag;
  std::string_view body = bytes.substr(0, bytes.size() - kTagBytes);
  unsigned char tag[kTagBytes];
  tag_of(body, key, tag);
  if (sodium_memcmp(tag, bytes.data() + body.size(), kTagBytes) != 0) return OpenResult::bad_tag;
  // Authentic: from here on it is our peer's (or our own) software speaking.
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  // Typed checks only: value() throws on a wrongly typed field, even behind a good tag.
  if (j.is_discarded() || !j.is_object()) return OpenResult::malformed;
  auto v = j.find("v");
  if (v == j.end() || !v->is_number_integer() || v->get<int64_t>() != 1)
    return OpenResult::malformed;
  auto from = j.find("from");
  auto boot = j.find("boot");
  auto seq = j.find("seq");
  auto ts = j.find("ts");
  auto msg = j.find("msg");
  auto link = j.find("link");
  if (link == j.end() || !link->is_number_unsigned()) return OpenResult::malformed;
  if (from == j.end() || !from->is_string() || boot == j.end() || !boot->is_number_unsigned() ||
      seq == j.end() || !seq->is_number_unsigned() || ts == j.end() || !ts->is_number_integer() ||
      msg == j.end() || !msg->is_object())
    return OpenResult::malformed;
  out.from = from->get<std::string>();
  out.link = link->get<uint64_t>();
  out.boot = boot->get<uint64_t>();
  out.seq = seq->get<uint64_t>();
  out.ts_ms = ts->get<int64_t>();
  out.msg = *msg;
  return OpenResult::ok;
}

bool ReplayGuard::accept(uint64_t boot, uint64_t seq) {
  if (boot < boot_ || (boot == boot_ && seq <= seq_)) return false;
  boot_ = boot, seq_ = seq;
  return true;
}

}  // namespace vac
