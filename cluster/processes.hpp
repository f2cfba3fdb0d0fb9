// The local launcher's process handling: finding programs, starting them detached with their
// output in a log file, and looking at processes by pid through /proc.
//
// Nothing here keeps state between calls. Safe to call from several threads.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

namespace ipcpp::cluster {

// A process started by launch().
struct Launched {
  pid_t pid = -1;
  std::filesystem::path log;         // its stdout and stderr
  std::vector<std::string> command;  // argv; command[0] is an absolute path
};

// Returns the directory of the running program's executable (/proc/self/exe's directory).
// Throws std::runtime_error naming /proc/self/exe if it cannot be read.
std::filesystem::path own_program_dir();

// Returns the program to run for `name`:
//  - a name with a '/' is taken as a path (made absolute); it must be an executable file;
//  - a bare name is looked up in `first_dir` (when not empty), then in each directory of $PATH.
// Throws std::runtime_error "cannot start NAME: REASON" when it is not found or not
// executable, e.g. "cannot start /no/such/engine: No such file or directory".
std::filesystem::path find_program(const std::string& name, const std::filesystem::path& first_dir);

// Variables to set in a child's environment, over those it inherits.
using Environment = std::map<std::string, std::string>;

// Starts command (command[0] an absolute path) with posix_spawn: in a new session (setsid),
// stdin from /dev/null, stdout and stderr both to a new file
// `log_dir/<log_prefix>-<pid>.log` (mode 0600), every signal at its default disposition and
// none blocked, no file descriptor of this process inherited other than 0, 1 and 2, the
// environment (with `env` set over it) and current directory inherited.
// Returns the pid and the log file. The caller should reap it (reap()) while it lives.
// Throws std::runtime_error "cannot start PATH: REASON" if it cannot be started; nothing
// is left behind then (the log file is removed).
Launched launch(const std::vector<std::string>& command, const std::filesystem::path& log_dir,
                const std::string& log_prefix, const Environment& env = {});

// What run_command saw.
struct CommandResult {
  int status = 0;  // as reap() gives it: the exit code, or 128 + the signal
  std::string out;
  std::string err;
};

// Runs `command` to its end (command[0] looked up on PATH when it has no '/'), with `input` on
// its stdin and its stdout and stderr captured, no other file descriptor inherited, the
// environment (with `env` set over it) inherited, every signal at its default disposition.
// Safe to call from several threads.
// Throws std::runtime_error "cannot start NAME: REASON" if it cannot start, or, after killing
// it, "NAME did not finish within T s".
CommandResult run_command(const std::vector<std::string>& command, const std::string& input,
                          std::chrono::duration<double> timeout, const Environment& env = {});

// Returns true if `pid` names a process that has not exited (a zombie counts as exited).
bool process_alive(pid_t pid);

// Returns the argv of process `pid` read from /proc/<pid>/cmdline, or nullopt if there is no
// such process or it is a zombie (its command line is empty).
std::optional<std::vector<std::string>> process_command(pid_t pid);

// Returns true if `pid` is alive and its argv[0] is `program`: the process recorded, not some
// other process that got the pid later.
bool runs_program(pid_t pid, const std::string& program);

// For a child of this process: reaps it if it has exited. Returns its exit status (the exit
// code, or 128 + the signal that ended it), or nullopt if it still runs. Returns -1 if `pid`
// is not (or no longer) a child of this process.
std::optional<int> reap(pid_t pid);

// Describes an exit status as reap() returns it: "exit status 3", "killed by signal 9".
std::string describe_exit(int status);

// Returns the last `count` lines of the text file `path`, each prefixed by `indent` and
// ending in '\n'; "" when it cannot be read or is empty.
std::string last_lines(const std::filesystem::path& path, std::size_t count,
                       const std::string& indent = "  ");

}  // namespace ipcpp::cluster
