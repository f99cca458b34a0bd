#include "json_util.hpp"

#include "text.hpp"

namespace vac {

std::string dump_json(const json& j, int indent) {
  return j.dump(indent, ' ', false, json::error_handler_t::replace);
}

std::optional<json> parse_json(std::string_view text, std::string& err) {
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    // nlohmann reports a byte offset; operators want line and column.
    size_t line = 1, col = 1;
    for (size_t i = 0; i < text.size() && i + 1 < e.byte; ++i) {
      if (text[i] == '\n')
        ++line, col = 1;
      else
        ++col;
    }
    std::string what = e.what();
    auto colon = what.rfind(": ");
    err = cat("line ", line, ", column ", col, ": ",
              colon == std::string::npos ? what : what.substr(colon + 2));
    return std::nullopt;
  } catch (const std::exception& e) {
    err = e.what();
    return std::nullopt;
  }
}

std::string_view utf8_prefix(std::string_view s, size_t max) {
  if (s.size() <= max) return s;
  size_t n = max;
  // Step back over continuation bytes (10xxxxxx) to the start of the cut character.
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

const json& member(const json& j, const char* key) {
  static const json null_value;
  if (!j.is_object()) return null_value;
  auto it = j.find(key);
  return it == j.end() ? null_value : *it;
}

std::string string_member(const json& j, const char* key) {
  const json& v = member(j, key);
  return v.is_string() ? v.get<std::string>() : "";
}

bool bool_member(const json& j, const char* key) {
  const json& v = member(j, key);
  return v.is_boolean() && v.get<bool>();
}

Fields::Fields(const json& j, std::string what) : j_(j), what_(std::move(what)) {
  if (!j_.is_object()) err_ = cat(what_, ": expected a JSON object");
}

bool Fields::has(const char* key) const {
  return j_.is_object() && j_.contains(key);
}

const json* Fields::field(const char* key, bool required) {
  if (!ok()) return nullptr;
  auto it = j_.find(key);
  if (it == j_.end()) {
    if (required) err_ = cat(what_, ": missing field ", quote(key));
    return nullptr;
  }
  return &*it;
}

void Fields::wrong_type(const char* key, const char* wanted) {
  if (ok()) err_ = cat(what_, ": field ", quote(key), " must be ", wanted);
}

void Fields::fail(std::string message) {
  if (ok()) err_ = cat(what_, ": ", message);
}

std::string Fields::str(const char* key, std::string def, bool required) {
  const json* v = field(key, required);
  if (!v) return def;
  if (!v->is_string()) return wrong_type(key, "a string"), def;
  return v->get_ref<const std::string&>();
}

bool Fields::boolean(const char* key, bool def, bool required) {
  const json* v = field(key, required);
  if (!v) return def;
  if (!v->is_boolean()) return wrong_type(key, "true or false"), def;
  return v->get<bool>();
}

int64_t Fields::integer(const char* key, int64_t def, bool required) {
  const json* v = field(key, required);
  if (!v) return def;
  if (v->is_number_integer() && !(v->is_number_unsigned() && v->get<uint64_t>() > INT64_MAX))
    return v->get<int64_t>();
  return wrong_type(key, "an integer"), def;
}

uint64_t Fields::uinteger(const char* key, uint64_t def, bool required) {
  const json* v = field(key, required);
  if (!v) return def;
  if (v->is_number_unsigned()) return v->get<uint64_t>();
  if (v->is_number_integer() && v->get<int64_t>() >= 0) return uint64_t(v->get<int64_t>());
  return wrong_type(key, "a non-negative integer"), def;
}

double Fields::number(const char* key, double def, bool required) {
  const json* v = field(key, required);
  if (!v) return def;
  if (!v->is_number()) return wrong_type(key, "a number"), def;
  return v->get<double>();
}

const json& Fields::sub(const char* key, const char* wanted, bool required) {
  static const json null_value;
  const json* v = field(key, required);
  if (!v) return null_value;
  std::string_view w = wanted;
  if ((w == "object" && !v->is_object()) || (w == "array" && !v->is_array())) {
    wrong_type(key, w == "object" ? "an object" : "an array");
    return null_value;
  }
  return *v;
}

}  // namespace vac
