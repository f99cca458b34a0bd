// vacataire-linkd: reads its configuration on the first stdin line, binds, drops privileges,
// then runs the peer link until stdin closes. Started and restarted by `vacataire run`.
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <string>

#include <sodium.h>

#include "common/log.hpp"
#include "linkd.hpp"

int main() {
  using namespace vac;
  signal(SIGPIPE, SIG_IGN);
  if (sodium_init() < 0) {
    std::fprintf(stderr, "vacataire-linkd: libsodium failed to initialise\n");
    return 111;
  }
  std::string line;
  char c;
  while (read(0, &c, 1) == 1 && c != '\n' && line.size() < 65536) line += c;
  LinkdConfig config;
  std::string err;
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.contains("config") || !parse_linkd_config(j["config"], config, err)) {
    std::printf(
        "%s\n",
        nlohmann::json{{"error", err.empty() ? "no configuration line" : err}}.dump().c_str());
    return 2;
  }
  LinkDaemon daemon(std::move(config));
  if (!daemon.bind_links(err) || !daemon.drop_privileges(err)) {
    std::printf("%s\n", nlohmann::json{{"error", err}}.dump().c_str());
    std::fflush(stdout);
    return 2;
  }
  daemon.start();
  ev::get_default_loop().run(0);
  return 0;
}
