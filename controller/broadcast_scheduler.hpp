// The broadcast scheduler: sends one request to many engines and returns their replies, one
// by one or coalesced into one message.
//
// On the wire it is the reference's tree of depth 1: the client talks to the root
// ("sub_scheduler_0", the client broadcast port); engine i talks to leaf i % 2
// ("sub_scheduler_00" / "sub_scheduler_01", the two engine broadcast ports), and sees the
// routing prefix [leaf, "sub_scheduler_0", client]. The copy an engine gets has msg_id
// "<original>_<engine uuid>" and metadata {targets (that leaf's), is_broadcast,
// is_coalescing, original_msg_id}. The root and its leaves live in one thread here, so no
// message crosses an internal hop.
//
// Non-coalescing: every engine reply goes to the client unchanged. Coalescing: one reply
// when every target has answered, with the header, parent and content of the last reply,
// every reply's buffers in target order, and metadata.broadcast_targets.
//
// Differences from the reference, on purpose: a request naming an engine that is not
// registered gets an EngineError reply at once (the reference drops it and the client
// hangs); a coalescing request whose engine dies completes with an EngineError instead of
// never.
#pragma once

#include <array>

#include <zmq.hpp>

#include "controller/common.hpp"
#include "proto/session.hpp"

namespace ipcpp::controller {

struct BroadcastSockets {
  zmq::socket_t client;                 // ROUTER "sub_scheduler_0", client broadcast port
  std::array<zmq::socket_t, 2> leaves;  // ROUTERs "sub_scheduler_00", "sub_scheduler_01"
  zmq::socket_t notification;           // SUB to kNotificationEndpoint
};

// Runs until the context is shut down.
void run_broadcast_scheduler(BroadcastSockets sockets, proto::SessionOptions session_options,
                             Logger log);

}  // namespace ipcpp::controller
