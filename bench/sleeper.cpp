// The idle service of the benchmarks: announces "NAME PID" on ../fifo (NAME is its service
// directory), then sleeps until killed. It is the `run` of every benchmarked service, for
// vacataire, runsv and s6-supervise alike.
#include <fcntl.h>
#include <unistd.h>
#include <climits>
#include <cstdio>
#include <cstring>

int main() {
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) return 111;
  const char* name = std::strrchr(cwd, '/');
  name = name ? name + 1 : cwd;
  int fd = open("../fifo", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return 111;
  dprintf(fd, "%s %d\n", name, static_cast<int>(getpid()));
  close(fd);
  for (;;) pause();
}
