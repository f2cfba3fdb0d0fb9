#include "engine/registry.hpp"

#include <dlfcn.h>
#include <stdexcept>
#include <system_error>

namespace ipcpp::engine {

std::string FunctionRegistry::add(const TaskInfo& info, std::string origin) {
  std::string replaced;
  auto it = functions_.find(std::string_view(info.name));
  if (it != functions_.end()) replaced = it->second.origin;
  functions_.insert_or_assign(info.name, Function{info.name, info.doc != nullptr ? info.doc : "",
                                                  info.function, std::move(origin)});
  return replaced;
}

void FunctionRegistry::add_builtins() {
  for (const auto& info : builtin_functions())
    add(info, "built-in");
}

void FunctionRegistry::add_program_tasks() {
  add_table(ipcpp_task_library_v1(), "program", nullptr);
}

void FunctionRegistry::add_table(const detail::TaskTable& table, const std::string& origin,
                                 std::vector<std::string>* names) {
  for (std::size_t i = 0; i < table.count; ++i) {
    add(table.tasks[i], origin);
    if (names != nullptr) names->emplace_back(table.tasks[i].name);
  }
}

std::vector<std::string> FunctionRegistry::load_library(const std::filesystem::path& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) {
    throw std::runtime_error("cannot load task library " + path.string() + ": no such file");
  }
  // A path without a '/' would make dlopen search the library path: always give one.
  const std::filesystem::path absolute = std::filesystem::absolute(path, ec);
  void* handle = ::dlopen(absolute.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* reason = ::dlerror();
    throw std::runtime_error("cannot load task library " + path.string() + ": " +
                             (reason != nullptr ? reason : "unknown error"));
  }
  ::dlerror();
  void* symbol = ::dlsym(handle, "ipcpp_task_library_v1");
  if (symbol == nullptr) {
    ::dlclose(handle);
    throw std::runtime_error(path.string() +
                             " is not an ipcpp task library: it has no ipcpp_task_library_v1 "
                             "symbol (define its functions with IPCPP_TASK from "
                             "<ipcpp/engine.hpp>)");
  }
  using Entry = detail::TaskTable (*)();
  const detail::TaskTable table = reinterpret_cast<Entry>(symbol)();
  if (table.abi_version != detail::kTaskAbiVersion) {
    ::dlclose(handle);
    throw std::runtime_error("task library " + path.string() + " was built for version " +
                             std::to_string(table.abi_version) +
                             " of the ipcpp task API; this engine speaks version " +
                             std::to_string(detail::kTaskAbiVersion) + ": rebuild it");
  }
  std::vector<std::string> names;
  add_table(table, absolute.string(), &names);
  return names;  // the handle is kept: the functions live in it
}

const Function* FunctionRegistry::find(std::string_view name) const {
  auto it = functions_.find(name);
  return it == functions_.end() ? nullptr : &it->second;
}

std::vector<const Function*> FunctionRegistry::all() const {
  std::vector<const Function*> out;
  out.reserve(functions_.size());
  for (const auto& entry : functions_)
    out.push_back(&entry.second);
  return out;
}

}  // namespace ipcpp::engine
