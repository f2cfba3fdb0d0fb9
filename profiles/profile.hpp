// IPython-compatible profile directories.
//
// A profile is a directory `profile_<name>/` under the IPython directory ($IPYTHONDIR, else
// ~/.ipython) with three subdirectories, laid out exactly as IPython and ipyparallel expect:
//
//   security/  mode 0700: connection files (ipcontroller-client.json, ipcontroller-engine.json)
//   pid/       mode 0700: pid files
//   log/       mode 0755: log files
//
// and our per-program configuration files `ipcpp_<program>.toml`.
//
// Thread-safety: every function here is safe to call from several threads; a `Profile` is an
// immutable value. Concurrent `Profile::create` calls on the same directory are safe: each
// config file is written by at most one of them.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "profiles/config_templates.hpp"
#include "profiles/secure_file.hpp"

namespace ipcpp::profiles {

// Returns the IPython directory: $IPYTHONDIR if it is set and non-empty, else $HOME/.ipython,
// made absolute. The directory need not exist.
// Throws std::runtime_error if $IPYTHONDIR is unset or empty and $HOME is too.
std::filesystem::path ipython_dir();

// Returns `override_dir` made absolute if it is not empty (a program's --ipython-dir), else
// ipython_dir(). Throws as ipython_dir() does.
std::filesystem::path ipython_dir(const std::filesystem::path& override_dir);

// Returns the sorted names of the profiles under `ipython_dir`: each directory (or symbolic
// link to one) named `profile_<name>` gives `<name>`. Returns an empty list if `ipython_dir`
// does not exist.
// Throws std::filesystem::filesystem_error if `ipython_dir` exists but cannot be read.
std::vector<std::string> list_profiles(const std::filesystem::path& ipython_dir);

// A profile directory: paths only. Nothing touches the file system except exists() and create().
class Profile {
 public:
  // Returns the profile `ipython_dir/profile_<name>`, with `ipython_dir` made absolute.
  // Throws std::invalid_argument if `name` is empty or contains '/' (or a NUL character).
  static Profile named(std::string_view name, const std::filesystem::path& ipython_dir);

  // Returns the profile whose directory is `dir`, made absolute (a trailing '/' is dropped).
  // Throws std::filesystem::filesystem_error if the current directory is needed and unknown.
  static Profile at(std::filesystem::path dir);

  // Returns the profile directory (absolute).
  const std::filesystem::path& dir() const { return dir_; }
  // Returns dir()/"security", dir()/"pid", dir()/"log".
  std::filesystem::path security_dir() const;
  std::filesystem::path pid_dir() const;
  std::filesystem::path log_dir() const;

  // Returns security/ipcontroller-client.json, or security/ipcontroller-<ID>-client.json for a
  // non-empty `cluster_id` (ipyparallel's names).
  std::filesystem::path client_connection_file(std::string_view cluster_id = "") const;
  // Returns security/ipcontroller-engine.json, or security/ipcontroller-<ID>-engine.json.
  std::filesystem::path engine_connection_file(std::string_view cluster_id = "") const;

  // Returns dir()/"ipcpp_<program>.toml", the config file of ipcpp-<program>.
  std::filesystem::path config_file(std::string_view program) const;

  // Returns "<name>" for a directory named "profile_<name>", else the directory's own name.
  std::string name() const;

  // Returns true if dir() is a directory (or a symbolic link to one).
  bool exists() const;

  // Creates the profile, idempotently: dir() and its missing parents; security/ and pid/ with
  // mode 0700 and log/ with mode 0755 (the modes are set even if the directories already
  // existed); and every config file of config_programs() that is not there yet, mode 0600,
  // from its template. An existing config file is never modified.
  // Throws std::system_error naming the path and the reason if anything cannot be created;
  // what was created before the failure stays.
  void create() const;

 private:
  explicit Profile(std::filesystem::path dir) : dir_(std::move(dir)) {}

  std::filesystem::path dir_;
};

}  // namespace ipcpp::profiles
