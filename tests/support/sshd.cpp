#include "support/sshd.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <netinet/in.h>
#include <pwd.h>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "support/files.hpp"

namespace ipcpp::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSshd = "/usr/sbin/sshd";
constexpr int kAttempts = 5;

// Returns true if `name` is an executable file in a directory of $PATH.
bool on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "";
  while (!dirs.empty()) {
    const std::size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    const std::string candidate = (dir.empty() ? std::string(".") : std::string(dir)) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return true;
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
  }
  return false;
}

// Returns a TCP port on 127.0.0.1 that was free a moment ago (the kernel's pick for port 0).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "socket");
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const int err = errno;
    ::close(fd);
    throw std::system_error(err, std::system_category(), "cannot bind to 127.0.0.1:0");
  }
  ::close(fd);
  return ntohs(address.sin_port);
}

std::string current_user() {
  const passwd* entry = ::getpwuid(::geteuid());
  if (entry == nullptr) {
    throw std::runtime_error("no user name for uid " + std::to_string(::geteuid()));
  }
  return entry->pw_name;
}

void make_key(const fs::path& path) {
  const RunResult result =
      run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ipcpp-test", "-f", path.string()},
          {}, std::chrono::seconds(30));
  if (result.exit_code != 0) {
    throw std::runtime_error("ssh-keygen failed to make " + path.string() + " (exit code " +
                             std::to_string(result.exit_code) + "): " + result.err);
  }
}

// sshd refuses to start without its privilege separation directory, whatever the config says.
void ensure_privilege_separation_directory() {
  const char* dir = "/run/sshd";
  if (::mkdir(dir, 0755) == 0) {
    ::chmod(dir, 0755);  // whatever the umask
  } else if (errno != EEXIST) {
    throw std::system_error(errno, std::system_category(),
                            std::string("cannot create ") + dir + " (needed by sshd)");
  }
}

}  // namespace

SshServer::SshServer()
    : user_key_(dir_.path() / "user_key"), known_hosts_(dir_.path() / "known_hosts") {
  const fs::path& dir = dir_.path();
  const fs::path host_key = dir / "host_key";
  const fs::path config = dir / "sshd_config";
  make_key(host_key);
  make_key(user_key_);
  write_text(dir / "authorized_keys", read_text(user_key_.string() + ".pub"));
  const std::vector<std::string> config_lines = {
      "ListenAddress 127.0.0.1",
      "HostKey " + host_key.string(),
      "AuthorizedKeysFile " + (dir / "authorized_keys").string(),
      "PidFile " + (dir / "sshd.pid").string(),
      "StrictModes no",  // the keys are in a temporary directory
      "UsePAM no",
      "PermitRootLogin prohibit-password",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "Subsystem sftp internal-sftp",  // scp uses SFTP by default
  };
  write_lines(config, config_lines);
  const std::string host_key_line = read_text(host_key.string() + ".pub");
  ensure_privilege_separation_directory();

  std::string errors;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    port_ = free_port();
    write_text(known_hosts_, "[127.0.0.1]:" + std::to_string(port_) + " " + host_key_line);
    auto sshd = std::make_unique<Process>(std::vector<std::string>{
        kSshd, "-D", "-e", "-f", config.string(), "-p", std::to_string(port_)});
    const bool listening = wait_until(
        [&] {
          return sshd->stderr_text().find("Server listening on") != std::string::npos ||
                 !sshd->running();
        },
        std::chrono::seconds(10));
    const std::string err = sshd->stderr_text();
    if (listening && sshd->running()) {
      sshd_ = std::move(sshd);
      return;
    }
    sshd->stop();
    errors +=
        "attempt " + std::to_string(attempt) + " on port " + std::to_string(port_) + ":\n" + err;
    if (err.find("Address already in use") == std::string::npos) break;
  }
  throw std::runtime_error("sshd did not start; its stderr:\n" + errors);
}

SshServer::~SshServer() = default;

std::optional<std::string> SshServer::unavailable() {
  const std::string needs = " (this test needs openssh-client and openssh-server)";
  if (::access(kSshd, X_OK) != 0) return std::string(kSshd) + " does not exist" + needs;
  for (const char* tool : {"ssh", "ssh-keygen"}) {
    if (!on_path(tool)) return std::string(tool) + " is not on PATH" + needs;
  }
  return std::nullopt;
}

std::string SshServer::destination() const {
  return current_user() + "@127.0.0.1";
}

std::vector<std::string> SshServer::ssh_options() const {
  return {"-i", user_key_.string(),
          "-o", "IdentitiesOnly=yes",
          "-o", "BatchMode=yes",
          "-o", "StrictHostKeyChecking=yes",
          "-o", "UserKnownHostsFile=" + known_hosts_.string(),
          "-o", "LogLevel=ERROR",
          "-o", "ConnectTimeout=10"};
}

}  // namespace ipcpp::test
