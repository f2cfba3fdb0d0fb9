#include "support/process.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <fcntl.h>
#include <set>
#include <signal.h>
#include <spawn.h>
#include <stdexcept>
#include <stdlib.h>
#include <sys/wait.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>

extern char** environ;

namespace ipcpp::test {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{10};

std::string error_text(int err) {
  return std::system_category().message(err);
}

// Returns an open, already unlinked temporary file (O_CLOEXEC).
int make_capture_file() {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string name = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") +
                     "/ipcpp-test-output-XXXXXX";
  const int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    throw std::runtime_error("cannot create a temporary file " + name + ": " + error_text(errno));
  }
  ::unlink(name.c_str());
  return fd;
}

std::string read_whole_file(int fd) {
  std::string text;
  if (fd < 0) return text;
  char buffer[8192];
  off_t offset = 0;
  for (;;) {
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<std::size_t>(n));
    offset += n;
  }
  return text;
}

int exit_status(int wait_status) {
  if (WIFEXITED(wait_status)) return WEXITSTATUS(wait_status);
  if (WIFSIGNALED(wait_status)) return 128 + WTERMSIG(wait_status);
  return -1;
}

std::vector<std::string> child_environment(const ProcessOptions& options) {
  std::set<std::string, std::less<>> replaced(options.unset_env.begin(), options.unset_env.end());
  for (const auto& [name, value] : options.env)
    replaced.insert(name);
  std::vector<std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    const std::string_view variable(*entry);
    if (!replaced.contains(variable.substr(0, variable.find('=')))) env.emplace_back(variable);
  }
  for (const auto& [name, value] : options.env)
    env.push_back(name + "=" + value);
  return env;
}

std::vector<char*> pointers(std::vector<std::string>& strings) {
  std::vector<char*> result;
  result.reserve(strings.size() + 1);
  for (std::string& s : strings)
    result.push_back(s.data());
  result.push_back(nullptr);
  return result;
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
};

}  // namespace

Process::Process(std::vector<std::string> argv, ProcessOptions options) {
  if (argv.empty()) throw std::runtime_error("cannot start a process without argv");
  name_ = argv.front();
  try {
    stdout_fd_ = make_capture_file();
    stderr_fd_ = make_capture_file();

    SpawnSetup setup;
    int rc = ::posix_spawn_file_actions_addopen(&setup.actions, 0, "/dev/null", O_RDONLY, 0);
    if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, stdout_fd_, 1);
    if (rc == 0) rc = ::posix_spawn_file_actions_adddup2(&setup.actions, stderr_fd_, 2);
    if (rc == 0 && !options.cwd.empty()) {
      rc = ::posix_spawn_file_actions_addchdir_np(&setup.actions, options.cwd.c_str());
    }
    if (rc == 0) rc = ::posix_spawn_file_actions_addclosefrom_np(&setup.actions, 3);
    sigset_t no_signals;
    sigset_t all_signals;
    sigemptyset(&no_signals);
    sigfillset(&all_signals);
    if (rc == 0) {
      rc = ::posix_spawnattr_setflags(&setup.attributes, POSIX_SPAWN_SETPGROUP |
                                                             POSIX_SPAWN_SETSIGMASK |
                                                             POSIX_SPAWN_SETSIGDEF);
    }
    if (rc == 0) rc = ::posix_spawnattr_setpgroup(&setup.attributes, 0);
    if (rc == 0) rc = ::posix_spawnattr_setsigmask(&setup.attributes, &no_signals);
    if (rc == 0) rc = ::posix_spawnattr_setsigdefault(&setup.attributes, &all_signals);
    if (rc == 0) {
      std::vector<std::string> env = child_environment(options);
      std::vector<char*> argv_pointers = pointers(argv);
      std::vector<char*> env_pointers = pointers(env);
      const bool search_path = name_.find('/') == std::string::npos;
      pid_t pid = -1;
      rc = search_path ? ::posix_spawnp(&pid, name_.c_str(), &setup.actions, &setup.attributes,
                                        argv_pointers.data(), env_pointers.data())
                       : ::posix_spawn(&pid, name_.c_str(), &setup.actions, &setup.attributes,
                                       argv_pointers.data(), env_pointers.data());
      if (rc == 0) pid_ = pid;
    }
    if (rc != 0) throw std::runtime_error("cannot start " + name_ + ": " + error_text(rc));
  } catch (...) {
    release();
    throw;
  }
}

Process::~Process() {
  release();
}

Process::Process(Process&& other) noexcept
    : name_(std::move(other.name_)),
      pid_(std::exchange(other.pid_, -1)),
      status_(std::exchange(other.status_, std::nullopt)),
      stdout_fd_(std::exchange(other.stdout_fd_, -1)),
      stderr_fd_(std::exchange(other.stderr_fd_, -1)) {}

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    release();
    name_ = std::move(other.name_);
    pid_ = std::exchange(other.pid_, -1);
    status_ = std::exchange(other.status_, std::nullopt);
    stdout_fd_ = std::exchange(other.stdout_fd_, -1);
    stderr_fd_ = std::exchange(other.stderr_fd_, -1);
  }
  return *this;
}

void Process::release() noexcept {
  if (pid_ > 0 && !status_) stop();
  if (stdout_fd_ >= 0) ::close(std::exchange(stdout_fd_, -1));
  if (stderr_fd_ >= 0) ::close(std::exchange(stderr_fd_, -1));
  pid_ = -1;
}

bool Process::running() {
  if (pid_ <= 0 || status_) return false;
  for (;;) {
    int wait_status = 0;
    const pid_t r = ::waitpid(pid_, &wait_status, WNOHANG);
    if (r == 0) return true;
    if (r == pid_) {
      status_ = exit_status(wait_status);
      return false;
    }
    if (errno == EINTR) continue;
    status_ = -1;  // reaped by someone else: nothing more to know
    return false;
  }
}

std::optional<int> Process::wait_for(milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  milliseconds pause{1};
  while (running()) {
    const Clock::time_point now = Clock::now();
    if (now >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, kPollInterval);
  }
  return status_;
}

int Process::wait() {
  while (!status_ && pid_ > 0) {
    int wait_status = 0;
    const pid_t r = ::waitpid(pid_, &wait_status, 0);
    if (r == pid_) {
      status_ = exit_status(wait_status);
    } else if (errno != EINTR) {
      status_ = -1;
    }
  }
  return status_.value_or(-1);
}

void Process::signal(int sig) {
  if (pid_ > 0 && !status_) ::kill(-pid_, sig);
}

void Process::stop(milliseconds grace) {
  if (pid_ <= 0 || status_) return;
  ::kill(-pid_, SIGTERM);
  // Wait for the exit without reaping: the zombie keeps the group id ours until the SIGKILL.
  const Clock::time_point deadline = Clock::now() + grace;
  milliseconds pause{1};
  for (;;) {
    siginfo_t info{};
    const int rc = ::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT);
    if (rc == 0 && info.si_pid == pid_) break;
    if (rc != 0 && errno != EINTR) {
      status_ = -1;  // reaped by someone else: its id is no longer ours to signal
      return;
    }
    const Clock::time_point now = Clock::now();
    if (now >= deadline) break;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - now));
    pause = std::min(pause * 2, kPollInterval);
  }
  ::kill(-pid_, SIGKILL);
  wait();
}

std::string Process::stdout_text() const {
  return read_whole_file(stdout_fd_);
}

std::string Process::stderr_text() const {
  return read_whole_file(stderr_fd_);
}

RunResult run(std::vector<std::string> argv, ProcessOptions options, milliseconds timeout) {
  const std::string name = argv.empty() ? std::string() : argv.front();
  Process process(std::move(argv), std::move(options));
  const std::optional<int> status = process.wait_for(timeout);
  if (!status) {
    process.stop();
    throw std::runtime_error(name + " did not finish within " + std::to_string(timeout.count()) +
                             " ms and was stopped; its stderr: " + process.stderr_text());
  }
  return RunResult{*status, process.stdout_text(), process.stderr_text()};
}

bool wait_until(const std::function<bool()>& pred, milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    const bool value = pred();
    if (value || Clock::now() >= deadline) return value;
    std::this_thread::sleep_for(kPollInterval);
  }
}

std::string tool_path(std::string_view tool) {
  return std::string(IPCPP_BIN_DIR) + "/" + std::string(tool);
}

}  // namespace ipcpp::test
