#include "support/host.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <cstdlib>
#include <netinet/in.h>
#include <pwd.h>
#include <stdexcept>
#include <sys/socket.h>
#include <system_error>
#include <unistd.h>

namespace ipcpp::test {

std::vector<int> free_ports(std::size_t n) {
  std::vector<int> fds(n, -1);
  std::vector<int> ports(n, 0);
  int err = 0;
  for (std::size_t i = 0; i < n && err == 0; ++i) {
    fds[i] = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fds[i] < 0 || ::bind(fds[i], reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        ::getsockname(fds[i], reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      err = errno;
    } else {
      ports[i] = ntohs(address.sin_port);
    }
  }
  for (const int fd : fds) {
    if (fd >= 0) ::close(fd);
  }
  if (err != 0) throw std::system_error(err, std::system_category(), "cannot bind to 127.0.0.1:0");
  return ports;
}

std::string find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  const std::string dirs = std::string(path != nullptr ? path : "") + ":/usr/sbin";
  std::size_t begin = 0;
  for (;;) {
    const std::size_t colon = dirs.find(':', begin);
    const std::string dir = dirs.substr(begin, colon - begin);
    const std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    if (colon == std::string::npos) return "";
    begin = colon + 1;
  }
}

std::string current_user() {
  const passwd* entry = ::getpwuid(::geteuid());
  if (entry == nullptr) {
    throw std::runtime_error("no user name for uid " + std::to_string(::geteuid()));
  }
  return entry->pw_name;
}

}  // namespace ipcpp::test
