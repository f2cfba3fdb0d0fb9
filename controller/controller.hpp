// ipcpp-controller as a library: the options, and a Controller that binds every socket,
// writes the connection files and the pid file, runs the threads, and stops them all.
//
//   threads (each owns its sockets; they talk through inproc sockets only):
//     hub            registration ROUTER, notification PUB, monitor SUB, resubmit DEALER
//     heartbeat      hb_ping PUB, hb_pong ROUTER
//     mux, control   client ROUTER <-> engine ROUTER relays
//     iopub          engine SUB -> client PUB
//     task           load-balanced task scheduler
//     broadcast      broadcast scheduler (root and two leaves)
//
// See docs/controller.md for the sockets, ports and the monitor traffic.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "controller/common.hpp"
#include "controller/task_store.hpp"
#include "proto/connection_file.hpp"

namespace ipcpp::controller {

struct ControllerOptions {
  // The profile directory: connection files go to its security/, the pid file to its pid/,
  // the sqlite task store to tasks[-<cluster id>].db in it. Required.
  std::filesystem::path profile_dir;
  // A non-empty id names the files ipcontroller-<ID>-client.json / -engine.json. Default: "".
  std::string cluster_id;
  // Address to listen on. Default: 127.0.0.1. "*" or "0.0.0.0" listens on every interface.
  std::string ip = "127.0.0.1";
  // The host name peers use when ip is "*" or 0.0.0.0. Default: this machine's host name.
  std::string location;
  // Ports taken in order from this range, then chosen by the OS. Default: none (OS-chosen).
  std::optional<std::pair<int, int>> ports;
  // Task scheduling scheme. Default: leastload.
  std::string scheme = "leastload";
  // Most tasks outstanding per engine; 0: no limit. Default: 1.
  int hwm = 1;
  // Most finished tasks the task scheduler remembers for after/follow dependencies (the
  // oldest are forgotten first, never one that a waiting task depends on). Default: 100000.
  std::size_t dependency_history = 100000;
  // Task store (kind, limits); sqlite_path is set from profile_dir when empty.
  TaskStoreOptions store;
  // Heartbeat period, and beats an engine may miss in a row before it is unregistered.
  // Default: 1000 ms and 2, so a silent engine is noticed within 3 s.
  std::chrono::milliseconds heartbeat_period{1000};
  int heartbeat_misses = 2;
  // How long a registration may wait for the engine's first heartbeat before it is purged.
  // Default (zero): max(10 s, 10 heartbeat periods).
  std::chrono::milliseconds registration_timeout{0};
  // Reuse the ports and key of existing connection files (and keep the files at exit).
  bool reuse = false;
  Logger log;  // required
};

class Controller {
 public:
  explicit Controller(ControllerOptions options);
  // Stops the threads if they still run, and removes the files as stop() does.
  ~Controller();
  Controller(const Controller&) = delete;
  Controller& operator=(const Controller&) = delete;

  // Binds every socket, writes the connection files (0600) and pid/ipcontroller.pid, and
  // starts the threads. Throws std::runtime_error with a readable reason on a setup error
  // (a port in use, an unreadable connection file with --reuse, a store that cannot be
  // opened); nothing is left running or written then.
  void start();

  // Blocks SIGINT and SIGTERM in the calling thread (call it before start(), so that the
  // threads inherit the mask) ...
  static void block_stop_signals();
  // ... then waits until one of them arrives or a client asks the hub to shut down. Returns
  // the signal number, or 0 for a shutdown_request.
  int wait_for_stop();

  // Stops every thread, removes the pid file and, unless reuse, the connection files.
  void stop();

  const proto::ClientConnectionFile& client_file() const { return client_file_; }
  const proto::EngineConnectionFile& engine_file() const { return engine_file_; }
  const std::filesystem::path& client_file_path() const { return client_path_; }
  const std::filesystem::path& engine_file_path() const { return engine_path_; }

 private:
  ControllerOptions options_;
  std::unique_ptr<zmq::context_t> context_;
  std::vector<std::thread> threads_;
  proto::ClientConnectionFile client_file_;
  proto::EngineConnectionFile engine_file_;
  std::filesystem::path client_path_;
  std::filesystem::path engine_path_;
  std::filesystem::path pid_path_;
  std::filesystem::path engines_path_;  // the hub's engine registry
  int shutdown_fd_ = -1;                // eventfd the hub writes to on shutdown_request
  bool running_ = false;
};

}  // namespace ipcpp::controller
