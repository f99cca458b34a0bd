#include <doctest/doctest.h>

#include <fcntl.h>
#include <unistd.h>
#include <vector>

#include "common/line_reader.hpp"

using namespace vac;

namespace {
struct Collect {
  std::vector<std::pair<std::string, bool>> lines;
  LineReader::OnLine fn() {
    return [this](std::string_view l, bool t) { lines.emplace_back(std::string(l), t); };
  }
};
}  // namespace

TEST_CASE("lines split across chunks are joined") {
  LineReader r(100);
  Collect c;
  r.feed("hel", c.fn());
  CHECK(c.lines.empty());
  r.feed("lo\nwor", c.fn());
  r.feed("ld\n\nlast", c.fn());
  REQUIRE(c.lines.size() == 3);
  CHECK(c.lines[0].first == "hello");
  CHECK(c.lines[1].first == "world");
  CHECK(c.lines[2].first == "");
  r.finish(c.fn());
  REQUIRE(c.lines.size() == 4);
  CHECK(c.lines[3].first == "last");
}

TEST_CASE("an overlong line is cut at the cap and the rest dropped up to its newline") {
  LineReader r(8);
  Collect c;
  r.feed("0123456789abcdef", c.fn());
  REQUIRE(c.lines.size() == 1);
  CHECK(c.lines[0] == std::pair<std::string, bool>{"01234567", true});
  r.feed("more of the same line", c.fn());
  CHECK(c.lines.size() == 1);
  CHECK(r.buffered() == 0);
  r.feed("\nok\n", c.fn());
  REQUIRE(c.lines.size() == 2);
  CHECK(c.lines[1] == std::pair<std::string, bool>{"ok", false});
}

TEST_CASE("memory stays bounded when a writer never sends a newline") {
  LineReader r(1024);
  Collect c;
  std::string flood(4096, 'x');
  for (int i = 0; i < 1000; ++i) r.feed(flood, c.fn());
  CHECK(r.buffered() <= 1024);
  CHECK(c.lines.size() == 1);
}

TEST_CASE("read_from reads a pipe until it would block, then reports end of stream") {
  int fds[2];
  REQUIRE(pipe2(fds, O_NONBLOCK) == 0);
  LineReader r(100);
  Collect c;
  REQUIRE(write(fds[1], "a\nb\nc", 5) == 5);
  CHECK(r.read_from(fds[0], c.fn()) == LineReader::ReadResult::again);
  CHECK(c.lines.size() == 2);
  close(fds[1]);
  CHECK(r.read_from(fds[0], c.fn()) == LineReader::ReadResult::eof);
  r.finish(c.fn());
  CHECK(c.lines.size() == 3);
  close(fds[0]);
}
