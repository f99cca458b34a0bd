#include "control_messages.hpp"

#include "file_util.hpp"
#include "text.hpp"

namespace vac {

namespace {
struct CmdName {
  ControlRequest::Cmd cmd;
  const char* name;
};
constexpr CmdName kCommands[] = {{ControlRequest::Cmd::status, "status"},
                                 {ControlRequest::Cmd::svc, "svc"},
                                 {ControlRequest::Cmd::probe, "probe"},
                                 {ControlRequest::Cmd::takeover, "takeover"},
                                 {ControlRequest::Cmd::release, "release"},
                                 {ControlRequest::Cmd::recover, "recover"},
                                 {ControlRequest::Cmd::maintenance, "maintenance"}};

const char* kActions[] = {"up", "down", "restart", "kill"};
}  // namespace

const char* to_string(ControlRequest::Cmd c) {
  for (auto& k : kCommands)
    if (k.cmd == c) return k.name;
  return "?";
}

bool mutating(ControlRequest::Cmd c) {
  return c != ControlRequest::Cmd::status;
}

std::string encode_control_request(const ControlRequest& r) {
  json j = {{"cmd", to_string(r.cmd)}};
  using C = ControlRequest::Cmd;
  if (r.cmd == C::svc) j["action"] = r.action;
  if (r.cmd == C::svc || r.cmd == C::probe) j["name"] = r.name;
  if (r.cmd == C::recover) j["failback"] = r.failback;
  if (r.cmd == C::maintenance) j["on"] = r.on;
  return dump_json(j) + "\n";
}

std::optional<ControlRequest> decode_control_request(std::string_view line, std::string& err) {
  if (line.size() > kMaxControlRequest)
    return err = cat("request too long (at most ", kMaxControlRequest, " bytes)"), std::nullopt;
  if (!valid_utf8(line)) return err = "bad request: not valid UTF-8", std::nullopt;
  std::string perr;
  auto j = parse_json(line, perr);
  if (!j) return err = cat("bad request: not valid JSON (", perr, ")"), std::nullopt;
  Fields f(*j, "bad request");
  std::string cmd = f.str("cmd", "", true);
  if (!f.ok()) return err = f.error(), std::nullopt;
  ControlRequest r;
  bool known = false;
  for (auto& k : kCommands)
    if (cmd == k.name) r.cmd = k.cmd, known = true;
  if (!known) return err = cat("unknown command ", quote(utf8_prefix(cmd, 64))), std::nullopt;
  using C = ControlRequest::Cmd;
  if (r.cmd == C::svc) {
    r.action = f.str("action", "", true);
    bool ok = false;
    for (auto* a : kActions) ok |= r.action == a;
    if (f.ok() && !ok)
      f.fail(cat("unknown svc action ", quote(utf8_prefix(r.action, 64)),
                 " (use up, down, restart or kill)"));
  }
  if (r.cmd == C::svc || r.cmd == C::probe) {
    r.name = f.str("name", "", true);
    if (f.ok() && r.name.empty()) f.fail("field \"name\" must not be empty");
  }
  if (r.cmd == C::recover) r.failback = f.boolean("failback", false);
  if (r.cmd == C::maintenance) r.on = f.boolean("on", true, true);
  if (!f.ok()) return err = f.error(), std::nullopt;
  return r;
}

std::string encode_control_reply(const json& reply) {
  return dump_json(reply) + "\n";
}

json control_refusal(int code, const std::string& error) {
  return {{"ok", false}, {"code", code}, {"error", error}};
}

std::optional<ControlReply> decode_control_reply(std::string_view line, std::string& err) {
  if (line.size() > kMaxControlReply) return err = "the reply is too long", std::nullopt;
  std::string perr;
  auto j = parse_json(line, perr);
  if (!j) return err = cat("the reply is not valid JSON (", perr, ")"), std::nullopt;
  Fields f(*j, "the supervisor's reply");
  ControlReply r;
  r.ok = f.boolean("ok", false, true);
  r.code = static_cast<int>(f.integer("code", 1));
  r.error = f.str("error", "refused");
  r.message = f.str("message", "ok");
  if (!f.ok()) return err = f.error(), std::nullopt;
  if (!r.ok && (r.code < 1 || r.code > 255)) r.code = 1;
  r.body = std::move(*j);
  return r;
}

std::optional<ProbeRunReply> decode_probe_reply(const json& body, std::string& err) {
  Fields f(body, "the probe reply");
  ProbeRunReply r;
  r.name = f.str("name");
  r.status = f.str("status", "", true);
  r.detail = f.str("detail");
  r.state = f.str("state", "?");
  r.latency_ms = f.number("latency_ms", 0);
  const json& m = f.sub("metrics", "object");
  if (!f.ok()) return err = f.error(), std::nullopt;
  if (m.is_object()) r.metrics = m;
  return r;
}

}  // namespace vac
