// Child processes for end-to-end tests: start a real program, read what it printed, signal it,
// wait for it with a timeout, and never leave it behind.
//
// Thread-safety: a Process is used from one thread at a time.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace ipcpp::test {

struct ProcessOptions {
  std::map<std::string, std::string> env;  // set/override these variables (rest inherited)
  std::vector<std::string> unset_env;      // remove these variables
  std::filesystem::path cwd;               // Default: inherit
};

// A child process started with posix_spawn in its OWN process group (its pid is the group id),
// with stdin from /dev/null and stdout and stderr captured into unlinked temporary files. All
// signals have their default disposition and none is blocked in the child. argv[0] without a
// '/' is looked up in $PATH. Variables in both `env` and `unset_env` are set. The child holds
// no file descriptor of the parent other than 0, 1 and 2.
//
// The destructor ends it if it is still running: SIGTERM to its process group, up to 5 s grace,
// then SIGKILL to the group, and always reaps it. Once the process has been reaped (by running(),
// wait_for(), wait() or stop()) nothing is ever signalled again, since its id may be reused:
// this never kills anything else.
class Process {
 public:
  // Starts argv[0] with arguments argv[1...].
  // Throws std::runtime_error naming argv[0] and the reason if it cannot start (e.g. "cannot
  // start /no/such/tool: No such file or directory"), or if argv is empty.
  explicit Process(std::vector<std::string> argv, ProcessOptions options = {});
  ~Process();
  Process(Process&& other) noexcept;
  // Ends (as the destructor does) the process this one held, then takes over `other`'s.
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  // Returns the process id, which is also its process group id.
  pid_t pid() const { return pid_; }

  // Returns true if the process has not exited yet; reaps it if it has.
  bool running();

  // Waits up to `timeout` for the process to exit and reaps it.
  // Returns its exit status (the exit code, or 128 + the signal that ended it), or nullopt
  // if it is still running after `timeout`.
  std::optional<int> wait_for(std::chrono::milliseconds timeout);

  // Waits as long as it takes. Returns the exit status as wait_for does.
  int wait();

  // Sends `sig` to the process group, if the process has not been reaped yet.
  void signal(int sig);

  // Ends the process group: SIGTERM, up to `grace` for the process to exit, then SIGKILL to
  // whatever is left in the group, and reaps the process. Does nothing if already reaped.
  void stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // Returns what the process has written to stdout / stderr so far.
  std::string stdout_text() const;
  std::string stderr_text() const;

 private:
  void release() noexcept;  // stops it if needed, closes the files

  std::string name_;  // argv[0]
  pid_t pid_ = -1;
  std::optional<int> status_;  // set once reaped
  int stdout_fd_ = -1;
  int stderr_fd_ = -1;
};

struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};

// Runs argv to completion and returns its exit status (as Process::wait_for) and output.
// Processes it started and left running in its group are not touched.
// Throws std::runtime_error naming argv[0] if it cannot start, or (after stopping it) if it
// takes longer than `timeout`.
RunResult run(std::vector<std::string> argv, ProcessOptions options = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// Polls `pred` every 10 ms until it returns true or `timeout` has passed.
// Returns the last value of pred (which is called at least once, the last time after the
// timeout has passed).
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout);

// Returns the path of a built tool: IPCPP_BIN_DIR "/" tool.
std::string tool_path(std::string_view tool);

}  // namespace ipcpp::test
