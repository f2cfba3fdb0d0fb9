// Small file helpers for tests.
#pragma once

#include <filesystem>
#include <string>
#include <sys/types.h>

namespace ipcpp::test {

// The bytes of a file; "" when it cannot be read.
std::string read_text(const std::filesystem::path& path);

// The permission bits (07777) of a path, not following a final symbolic link.
// Throws std::system_error naming the path when it cannot be stat'ed.
mode_t mode_of(const std::filesystem::path& path);

}  // namespace ipcpp::test
