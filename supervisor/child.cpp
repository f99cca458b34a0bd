#include "child.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "common/log.hpp"
#include "guard.hpp"
#include "state_dir.hpp"

namespace vac {

namespace {
bool write_str(int fd, std::string_view s) {
  return fd >= 0 && ::write(fd, s.data(), s.size()) == static_cast<ssize_t>(s.size());
}

// Reads a small kernel file (cgroup and /proc files) with read(2): such a file can vanish under
// us (a cgroup removed, a process gone) and the read then fails with ENODEV or ESRCH, which an
// istreambuf_iterator turns into an exception. Here it is just a short or empty answer.
std::string read_small(const std::string& path) {
  std::string text;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return text;
  char buf[4096];
  ssize_t n;
  while (text.size() < (1 << 20) && (n = ::read(fd, buf, sizeof buf)) > 0)
    text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return text;
}

// The cgroup2 mount point, from /proc/self/mountinfo ("" when there is none).
std::string cgroup2_mount() {
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superopts
    auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    if (line.compare(dash + 3, 8, "cgroup2 ") != 0) continue;
    size_t pos = 0;
    for (int field = 0; field < 4 && pos != std::string::npos; ++field)
      pos = line.find(' ', pos + (field ? 1 : 0));
    if (pos == std::string::npos) continue;
    auto end = line.find(' ', pos + 1);
    return line.substr(pos + 1, end - pos - 1);
  }
  return "";
}

// This process's cgroup v2 path ("0::/path" in /proc/self/cgroup).
std::string own_cgroup() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("0::", 0) == 0) return line.substr(3);
  return "";
}

std::string parent_dir(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : p.substr(0, slash);
}

bool usable_dir(const std::string& dir) {
  return access(cat(dir, "/cgroup.procs").c_str(), W_OK) == 0 &&
         access(cat(dir, "/cgroup.kill").c_str(), W_OK) == 0;
}
}  // namespace

// ---- Cgroup ----

Cgroup::Cgroup(ChildTable& table, std::string path, int procs_fd, int kill_fd)
    : table_(table), path_(std::move(path)), procs_fd_(procs_fd), kill_fd_(kill_fd) {}

Cgroup::~Cgroup() {
  if (populated()) kill();
  // Fails while killed members are still exiting: the guard then removes it when it exits.
  bool removed = rmdir(path_.c_str()) == 0;
  table_.cgroup_gone(this, removed);
  if (procs_fd_ >= 0) close(procs_fd_);
  if (kill_fd_ >= 0) close(kill_fd_);
}

bool Cgroup::populated() const {
  std::string events = read_small(cat(path_, "/cgroup.events"));
  return events.find("populated 1") != std::string::npos;
}

void Cgroup::kill() {
  if (!write_str(kill_fd_, "1"))
    log_warn("cgroup", sys_error(cat("write ", path_, "/cgroup.kill")));
}

// ---- Child ----

int Child::add_pipe(int child_fd, bool to_child, std::string& err, int also_child_fd) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return err = sys_error("pipe"), -1;
  int mine = to_child ? p[1] : p[0], theirs = to_child ? p[0] : p[1];
  fcntl(mine, F_SETFL, fcntl(mine, F_GETFL) | O_NONBLOCK);  // only our end: the child's blocks
  pending_pipes_.push_back({child_fd, theirs});
  if (also_child_fd >= 0) pending_pipes_.push_back({also_child_fd, theirs});
  fds_.push_back(mine);
  return mine;
}

void Child::close_pending() {
  std::vector<int> ends;
  for (auto& p : pending_pipes_)
    if (std::find(ends.begin(), ends.end(), p.second) == ends.end()) ends.push_back(p.second);
  for (int fd : ends) close(fd);
  pending_pipes_.clear();
}

bool Child::start(ChildTable& table, SpawnSpec spec, ChildLabel label, OnExit on_exit,
                  std::string& err) {
  if (pid_ > 0 || pgid_ > 0) {
    log_warn(label.owner, "bug: ", label.role, " started while the previous one still runs");
    return err = "a previous process is still running", false;
  }
  for (auto& p : pending_pipes_) spec.fds.push_back(p);
  if (label.cgroup) spec.cgroup_procs_fd = label.cgroup->procs_fd();
  pid_t pid = spawn(spec, err);
  close_pending();
  if (pid <= 0) {
    for (int fd : fds_) close(fd);
    fds_.clear();
    return false;
  }
  table_ = &table;
  pid_ = pid;
  pgid_ = spec.new_session ? pid : 0;
  label_ = std::move(label);
  on_exit_ = std::move(on_exit);
  table.add(this);
  if (pgid_ > 0 && label_.contain) table.group_started(pgid_, label_);
  return true;
}

bool Child::group_alive() const {
  if (pgid_ > 0 && ::kill(-pgid_, 0) == 0) return true;
  if (pid_ > 0) return true;
  return label_.role == "run" && label_.cgroup && label_.cgroup->populated();
}

void Child::signal(int sig) const {
  if (pgid_ > 0)
    ::kill(-pgid_, sig);
  else if (pid_ > 0)
    ::kill(pid_, sig);
  // Members that left the process group (a daemon that called setsid) get it too.
  if (label_.role == "run" && label_.cgroup) {
    std::string procs = read_small(cat(label_.cgroup->path(), "/cgroup.procs"));
    for (const char* p = procs.c_str(); *p;) {
      char* end = nullptr;
      long member = std::strtol(p, &end, 10);
      if (end == p) break;
      // Members still in the group had it already: a second SIGTERM means "now" to some.
      pid_t m = static_cast<pid_t>(member);
      if (m > 0 && (pgid_ <= 0 || getpgid(m) != pgid_)) ::kill(m, sig);
      p = end;
      while (*p == '\n') ++p;
    }
  }
}

void Child::kill() const {
  signal(SIGKILL);
  if (label_.role == "run" && label_.cgroup) label_.cgroup->kill();
}

void Child::close_fd(int fd) {
  auto it = std::find(fds_.begin(), fds_.end(), fd);
  if (it == fds_.end()) return;
  close(fd);
  fds_.erase(it);
}

void Child::release() {
  close_pending();
  for (int fd : fds_) close(fd);
  fds_.clear();
  on_exit_ = nullptr;
  if (table_ && (pid_ > 0 || pgid_ > 0)) {
    kill();
    table_->remove(this, true);
  }
  table_ = nullptr;
  pid_ = pgid_ = 0;
  label_ = ChildLabel{};
}

void Child::abandon() {
  close_pending();
  for (int fd : fds_) close(fd);
  fds_.clear();
  on_exit_ = nullptr;
  if (table_ && pid_ > 0) table_->by_pid_.erase(pid_);
  table_ = nullptr;
  pid_ = pgid_ = 0;
  label_ = ChildLabel{};
}

void Child::reaped(int status) {
  pid_ = 0;
  // The callback may destroy this Child (and its owner): take it out first, touch nothing after.
  OnExit cb = std::move(on_exit_);
  on_exit_ = nullptr;
  if (cb) cb(status);
}

// ---- ChildTable ----

ChildTable::ChildTable(StateDir* state) : state_(state) {}

ChildTable::~ChildTable() {
  for (auto& [pid, c] : by_pid_) c->table_ = nullptr, c->pid_ = c->pgid_ = 0;
  if (!cgroup_base_.empty()) rmdir(cgroup_base_.c_str());
}

void ChildTable::add(Child* c) {
  by_pid_[c->pid_] = c;
}

void ChildTable::remove(Child* c, bool kill_group) {
  if (c->pid_ > 0) by_pid_.erase(c->pid_);
  // The leader (if still running) is reaped later as an unknown pid; its group's record goes
  // once the group is empty.
  if (c->pgid_ > 0) {
    if (kill_group) ::kill(-c->pgid_, SIGKILL);
    if (std::find(draining_.begin(), draining_.end(), c->pgid_) == draining_.end())
      draining_.push_back(c->pgid_);
  }
  check_draining();
}

bool ChildTable::on_reaped(pid_t pid, int status) {
  auto it = by_pid_.find(pid);
  Child* c = it == by_pid_.end() ? nullptr : it->second;
  if (c) by_pid_.erase(it);
  check_draining();
  if (!c) return false;
  c->reaped(status);
  return true;
}

void ChildTable::group_started(pid_t pgid, const ChildLabel& label) {
  groups_[pgid] = label.serves();
  fatal_guard_add(pgid);
  if (guard_) guard_->add_group(pgid, label.serves());
  if (state_ && label.record) state_->record_group(pgid, label.owner, label.role);
}

void ChildTable::group_gone(pid_t pgid) {
  if (!groups_.erase(pgid)) return;
  fatal_guard_remove(pgid);
  if (guard_) guard_->remove_group(pgid);
  if (state_) state_->forget_group(pgid);
}

size_t ChildTable::draining() {
  check_draining();
  return draining_.size();
}

void ChildTable::check_draining() {
  std::erase_if(draining_, [this](pid_t g) {
    if (::kill(-g, 0) == 0 || by_pid_.count(g)) return false;
    group_gone(g);
    return true;
  });
}

std::vector<pid_t> ChildTable::groups() const {
  std::vector<pid_t> out;
  for (auto& [g, serves] : groups_) out.push_back(g);
  return out;
}

bool ChildTable::serves(pid_t pgid) const {
  auto it = groups_.find(pgid);
  return it != groups_.end() && it->second;
}

std::vector<std::string> ChildTable::cgroups() const {
  std::vector<std::string> out;
  for (auto& [path, cg] : cgroups_)
    if (!cg.expired()) out.push_back(path);
  return out;
}

std::string ChildTable::enable_cgroups(std::string& why) {
  const char* forced = std::getenv("VACATAIRE_CGROUP");
  if (forced && std::string_view(forced) == "none") return why = "disabled by VACATAIRE_CGROUP", "";
  std::string mount = cgroup2_mount();
  if (mount.empty()) return why = "no cgroup2 file system is mounted", "";
  std::vector<std::string> candidates;
  if (forced && *forced) {
    candidates.push_back(forced[0] == '/' && std::string_view(forced).rfind(mount, 0) == 0
                             ? std::string(forced)
                             : cat(mount, forced[0] == '/' ? "" : "/", forced));
  } else {
    std::string own = own_cgroup();
    if (own.empty()) return why = "this process is in no cgroup v2", "";
    candidates.push_back(mount + (own == "/" ? "" : own));
    if (own != "/") candidates.push_back(mount + (parent_dir(own) == "/" ? "" : parent_dir(own)));
  }
  for (auto& dir : candidates) {
    std::string base = cat(dir, "/vacataire.", getpid());
    if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
      why = sys_error(cat("mkdir ", base));
      continue;
    }
    if (!usable_dir(base)) {
      why = cat(base, ": no writable cgroup.procs and cgroup.kill (kernel older than 5.14?)");
      rmdir(base.c_str());
      continue;
    }
    cgroup_base_ = base;
    if (guard_) guard_->add_cgroup(base);
    return base;
  }
  return "";
}

std::shared_ptr<Cgroup> ChildTable::cgroup(const std::string& name) {
  if (cgroup_base_.empty()) return nullptr;
  std::string path = cat(cgroup_base_, '/', name);
  if (auto it = cgroups_.find(path); it != cgroups_.end())
    if (auto cg = it->second.lock()) return cg;
  if (mkdir(path.c_str(), 0755) != 0 && errno != EEXIST) {
    log_warn("cgroup", sys_error(cat("mkdir ", path)), "; using its process group only");
    return nullptr;
  }
  int procs = open(cat(path, "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
  int killfd = open(cat(path, "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
  if (procs < 0 || killfd < 0) {
    log_warn("cgroup", sys_error(cat("open ", path)), "; using its process group only");
    if (procs >= 0) close(procs);
    if (killfd >= 0) close(killfd);
    rmdir(path.c_str());
    return nullptr;
  }
  auto cg = std::shared_ptr<Cgroup>(new Cgroup(*this, path, procs, killfd));
  cgroups_[path] = cg;
  fatal_guard_add_cgroup(killfd);
  if (guard_) guard_->add_cgroup(path);
  return cg;
}

void ChildTable::cgroup_gone(Cgroup* cg, bool removed) {
  fatal_guard_remove_cgroup(cg->kill_fd_);
  cgroups_.erase(cg->path_);
  if (removed && guard_) guard_->remove_cgroup(cg->path_);
}

}  // namespace vac
