// The one way the supervisor's loop writes to a pipe or socket it does not control (its own
// stderr, a probe's stdin, the guard's pipe; made to serve control replies and linkd lines
// too): never blocking, never more than a fixed number of bytes queued. A message that does not
// fit is dropped whole and counted, so a stalled reader costs bounded memory and some lost
// lines, never a frozen loop.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <ev++.h>

namespace vac {

class BoundedWriter {
 public:
  explicit BoundedWriter(size_t capacity) : capacity_(capacity) {
    io_.set<BoundedWriter, &BoundedWriter::on_writable>(this);
  }
  ~BoundedWriter() { io_.stop(); }
  BoundedWriter(const BoundedWriter&) = delete;
  BoundedWriter& operator=(const BoundedWriter&) = delete;

  // Writes go to fd from now on (made non-blocking) and the queue starts empty. by_send: a
  // socket shared with others, written with send(MSG_DONTWAIT) so its flags stay as they are.
  // owned: closed by detach().
  void attach(int fd, bool by_send = false, bool owned = false);
  void detach();
  int fd() const { return fd_; }

  // Queues a whole message, or drops it (false) when it does not fit.
  bool write(std::string_view message);
  // Writes what can be written now; true when the queue is empty.
  bool flush();

  size_t queued() const { return buf_.size() - off_; }
  uint64_t dropped_messages() const { return dropped_messages_; }
  uint64_t dropped_bytes() const { return dropped_bytes_; }
  // The last write error other than "would block" (0 when none): the reader has gone.
  int error() const { return error_; }

 private:
  void on_writable(ev::io&, int);
  void write_now();

  size_t capacity_;
  int fd_ = -1;
  bool by_send_ = false, owned_ = false;
  std::string buf_;
  size_t off_ = 0;
  uint64_t dropped_messages_ = 0, dropped_bytes_ = 0;
  int error_ = 0;
  ev::io io_;
};

}  // namespace vac
