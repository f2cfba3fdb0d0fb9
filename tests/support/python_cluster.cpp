#include "support/python_cluster.hpp"

#include <csignal>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ipcpp::test {
namespace fs = std::filesystem;
using nlohmann::json;

PythonCluster::PythonCluster(std::vector<std::string> controller_args, std::string controller)
    : profile_dir_(tmp_.path() / "profile_test"),
      program_(std::move(controller)),
      args_(std::move(controller_args)) {
  start_controller();
}

ProcessOptions PythonCluster::process_options() const {
  ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp_.path() / "ipython").string();
  options.env["HOME"] = tmp_.path().string();
  return options;
}

fs::path PythonCluster::client_file() const {
  return profile_dir_ / "security" / "ipcontroller-client.json";
}
fs::path PythonCluster::engine_file() const {
  return profile_dir_ / "security" / "ipcontroller-engine.json";
}

void PythonCluster::start_controller() {
  std::vector<std::string> argv = {program_, "--profile-dir", profile_dir_.string()};
  argv.insert(argv.end(), args_.begin(), args_.end());
  controller_ = std::make_unique<Process>(argv, process_options());
  const bool ready = wait_until(
      [&] {
        // ipcontroller itself writes no pid file (ipcluster does); ipcpp-controller does.
        return json::accept(read_text(client_file())) && json::accept(read_text(engine_file())) &&
               (!program_.ends_with("ipcpp-controller") ||
                fs::exists(profile_dir_ / "pid" / "ipcontroller.pid"));
      },
      std::chrono::seconds(30));
  if (!ready) {
    throw std::runtime_error("the controller wrote no connection files; its output:\n" +
                             controller_->stderr_text());
  }
}

void PythonCluster::restart_controller() {
  controller_->signal(SIGTERM);
  if (!controller_->wait_for(std::chrono::seconds(10))) {
    throw std::runtime_error("the controller did not stop on SIGTERM");
  }
  start_controller();
}

void PythonCluster::start_engines(int n) {
  for (int i = 0; i < n; ++i) {
    engines_.emplace_back(
        std::vector<std::string>{"/usr/bin/ipengine", "--profile-dir=" + profile_dir_.string()},
        process_options());
  }
}

std::string PythonCluster::engines_output() const {
  std::string out;
  for (std::size_t i = 0; i < engines_.size(); ++i)
    out += "\nengine process " + std::to_string(i) + ":\n" + engines_[i].stderr_text();
  return out;
}

void PythonCluster::start_cpp_engines(int n, std::vector<std::string> args) {
  for (int i = 0; i < n; ++i) {
    std::vector<std::string> argv = {tool_path("ipcpp-engine"), "--profile-dir",
                                     profile_dir_.string()};
    argv.insert(argv.end(), args.begin(), args.end());
    engines_.emplace_back(argv, process_options());
  }
}

json PythonCluster::scenario(const std::string& name, std::vector<std::string> args,
                             std::chrono::seconds timeout) {
  return run_scenario("controller_scenarios.py", name, std::move(args), timeout);
}

json PythonCluster::engine_scenario(const std::string& name, std::vector<std::string> args,
                                    std::chrono::seconds timeout) {
  return run_scenario("engine_scenarios.py", name, std::move(args), timeout);
}

json PythonCluster::run_scenario(const std::string& script, const std::string& name,
                                 std::vector<std::string> args, std::chrono::seconds timeout) {
  std::vector<std::string> argv = {IPCPP_REFERENCE_PYTHON,
                                   std::string(IPCPP_INTEROP_DIR) + "/" + script, name,
                                   "--profile-dir", profile_dir_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  const RunResult result = run(argv, process_options(), timeout);
  // The last non-empty line of its output.
  std::string line;
  std::istringstream lines(result.out);
  for (std::string l; std::getline(lines, l);) {
    if (!l.empty()) line = l;
  }
  if (result.exit_code != 0 || !json::accept(line)) {
    throw std::runtime_error("scenario " + name + " failed (exit " +
                             std::to_string(result.exit_code) + ")\nstdout:\n" + result.out +
                             "\nstderr:\n" + result.err + "\ncontroller:\n" +
                             controller_->stderr_text() + engines_output());
  }
  return json::parse(line);
}

}  // namespace ipcpp::test
