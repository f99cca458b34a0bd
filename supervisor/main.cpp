// `vacataire`: the one command-line entry point (see vacataire(8)). CLI11 lives only here.
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
#include "common/log.hpp"
#include "common/text.hpp"
#include "control.hpp"
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

bool load(const std::string& path, Config& config, std::vector<ServiceSpec>* specs,
          std::vector<std::string>& errors) {
  if (!load_config(path, config, errors)) return false;
  if (specs) *specs = load_services(config.services_dir, errors);
  return errors.empty();
}

int cmd_check_config(const std::string& path) {
  Config config;
  std::vector<ServiceSpec> specs;
  std::vector<std::string> errors;
  if (load(path, config, &specs, errors)) {
    // A probe whose program cannot be found would only fail at run time: say so now.
    std::string base = path.find('/') == std::string::npos ? "." : path.substr(0, path.rfind('/'));
    std::string builtins = config.probes_dir.empty() ? default_probes_dir() : config.probes_dir;
    Key key;
    std::string key_err;
    if (config.peer && !load_peer_key(config.peer->key_file, key, key_err))
      errors.push_back(cat(path, ": ", key_err));
    for (auto& [name, p] : config.probes) {
      std::string exe = Probe::resolve(p.exec[0], base, builtins);
      if (access(exe.c_str(), X_OK) != 0)
        errors.push_back(exe.find('/') == std::string::npos
                             ? cat(path, ": probes.", name, ".exec: ", quote(exe),
                                   " is neither a built-in probe (in ", builtins, ") nor on PATH")
                             : cat(path, ": probes.", name, ".exec: ", exe, " is not executable"));
    }
  }
  if (!errors.empty()) {
    for (auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "vacataire: %zu error%s; nothing was started\n", errors.size(),
                 errors.size() == 1 ? "" : "s");
    return exit_code::config;
  }
  std::string order;
  for (auto& s : specs) order += (order.empty() ? "" : " ") + s.name;
  std::printf("%s: ok (node %s, %zu services, %zu probes)\n", path.c_str(),
              config.node_name.c_str(), specs.size(), config.probes.size());
  if (!specs.empty()) std::printf("start order: %s\n", order.c_str());
  return exit_code::ok;
}

int cmd_run(const std::string& path) {
  // Whatever fds we were started with must not leak into every service.
  close_range(3, ~0U, CLOSE_RANGE_CLOEXEC);
  raise_fd_limit();
  Config config;
  std::vector<ServiceSpec> specs;
  std::vector<std::string> errors;
  if (!load(path, config, &specs, errors)) {
    for (auto& e : errors) log_error("config", e);
    return exit_code::config;
  }
  Supervisor supervisor(std::move(config), std::move(specs));
  return supervisor.run();
}

int call(const std::string& path, const nlohmann::json& request, nlohmann::json& reply) {
  Config config;
  std::vector<std::string> errors;
  if (!load(path, config, nullptr, errors)) {
    for (auto& e : errors) std::fprintf(stderr, "%s\n", e.c_str());
    return exit_code::config;
  }
  std::string err;
  int rc = control_call(config.control_socket, request, reply, err);
  if (rc != exit_code::ok) return fail(rc, err);
  if (!reply.value("ok", false))
    return fail(reply.value("code", exit_code::failed), reply.value("error", "refused"));
  return exit_code::ok;
}

int cmd_status(const std::string& path, bool json) {
  nlohmann::json reply;
  int rc = call(path, {{"cmd", "status"}}, reply);
  if (rc != exit_code::ok) return rc;
  if (json)
    std::printf("%s\n", reply["status"].dump(2).c_str());
  else
    std::fputs(render_status(reply["status"]).c_str(), stdout);
  return exit_code::ok;
}

int cmd_probe(const std::string& path, const std::string& name, bool json) {
  nlohmann::json reply;
  int rc = call(path, {{"cmd", "probe"}, {"name", name}}, reply);
  if (rc != exit_code::ok) return rc;
  if (json) {
    reply.erase("ok");
    std::printf("%s\n", reply.dump(2).c_str());
  } else {
    std::printf("%s: %s (%.1fms) %s\nprobe is now %s\n", name.c_str(),
                reply.value("status", "?").c_str(), reply.value("latency_ms", 0.0),
                reply.value("detail", "").c_str(), reply.value("state", "?").c_str());
  }
  // Scripts can branch on the check itself, like a monitoring plugin.
  std::string status = reply.value("status", "fail");
  return status == "ok"     ? exit_code::ok
         : status == "warn" ? exit_code::failed
                            : exit_code::probe_failed;
}

int cmd_node(const std::string& path, const nlohmann::json& request) {
  nlohmann::json reply;
  int rc = call(path, request, reply);
  if (rc == exit_code::ok) std::printf("%s\n", reply.value("message", "ok").c_str());
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
  nlohmann::json reply;
  int rc = call(path, {{"cmd", "svc"}, {"action", action}, {"name", name}}, reply);
  if (rc == exit_code::ok) std::printf("%s\n", reply.value("message", "ok").c_str());
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
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
  if (*takeover) return cmd_node(config, {{"cmd", "takeover"}});
  if (*release) return cmd_node(config, {{"cmd", "release"}});
  if (*recover) return cmd_node(config, {{"cmd", "recover"}, {"failback", failback}});
  if (*maintenance) return cmd_node(config, {{"cmd", "maintenance"}, {"on", onoff == "on"}});
  if (*keygen) return cmd_keygen(key_file, force);
  if (*check) return cmd_check_config(config);
  return exit_code::usage;
}
