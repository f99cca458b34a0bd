// Every process the supervisor starts (a service's run, finish, ready and log/run, a probe, the
// peer link, a notify hook) is a Child: one object that owns the process's pid, its process
// group (and its service's cgroup, where cgroup v2 is available), the parent's ends of its pipes
// and the callback for its exit. A Child has exactly one owner. Destroying it, or calling
// release(), kills what is left of its group and cancels the callback, so no exit callback ever
// runs on an owner that is gone; the process is still reaped, and its record forgotten once its
// group is empty.
//
// ChildTable is the supervisor's registry behind every Child: the pid -> Child map that libev's
// child watcher (waitpid(-1)) feeds, the state directory's group records, the cgroups, and the
// containment of everything it started (see guard.hpp): the vacataire-guard process and the
// in-process last-resort table that kill every group and cgroup if the supervisor dies.
#pragma once

#include <sys/types.h>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "spawn.hpp"

namespace vac {

class ChildTable;
class StateDir;
class GuardLink;

// One cgroup v2 directory for one service, created under the supervisor's base cgroup. Shared by
// the service's run, finish and ready children, so a `run` that double-forks out of its process
// group is still contained, and stopped with cgroup.kill. Removed when the last holder goes.
class Cgroup {
 public:
  ~Cgroup();
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  const std::string& path() const { return path_; }  // absolute, under the cgroup2 mount
  bool populated() const;                            // any process left in it
  void kill();                                       // SIGKILL to every member (cgroup.kill)
  int procs_fd() const { return procs_fd_; }         // cgroup.procs, O_WRONLY|O_CLOEXEC

 private:
  friend class ChildTable;
  Cgroup(ChildTable& table, std::string path, int procs_fd, int kill_fd);
  ChildTable& table_;
  std::string path_;
  int procs_fd_ = -1, kill_fd_ = -1;
};

// Who a child is, for logs, the state directory's records and the successor's clean-up.
struct ChildLabel {
  ChildLabel() = default;
  ChildLabel(std::string owner_, std::string role_, bool record_ = true)
      : owner(std::move(owner_)), role(std::move(role_)), record(record_) {}

  std::string owner;         // the service or probe name, "linkd", "notify"
  std::string role = "run";  // run, finish, ready, log, probe, linkd, hook
  bool record = true;        // write state/groups/PGID, so a successor stops it after a crash
  bool contain = true;       // killed by the guards if the supervisor dies (not the guard)
  // Part of a service (run, finish, ready): also killed by the guard's fence, when the
  // supervisor freezes in a pair. A probe, linkd or a logger serves nobody.
  bool serves() const { return role == "run" || role == "finish" || role == "ready"; }
  std::shared_ptr<Cgroup> cgroup;  // the service's cgroup, or none: process group only
};

class Child {
 public:
  using OnExit = std::function<void(int wait_status)>;

  Child() = default;
  ~Child() { release(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // A pipe to be given to the next start(): its child end becomes child_fd in the child, its
  // parent end is returned (close-on-exec, non-blocking) and owned by this Child until the next
  // release(). to_child: the parent writes (the child's stdin); otherwise the parent reads.
  // also_child_fd, when set, is a second fd in the child for the same end (stderr joining
  // stdout). Returns -1 (err set) when no pipe could be made.
  int add_pipe(int child_fd, bool to_child, std::string& err, int also_child_fd = -1);

  // Starts the process: spec.fds plus the pipes added above. Every failure of setting the child
  // up is reported here, before anything of the program runs; then false, err set, nothing
  // running, and the pipes closed. on_exit(status) is called once when the leader is reaped,
  // unless the Child was released or destroyed first. A Child whose previous process was not
  // released yet refuses (an owner's bug, logged): one Child, one process at a time.
  bool start(ChildTable& table, SpawnSpec spec, ChildLabel label, OnExit on_exit, std::string& err);

  bool running() const { return pid_ > 0; }  // the leader has not been reaped
  pid_t pid() const { return pid_; }         // 0 when not running
  // The process group: kept after the leader is reaped, until release(), so what the leader
  // left behind can still be signalled and waited for.
  pid_t pgid() const { return pgid_; }
  bool group_alive() const;    // any member of the group (or of the cgroup, for run) left
  void signal(int sig) const;  // the whole group
  void kill() const;           // SIGKILL the group, and the cgroup for a service's run

  // Closes one of the pipes' parent ends now (e.g. a child's stdin, to say "end").
  void close_fd(int fd);

  // Kills what is left of the group, cancels the exit callback and closes the pipes. The
  // table still reaps the leader and forgets the group's record once it is empty.
  void release();
  // Lets go without killing: the process keeps running, unwatched (the guard at a clean exit,
  // which ends by itself when its pipe closes).
  void abandon();

 private:
  friend class ChildTable;
  void reaped(int status);  // from the table

  ChildTable* table_ = nullptr;
  pid_t pid_ = 0, pgid_ = 0;
  ChildLabel label_;
  OnExit on_exit_;
  void close_pending();
  std::vector<std::pair<int, int>> pending_pipes_;  // (child fd, child end) until start()
  std::vector<int> fds_;                            // the parent's ends
};

class ChildTable {
 public:
  explicit ChildTable(StateDir* state = nullptr);
  ~ChildTable();
  ChildTable(const ChildTable&) = delete;
  ChildTable& operator=(const ChildTable&) = delete;

  // libev's child watcher calls this for every reaped pid. Returns false for a pid that no
  // Child owns (an adopted orphan, or a released child).
  bool on_reaped(pid_t pid, int status);

  // Children whose leader has not been reaped, and released groups not yet empty.
  size_t live() const { return by_pid_.size(); }
  size_t draining();  // (checks them first: a member may have been reaped by someone else)

  // cgroup v2: finds the mount and a base directory the supervisor may create cgroups in (its
  // own cgroup, else that cgroup's parent; $VACATAIRE_CGROUP overrides, "none" disables).
  // Returns the base, or "" (and why) when only process groups can be used.
  std::string enable_cgroups(std::string& why);
  const std::string& cgroup_base() const { return cgroup_base_; }
  // A cgroup for one service under the base, or nullptr when cgroups are not in use.
  std::shared_ptr<Cgroup> cgroup(const std::string& name);

  // The guard process that kills every group and cgroup if the supervisor dies (guard.hpp).
  void set_guard(GuardLink* guard) { guard_ = guard; }
  // Everything to contain now: process groups not known empty, and cgroups.
  std::vector<pid_t> groups() const;
  bool serves(pid_t pgid) const;  // a group of a service's processes (ChildLabel::serves)
  std::vector<std::string> cgroups() const;

 private:
  friend class Child;
  friend class Cgroup;
  void add(Child* c);
  void remove(Child* c, bool kill_group);
  void group_started(pid_t pgid, const ChildLabel& label);
  void group_gone(pid_t pgid);
  void check_draining();
  void cgroup_gone(Cgroup* cg, bool removed);

  StateDir* state_;
  GuardLink* guard_ = nullptr;
  std::unordered_map<pid_t, Child*> by_pid_;
  std::map<pid_t, bool> groups_;  // pgid -> a service's (fenced too), until known empty
  std::vector<pid_t> draining_;   // released groups not yet empty
  std::string cgroup_base_;
  std::map<std::string, std::weak_ptr<Cgroup>> cgroups_;
};

}  // namespace vac
