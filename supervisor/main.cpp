// `vacataire`: the one command-line entry point (see vacataire(8)). CLI11 lives only here.
#include <csignal>
#include <cstdio>
#include <iostream>

#include <fcntl.h>
#include <linux/close_range.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <cerrno>

#include "common/config.hpp"
#include "common/exit_codes.hpp"
#include "common/install_dirs.hpp"
#include "common/json_util.hpp"
#include "common/log.hpp"
#include "common/text.hpp"
#include "control.hpp"
#include "preflight.hpp"
#include "probe.hpp"
#include "service_dir.hpp"
#include "spawn.hpp"
#include "status_view.hpp"
#include "supervisor.hpp"
#include "wire.hpp"

namespace {

using namespace vac;

int fail(int code, const std::string& msg) {
  std::fprintf(stderr, "vacataire: %s\n", msg.c_str());
  return code;
}

void print_errors(const std::vector<std::string>& errors) {
  for (auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
  std::fprintf(stderr, "vacataire: %zu error%s; nothing was started\n", errors.size(),
               errors.size() == 1 ? "" : "s");
}

// The same load_node as `run` (preflight.hpp): what run would refuse, this refuses.
int cmd_check_config(const std::string& path) {
  LoadedNode node;
  std::vector<std::string> errors;
  if (!load_node(path, node, errors)) {
    print_errors(errors);
    return exit_code::config;
  }
  std::string order;
  for (auto& s : node.specs) order += (order.empty() ? "" : " ") + s.name;
  std::printf("%s: ok (node %s, %zu services, %zu probes)\n", node.config.file.c_str(),
              node.config.node_name.c_str(), node.specs.size(), node.config.probes.size());
  if (!node.specs.empty()) std::printf("start order: %s\n", order.c_str());
  return exit_code::ok;
}

int cmd_run(const std::string& path) {
  // Whatever fds we were started with must not leak into every service.
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  raise_fd_limit();
  LoadedNode node;
  std::vector<std::string> errors;
  if (!load_node(path, node, errors)) {
    for (auto& e : errors) log_error("config", e);
    log_error("config", errors.size(), errors.size() == 1 ? " error" : " errors",
              "; nothing was started");
    return exit_code::config;
  }
  Supervisor supervisor(std::move(node.config), std::move(node.specs));
  return supervisor.run();
}

// The CLI needs only the socket's path from the config; it does not check the rest (that is
// check-config's job), so status works even while the config is being edited.
int call(const std::string& path, const ControlRequest& request, ControlReply& reply) {
  Config config;
  std::vector<std::string> errors;
  if (!load_config(path, config, errors)) {
    for (auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    return exit_code::config;
  }
  std::string err;
  int rc = control_call(config.control_socket, request, reply, err);
  if (rc != exit_code::ok) return fail(rc, err);
  if (!reply.ok) return fail(reply.code, reply.error);
  return exit_code::ok;
}

int cmd_status(const std::string& path, bool json) {
  ControlReply reply;
  int rc = call(path, ControlRequest::of(ControlRequest::Cmd::status), reply);
  if (rc != exit_code::ok) return rc;
  Fields f(reply.body, "the status reply");
  const nlohmann::json& status = f.sub("status", "object", true);
  if (!f.ok()) return fail(exit_code::system, f.error());
  if (json)
    std::printf("%s\n", dump_json(status, 2).c_str());
  else
    std::fputs(render_status(status).c_str(), stdout);
  return exit_code::ok;
}

int cmd_probe(const std::string& path, const std::string& name, bool json) {
  ControlReply reply;
  int rc = call(path, ControlRequest::of(ControlRequest::Cmd::probe, name), reply);
  if (rc != exit_code::ok) return rc;
  std::string err;
  auto r = decode_probe_reply(reply.body, err);
  if (!r) return fail(exit_code::system, err);
  if (json) {
    reply.body.erase("ok");
    std::printf("%s\n", dump_json(reply.body, 2).c_str());
  } else {
    std::printf("%s: %s (%.1fms) %s\nprobe is now %s\n", name.c_str(), r->status.c_str(),
                r->latency_ms, r->detail.c_str(), r->state.c_str());
  }
  // Scripts can branch on the check itself, like a monitoring plugin.
  return r->status == "ok"     ? exit_code::ok
         : r->status == "warn" ? exit_code::failed
                               : exit_code::probe_failed;
}

int cmd_node(const std::string& path, const ControlRequest& request) {
  ControlReply reply;
  int rc = call(path, request, reply);
  if (rc == exit_code::ok) std::printf("%s\n", reply.message.c_str());
  return rc;
}

// Writes a new peer key: 64 random bytes in hex, mode 0600. Never overwrites without --force:
// both nodes must hold the same key.
int cmd_keygen(const std::string& file, bool force) {
  if (sodium_init() < 0) return fail(exit_code::system, "libsodium failed to initialise");
  int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL);
  int fd = open(file.c_str(), flags, 0600);
  if (fd < 0)
    return fail(errno == EEXIST ? exit_code::failed : exit_code::system,
                errno == EEXIST
                    ? cat(file, " exists; use --force to replace it (then copy it to the peer)")
                    : sys_error(cat("cannot create ", file)));
  std::string key = new_key_hex() + "\n";
  bool ok = fchmod(fd, 0600) == 0 &&
            write(fd, key.data(), key.size()) == static_cast<ssize_t>(key.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return fail(exit_code::system, sys_error(cat("cannot write ", file)));
  std::printf("wrote a 64-byte key to %s (mode 0600); copy it to the peer over a safe channel\n",
              file.c_str());
  return exit_code::ok;
}

int cmd_svc(const std::string& path, const std::string& action, const std::string& name) {
  return cmd_node(path, ControlRequest::of(ControlRequest::Cmd::svc, name, action));
}

}  // namespace

int main(int argc, char** argv) {
  // A supervisor that closes the connection is reported in words (control_call), never a
  // silent death by SIGPIPE; `run` ignores it too.
  signal(SIGPIPE, SIG_IGN);
  CLI::App app{"Le Vacataire: a two-node failover supervisor", "vacataire"};
  app.require_subcommand(1);
  std::string config = default_config_path();
  app.add_option("-c,--config", config,
                 "config file (default $VACATAIRE_CONFIG or /etc/vacataire/vacataire.json)");

  auto* run = app.add_subcommand("run", "supervise the services in the foreground");
  std::string log_format = "text", log_level = "info";
  run->add_option("--log-format", log_format, "text or json")
      ->check(CLI::IsMember({"text", "json"}));
  run->add_option("--log-level", log_level, "debug, info, warn or error")
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));

  auto* status = app.add_subcommand("status", "show the node, its services and probes");
  bool json = false;
  status->add_flag("--json", json, "print the status as JSON");

  auto* svc = app.add_subcommand("svc", "control one service");
  std::string action, name;
  svc->add_option("action", action, "up, down, restart or kill")
      ->required()
      ->check(CLI::IsMember({"up", "down", "restart", "kill"}));
  svc->add_option("name", name, "the service's directory name")->required();

  auto* probe = app.add_subcommand("probe", "run one probe's check now and print the result");
  std::string probe_name;
  bool probe_json = false;
  probe->add_option("name", probe_name, "the probe's name in the config")->required();
  probe->add_flag("--json", probe_json, "print the result as JSON");

  auto* takeover =
      app.add_subcommand("takeover", "make this node the active one (the peer stops first)");
  auto* release = app.add_subcommand("release", "hand the active role over to the peer");
  auto* recover =
      app.add_subcommand("recover", "leave the failed state once the probes pass again");
  bool failback = false;
  recover->add_flag("--failback", failback, "then take the active role back from the peer");
  auto* maintenance =
      app.add_subcommand("maintenance", "stop serving and stay down (on), or end it (off)");
  std::string onoff;
  maintenance->add_option("mode", onoff, "on or off")
      ->required()
      ->check(CLI::IsMember({"on", "off"}));
  auto* keygen = app.add_subcommand("keygen", "write a new pre-shared key for the peer link");
  std::string key_file = "/etc/vacataire/peer.key";
  bool force = false;
  keygen->add_option("file", key_file, "where to write it (default /etc/vacataire/peer.key)");
  keygen->add_flag("--force", force, "replace an existing key file");

  auto* check = app.add_subcommand("check-config", "validate the config and services directory");

  for (auto* sub : {run, status, svc, probe, check, takeover, release, recover, maintenance})
    sub->add_option("-c,--config", config, "config file");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return exit_code::usage;
  }

  // Relative to where the command was started, once: every path in the config is then
  // relative to the config file's directory, the same for run, check-config and reload.
  config = absolute_path(config);
  if (*run) {
    Level level = Level::info;
    parse_level(log_level, level);
    log_set_level(level);
    log_set_json(log_format == "json");
    return cmd_run(config);
  }
  if (*status) return cmd_status(config, json);
  if (*svc) return cmd_svc(config, action, name);
  if (*probe) return cmd_probe(config, probe_name, probe_json);
  using C = ControlRequest::Cmd;
  if (*takeover) return cmd_node(config, ControlRequest::of(C::takeover));
  if (*release) return cmd_node(config, ControlRequest::of(C::release));
  if (*recover) {
    auto r = ControlRequest::of(C::recover);
    r.failback = failback;
    return cmd_node(config, r);
  }
  if (*maintenance) {
    auto r = ControlRequest::of(C::maintenance);
    r.on = onoff == "on";
    return cmd_node(config, r);
  }
  if (*keygen) return cmd_keygen(key_file, force);
  if (*check) return cmd_check_config(config);
  return exit_code::usage;
}
