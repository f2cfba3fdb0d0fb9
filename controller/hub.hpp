// The hub: one thread that keeps the engine registry and the task records and answers every
// query on the registration socket.
//
//  - Engines register (registration_request -> registration_reply); registration completes
//    when the heartbeat monitor first hears the engine's heart, and is then announced on the
//    notification socket. Registrations that never beat are purged after
//    `registration_timeout`. An engine is unregistered when its heart stops, when it (or its
//    nanny) asks, or when it publishes shutdown_reply on iopub; its outstanding direct
//    requests are recorded as failed with EngineError at once.
//  - Clients query: connection, queue, result, history, db, purge, resubmit, shutdown. Reply
//    shapes are the reference's; invalid queries get hub_error.
//  - The relays and schedulers send it copies of their traffic on the monitor socket, from
//    which it builds the task records (controller/task_store.hpp).
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>

#include <zmq.hpp>

#include "controller/common.hpp"
#include "controller/task_store.hpp"
#include "proto/messages.hpp"
#include "proto/session.hpp"

namespace ipcpp::controller {

struct HubSockets {
  zmq::socket_t registration;  // ROUTER, bound on the registration port
  zmq::socket_t notification;  // PUB, bound on the client notification port and in-process
  zmq::socket_t monitor;       // SUB, bound at kMonitorEndpoint, subscribed to everything
  zmq::socket_t resubmit;      // DEALER connected to kTaskEndpoint
};

struct HubOptions {
  proto::EngineConnectionInfo engine_info;  // sent to engines in registration_reply
  std::chrono::milliseconds heartbeat_period{1000};
  std::chrono::milliseconds registration_timeout{10000};
  // Where the registry of engines (id <-> uuid) is kept, rewritten at each change; "" for
  // nowhere. With restore_engines, the engines listed there when the hub starts (a controller
  // restarted with --reuse) are registered again, with their old ids, as soon as their hearts
  // beat: they need not register again.
  std::filesystem::path engines_file;
  bool restore_engines = false;
  // Called (from the hub thread) once a shutdown_request has been answered.
  std::function<void()> on_shutdown;
};

// Runs until the context is shut down; flushes the store before returning.
void run_hub(HubSockets sockets, HubOptions options, std::unique_ptr<TaskStore> store,
             proto::SessionOptions session_options, Logger log);

}  // namespace ipcpp::controller
