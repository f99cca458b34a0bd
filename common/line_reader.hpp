// The one line reader for every child stream (services, probes, linkd, control clients).
// It frames bytes into lines with a hard cap, so a child that floods or never sends a newline
// costs bounded memory; the caller decides what an overlong line means (a truncated log line,
// or a probe failure).
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace vac {

class LineReader {
 public:
  // truncated is true for the first max_line bytes of a longer line; the rest of that line is
  // dropped up to its newline.
  using OnLine = std::function<void(std::string_view line, bool truncated)>;

  explicit LineReader(size_t max_line = 4096) : max_line_(max_line) {}

  void feed(std::string_view data, const OnLine& on_line);
  // End of stream: delivers a last line that had no newline.
  void finish(const OnLine& on_line);

  enum class ReadResult { again, eof, error };
  // Reads a non-blocking fd until it would block (at most max_bytes per call, so one flooding
  // child cannot starve the loop) and feeds what it read.
  ReadResult read_from(int fd, const OnLine& on_line, size_t max_bytes = 65536);

  size_t buffered() const { return buf_.size(); }
  void reset() { buf_.clear(), skipping_ = false; }

 private:
  size_t max_line_;
  std::string buf_;
  bool skipping_ = false;
};

}  // namespace vac
