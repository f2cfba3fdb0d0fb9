// The direct queues (mux and control) and the iopub forwarder: one thread each.
//
// A queue relays between a client-facing ROUTER and an engine-facing ROUTER, swapping the
// first two frames as ipyparallel's MonitoredQueue does:
//   client sends   [engine_uuid, <IDS|MSG>, ...]        the ROUTER adds the client's id
//   engine gets    [queue identity, client_id, <IDS|MSG>, ...]
//   engine replies with the same prefix; the client gets [engine_uuid, <IDS|MSG>, ...].
// Every message is authenticated (signature and replay) before it is forwarded; one that
// fails is dropped and logged with the reason. A copy of each forwarded message goes to the
// hub's monitor, prefixed with "in"/"out" (mux) or "incontrol"/"outcontrol" (control).
//
// Unlike the reference, a request for an engine that is not registered is not dropped in
// silence: the client gets an EngineError reply at once.
#pragma once

#include <string>

#include <zmq.hpp>

#include "controller/common.hpp"
#include "proto/session.hpp"
#include "proto/zmtp_socket.hpp"

namespace ipcpp::controller {

// The client- and engine-facing ROUTERs speak ZMTP themselves (proto/zmtp_socket.hpp): the
// queue's thread reads and writes their TCP connections, with no ZeroMQ I/O thread between.
struct QueueSockets {
  proto::ZmtpSocket client;    // ROUTER, identity "mux_in" / "control_in", client port
  proto::ZmtpSocket engine;    // ROUTER, identity "mux_out" / "control_out", engine port
  zmq::socket_t notification;  // SUB to kNotificationEndpoint
  zmq::socket_t monitor;       // PUB to kMonitorEndpoint
};

struct QueueNames {
  std::string name;        // "mux" or "control", for logs
  std::string in_prefix;   // "in" or "incontrol"
  std::string out_prefix;  // "out" or "outcontrol"
};

// Runs the queue until the context is shut down.
void run_queue(QueueSockets sockets, QueueNames names, proto::SessionOptions session_options,
               Logger log);

// The engine- and client-facing sockets speak ZMTP themselves (proto/zmtp_socket.hpp). The
// client side sends every message to every client; each client's SUB filters.
struct IopubSockets {
  proto::ZmtpSocket engine;  // SUB, bound on the engine port, subscribed to everything
  proto::ZmtpSocket client;  // PUB, bound on the client port
  zmq::socket_t monitor;     // PUB to kMonitorEndpoint
};

// Forwards engine output to clients unchanged (after authenticating it) and copies it to
// the monitor prefixed with "iopub". Runs until the context is shut down.
void run_iopub(IopubSockets sockets, proto::SessionOptions session_options, Logger log);

}  // namespace ipcpp::controller
