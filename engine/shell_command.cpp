#include "engine/shell_command.hpp"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <optional>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdexcept>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace ipcpp::engine {
namespace {

using Clock = std::chrono::steady_clock;

class Pipe {
 public:
  Pipe() {
    if (::pipe2(fds_.data(), O_CLOEXEC) != 0) {
      throw std::runtime_error(std::string("cannot create a pipe: ") + std::strerror(errno));
    }
  }
  ~Pipe() {
    close_read();
    close_write();
  }
  Pipe(const Pipe&) = delete;
  Pipe& operator=(const Pipe&) = delete;
  int read_end() const { return fds_[0]; }
  int write_end() const { return fds_[1]; }
  void close_read() {
    if (fds_[0] >= 0) ::close(fds_[0]);
    fds_[0] = -1;
  }
  void close_write() {
    if (fds_[1] >= 0) ::close(fds_[1]);
    fds_[1] = -1;
  }

 private:
  std::array<int, 2> fds_{-1, -1};
};

int exit_status(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus);
  return 255;
}

pid_t spawn_shell(const std::string& command, const Pipe& out, const Pipe& err) {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&actions);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out.write_end(), 1);
  posix_spawn_file_actions_adddup2(&actions, err.write_end(), 2);
  sigset_t none;
  sigemptyset(&none);
  sigset_t defaults;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP);
  std::string sh = "/bin/sh";
  std::string dash_c = "-c";
  std::string cmd = command;
  char* argv[] = {sh.data(), dash_c.data(), cmd.data(), nullptr};
  pid_t pid = -1;
  const int rc = ::posix_spawn(&pid, "/bin/sh", &actions, &attr, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) throw std::runtime_error(std::string("cannot start /bin/sh: ") + std::strerror(rc));
  return pid;
}

}  // namespace

ShellResult run_shell_command(const std::string& command, const OutputSink& sink,
                              const std::function<bool()>& cancelled) {
  Pipe out;
  Pipe err;
  const pid_t pid = spawn_shell(command, out, err);
  out.close_write();
  err.close_write();

  ShellResult result;
  std::array<char, 65536> buffer{};
  std::array<pollfd, 2> fds{pollfd{out.read_end(), POLLIN, 0}, pollfd{err.read_end(), POLLIN, 0}};
  auto kill_at = Clock::time_point::max();  // when SIGKILL follows the SIGTERM
  std::optional<int> wstatus;
  bool open[2] = {true, true};

  auto drain = [&](int i, bool block) {
    // Reads what is there now (all of it when the command has exited).
    for (;;) {
      if (!block) {
        pollfd p{fds[static_cast<std::size_t>(i)].fd, POLLIN, 0};
        if (::poll(&p, 1, 0) <= 0) return;
      }
      const ssize_t n = ::read(fds[static_cast<std::size_t>(i)].fd, buffer.data(), buffer.size());
      if (n > 0) {
        sink(i == 0 ? StreamName::kStdout : StreamName::kStderr,
             std::string_view(buffer.data(), static_cast<std::size_t>(n)));
        if (block) return;
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      open[i] = false;  // EOF or error
      fds[static_cast<std::size_t>(i)].fd = -1;
      return;
    }
  };

  while (!wstatus) {
    const int ready = ::poll(fds.data(), fds.size(), 50);
    if (ready > 0) {
      for (int i = 0; i < 2; ++i) {
        if (open[i] && (fds[static_cast<std::size_t>(i)].revents & (POLLIN | POLLHUP | POLLERR))) {
          drain(i, true);
        }
      }
    }
    int ws = 0;
    const pid_t done = ::waitpid(pid, &ws, WNOHANG);
    if (done == pid) {
      wstatus = ws;
      break;
    }
    if (!result.cancelled && cancelled()) {
      result.cancelled = true;
      ::kill(-pid, SIGTERM);
      kill_at = Clock::now() + std::chrono::seconds(1);
    }
    if (Clock::now() >= kill_at) {
      ::kill(-pid, SIGKILL);
      kill_at = Clock::time_point::max();
    }
  }
  // The shell has exited: what it wrote is in the pipes (background children may keep them
  // open; their later output is not waited for).
  for (int i = 0; i < 2; ++i) {
    if (open[i]) drain(i, false);
  }
  result.status = exit_status(*wstatus);
  return result;
}

}  // namespace ipcpp::engine
