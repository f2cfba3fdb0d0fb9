// A throwaway OpenSSH server on 127.0.0.1 for end-to-end tests of launchers that use ssh and
// scp: its own host key, user key, authorized_keys, known_hosts and sshd_config in a temporary
// directory, and /usr/sbin/sshd in the foreground on a free port. Logging in as the current
// user with user_key() works; any other key is refused. The destructor stops sshd (SIGTERM to
// its process group); sessions still open and processes started over ssh that detached from
// their session (nohup ... &) are not touched: they are the caller's to stop.
//
// Needs /run/sshd (sshd's built-in privilege separation directory): the constructor creates
// it (mode 0755) if it is missing, which needs root.
//
// Thread-safety: an SshServer is used from one thread at a time; its accessors are const.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace ipcpp::test {

class SshServer {
 public:
  // Creates the keys and configuration and starts sshd, waiting up to 10 s for it to listen;
  // picks another port and tries again (up to 5 times in all) when the port was taken.
  // Throws std::runtime_error (with sshd's stderr, or ssh-keygen's) if it cannot start.
  SshServer();
  ~SshServer();
  SshServer(const SshServer&) = delete;
  SshServer& operator=(const SshServer&) = delete;

  // nullopt if /usr/sbin/sshd, ssh and ssh-keygen exist; otherwise what is missing, e.g.
  // "ssh is not on PATH (this test needs openssh-client and openssh-server)".
  static std::optional<std::string> unavailable();

  // The port sshd listens on, on 127.0.0.1.
  int port() const { return port_; }
  // The private key that logs in.
  const std::filesystem::path& user_key() const { return user_key_; }
  // A known_hosts file with this server's host key for [127.0.0.1]:port().
  const std::filesystem::path& known_hosts() const { return known_hosts_; }
  // The temporary directory (mode 0700) holding keys, config and pid file; removed with it.
  const std::filesystem::path& dir() const { return dir_.path(); }
  // "USER@127.0.0.1", USER being the current (effective) user.
  std::string destination() const;
  // Options for ssh and scp alike, without the port (ssh -p, scp -P): the key, batch mode and
  // strict host key checking against known_hosts(), e.g.
  // {"-i", KEY, "-o", "IdentitiesOnly=yes", ..., "-o", "ConnectTimeout=10"}.
  std::vector<std::string> ssh_options() const;

 private:
  TempDir dir_;  // first: removed after sshd has stopped
  std::filesystem::path user_key_;
  std::filesystem::path known_hosts_;
  int port_ = 0;
  std::unique_ptr<Process> sshd_;
};

}  // namespace ipcpp::test
