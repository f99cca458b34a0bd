#include "privileges.hpp"

#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "common/text.hpp"

namespace vac {

std::string linkd_user(const std::string& configured) {
  if (!configured.empty()) return configured;
  return getpwnam("vacataire") ? "vacataire" : "nobody";
}

bool drop_privileges(const std::string& configured, std::string& who, std::string& err) {
  if (geteuid() == 0 || getuid() == 0) {
    who = linkd_user(configured);
    passwd* pw = getpwnam(who.c_str());
    if (!pw)
      return err = configured.empty()
                       ? cat("no user \"vacataire\" nor \"nobody\" to run as; set `user`")
                       : cat("no user ", quote(who), " to run as (the `user` setting)"),
             false;
    uid_t uid = pw->pw_uid;
    gid_t gid = pw->pw_gid;
    if (uid == 0 || gid == 0)
      return err = cat("user ", quote(who), " is root; linkd never runs as root"), false;
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0)
      return err = sys_error(cat("cannot become ", who)), false;
    // Belt and braces: nothing of root may remain, nor be had back.
    uid_t r, e, s;
    gid_t rg, eg, sg;
    if (getresuid(&r, &e, &s) != 0 || getresgid(&rg, &eg, &sg) != 0 || r == 0 || e == 0 || s == 0 ||
        rg == 0 || eg == 0 || sg == 0 || setuid(0) == 0 || getgroups(0, nullptr) != 0)
      return err = cat("still privileged after becoming ", who, "; refusing to go on"), false;
  } else {
    passwd* pw = getpwuid(geteuid());
    who = pw ? pw->pw_name : std::to_string(geteuid());
  }
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    return err = sys_error("PR_SET_NO_NEW_PRIVS"), false;
  // Not dumpable: no core file with the key, no ptrace from other processes of this user.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return err = sys_error("PR_SET_DUMPABLE"), false;
  return true;
}

}  // namespace vac
