#include "install_dirs.hpp"

#include <sys/stat.h>
#include <unistd.h>

namespace vac {

std::string executable_dir() {
  char self[4096];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return "";
  std::string path(self, static_cast<size_t>(n));
  return path.substr(0, path.rfind('/'));
}

std::string helpers_dir() {
  std::string dir = executable_dir();
  struct stat st {};
  if (!dir.empty() && stat((dir + "/CMakeFiles").c_str(), &st) == 0 && S_ISDIR(st.st_mode))
    return dir;
  return VACATAIRE_LIBEXEC_DIR;
}

std::string helper_executable(const std::string& name) {
  return helpers_dir() + "/" + name;
}

std::string default_probes_dir() {
  return helpers_dir() + "/probes";
}

}  // namespace vac
