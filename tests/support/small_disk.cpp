#include "support/small_disk.hpp"

#include <cerrno>
#include <cstring>
#include <sys/mount.h>

namespace ipcpp::test {

SmallDisk::SmallDisk(const std::string& size) : path_(dir_.path() / "disk") {
  std::filesystem::create_directory(path_);
  const std::string options = "size=" + size + ",mode=0700";
  if (::mount("tmpfs", path_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, options.c_str()) == 0) {
    mounted_ = true;
  } else {
    why_ = "cannot mount a " + size + " tmpfs on " + path_.string() + ": " + std::strerror(errno) +
           " (this test needs root)";
  }
}

SmallDisk::~SmallDisk() {
  if (mounted_) ::umount2(path_.c_str(), MNT_DETACH);
}

}  // namespace ipcpp::test
