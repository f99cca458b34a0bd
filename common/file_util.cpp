#include "file_util.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include "text.hpp"

namespace vac {

std::string path_error(int errnum) {
  if (errnum == ELOOP) return "a symlink loop (too many levels of symbolic links)";
  return std::strerror(errnum);
}

bool read_small_file(const std::string& path, size_t max, std::string& out, std::string& err,
                     ReadOptions options, struct stat* st_out) {
  int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (options.no_follow ? O_NOFOLLOW : 0);
  int fd = open(path.c_str(), flags);
  if (fd < 0) {
    if (errno == ELOOP && options.no_follow)
      err = "is a symbolic link (it must be the file itself)";
    else
      err = path_error(errno);
    return false;
  }
  struct stat st {};
  bool ok = false;
  if (fstat(fd, &st) != 0) {
    err = path_error(errno);
  } else if (S_ISDIR(st.st_mode)) {
    err = "is a directory, not a file";
  } else if (!S_ISREG(st.st_mode)) {
    err = S_ISFIFO(st.st_mode) ? "is a FIFO, not a regular file" : "is not a regular file";
  } else if (static_cast<size_t>(st.st_size) > max) {
    err = cat("is too large (", st.st_size, " bytes; at most ", max, ")");
  } else {
    // The size may change under us: read at most max + 1 bytes and refuse if there were more.
    out.clear();
    char buf[8192];
    ok = true;
    while (ok) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        err = path_error(errno);
        ok = false;
      } else if (n == 0) {
        break;
      } else if (out.size() + static_cast<size_t>(n) > max) {
        err = cat("is too large (more than ", max, " bytes)");
        ok = false;
      } else {
        out.append(buf, static_cast<size_t>(n));
      }
    }
  }
  close(fd);
  if (ok && st_out) *st_out = st;
  return ok;
}

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    unsigned cp;
    if (c >= 0xC2 && c <= 0xDF)
      n = 1, cp = c & 0x1F;
    else if (c >= 0xE0 && c <= 0xEF)
      n = 2, cp = c & 0x0F;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 3, cp = c & 0x07;
    else
      return false;
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      unsigned char cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n + 1;
  }
  return true;
}

}  // namespace vac
