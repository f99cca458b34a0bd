// Never-throwing JSON helpers for bytes that come from outside (probes, peers, clients, files).
// nlohmann::json throws on a wrongly typed value() or get<>() and on dump() of invalid UTF-8;
// every decoder in Le Vacataire reads fields through these instead, so a hostile or broken
// sender yields an error message, never an exception.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace vac {

using json = nlohmann::json;

// Serialises any value; invalid UTF-8 in strings becomes U+FFFD instead of an exception.
std::string dump_json(const json& j, int indent = -1);

// Parses text; nullopt (and err set to "line L, column C: ...") when it is not JSON.
std::optional<json> parse_json(std::string_view text, std::string& err);

// The longest prefix of s of at most max bytes that does not split a UTF-8 sequence.
std::string_view utf8_prefix(std::string_view s, size_t max);

// Total readers of a document the process built or trusts the shape of (the status document
// linkd answers from): a missing or wrongly typed member is the fallback, never an exception.
const json& member(const json& j, const char* key);         // null when absent or j not an object
std::string string_member(const json& j, const char* key);  // "" unless a string
bool bool_member(const json& j, const char* key);           // false unless true

// Reads typed fields of one JSON object and remembers the first problem, so a decoder is a
// straight list of reads followed by one `if (!f.ok())`. Missing optional fields keep their
// default; a present field of the wrong type is an error naming the field and the type wanted.
class Fields {
 public:
  // what names the message family in errors ("control request", "linkd line", ...).
  Fields(const json& j, std::string what);

  bool ok() const { return err_.empty(); }
  const std::string& error() const { return err_; }
  bool has(const char* key) const;

  std::string str(const char* key, std::string def = {}, bool required = false);
  bool boolean(const char* key, bool def = false, bool required = false);
  int64_t integer(const char* key, int64_t def = 0, bool required = false);
  uint64_t uinteger(const char* key, uint64_t def = 0, bool required = false);
  double number(const char* key, double def = 0, bool required = false);
  // The field itself (null json when absent); wanted is "object" or "array" or "" for any.
  const json& sub(const char* key, const char* wanted = "", bool required = false);

  // Fails the decode with a message of the caller's.
  void fail(std::string message);

 private:
  const json* field(const char* key, bool required);
  void wrong_type(const char* key, const char* wanted);

  const json& j_;
  std::string what_;
  std::string err_;
};

}  // namespace vac
