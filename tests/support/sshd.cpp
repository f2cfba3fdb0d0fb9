#include "support/sshd.hpp"

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <sys/stat.h>
#include <system_error>
#include <unistd.h>

#include "support/files.hpp"
#include "support/host.hpp"

namespace ipcpp::test {
namespace {

namespace fs = std::filesystem;

constexpr const char* kSshd = "/usr/sbin/sshd";
constexpr int kAttempts = 5;

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
    port_ = free_ports(1).front();
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
    if (find_program(tool).empty()) return std::string(tool) + " is not on PATH" + needs;
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
