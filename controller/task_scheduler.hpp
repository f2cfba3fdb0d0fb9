// The load-balanced task scheduler: one thread between the clients' task ROUTER and the
// engines' task ROUTER.
//
// Per task (docs/controller.md): authenticate; copy to the monitor ("intask"); check the
// dependencies (after/follow, all/any, success/failure) and fail at once with
// InvalidDependency or ImpossibleDependency; wait in the queue until `after` is met and an
// engine can take it (load < hwm, in targets, not blacklisted, `follow` met there); pick one
// with the scheme; send; report the destination ("tracktask"). A reply goes to the client and
// the monitor ("outtask"). A failed reply with retries left moves the task to another engine.
//
// Differences from the reference, on purpose:
//  - a task that every engine has failed (retries over all of them) gets that failure as its
//    reply, instead of waiting forever;
//  - when an engine dies its tasks fail with EngineError (or are retried) at once, not 5 s
//    later, and the error names the engine by id and uuid.
#pragma once

#include <cstddef>
#include <string>

#include <zmq.hpp>

#include "controller/common.hpp"
#include "proto/session.hpp"
#include "proto/zmtp_socket.hpp"

namespace ipcpp::controller {

// The client- and engine-facing ROUTERs speak ZMTP themselves (proto/zmtp_socket.hpp): the
// scheduler's thread reads and writes their TCP connections, with no ZeroMQ I/O thread between.
struct TaskSockets {
  proto::ZmtpSocket client;    // ROUTER "task_in": client port
  proto::ZmtpSocket engine;    // ROUTER "task_out": engine port
  zmq::socket_t resubmit;      // ROUTER "task_in" on kTaskEndpoint: the hub's resubmissions
  zmq::socket_t notification;  // SUB to kNotificationEndpoint
  zmq::socket_t monitor;       // PUB to kMonitorEndpoint
};

struct TaskSchedulerOptions {
  std::string scheme = "leastload";  // see schemes.hpp
  int hwm = 1;                       // most outstanding tasks per engine; 0: no limit
  // Most finished tasks whose outcomes are kept for after/follow; beyond it the oldest are
  // forgotten, except those a task still in the scheduler depends on.
  std::size_t dependency_history = 100000;
};

// Runs until the context is shut down.
void run_task_scheduler(TaskSockets sockets, TaskSchedulerOptions options,
                        proto::SessionOptions session_options, Logger log);

}  // namespace ipcpp::controller
