#include "writer.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cerrno>

namespace vac {

void BoundedWriter::attach(int fd, bool by_send, bool owned) {
  detach();
  fd_ = fd;
  by_send_ = by_send;
  owned_ = owned;
  if (fd_ >= 0 && !by_send_) fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

void BoundedWriter::detach() {
  io_.stop();
  if (owned_ && fd_ >= 0) close(fd_);
  owned_ = false;
  fd_ = -1;
  buf_.clear();
  off_ = 0;
  error_ = 0;
}

bool BoundedWriter::write(std::string_view message) {
  if (fd_ < 0 || error_ != 0 || queued() + message.size() > capacity_) {
    ++dropped_messages_;
    dropped_bytes_ += message.size();
    return false;
  }
  if (off_ > 0 && (off_ == buf_.size() || off_ > capacity_)) buf_.erase(0, off_), off_ = 0;
  buf_.append(message);
  if (!io_.is_active()) write_now();
  return true;
}

bool BoundedWriter::flush() {
  write_now();
  return queued() == 0;
}

void BoundedWriter::write_now() {
  while (queued() > 0 && fd_ >= 0) {
    ssize_t n = by_send_ ? ::send(fd_, buf_.data() + off_, queued(), MSG_DONTWAIT | MSG_NOSIGNAL)
                         : ::write(fd_, buf_.data() + off_, queued());
    if (n > 0) {
      off_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!io_.is_active()) io_.start(fd_, ev::WRITE);
      return;
    }
    // EPIPE and the like: the reader is gone; what is queued can never be delivered.
    error_ = n < 0 ? errno : EIO;
    dropped_messages_ += 1;
    dropped_bytes_ += queued();
    buf_.clear();
    off_ = 0;
    break;
  }
  io_.stop();
  if (off_ > 0 && off_ == buf_.size()) buf_.clear(), off_ = 0;
  // Do not let a long-lived buffer keep the memory of its largest burst.
  if (buf_.empty() && buf_.capacity() > 65536) buf_.shrink_to_fit();
}

void BoundedWriter::on_writable(ev::io&, int) {
  write_now();
}

}  // namespace vac
