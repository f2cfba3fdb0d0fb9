// `!command` in execute code: a shell command whose output streams to the clients.
#pragma once

#include <functional>
#include <string>
#include <string_view>

namespace ipcpp::engine {

enum class StreamName { kStdout, kStderr };

using OutputSink = std::function<void(StreamName, std::string_view)>;

struct ShellResult {
  int status = 0;          // the exit code, or 128 + the signal that ended the command
  bool cancelled = false;  // ended because `cancelled` returned true
};

// Runs `command` with /bin/sh -c, in its own process group, stdin from /dev/null. Calls
// `sink` with its stdout and stderr as they are produced. Checks `cancelled` every 50 ms;
// once it returns true, the command's process group gets SIGTERM, then SIGKILL 1 s later.
// Returns when the command has exited (output still held open by its background children is
// not waited for). Throws std::runtime_error when the shell cannot be started.
ShellResult run_shell_command(const std::string& command, const OutputSink& sink,
                              const std::function<bool()>& cancelled);

}  // namespace ipcpp::engine
