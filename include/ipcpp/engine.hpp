// ipcpp/engine.hpp — the task API: C++ functions that ipcpp engines run.
//
// A task function takes its arguments and a context and returns a Value (or throws):
//
//   #include <ipcpp/engine.hpp>
//
//   IPCPP_TASK(minus, "minus(a, b): a - b") {
//     return args.get<double>(0) - args.get<double>(1);
//   }
//
// IPCPP_TASK defines the function and registers it under its name; inside the body, `args`
// (const ipcpp::Args&) holds the arguments and `ctx` (ipcpp::TaskContext&) the engine's
// context. That is all a task library needs: build the file into a shared library (CMake:
// add_library(mytasks MODULE tasks.cpp) linked to ipcpp::engine) and start engines with
// `ipcpp-engine --load libmytasks.so`. Clients then call `minus` by name: with apply, or in
// execute code as `minus(5, 6)`.
//
// A custom engine program is the other way: define tasks with IPCPP_TASK in the program and
// have its main return ipcpp::engine_main(argc, argv); it takes ipcpp-engine's options.
//
// Arguments are Values: JSON documents plus numeric arrays, which travel as raw frames (a
// std::vector<double> argument or result is never turned into JSON text). An exception thrown
// by a task becomes the client's RemoteError: TaskError sets its name, any other
// std::exception is named after its C++ type.
//
// Threads: an engine runs one task at a time, on its main thread; the context belongs to that
// call and must not be kept after it returns. cancelled() may be read from any thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ipcpp/value.hpp"

namespace ipcpp {

// An error with a name of the task's choosing; the client sees ename and evalue.
//   throw ipcpp::TaskError("ValueError", "n must be positive, got -3");
class TaskError : public std::runtime_error {
 public:
  TaskError(std::string ename, const std::string& evalue)
      : std::runtime_error(evalue), ename_(std::move(ename)) {}
  const std::string& ename() const { return ename_; }

 private:
  std::string ename_;
};

// Thrown by TaskContext::check_cancelled() when the task was aborted or the engine is
// stopping; the engine then answers the request as aborted. Tasks need not catch it.
class TaskCancelled : public std::exception {
 public:
  const char* what() const noexcept override { return "the task was cancelled"; }
};

// The arguments of one call: positional values, then keyword values.
class Args {
 public:
  Args() = default;
  Args(std::vector<Value> positional, std::vector<std::pair<std::string, Value>> keywords = {})
      : positional_(std::move(positional)), keywords_(std::move(keywords)) {}

  // Number of positional arguments.
  std::size_t size() const { return positional_.size(); }
  const std::vector<Value>& positional() const { return positional_; }
  const std::vector<std::pair<std::string, Value>>& keywords() const { return keywords_; }

  // Positional argument i (from 0). Throws TaskError("TypeError") when there is none.
  const Value& operator[](std::size_t i) const {
    if (i >= positional_.size()) {
      throw TaskError("TypeError", "missing argument " + std::to_string(i + 1) + " (" +
                                       std::to_string(positional_.size()) + " given)");
    }
    return positional_[i];
  }
  // Positional argument i as T (a number, a string, a std::vector of numbers, a
  // nlohmann::json, ...). Throws TaskError("TypeError") when it is missing or does not fit.
  template <class T>
  T get(std::size_t i) const {
    return convert<T>((*this)[i], "argument " + std::to_string(i + 1));
  }
  // As get(i), with `fallback` when there are fewer than i + 1 positional arguments.
  template <class T>
  T get(std::size_t i, T fallback) const {
    return i < positional_.size() ? get<T>(i) : std::move(fallback);
  }

  // Keyword argument `key`, or nullptr.
  const Value* find(std::string_view key) const {
    for (const auto& [k, v] : keywords_) {
      if (k == key) return &v;
    }
    return nullptr;
  }
  // Keyword argument `key` as T. Throws TaskError("TypeError") when missing or unfit.
  template <class T>
  T get(std::string_view key) const {
    const Value* v = find(key);
    if (v == nullptr) {
      throw TaskError("TypeError", "missing keyword argument '" + std::string(key) + "'");
    }
    return convert<T>(*v, "keyword argument '" + std::string(key) + "'");
  }
  template <class T>
  T get(std::string_view key, T fallback) const {
    return find(key) != nullptr ? get<T>(key) : std::move(fallback);
  }

  // Throws TaskError("TypeError") unless min <= size() <= max.
  void expect(std::size_t min, std::size_t max) const {
    if (positional_.size() < min || positional_.size() > max) {
      const std::string want =
          min == max ? std::to_string(min) : std::to_string(min) + " to " + std::to_string(max);
      throw TaskError("TypeError", "takes " + want + " argument" + (max == 1 ? "" : "s") + " (" +
                                       std::to_string(positional_.size()) + " given)");
    }
  }

 private:
  template <class T>
  static T convert(const Value& v, const std::string& what) {
    try {
      return v.as<T>();
    } catch (const std::exception& e) {
      throw TaskError("TypeError", what + " does not fit: " + e.what());
    }
  }

  std::vector<Value> positional_;
  std::vector<std::pair<std::string, Value>> keywords_;
};

// An engine's namespace: name -> Value. Execute code assigns into it (`x = getpid()`), clients
// push into and pull from it, and tasks may read and write it through their context.
class Namespace {
 public:
  // The value named `name`, or nullptr.
  const Value* find(std::string_view name) const {
    auto it = values_.find(name);
    return it == values_.end() ? nullptr : &it->second;
  }
  // The value named `name`. Throws TaskError("NameError") when there is none.
  const Value& at(std::string_view name) const {
    const Value* v = find(name);
    if (v == nullptr)
      throw TaskError("NameError", "name '" + std::string(name) + "' is not defined");
    return *v;
  }
  void set(std::string name, Value value) {
    values_.insert_or_assign(std::move(name), std::move(value));
  }
  // Returns true if there was such a name.
  bool erase(std::string_view name) {
    auto it = values_.find(name);
    if (it == values_.end()) return false;
    values_.erase(it);
    return true;
  }
  void clear() { values_.clear(); }
  std::size_t size() const { return values_.size(); }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    out.reserve(values_.size());
    for (const auto& entry : values_)
      out.push_back(entry.first);
    return out;
  }

 private:
  std::map<std::string, Value, std::less<>> values_;
};

// What a running task sees of its engine. Implemented by the engine; valid for one call.
class TaskContext {
 public:
  virtual ~TaskContext() = default;

  // This engine's id (-1 before registration completes) and uuid.
  virtual std::int64_t engine_id() const = 0;
  virtual const std::string& engine_uuid() const = 0;
  // The engine's namespace.
  virtual Namespace& ns() = 0;

  // True once the client aborted this task (abort_request with its msg_id), interrupted it
  // (signal_request SIGINT), or the engine was told to stop. Long tasks should look at it.
  virtual bool cancelled() const = 0;
  // Throws TaskCancelled when cancelled().
  void check_cancelled() const {
    if (cancelled()) throw TaskCancelled();
  }
  // Waits for `duration`, or less if the task is cancelled meanwhile.
  // Returns false when it was cancelled.
  virtual bool sleep_for(std::chrono::nanoseconds duration) = 0;

  // The task's standard output and error: text written here reaches the clients' stdout /
  // stderr as it is produced (a line at a time, and at least every 4 KiB). What the task writes
  // to file descriptors 1 and 2 (printf, child processes) reaches them when it ends. std::cout and
  // std::cerr are redirected here while a task runs on the engine's main thread.
  virtual std::ostream& out() = 0;
  virtual std::ostream& err() = 0;
};

// A task function.
using TaskFunction = Value (*)(const Args& args, TaskContext& ctx);

struct TaskInfo {
  const char* name;
  const char* doc;  // one line: signature and what it returns
  TaskFunction function;
};

// Runs an engine with ipcpp-engine's command line (see `ipcpp-engine --help`): the tasks
// defined with IPCPP_TASK in this program are registered besides the built-in functions and
// those of --load libraries. Returns the process exit status: 0 after a clean stop, 1 when
// the engine cannot start or lost its controller, 2 for a wrong command line.
int engine_main(int argc, char** argv);

namespace detail {

// Bumped when TaskInfo, Args, TaskContext or Value change layout: a task library built
// against another version is refused at load time with a message that says so.
inline constexpr int kTaskAbiVersion = 1;

struct TaskTable {
  int abi_version;
  std::size_t count;
  const TaskInfo* tasks;
};

// The tasks defined in this shared object (or program): hidden, so each library has its own.
__attribute__((visibility("hidden"))) inline std::vector<TaskInfo>& module_tasks() {
  static std::vector<TaskInfo> tasks;
  return tasks;
}

}  // namespace detail
}  // namespace ipcpp

// The registration symbol that ipcpp-engine --load looks up in a task library. Every file
// that uses IPCPP_TASK defines it (an inline definition, one per library).
extern "C" __attribute__((visibility("default"), used)) inline ipcpp::detail::TaskTable
ipcpp_task_library_v1() {
  const auto& tasks = ipcpp::detail::module_tasks();
  return {ipcpp::detail::kTaskAbiVersion, tasks.size(), tasks.data()};
}

namespace ipcpp::detail {
struct TaskRegistrar {
  TaskRegistrar(const char* name, const char* doc, TaskFunction function) {
    module_tasks().push_back(TaskInfo{name, doc, function});
    static_cast<void>(&ipcpp_task_library_v1);
  }
};
}  // namespace ipcpp::detail

// IPCPP_TASK(name [, "doc"]) { body }: defines and registers the task `name`. In the body,
// `args` are the arguments and `ctx` the TaskContext; it returns an ipcpp::Value (a number, a
// string, a nlohmann::json, a std::vector of numbers, ...).
#define IPCPP_TASK(name, ...)                                                                    \
  static ::ipcpp::Value ipcpp_task_##name(const ::ipcpp::Args& args, ::ipcpp::TaskContext& ctx); \
  static const ::ipcpp::detail::TaskRegistrar ipcpp_task_registrar_##name(#name, "" __VA_ARGS__, \
                                                                          &ipcpp_task_##name);   \
  static ::ipcpp::Value ipcpp_task_##name([[maybe_unused]] const ::ipcpp::Args& args,            \
                                          [[maybe_unused]] ::ipcpp::TaskContext& ctx)
