// The frame grammar of one message (docs/protocol.md):
//
//   [ident_0 ... ident_k-1] "<IDS|MSG>" signature header parent_header metadata content
//   [buffer_0 ... buffer_m-1]
//
// split() cuts a received multipart message at the first delimiter frame and checks the
// frame count before anything is read; join() lays the frames out again for sending. Frames
// are moved, never copied, so a relay can pass a message on untouched.
#pragma once

#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "proto/errors.hpp"

namespace ipcpp::proto {

inline constexpr std::string_view kDelimiter = "<IDS|MSG>";
// The four frames after the signature, in the order they are signed.
inline constexpr int kSignedFrameCount = 4;

struct WireMessage {
  std::vector<zmq::message_t> identities;  // routing frames before the delimiter
  zmq::message_t signature;                // lowercase hex HMAC, or empty when unsigned
  zmq::message_t header;
  zmq::message_t parent_header;
  zmq::message_t metadata;
  zmq::message_t content;
  std::vector<zmq::message_t> buffers;  // opaque binary frames after content
};

// Splits frames at the first "<IDS|MSG>" frame.
// Returns kMissingDelimiter when there is none, kTruncated when fewer than five frames follow
// it. The frames are moved into the result; on error they are dropped.
Result<WireMessage> split(std::vector<zmq::message_t>&& frames);

// The frames of `message` in wire order (identities, delimiter, signature, four dicts,
// buffers), moved out of it.
std::vector<zmq::message_t> join(WireMessage&& message);

// Receives one whole multipart message. Returns an empty vector when nothing was waiting on a
// non-blocking receive (flags = zmq::recv_flags::dontwait). Throws zmq::error_t on socket errors.
std::vector<zmq::message_t> recv_frames(zmq::socket_t& socket,
                                        zmq::recv_flags flags = zmq::recv_flags::none);

// Sends all frames as one multipart message. Returns false when a non-blocking send would
// block (nothing sent). Throws zmq::error_t on socket errors.
bool send_frames(zmq::socket_t& socket, std::vector<zmq::message_t>&& frames,
                 zmq::send_flags flags = zmq::send_flags::none);

}  // namespace ipcpp::proto
