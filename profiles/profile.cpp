#include "profiles/profile.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>

namespace ipcpp::profiles {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kProfilePrefix = "profile_";
constexpr mode_t kSecurityDirMode = 0700;
constexpr mode_t kPidDirMode = 0700;
constexpr mode_t kLogDirMode = 0755;

// Returns `p` made absolute and lexically normal, without a trailing separator (like Python's
// os.path.abspath, which IPython uses).
fs::path absolute_dir(const fs::path& p) {
  fs::path result = fs::absolute(p).lexically_normal();
  if (!result.has_filename() && result.has_relative_path()) result = result.parent_path();
  return result;
}

const char* non_empty_env(const char* name) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : nullptr;
}

// Creates directory `dir` if needed and gives it exactly `mode`.
// Throws std::system_error naming `dir` if it cannot be created, is not a directory, or its
// mode cannot be set.
void make_private_dir(const fs::path& dir, mode_t mode) {
  if (::mkdir(dir.c_str(), mode) != 0 && errno != EEXIST) {
    throw std::system_error(errno, std::system_category(),
                            "cannot create directory " + dir.string());
  }
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) {
    throw std::system_error(errno, std::system_category(),
                            "cannot create directory " + dir.string());
  }
  if (!S_ISDIR(st.st_mode)) {
    throw std::system_error(ENOTDIR, std::system_category(),
                            "cannot create directory " + dir.string());
  }
  if ((st.st_mode & 07777) != mode && ::chmod(dir.c_str(), mode) != 0) {
    throw std::system_error(errno, std::system_category(),
                            "cannot set the mode of " + dir.string());
  }
}

std::string connection_file_name(std::string_view cluster_id, std::string_view role) {
  std::string name = "ipcontroller-";
  if (!cluster_id.empty()) {
    name += cluster_id;
    name += '-';
  }
  name += role;
  name += ".json";
  return name;
}

}  // namespace

fs::path ipython_dir() {
  if (const char* dir = non_empty_env("IPYTHONDIR")) return absolute_dir(dir);
  if (const char* home = non_empty_env("HOME")) return absolute_dir(fs::path(home) / ".ipython");
  throw std::runtime_error(
      "cannot locate the IPython directory: neither IPYTHONDIR nor HOME is set");
}

fs::path ipython_dir(const fs::path& override_dir) {
  return override_dir.empty() ? ipython_dir() : absolute_dir(override_dir);
}

std::vector<std::string> list_profiles(const fs::path& ipython_dir) {
  std::vector<std::string> names;
  std::error_code ec;
  fs::directory_iterator it(ipython_dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return names;
  if (ec) throw fs::filesystem_error("cannot list the profiles in", ipython_dir, ec);
  for (const fs::directory_entry& entry : it) {
    const std::string file_name = entry.path().filename().string();
    if (file_name.size() <= kProfilePrefix.size() || !file_name.starts_with(kProfilePrefix)) {
      continue;
    }
    std::error_code type_ec;
    if (!entry.is_directory(type_ec)) continue;
    names.push_back(file_name.substr(kProfilePrefix.size()));
  }
  std::sort(names.begin(), names.end());
  return names;
}

Profile Profile::named(std::string_view name, const fs::path& ipython_dir) {
  if (name.empty() || name.find_first_of(std::string_view("/\0", 2)) != std::string_view::npos) {
    throw std::invalid_argument("invalid profile name \"" + std::string(name) +
                                "\": a profile name must be non-empty and must not contain '/'");
  }
  return Profile(absolute_dir(ipython_dir) / (std::string(kProfilePrefix) + std::string(name)));
}

Profile Profile::at(fs::path dir) {
  return Profile(absolute_dir(dir));
}

fs::path Profile::security_dir() const {
  return dir_ / "security";
}
fs::path Profile::pid_dir() const {
  return dir_ / "pid";
}
fs::path Profile::log_dir() const {
  return dir_ / "log";
}

fs::path Profile::client_connection_file(std::string_view cluster_id) const {
  return security_dir() / connection_file_name(cluster_id, "client");
}

fs::path Profile::engine_connection_file(std::string_view cluster_id) const {
  return security_dir() / connection_file_name(cluster_id, "engine");
}

fs::path Profile::config_file(std::string_view program) const {
  return dir_ / ("ipcpp_" + std::string(program) + ".toml");
}

std::string Profile::name() const {
  std::string file_name = dir_.filename().string();
  if (file_name.size() > kProfilePrefix.size() && file_name.starts_with(kProfilePrefix)) {
    return file_name.substr(kProfilePrefix.size());
  }
  return file_name;
}

bool Profile::exists() const {
  std::error_code ec;
  return fs::is_directory(dir_, ec);
}

void Profile::create() const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw std::system_error(ec, "cannot create directory " + dir_.string());
  make_private_dir(security_dir(), kSecurityDirMode);
  make_private_dir(pid_dir(), kPidDirMode);
  make_private_dir(log_dir(), kLogDirMode);
  for (std::string_view program : config_programs()) {
    write_private_file_if_absent(config_file(program), config_template(program));
  }
}

}  // namespace ipcpp::profiles
