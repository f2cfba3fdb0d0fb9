// Writing private files (connection files, config files) atomically and with mode 0600.
//
// Readers of `path` see either its old content or the complete new content, never a partial
// file, and the file is never readable by other users, not even for a moment: it is written
// to a temporary file in the same directory, created with O_EXCL and mode 0600 whatever the
// umask, synced, then renamed (or linked) into place, and the directory is synced.
//
// Thread-safety: safe to call concurrently, also on the same path (the last rename wins).
#pragma once

#include <filesystem>
#include <string_view>

namespace ipcpp::profiles {

// Writes `text` to `path`, replacing any existing file atomically. The file ends up with
// mode 0600, owned by the caller.
// Throws std::system_error whose what() names the path and the reason, e.g.
// "cannot write /x/security/ipcontroller-client.json: No space left on device", if the file
// cannot be written (a missing directory, no permission, a full disk, ...). On failure the
// temporary file is removed and an existing `path` keeps its old content, except that if only
// the final sync of the directory fails, the new content is in place but may not be durable.
void write_private_file(const std::filesystem::path& path, std::string_view text);

// Like write_private_file, but never replaces anything: if `path` already exists (as
// anything, even a dangling symbolic link) it is left alone.
// Returns true if the file was written, false if `path` already existed.
// Throws std::system_error as write_private_file does.
bool write_private_file_if_absent(const std::filesystem::path& path, std::string_view text);

}  // namespace ipcpp::profiles
