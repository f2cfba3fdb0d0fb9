// A controller (ipcpp-controller, or any drop-in for ipcontroller) with real Python engines
// or ipcpp engines,
// in a temporary profile on 127.0.0.1, for end-to-end tests. Every process it starts is
// stopped by its destructor.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace ipcpp::test {

class PythonCluster {
 public:
  // Starts the controller with `controller_args` (after --profile-dir) and waits for its
  // connection files. Throws std::runtime_error (with the controller's output) if they do not
  // appear within 30 s.
  explicit PythonCluster(std::vector<std::string> controller_args,
                         std::string controller = tool_path("ipcpp-controller"));

  // Starts n more /usr/bin/ipengine processes.
  void start_engines(int n);
  // Starts n more ipcpp-engine processes with `args` after --profile-dir.
  void start_cpp_engines(int n, std::vector<std::string> args = {});

  // Runs tests/interop/controller_scenarios.py SCENARIO with --profile-dir and `args`, and
  // returns the JSON object it prints last. Throws std::runtime_error with its output when it
  // fails or prints no JSON.
  nlohmann::json scenario(const std::string& scenario, std::vector<std::string> args = {},
                          std::chrono::seconds timeout = std::chrono::seconds(180));
  // The same with tests/interop/engine_scenarios.py (the Python client and ipcpp engines).
  nlohmann::json engine_scenario(const std::string& scenario, std::vector<std::string> args = {},
                                 std::chrono::seconds timeout = std::chrono::seconds(180));

  // Stops the controller (SIGTERM) and starts it again with the same arguments.
  void restart_controller();

  const std::filesystem::path& profile_dir() const { return profile_dir_; }
  std::filesystem::path client_file() const;
  std::filesystem::path engine_file() const;
  Process& controller() { return *controller_; }
  std::vector<Process>& engines() { return engines_; }
  ProcessOptions process_options() const;
  // What every engine process wrote to stderr so far, for failure messages.
  std::string engines_output() const;

 private:
  void start_controller();
  nlohmann::json run_scenario(const std::string& script, const std::string& scenario,
                              std::vector<std::string> args, std::chrono::seconds timeout);

  TempDir tmp_;
  std::filesystem::path profile_dir_;
  std::string program_;
  std::vector<std::string> args_;
  std::unique_ptr<Process> controller_;
  std::vector<Process> engines_;
};

}  // namespace ipcpp::test
