#include "wire.hpp"

#include <sodium.h>
#include <algorithm>

#include "common/json_util.hpp"
#include "common/text.hpp"

namespace vac {

using json = nlohmann::json;

namespace {
bool is_hex(std::string_view s, size_t bytes) {
  return s.size() == bytes * 2 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

json message_json(const WireMessage& m) {
  json j = {{"kind", to_string(m.kind)}};
  switch (m.kind) {
    case WireMessage::heartbeat:
      j.update({{"state", m.report.state},
                {"epoch", m.report.epoch},
                {"healthy", m.report.healthy},
                {"role", m.report.role},
                {"t", m.t}});
      if (m.timing.known())
        j.update({{"hb_us", m.timing.heartbeat_us}, {"dead_us", m.timing.dead_after_us}});
      if (m.incarnation != 0) j["inc"] = m.incarnation;
      break;
    case WireMessage::command:
      j.update({{"command", to_string(m.command_kind)},
                {"id", m.id},
                {"state", m.report.state},
                {"epoch", m.report.epoch},
                {"healthy", m.report.healthy},
                {"role", m.report.role}});
      if (m.incarnation != 0) j["inc"] = m.incarnation;
      break;
    case WireMessage::pong:
      j["t"] = m.t;
      break;
    case WireMessage::ack:
      j["id"] = m.id;
      break;
    case WireMessage::challenge:
    case WireMessage::response:
      j["nonce"] = m.nonce;
      break;
  }
  return j;
}

bool parse_kind(std::string_view s, WireMessage::Kind& out) {
  for (auto k : {WireMessage::heartbeat, WireMessage::pong, WireMessage::command, WireMessage::ack,
                 WireMessage::challenge, WireMessage::response})
    if (s == to_string(k)) return out = k, true;
  return false;
}

// Reads the sender's state, epoch, health and role, as a supervisor line carries them.
void read_report(Fields& f, NodeReport& r) {
  r.state = f.str("state", "", true);
  r.epoch = f.uinteger("epoch", 0, true);
  r.healthy = f.boolean("healthy", false, true);
  r.role = f.str("role", "", true);
  if (f.ok() && (r.state.empty() || r.state.size() > 32 ||
                 !std::all_of(r.state.begin(), r.state.end(),
                              [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; })))
    f.fail("field \"state\" is not a node state name");
  if (f.ok() && r.role != "master" && r.role != "standby")
    f.fail("field \"role\" must be \"master\" or \"standby\"");
}

bool read_message(const json& j, WireMessage& m, std::string& err) {
  Fields f(j, "datagram msg");
  std::string kind = f.str("kind", "", true);
  if (f.ok() && !parse_kind(kind, m.kind)) f.fail("field \"kind\" is not a message kind");
  if (!f.ok()) return err = f.error(), false;
  switch (m.kind) {
    case WireMessage::heartbeat:
      read_report(f, m.report);
      m.t = f.uinteger("t", 0, true);
      m.timing.heartbeat_us = f.uinteger("hb_us");
      m.timing.dead_after_us = f.uinteger("dead_us");
      m.incarnation = f.uinteger("inc");
      break;
    case WireMessage::command: {
      std::string command = f.str("command", "", true);
      if (f.ok() && (!parse_peer_kind(command, m.command_kind) || !is_command(m.command_kind)))
        f.fail("field \"command\" is not takeover, quiesce or stopped");
      m.id = f.uinteger("id", 0, true);
      if (f.ok() && m.id == 0) f.fail("field \"id\" must be positive");
      read_report(f, m.report);
      m.incarnation = f.uinteger("inc");
      break;
    }
    case WireMessage::pong:
      m.t = f.uinteger("t", 0, true);
      break;
    case WireMessage::ack:
      m.id = f.uinteger("id", 0, true);
      break;
    case WireMessage::challenge:
    case WireMessage::response:
      m.nonce = f.str("nonce", "", true);
      if (f.ok() && !is_hex(m.nonce, kSessionBytes)) f.fail("field \"nonce\" is not a nonce");
      break;
  }
  if (!f.ok()) return err = f.error(), false;
  return true;
}

OpenResult fail(std::string* err, std::string why) {
  if (err) *err = std::move(why);
  return OpenResult::malformed;
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
  if (len > kMaxKeyBytes)
    return err = cat("the key is longer than ", kMaxKeyBytes, " bytes"), false;
  return true;
}

std::string key_hex(const Key& key) {
  std::string hex(key.size() * 2 + 1, '\0');
  sodium_bin2hex(hex.data(), hex.size(), key.data(), key.size());
  hex.pop_back();
  return hex;
}

std::string random_hex(size_t bytes) {
  std::vector<unsigned char> b(bytes);
  randombytes_buf(b.data(), b.size());
  return key_hex(b);
}

std::string new_key_hex() {
  return random_hex(64);
}

SecretKey::~SecretKey() {
  if (state_) sodium_free(state_);  // wipes it
}

bool SecretKey::load_hex(std::string_view hex, std::string& err) {
  if (sodium_init() < 0) return err = "libsodium failed to initialise", false;  // idempotent
  if (state_) sodium_free(state_), state_ = nullptr;
  if (hex.size() % 2 != 0 || hex.size() / 2 < kMinKeyBytes || hex.size() / 2 > kMaxKeyBytes)
    return err = cat("the key must be ", kMinKeyBytes, " to ", kMaxKeyBytes,
                     " bytes in hex (make one with `vacataire keygen`)"),
           false;
  auto* raw = static_cast<unsigned char*>(sodium_malloc(hex.size() / 2));
  auto* st = static_cast<crypto_auth_hmacsha256_state*>(
      sodium_malloc(sizeof(crypto_auth_hmacsha256_state)));
  if (!raw || !st) {
    if (raw) sodium_free(raw);
    if (st) sodium_free(st);
    return err = "cannot allocate locked memory for the key", false;
  }
  size_t len = 0;
  bool ok =
      sodium_hex2bin(raw, hex.size() / 2, hex.data(), hex.size(), nullptr, &len, nullptr) == 0 &&
      len == hex.size() / 2;
  if (ok) crypto_auth_hmacsha256_init(st, raw, len);
  sodium_free(raw);  // only the keyed state is kept
  if (!ok) return sodium_free(st), err = "the key is not hexadecimal", false;
  // sodium_malloc already tries to lock; asking again tells us whether it worked.
  locked_ = sodium_mlock(st, sizeof *st) == 0;
  state_ = st;
  return true;
}

void SecretKey::tag(std::string_view body, unsigned char out[kTagBytes]) const {
  crypto_auth_hmacsha256_state st = *static_cast<const crypto_auth_hmacsha256_state*>(state_);
  crypto_auth_hmacsha256_update(&st, reinterpret_cast<const unsigned char*>(body.data()),
                                body.size());
  crypto_auth_hmacsha256_final(&st, out);
  sodium_memzero(&st, sizeof st);
}

const char* to_string(WireMessage::Kind k) {
  switch (k) {
    case WireMessage::heartbeat:
      return "heartbeat";
    case WireMessage::pong:
      return "pong";
    case WireMessage::command:
      return "command";
    case WireMessage::ack:
      return "ack";
    case WireMessage::challenge:
      return "challenge";
    case WireMessage::response:
      return "response";
  }
  return "heartbeat";
}

std::string seal(const Datagram& d, const SecretKey& key) {
  json j = {{"v", 2},
            {"from", d.from},
            {"link", d.link},
            {"sid", d.sid},
            {"rsid", d.rsid},
            {"seq", d.seq},
            {"msg", message_json(d.msg)}};
  std::string body = dump_json(j);
  unsigned char tag[kTagBytes];
  key.tag(body, tag);
  body.append(reinterpret_cast<char*>(tag), kTagBytes);
  return body;
}

const char* to_string(OpenResult r) {
  switch (r) {
    case OpenResult::ok:
      return "ok";
    case OpenResult::oversized:
      return "oversized";
    case OpenResult::bad_tag:
      return "bad_tag";
    case OpenResult::malformed:
      return "malformed";
  }
  return "malformed";
}

OpenResult open_datagram(std::string_view bytes, const SecretKey& key, Datagram& out,
                         std::string* err) {
  if (bytes.size() > kMaxDatagram) return OpenResult::oversized;
  if (bytes.size() <= kTagBytes) return OpenResult::bad_tag;
  std::string_view body = bytes.substr(0, bytes.size() - kTagBytes);
  unsigned char tag[kTagBytes];
  key.tag(body, tag);
  if (sodium_memcmp(tag, bytes.data() + body.size(), kTagBytes) != 0) return OpenResult::bad_tag;
  // Authentic: from here on it is our peer's software speaking (or a replay of it), but a
  // different version or a bug there must still not throw here.
  std::string e;
  auto j = parse_json(body, e);
  if (!j) return fail(err, cat("datagram: ", e));
  Fields f(*j, "datagram");
  if (f.uinteger("v", 0, true) != 2 && f.ok()) f.fail("field \"v\" must be 2 (this version)");
  out.from = f.str("from", "", true);
  out.link = f.uinteger("link", 0, true);
  out.sid = f.str("sid", "", true);
  out.rsid = f.str("rsid", "", true);
  out.seq = f.uinteger("seq", 0, true);
  const json& msg = f.sub("msg", "object", true);
  if (f.ok() && !is_hex(out.sid, kSessionBytes)) f.fail("field \"sid\" is not a session id");
  if (f.ok() && !out.rsid.empty() && !is_hex(out.rsid, kSessionBytes))
    f.fail("field \"rsid\" is not a session id");
  if (!f.ok()) return fail(err, f.error());
  if (!read_message(msg, out.msg, e)) return fail(err, e);
  return OpenResult::ok;
}

}  // namespace vac
