#include "line_reader.hpp"

#include <unistd.h>
#include <cerrno>

namespace vac {

void LineReader::feed(std::string_view data, const OnLine& on_line) {
  while (!data.empty()) {
    auto nl = data.find('\n');
    std::string_view chunk = data.substr(0, nl);
    if (skipping_) {
      if (nl != std::string_view::npos) skipping_ = false;
    } else if (buf_.size() + chunk.size() > max_line_) {
      buf_.append(chunk.substr(0, max_line_ - buf_.size()));
      on_line(buf_, true);
      buf_.clear();
      skipping_ = nl == std::string_view::npos;
    } else if (nl == std::string_view::npos) {
      buf_.append(chunk);
    } else if (buf_.empty()) {
      on_line(chunk, false);
    } else {
      buf_.append(chunk);
      on_line(buf_, false);
      buf_.clear();
    }
    if (nl == std::string_view::npos) break;
    data.remove_prefix(nl + 1);
  }
}

void LineReader::finish(const OnLine& on_line) {
  if (!buf_.empty() && !skipping_) on_line(buf_, false);
  reset();
}

LineReader::ReadResult LineReader::read_from(int fd, const OnLine& on_line, size_t max_bytes) {
  char chunk[16384];
  size_t total = 0;
  while (total < max_bytes) {
    ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      total += static_cast<size_t>(n);
      feed(std::string_view(chunk, static_cast<size_t>(n)), on_line);
      continue;
    }
    if (n == 0) return ReadResult::eof;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return ReadResult::again;
    return ReadResult::error;
  }
  return ReadResult::again;
}

}  // namespace vac
