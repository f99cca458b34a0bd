// vacataire-linkd: reads its configuration on the first stdin line, binds, drops privileges,
// then runs the peer link until stdin closes or SIGTERM. Started and restarted by
// `vacataire run`; it starts in milliseconds, well within dead_after.
#include <unistd.h>
#include <csignal>
#include <string>

#include <sodium.h>

#include "common/link_messages.hpp"
#include "common/log.hpp"
#include "linkd.hpp"
#include "privileges.hpp"

namespace {
void say(const std::string& line) {
  for (size_t off = 0; off < line.size();) {
    ssize_t n = write(1, line.data() + off, line.size() - off);
    if (n <= 0) return;
    off += static_cast<size_t>(n);
  }
}

// The first line, read byte by byte so nothing after it is consumed; wiped by the caller.
bool first_line(std::string& line) {
  char c;
  while (line.size() < 65536) {
    ssize_t n = read(0, &c, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    if (c == '\n') return true;
    line += c;
  }
  return false;
}
}  // namespace

int main() {
  using namespace vac;
  signal(SIGPIPE, SIG_IGN);
  if (sodium_init() < 0) {
    say(encode_error_line("libsodium failed to initialise"));
    return 111;
  }
  std::string line, err;
  line.reserve(65536);  // no reallocation leaves a copy of the key behind
  bool got = first_line(line);
  std::optional<ToLinkd> m;
  if (got) m = decode_to_linkd(line, err);
  sodium_memzero(line.data(), line.size());
  if (!m || m->kind != ToLinkd::config) {
    say(encode_error_line(!got ? "no configuration line on standard input"
                          : m  ? "the first line must be the configuration"
                               : err));
    return 2;
  }
  std::string who;
  {
    LinkDaemon daemon(std::move(m->settings));
    if (!daemon.load_key(err) || !daemon.bind_links(err) ||
        !drop_privileges(daemon.settings().user, who, err)) {
      say(encode_error_line(err));
      return 2;
    }
    daemon.start();
    ev::get_default_loop().run(0);
  }  // the daemon's key is wiped here
  return 0;
}
