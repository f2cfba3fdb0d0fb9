// Small file helpers for tests.
#pragma once

#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ipcpp::test {

// The bytes of a file; "" when it cannot be read.
std::string read_text(const std::filesystem::path& path);

// Writes `text` to `path`, replacing it. Throws std::runtime_error "cannot write PATH".
void write_text(const std::filesystem::path& path, const std::string& text);

// Writes each line followed by '\n'. Throws as write_text does.
void write_lines(const std::filesystem::path& path, const std::vector<std::string>& lines);

// The permission bits (07777) of a path, not following a final symbolic link.
// Throws std::system_error naming the path when it cannot be stat'ed.
mode_t mode_of(const std::filesystem::path& path);

}  // namespace ipcpp::test
