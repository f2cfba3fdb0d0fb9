// The engine's heartbeat thread: echoes every ping of the controller's heartbeat monitor back
// byte for byte, on its own thread, so that an engine busy with a long task is never
// declared dead. It also watches for the controller going away: after `controller_timeout`
// without a ping it tells the control thread, which stops the engine.
#pragma once

#include <chrono>
#include <memory>

#include <spdlog/logger.h>
#include <zmq.hpp>

namespace ipcpp::engine {

// What the heartbeat thread sends the control thread (one frame), then the seconds (text).
inline constexpr std::string_view kControllerGone = "controller-gone";

struct HeartbeatSockets {
  zmq::socket_t ping;     // SUB, subscribed to everything, connected to hb_ping
  zmq::socket_t pong;     // DEALER, identity = uuid, connected to hb_pong
  zmq::socket_t control;  // PAIR to the control thread
};

// Runs until the context is shut down. controller_timeout 0: never give up.
void run_heartbeat(HeartbeatSockets sockets, std::chrono::milliseconds controller_timeout,
                   std::shared_ptr<spdlog::logger> log);

}  // namespace ipcpp::engine
