#include "profiles/secure_file.hpp"

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>
#include <utility>

namespace ipcpp::profiles {
namespace {

namespace fs = std::filesystem;

constexpr mode_t kPrivateMode = 0600;

[[noreturn]] void throw_write_error(int err, const fs::path& path) {
  throw std::system_error(err, std::system_category(), "cannot write " + path.string());
}

// A temporary file beside the target, created with O_EXCL and mode 0600. The destructor closes
// it and removes it unless it was published with rename_to or link_to.
class TemporaryFile {
 public:
  // Throws std::system_error naming `target` if the file cannot be created.
  explicit TemporaryFile(const fs::path& target) : target_(target) {
    const fs::path dir = target.parent_path().empty() ? fs::path(".") : target.parent_path();
    // Appended piece by piece: g++ 12 at -O2 warns falsely (-Wrestrict, GCC bug 105329) on
    // "literal" + std::string&&.
    std::string name = ".";
    name += target.filename().string();
    name += ".tmp-XXXXXX";
    path_ = (dir / name).string();
    // mkostemp opens with O_RDWR | O_CREAT | O_EXCL and mode 0600 (minus the umask).
    fd_ = ::mkostemp(path_.data(), O_CLOEXEC);
    if (fd_ < 0) throw_write_error(errno, target_);
    // Make it exactly 0600 whatever the umask; it was never more permissive than that.
    if (::fchmod(fd_, kPrivateMode) != 0) fail(errno);
  }
  TemporaryFile(const TemporaryFile&) = delete;
  TemporaryFile& operator=(const TemporaryFile&) = delete;
  ~TemporaryFile() {
    if (fd_ >= 0) ::close(fd_);
    if (!published_) ::unlink(path_.c_str());
  }

  // Writes all of `text`, syncs and closes the file. Throws std::system_error on failure.
  void write_and_close(std::string_view text) {
    const char* data = text.data();
    std::size_t left = text.size();
    while (left > 0) {
      const ssize_t n = ::write(fd_, data, left);
      if (n < 0) {
        if (errno == EINTR) continue;
        fail(errno);
      }
      data += n;
      left -= static_cast<std::size_t>(n);
    }
    if (::fsync(fd_) != 0) fail(errno);
    const int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) fail(errno);
  }

  // Renames the file over the target. Throws std::system_error on failure.
  void rename_to_target() {
    if (::rename(path_.c_str(), target_.c_str()) != 0) fail(errno);
    published_ = true;
  }

  // Links the file as the target unless the target exists, then removes the temporary name.
  // Returns false if the target exists. Throws std::system_error on any other failure.
  bool link_to_target() {
    if (::link(path_.c_str(), target_.c_str()) != 0) {
      if (errno == EEXIST) return false;
      fail(errno);
    }
    // The content is now reachable as the target; the destructor removes the temporary name.
    return true;
  }

 private:
  [[noreturn]] void fail(int err) const { throw_write_error(err, target_); }

  fs::path target_;
  std::string path_;
  int fd_ = -1;
  bool published_ = false;
};

// Syncs the directory of `path` so that a rename or link in it is durable.
// Throws std::system_error naming `path` if the sync fails; a file system that cannot sync
// directories (EINVAL) is not an error.
void sync_directory_of(const fs::path& path) {
  const fs::path dir = path.parent_path().empty() ? fs::path(".") : path.parent_path();
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_write_error(errno, path);
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && err != EINVAL) throw_write_error(err, path);
}

}  // namespace

void write_private_file(const fs::path& path, std::string_view text) {
  {
    TemporaryFile file(path);
    file.write_and_close(text);
    file.rename_to_target();
  }
  sync_directory_of(path);
}

bool write_private_file_if_absent(const fs::path& path, std::string_view text) {
  std::error_code ec;
  if (fs::exists(fs::symlink_status(path, ec))) return false;
  {
    TemporaryFile file(path);
    file.write_and_close(text);
    if (!file.link_to_target()) return false;
  }
  sync_directory_of(path);
  return true;
}

}  // namespace ipcpp::profiles
