// linkd gives up root for good once its sockets are bound: a bug in a packet parser must not
// be a root bug, nor a way to read the key from another process of the same user.
#pragma once

#include <string>

namespace vac {

// The user linkd runs as: `user` if set (it must exist), else `vacataire` if that system user
// exists, else `nobody`.
std::string linkd_user(const std::string& configured);

// As root: clears supplementary groups, becomes that user (real, effective and saved ids),
// and refuses to go on if uid or gid 0 can still be had back. Whoever it runs as: no new
// privileges by exec, not dumpable nor traceable by its own user. who names the user.
bool drop_privileges(const std::string& configured, std::string& who, std::string& err);

}  // namespace vac
