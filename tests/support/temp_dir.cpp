#include "support/temp_dir.hpp"

#include <cerrno>
#include <cstdlib>
#include <stdlib.h>
#include <string>
#include <system_error>

namespace ipcpp::test {

TempDir::TempDir() {
  const char* tmpdir = std::getenv("TMPDIR");
  const std::filesystem::path base =
      tmpdir != nullptr && *tmpdir != '\0' ? std::filesystem::path(tmpdir) : "/tmp";
  std::string name = (std::filesystem::absolute(base) / "ipcpp-test-XXXXXX").string();
  if (::mkdtemp(name.data()) == nullptr) {
    throw std::system_error(errno, std::system_category(), "cannot create directory " + name);
  }
  path_ = name;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

}  // namespace ipcpp::test
