// ipcpp::engine_main: ipcpp-engine's command line, shared by custom engine programs. Parses
// options (command line > the profile's ipcpp_engine.toml > defaults), loads task
// libraries, finds the connection file, and runs the engine.
//
// Exit codes: 0 after a clean stop, 1 when the engine cannot start or lost its controller,
// 2 for a wrong command line.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "ipcpp/engine.hpp"

#include "engine/engine.hpp"
#include "engine/output_capture.hpp"
#include "engine/registry.hpp"
#include "profiles/profile.hpp"
#include "profiles/program_cli.hpp"
#include "proto/allocator.hpp"

namespace ipcpp {
namespace {

namespace fs = std::filesystem;
using engine::Engine;
using engine::EngineOptions;
using engine::FunctionRegistry;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  profiles::CommonOptions common;  // profile, cluster id, logging
  std::string file;
  std::vector<std::string> load;
  double timeout = 5;
  double controller_timeout = 60;
  std::int64_t id = -1;
  std::string location;
  bool list_functions = false;
  bool capture_fd_output = true;
};

void build_cli(CLI::App& app, Options& o) {
  app.option_defaults()->always_capture_default();
  profiles::add_profile_options(app, o.common,
                                "Cluster id: use the profile's ipcontroller-ID-engine.json");
  app.add_option("--file,-f", o.file,
                 "Engine connection file (a copy of ipcontroller-engine.json); default: the "
                 "profile's")
      ->type_name("PATH");
  app.add_option("--load", o.load, "Task library (.so) to load; repeatable")
      ->type_name("LIB")
      ->take_all();
  app.add_option("--timeout", o.timeout,
                 "Seconds to wait for the connection file and for the controller to answer the "
                 "registration")
      ->check(CLI::PositiveNumber);
  app.add_option("--controller-timeout", o.controller_timeout,
                 "Seconds without a heartbeat from the controller after which the engine exits; "
                 "0: never")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--id", o.id,
                 "Engine id to ask for (an MPI rank); granted when free. Default: the "
                 "controller's next id")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--location", o.location,
                 "Host to reach the controller at when its connection file says ip '*'")
      ->type_name("HOST");
  app.add_flag("--capture-fd-output,!--no-capture-fd-output", o.capture_fd_output,
               "Send what tasks write to file descriptors 1 and 2 (printf, child processes) to "
               "their clients, as std::cout and std::cerr output is; with --no-capture-fd-output "
               "it goes to the engine's own stdout and stderr");
  profiles::add_log_options(app, o.common, "ipengine");
  app.add_flag("--list-functions", o.list_functions,
               "Print the functions this engine can run (after --load) and exit");
  app.footer(
      "Options may also be set in <profile>/ipcpp_engine.toml (ipcpp-profile create writes it "
      "with every option commented); the command line overrides the file. Exit status: 0 "
      "after a clean stop, 1 if the engine cannot start or lost its controller, 2 for a wrong "
      "command line.");
}

// Waits up to `timeout` for `path` to appear (a controller started a moment ago writes it).
bool wait_for_file(const fs::path& path, std::chrono::milliseconds timeout, spdlog::logger& log) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool told = false;
  std::error_code ec;
  while (!fs::exists(path, ec)) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    if (!told) {
      log.info("waiting for the connection file {}", path.string());
      told = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return true;
}

int run(const Options& o, const profiles::Profile& profile, FunctionRegistry functions) {
  // Made before the logger, which writes to the standard error the process had: its lines
  // must not end up in a task's output.
  std::optional<engine::FdOutputCapture> capture;
  std::string capture_problem;
  if (o.capture_fd_output) {
    try {
      capture.emplace();
    } catch (const std::system_error& e) {
      capture_problem = e.what();
    }
  }
  const auto log = profiles::make_program_logger("ipcpp-engine", o.common, "ipengine",
                                                 capture ? capture->original_stderr() : stderr);
  if (!capture_problem.empty()) {
    log->warn("{}: what tasks write to file descriptors 1 and 2 stays on this engine's own",
              capture_problem);
  }

  const auto timeout = std::chrono::milliseconds(static_cast<long>(o.timeout * 1000));
  const fs::path path =
      o.file.empty() ? profile.engine_connection_file(o.common.cluster_id) : fs::path(o.file);
  if (!wait_for_file(path, timeout, *log)) {
    throw std::runtime_error(fmt::format(
        "no connection file at {} after {:g} s: start the controller first, or give --file with "
        "a copy of its ipcontroller-engine.json",
        path.string(), o.timeout));
  }
  auto file = proto::read_engine_connection_file(path);
  if (!file) throw std::runtime_error(file.error().reason);

  EngineOptions options;
  options.connection = std::move(file).value();
  if (!o.location.empty()) options.connection.location = o.location;
  options.connection_path = path;
  if (o.id >= 0) options.requested_id = o.id;
  options.registration_timeout = timeout;
  options.controller_timeout =
      std::chrono::milliseconds(static_cast<long>(o.controller_timeout * 1000));
  options.log = log;
  options.output_capture = capture ? &*capture : nullptr;
  Engine engine(std::move(options), std::move(functions));
  try {
    return engine.run();
  } catch (const std::exception& e) {
    if (o.common.log_to_file) log->critical("{}", e.what());  // stderr gets it from engine_main
    throw;
  }
}

}  // namespace

int engine_main(int argc, char** argv) {
  const std::string program =
      argc > 0 ? fs::path(argv[0]).filename().string() : std::string("ipcpp-engine");
  CLI::App app(
      "An ipcpp engine: registers with a controller (ipcpp-controller or ipyparallel's "
      "ipcontroller) and runs C++ functions for its clients, one request at a time.",
      program);
  Options options;
  build_cli(app, options);
  proto::keep_freed_memory();
  Engine::block_stop_signals();
  try {
    profiles::use_profile_config(app, argc, argv, "engine");
    app.parse(argc, argv);
    profiles::log_level_option(options.common.log_level);

    FunctionRegistry functions;
    functions.add_builtins();
    functions.add_program_tasks();
    for (const auto& lib : options.load)
      functions.load_library(lib);
    if (options.list_functions) {
      for (const auto* f : functions.all())
        std::cout << f->name << "\t" << f->doc << "\t[" << f->origin << "]\n";
      return EXIT_SUCCESS;
    }
    return run(options, options.common.profile.resolve(), std::move(functions));
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << program << ": " << e.what() << " (see " << program << " --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << '\n';
    return kExitFailure;
  }
}

}  // namespace ipcpp
