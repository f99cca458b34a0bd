#include "node_store.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <cerrno>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/text.hpp"

namespace vac {

namespace {
bool parse_record(const std::string& text, NodeRecord& r, std::string& err) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return err = "not a JSON object", false;
  auto s = j.find("state");
  auto e = j.find("epoch");
  if (s == j.end() || !s->is_string() || !parse_node_state(s->get<std::string>(), r.state))
    return err = "no valid \"state\"", false;
  if (e == j.end() || !e->is_number_unsigned()) return err = "no valid \"epoch\"", false;
  r.epoch = e->get<uint64_t>();
  return true;
}

bool read_file(const std::string& path, std::string& text) {
  std::ifstream in(path);
  if (!in) return false;
  std::stringstream ss;
  ss << in.rdbuf();
  text = ss.str();
  return true;
}
}  // namespace

NodeRecord load_node_record(const std::string& dir, std::string& note) {
  NodeRecord r;
  std::string text, err, path = dir + "/node.json";
  if (!read_file(path, text)) {
    note =
        errno == ENOENT ? "no node record yet: first start" : sys_error(cat("cannot read ", path));
    if (errno != ENOENT) r.state = NodeState::failed;
    return r;
  }
  if (parse_record(text, r, err)) {
    note.clear();
    return r;
  }
  note = cat(path, " is corrupt (", err, "): starting failed; check it, then `vacataire recover`");
  NodeRecord prev;
  std::string prev_text, prev_err;
  if (read_file(dir + "/node.json.prev", prev_text) && parse_record(prev_text, prev, prev_err))
    r.epoch = prev.epoch;
  r.state = NodeState::failed;
  return r;
}

bool save_node_record(const std::string& dir, const NodeRecord& r, std::string& err) {
  std::string path = dir + "/node.json", tmp = path + ".tmp";
  std::string text =
      nlohmann::json{{"state", to_string(r.state)}, {"epoch", r.epoch}}.dump() + "\n";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return err = sys_error(cat("cannot write ", tmp)), false;
  bool ok =
      write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && fsync(fd) == 0;
  if (!ok) err = sys_error(cat("cannot write ", tmp));
  close(fd);
  if (!ok) return false;
  // Keep the previous record for a bad day; there is none before the first save. (link's result
  // must be looked at: glibc's _FORTIFY_SOURCE, on in Debian's flags, warns otherwise.)
  std::string prev_tmp = path + ".prev.tmp";
  unlink(prev_tmp.c_str());  // left by a crash between link and rename
  if (link(path.c_str(), prev_tmp.c_str()) == 0) rename(prev_tmp.c_str(), (path + ".prev").c_str());
  if (rename(tmp.c_str(), path.c_str()) != 0)
    return err = sys_error(cat("cannot rename ", tmp)), false;
  int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  return true;
}

}  // namespace vac
