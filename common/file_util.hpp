// Reading the small files an operator writes (the config, knob files, the peer key) without
// trusting them: a FIFO or a device must not hang or flood the reader, a huge file is refused
// before it is read, and every refusal says which file and why in words.
#pragma once

#include <sys/stat.h>
#include <string>
#include <string_view>

namespace vac {

struct ReadOptions {
  bool no_follow = false;  // refuse a symlink as the file itself (O_NOFOLLOW)
};

// Reads a regular file of at most max bytes. Opens with O_NONBLOCK, so a FIFO is refused
// instead of waited on. On failure err says why (without the path: callers name the file).
// st, when given, receives the file's stat.
bool read_small_file(const std::string& path, size_t max, std::string& out, std::string& err,
                     ReadOptions options = {}, struct stat* st = nullptr);

// errno of a failed open/stat of an operator's path, in words: ELOOP becomes "a symlink loop
// (too many levels of symbolic links)" rather than strerror's terse text.
std::string path_error(int errnum);

// Whether bytes are well-formed UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF).
bool valid_utf8(std::string_view bytes);

}  // namespace vac
