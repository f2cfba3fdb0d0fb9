// An engine process: registers with a controller, then runs three threads — the kernel (the
// calling thread: requests one at a time), the control thread and the heartbeat thread —
// until it is told to stop. docs/engine.md describes the threads and their sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include <spdlog/logger.h>

#include "engine/registry.hpp"
#include "proto/connection_file.hpp"

namespace ipcpp::engine {

class FdOutputCapture;

struct EngineOptions {
  // The controller's engine connection file (a copy of ipcontroller-engine.json).
  proto::EngineConnectionFile connection;
  std::filesystem::path connection_path;  // for messages
  // The engine id to ask for (an MPI rank); the controller grants it when it is free.
  // Default: none (the controller's next id).
  std::optional<std::int64_t> requested_id;
  // How long the controller has to answer the registration. Default: 5 s.
  std::chrono::milliseconds registration_timeout{5000};
  // How long without a heartbeat before the engine decides its controller is gone and exits.
  // 0: never. Default: 60 s.
  std::chrono::milliseconds controller_timeout{60000};
  // How long a task that ignores cancellation may hold a stopping engine. Default: 500 ms.
  std::chrono::milliseconds stop_grace{500};
  std::shared_ptr<spdlog::logger> log;
  // What tasks write to file descriptors 1 and 2, captured for their clients; none: those
  // descriptors are left alone (std::cout and std::cerr are captured either way). Not owned.
  FdOutputCapture* output_capture = nullptr;
};

class Engine {
 public:
  Engine(EngineOptions options, FunctionRegistry functions);

  // Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it starts later),
  // so that the control thread receives them. Call first thing in main.
  static void block_stop_signals();

  // Registers, runs until stopped, and returns the exit status: 0 after a shutdown request or
  // a stop signal, 1 when the controller went away. Throws std::runtime_error when the
  // registration fails (no answer within the timeout, or refused), naming the controller.
  int run();

 private:
  EngineOptions options_;
  FunctionRegistry functions_;
};

// interface with "*" or "0.0.0.0" replaced by a host engines can reach: `location` when it is
// set, else 127.0.0.1 (ipyparallel's disambiguate_url).
std::string reachable_interface(const std::string& interface, const std::string& location);

}  // namespace ipcpp::engine
