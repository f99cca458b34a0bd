// The control protocol's messages (vacataire(8), CONTROL SOCKET): one JSON request line from
// the CLI, one JSON reply line from the supervisor. Both ends use this codec, so a field means
// the same thing on both sides; decoding never throws, it returns a value or an error that
// says which field is wrong.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "json_util.hpp"

namespace vac {

// The longest request line the supervisor reads; longer ones are refused unread.
constexpr size_t kMaxControlRequest = 4096;
// The longest reply the CLI reads (the status of a thousand services fits easily).
constexpr size_t kMaxControlReply = 16 << 20;

struct ControlRequest {
  enum class Cmd { status, svc, probe, takeover, release, recover, maintenance };
  Cmd cmd = Cmd::status;
  std::string action;     // svc: up, down, restart or kill
  std::string name;       // svc, probe: the service's or probe's name
  bool failback = false;  // recover
  bool on = false;        // maintenance

  bool operator==(const ControlRequest&) const = default;

  static ControlRequest of(Cmd c, std::string name = {}, std::string action = {}) {
    ControlRequest r;
    r.cmd = c;
    r.name = std::move(name);
    r.action = std::move(action);
    return r;
  }
};

const char* to_string(ControlRequest::Cmd c);
// Whether the command changes something (and so needs root or control_group).
bool mutating(ControlRequest::Cmd c);

std::string encode_control_request(const ControlRequest& r);  // one line, with '\n'
// A request line (without its '\n'). nullopt with err ("unknown command \"x\"", "field
// \"action\" must be a string", ...) for anything else, including bytes that are not UTF-8.
std::optional<ControlRequest> decode_control_request(std::string_view line, std::string& err);

// Replies: {"ok": true, ...fields} or {"ok": false, "code": N, "error": "..."}.
std::string encode_control_reply(const json& reply);  // one line, with '\n'; never throws
json control_refusal(int code, const std::string& error);

struct ControlReply {
  bool ok = false;
  int code = 0;         // exit code to use when !ok
  std::string error;    // when !ok
  std::string message;  // svc and node commands
  json body;            // the whole reply object, for the fields of status and probe
};
std::optional<ControlReply> decode_control_reply(std::string_view line, std::string& err);

// Fields of a probe run's reply (`vacataire probe`).
struct ProbeRunReply {
  std::string name, status, detail, state;
  double latency_ms = 0;
  json metrics = json::object();
};
std::optional<ProbeRunReply> decode_probe_reply(const json& body, std::string& err);

}  // namespace vac
