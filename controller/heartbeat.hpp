// The heartbeat monitor: one thread that pings every engine and watches for the echoes.
//
// Every period it publishes a ping (one frame: the seconds since the monitor started, as
// text) on hb_ping; engines echo it byte for byte on hb_pong from a DEALER whose identity is
// their uuid. An echo of the current or the previous ping counts. It tells the hub, on the
// monitor socket:
//   new_heart      {"hearts": [uuid]} the first time a heart answers (at once, not at the
//                  next tick, so registration completes within one period);
//   stopped_heart  {"hearts": [uuid]} when a heart has missed `misses` pings in a row.
// A heart that answers again after being declared stopped is new again. The heart of an engine
// that unregistered (hub notification) is forgotten, so it is not reported as stopped later.
//
// A crashed engine is noticed at once, not after `misses` periods: the pong socket's monitor
// reports each closed TCP connection (ZMQ_EVENT_DISCONNECTED with its file descriptor), and
// the monitor knows which heart last sent a pong on that descriptor (ZMQ_SRCFD), so that
// heart is reported stopped as soon as its connection closes. Heartbeats still cover the
// engines that hang or vanish without closing their connections.
#pragma once

#include <chrono>

#include <zmq.hpp>

#include "controller/common.hpp"
#include "proto/session.hpp"

namespace ipcpp::controller {

struct HeartbeatSockets {
  zmq::socket_t ping;          // PUB, bound on hb_ping
  zmq::socket_t pong;          // ROUTER, bound on hb_pong
  zmq::socket_t monitor;       // PUB to kMonitorEndpoint
  zmq::socket_t notification;  // SUB to kNotificationEndpoint: forget unregistered engines
  zmq::socket_t pong_events;   // PAIR connected to the socket monitor of `pong`
};

// Starts a socket monitor on `pong` for closed connections and returns the PAIR socket that
// receives its events (for HeartbeatSockets::pong_events). Call before moving `pong`.
zmq::socket_t monitor_disconnections(zmq::context_t& ctx, zmq::socket_t& pong);

struct HeartbeatOptions {
  std::chrono::milliseconds period{1000};
  int misses = 2;
};

// Runs until the context is shut down.
void run_heartbeat(HeartbeatSockets sockets, HeartbeatOptions options,
                   proto::SessionOptions session_options, Logger log);

}  // namespace ipcpp::controller
