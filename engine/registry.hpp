// The functions an engine can run, by name: the built-ins, the tasks a custom engine program
// defines with IPCPP_TASK, and those of the task libraries given with --load.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ipcpp/engine.hpp"

namespace ipcpp::engine {

struct Function {
  std::string name;
  std::string doc;
  TaskFunction function = nullptr;
  std::string origin;  // "built-in", "program", or the library's path
};

// Not thread-safe; filled at start-up, then only read by the engine's main thread.
class FunctionRegistry {
 public:
  // Adds or replaces `name`. Returns the origin of the function it replaced, or "".
  std::string add(const TaskInfo& info, std::string origin);

  // Adds the built-in functions (engine/builtins.cpp).
  void add_builtins();
  // Adds the tasks defined with IPCPP_TASK in this program (a custom engine).
  void add_program_tasks();
  // Loads a task library and adds its tasks. Returns their names.
  // Throws std::runtime_error naming the path and the reason when the file cannot be loaded,
  // has no ipcpp_task_library_v1 symbol, or was built for another version of the task API.
  // The library stays loaded for the life of the process.
  std::vector<std::string> load_library(const std::filesystem::path& path);

  // The function named `name`, or nullptr.
  const Function* find(std::string_view name) const;
  // Every function, sorted by name.
  std::vector<const Function*> all() const;

 private:
  void add_table(const detail::TaskTable& table, const std::string& origin,
                 std::vector<std::string>* names);

  std::map<std::string, Function, std::less<>> functions_;
};

// The built-in functions (name, doc, function), documented in docs/engine.md.
const std::vector<TaskInfo>& builtin_functions();

}  // namespace ipcpp::engine
