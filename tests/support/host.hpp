// Facts about this machine that end-to-end tests with daemons need: free ports on 127.0.0.1,
// programs in $PATH or /usr/sbin, the user the tests run as. Safe from several threads.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace ipcpp::test {

// `n` different TCP ports on 127.0.0.1 that were free a moment ago (the kernel's picks for
// port 0, all bound at once so that they differ). A daemon may still lose one to a race: its
// caller retries. Throws std::system_error if no socket can be bound.
std::vector<int> free_ports(std::size_t n);

// The path of an executable `name` in a directory of $PATH or in /usr/sbin (where Debian puts
// daemons), or "" when there is none.
std::string find_program(const std::string& name);

// The name of the effective user. Throws std::runtime_error if it has none.
std::string current_user();

}  // namespace ipcpp::test
