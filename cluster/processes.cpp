#include "cluster/processes.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <fstream>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/wait.h>
#include <system_error>
#include <unistd.h>

extern char** environ;

namespace ipcpp::cluster {
namespace {

namespace fs = std::filesystem;

std::string error_text(int err) {
  return std::system_category().message(err);
}

std::runtime_error cannot_start(const std::string& what, int err) {
  return std::runtime_error("cannot start " + what + ": " + error_text(err));
}

// 0 if `path` is an executable regular file, else the errno that says why not.
int executable_error(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return errno;
  if (S_ISDIR(st.st_mode)) return EISDIR;
  if (!S_ISREG(st.st_mode)) return EACCES;
  if (::access(path.c_str(), X_OK) != 0) return errno;
  return 0;
}

// posix_spawn's attribute objects, destroyed on every path.
struct SpawnSetup {
  posix_spawn_file_actions_t actions{};
  posix_spawnattr_t attributes{};
  SpawnSetup() {
    ::posix_spawn_file_actions_init(&actions);
    ::posix_spawnattr_init(&attributes);
  }
  ~SpawnSetup() {
    ::posix_spawn_file_actions_destroy(&actions);
    ::posix_spawnattr_destroy(&attributes);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;

  // The child gets every signal at its default disposition and none blocked; with
  // `new_session`, a session of its own. Returns posix_spawn's error, 0 on success.
  int default_signals(bool new_session) {
    sigset_t none;
    sigset_t all;
    sigemptyset(&none);
    sigfillset(&all);
    const short flags = static_cast<short>(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                           (new_session ? POSIX_SPAWN_SETSID : 0));
    int rc = ::posix_spawnattr_setflags(&attributes, flags);
    if (rc == 0) rc = ::posix_spawnattr_setsigmask(&attributes, &none);
    if (rc == 0) rc = ::posix_spawnattr_setsigdefault(&attributes, &all);
    return rc;
  }
};

// A command's arguments as the char* array posix_spawn takes; it owns their copies.
struct Argv {
  std::vector<std::string> args;
  std::vector<char*> pointers;

  explicit Argv(const std::vector<std::string>& command) : args(command) {
    pointers.reserve(args.size() + 1);
    for (std::string& a : args)
      pointers.push_back(a.data());
    pointers.push_back(nullptr);
  }
};

// The environment of this process with `env` set over it, and the pointers posix_spawn takes.
struct ChildEnvironment {
  std::vector<std::string> entries;
  std::vector<char*> pointers;

  explicit ChildEnvironment(const Environment& env) {
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string_view entry(*e);
      const auto name = entry.substr(0, entry.find('='));
      if (!env.contains(std::string(name))) entries.emplace_back(entry);
    }
    for (const auto& [name, value] : env)
      entries.push_back(name + "=" + value);
    for (std::string& entry : entries)
      pointers.push_back(entry.data());
    pointers.push_back(nullptr);
  }
};

std::string fmt_seconds(const std::string& program, std::chrono::duration<double> timeout) {
  std::ostringstream text;
  text << program << " did not finish within " << timeout.count() << " s";
  return text.str();
}

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

}  // namespace

fs::path own_program_dir() {
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error("cannot read /proc/self/exe: " + ec.message());
  return exe.parent_path();
}

fs::path find_program(const std::string& name, const fs::path& first_dir) {
  if (name.empty()) throw std::runtime_error("cannot start a program with an empty name");
  if (name.find('/') != std::string::npos) {
    const fs::path path = fs::absolute(name);
    if (const int err = executable_error(path)) throw cannot_start(path.string(), err);
    return path;
  }
  std::vector<fs::path> dirs;
  if (!first_dir.empty()) dirs.push_back(first_dir);
  const char* env_path = std::getenv("PATH");
  std::istringstream in(env_path != nullptr ? env_path : "");
  for (std::string dir; std::getline(in, dir, ':');)
    dirs.emplace_back(dir.empty() ? "." : dir);
  for (const fs::path& dir : dirs) {
    const fs::path candidate = fs::absolute(dir / name);
    if (executable_error(candidate) == 0) return candidate;
  }
  throw std::runtime_error("cannot start " + name + ": not found in " +
                           (first_dir.empty() ? std::string() : first_dir.string() + " nor ") +
                           "on PATH");
}

Launched launch(const std::vector<std::string>& command, const fs::path& log_dir,
                const std::string& log_prefix, const Environment& env) {
  if (command.empty()) throw std::runtime_error("cannot start a program without a command");
  const std::string& program = command.front();

  // The log is named after the child's pid, unknown until it runs: the child gets a
  // temporary file that is renamed once the pid is known (it keeps writing to the same file).
  std::string temp = (log_dir / (log_prefix + "-starting-XXXXXX.log")).string();
  const int log_fd = ::mkostemps(temp.data(), 4, O_CLOEXEC);
  if (log_fd < 0) {
    throw std::runtime_error("cannot start " + program + ": cannot create a log file in " +
                             log_dir.string() + ": " + error_text(errno));
  }

  SpawnSetup setup;
  int rc = ::posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, log_fd, 1);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, log_fd, 2);
  if (rc == 0) rc = ::posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  if (rc == 0) rc = setup.default_signals(true);
  pid_t pid = -1;
  if (rc == 0) {
    Argv argv(command);
    ChildEnvironment child_env(env);
    rc = ::posix_spawn(&pid, program.c_str(), &setup.actions, &setup.attributes,
                       argv.pointers.data(), child_env.pointers.data());
  }
  ::close(log_fd);
  if (rc != 0) {
    ::unlink(temp.c_str());
    throw cannot_start(program, rc);
  }

  fs::path log = log_dir / (log_prefix + "-" + std::to_string(pid) + ".log");
  std::error_code ec;
  fs::rename(temp, log, ec);
  if (ec) log = temp;  // keeps its temporary name; still the right file
  return Launched{pid, log, command};
}

CommandResult run_command(const std::vector<std::string>& command, const std::string& input,
                          std::chrono::duration<double> timeout, const Environment& env) {
  if (command.empty()) throw std::runtime_error("cannot start a program without a command");
  const std::string& program = command.front();
  int in[2] = {-1, -1};
  int out[2] = {-1, -1};
  int err[2] = {-1, -1};
  const auto close_all = [&] {
    for (int* p : {in, out, err}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
  };
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
    const int e = errno;
    close_all();
    throw cannot_start(program, e);
  }
  SpawnSetup setup;
  int rc = ::posix_spawn_file_actions_adddup2(&setup.actions, in[0], 0);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, out[1], 1);
  if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, err[1], 2);
  if (rc == 0) rc = ::posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
  if (rc == 0) rc = setup.default_signals(false);
  pid_t pid = -1;
  if (rc == 0) {
    Argv argv(command);
    ChildEnvironment child_env(env);
    rc = ::posix_spawnp(&pid, program.c_str(), &setup.actions, &setup.attributes,
                        argv.pointers.data(), child_env.pointers.data());
  }
  close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  if (rc != 0) {
    close_all();
    throw cannot_start(program, rc);
  }
  if (input.empty()) close_fd(in[1]);
  if (in[1] >= 0) ::fcntl(in[1], F_SETFL, O_NONBLOCK);
  // A child that exits before reading all of its input must not end this process with
  // SIGPIPE: the signal is blocked in this thread while writing, and taken off if raised.
  sigset_t pipe_signal;
  sigset_t old_mask;
  sigemptyset(&pipe_signal);
  sigaddset(&pipe_signal, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_signal, &old_mask);
  bool broken_pipe = false;

  CommandResult result;
  std::size_t written = 0;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  bool timed_out = false;
  while (out[0] >= 0 || err[0] >= 0) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    pollfd fds[3] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}, {in[1], POLLOUT, 0}};
    const int n = ::poll(fds, 3, static_cast<int>(std::min<long>(left.count(), 1000)));
    if (n < 0 && errno != EINTR) break;
    if (n <= 0) continue;
    if ((fds[2].revents & (POLLOUT | POLLERR | POLLHUP)) != 0) {
      const ssize_t w = ::write(in[1], input.data() + written, input.size() - written);
      if (w > 0) written += static_cast<std::size_t>(w);
      if (w < 0 && errno != EAGAIN && errno != EINTR) {
        broken_pipe = broken_pipe || errno == EPIPE;
        written = input.size();
      }
      if (written >= input.size()) close_fd(in[1]);
    }
    for (int i = 0; i < 2; ++i) {
      if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      char buffer[4096];
      const ssize_t r = ::read(fds[i].fd, buffer, sizeof buffer);
      if (r > 0) {
        (i == 0 ? result.out : result.err).append(buffer, static_cast<std::size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        close_fd(i == 0 ? out[0] : err[0]);
      }
    }
  }
  close_all();
  if (broken_pipe && !sigismember(&old_mask, SIGPIPE)) {
    const timespec now{0, 0};
    ::sigtimedwait(&pipe_signal, nullptr, &now);
  }
  ::pthread_sigmask(SIG_SETMASK, &old_mask, nullptr);
  if (timed_out) ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) {
    throw std::runtime_error(fmt_seconds(program, timeout));
  }
  result.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

bool process_alive(pid_t pid) {
  if (pid <= 0) return false;
  // /proc/<pid>/stat: "pid (comm) S ..."; comm may hold spaces and parentheses.
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat;
  if (!std::getline(in, stat)) return false;
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  const char state = stat[close + 2];
  return state != 'Z' && state != 'X';
}

std::optional<std::vector<std::string>> process_command(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  if (!in) return std::nullopt;
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  if (text.empty()) return std::nullopt;
  std::vector<std::string> argv;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\0', start);
    if (end == std::string::npos) end = text.size();
    argv.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return argv;
}

bool runs_program(pid_t pid, const std::string& program) {
  if (!process_alive(pid)) return false;
  const auto argv = process_command(pid);
  return argv && !argv->empty() && argv->front() == program;
}

std::optional<int> reap(pid_t pid) {
  if (pid <= 0) return -1;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == 0) return std::nullopt;
    if (r == pid) {
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (errno == EINTR) continue;
    return -1;
  }
}

std::string describe_exit(int status) {
  if (status > 128) {
    const int sig = status - 128;
    const char* name = ::sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) +
           (name != nullptr ? std::string(" (SIG") + name + ")" : std::string());
  }
  if (status < 0) return "exit status unknown";
  return "exit status " + std::to_string(status);
}

std::string last_lines(const fs::path& path, std::size_t count, const std::string& indent) {
  std::ifstream in(path);
  std::deque<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(std::move(line));
    if (lines.size() > count) lines.pop_front();
  }
  std::string text;
  for (const std::string& line : lines)
    text += indent + line + "\n";
  return text;
}

}  // namespace ipcpp::cluster
