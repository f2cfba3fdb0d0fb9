// The engine's control thread: serves control requests while the kernel runs a task (abort,
// clear, shutdown, signal), and decides when the engine stops — on a shutdown request, on
// SIGTERM/SIGINT/SIGHUP, or when the heartbeat thread reports the controller gone. Stopping
// cancels the running task, tells the controller (unregistration_request), and tells the
// kernel to return; a task that ignores cancellation for longer than the grace period does
// not hold the process: it exits without it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "engine/running_task.hpp"
#include "proto/session.hpp"

namespace ipcpp::engine {

struct ControlSockets {
  zmq::socket_t control;       // ROUTER, identity = uuid, connected to the control port
  zmq::socket_t registration;  // DEALER to the registration port (unregistration_request)
  zmq::socket_t kernel;        // PAIR to the kernel
  zmq::socket_t heartbeat;     // PAIR from the heartbeat thread
};

struct ControlOptions {
  std::int64_t engine_id = -1;
  int signal_fd = -1;          // signalfd for SIGTERM, SIGINT and SIGHUP, or -1
  std::string controller_url;  // for messages
  // How long a task that ignores cancellation may hold a stopping engine. Default: 500 ms.
  std::chrono::milliseconds stop_grace{500};
};

// The exit status the engine ends with, set once by the control thread when it decides to stop.
struct StopState {
  std::atomic<int> exit_code{0};
};

// Runs until the kernel has stopped (and the controller has been told, when the stop is
// clean) or the context is shut down.
void run_control(ControlSockets sockets, proto::SessionOptions session, ControlOptions options,
                 RunningTask& running, StopState& stop, std::shared_ptr<spdlog::logger> log);

}  // namespace ipcpp::engine
