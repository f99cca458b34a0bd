// The node's durable record (state dir, node.json): the sticky state and the epoch. Written
// crash-safely (a temporary file, fsync, rename, fsync of the directory) before services
// start or stop, so a kill -9 at any moment leaves the old record or the new one, never a
// mix. A missing record is a first start; a corrupt one is reported and read conservatively.
#pragma once

#include <string>

#include "node.hpp"

namespace vac {

struct NodeRecord {
  NodeState state = NodeState::passive;
  uint64_t epoch = 0;
};

// Returns the record. note is empty when it was read cleanly; otherwise it says what was
// wrong: missing (first start: passive, epoch 0) or corrupt, an epoch above kEpochMax included
// (failed, so that an operator looks
// before this node serves again; the epoch of the previous record file is kept if readable).
NodeRecord load_node_record(const std::string& state_dir, std::string& note);
// Writes the record durably; false with err saying what failed (e.g. "cannot write
// /var/lib/vacataire/node.json.tmp: Read-only file system").
bool save_node_record(const std::string& state_dir, const NodeRecord& r, std::string& err);

}  // namespace vac
