// A real, small file system for full-disk tests: a tmpfs of a given size, mounted on a fresh
// directory and unmounted by the destructor. Mounting needs root (or CAP_SYS_ADMIN); when it
// is not possible, mounted() is false and why() says so, and the test should skip.
#pragma once

#include <filesystem>
#include <string>

#include "support/temp_dir.hpp"

namespace ipcpp::test {

class SmallDisk {
 public:
  // size: as mount(8) takes it, e.g. "64k".
  explicit SmallDisk(const std::string& size);
  ~SmallDisk();
  SmallDisk(const SmallDisk&) = delete;
  SmallDisk& operator=(const SmallDisk&) = delete;

  bool mounted() const { return mounted_; }
  // "cannot mount a 64k tmpfs on DIR: REASON (this test needs root)" when not mounted.
  const std::string& why() const { return why_; }
  // The mount point.
  const std::filesystem::path& path() const { return path_; }

 private:
  TempDir dir_;
  std::filesystem::path path_;
  bool mounted_ = false;
  std::string why_;
};

}  // namespace ipcpp::test
