// A temporary directory for one test.
#pragma once

#include <filesystem>

namespace ipcpp::test {

// Creates a fresh directory (mode 0700) with mkdtemp under $TMPDIR, or /tmp if TMPDIR is unset
// or empty, named "ipcpp-test-XXXXXX". The destructor removes it recursively, ignoring errors.
class TempDir {
 public:
  // Throws std::system_error naming the template if the directory cannot be created.
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Returns the directory's absolute path.
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

}  // namespace ipcpp::test
