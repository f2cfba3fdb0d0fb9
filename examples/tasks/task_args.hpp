// Argument helpers shared by the example tasks: Python-style parameters (positional or
// keyword), strict numbers and integers, and files read with Python's error names.
//
// Every function here throws ipcpp::TaskError, named as Python would name the error
// (TypeError, ValueError, FileNotFoundError, ...), with a message that starts with the task's
// name. Nothing here keeps state; all of it is safe to call from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "ipcpp/engine.hpp"

namespace ipcpp::examples {

// Throws TaskError("TypeError") naming the first keyword argument of `args` that is not in
// `allowed`: "<task>() got an unexpected keyword argument 'k'".
void expect_keywords(const Args& args, std::string_view task,
                     std::initializer_list<std::string_view> allowed);

// The parameter at position `index` called `name`: the positional argument if there are
// more than `index`, else the keyword argument `name`, else nullptr.
// Throws TaskError("TypeError") when it is given both ways:
// "<task>() got multiple values for argument 'name'".
const Value* find_param(const Args& args, std::string_view task, std::size_t index,
                        std::string_view name);

// A JSON number (integer or float; not a boolean) as a double.
// Throws TaskError("TypeError"): "<task>(): <what> must be a number, got <json>".
double to_number(const Value& value, std::string_view task, std::string_view what);

// A JSON integer, or a float with an integral value (1e6 from Python), as an int64.
// Throws TaskError("TypeError") for anything but a number, and TaskError("ValueError") for a
// fractional number ("<task>(): <what> must be an integer, got 2.5") or one outside the
// int64 range ("... does not fit in 64 bits, got 1e+30").
std::int64_t to_integer(const Value& value, std::string_view task, std::string_view what);

// A JSON string. Throws TaskError("TypeError"): "<task>(): <what> must be a string, got ...".
std::string to_text(const Value& value, std::string_view task, std::string_view what);

// The whole content of the file at `path`.
// Throws TaskError("FileNotFoundError") "no such file: <path>" when it does not exist,
// TaskError("IsADirectoryError") "is a directory: <path>", and TaskError("OSError")
// "cannot read <path>: <reason>" when it cannot be read.
std::string read_text_file(const std::string& path);

// Looks at cancellation while a task works, about once per kEvery units of work, so that a
// long task stops soon after the client aborts it. Lives on the task's stack, for one call.
class CancellationCheck {
 public:
  static constexpr std::uint64_t kEvery = std::uint64_t{1} << 20;

  // Throws TaskCancelled when `ctx` is already cancelled.
  explicit CancellationCheck(const TaskContext& ctx) : ctx_(ctx) { ctx_.check_cancelled(); }

  // Counts `units` of work done. Throws TaskCancelled when the task was cancelled (looked at
  // once every kEvery units).
  void tick(std::uint64_t units = 1) {
    pending_ += units;
    if (pending_ >= kEvery) {
      pending_ = 0;
      ctx_.check_cancelled();
    }
  }

 private:
  const TaskContext& ctx_;
  std::uint64_t pending_ = 0;
};

}  // namespace ipcpp::examples
