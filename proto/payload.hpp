// The ipcpp payload of apply requests and replies (docs/protocol.md, "C++ payloads").
//
// Request buffers:  [ {"ipcpp": 1, "f": NAME, "args": [...], "kwargs": {...}} , array_0, ... ]
// Result buffers:   [ {"ipcpp": 1, "value": ...} , array_0, ... ]
// The first buffer is compact JSON in which each array stands as a {"__buffer__": k, "dtype",
// "shape"} reference; array k is raw frame k+1. Frames are made from the arrays' bytes and
// arrays from received frames without copying.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

#include "ipcpp/value.hpp"

#include "proto/errors.hpp"

namespace ipcpp::proto {

inline constexpr int kPayloadVersion = 1;

struct ApplyCall {
  std::string function;
  Value args;    // a list
  Value kwargs;  // an object
};

// args must be a list value and kwargs an object value (or null for none).
std::vector<zmq::message_t> encode_apply(std::string_view function, const Value& args,
                                         const Value& kwargs = Value());
// Returns kUnsupported for a Python pickle (first byte 0x80) or another payload version,
// kBadContent for a malformed payload.
Result<ApplyCall> decode_apply(std::vector<zmq::message_t>&& buffers);

std::vector<zmq::message_t> encode_value(const Value& value);
Result<Value> decode_value(std::vector<zmq::message_t>&& buffers);

// A frame that shares `bytes` (no copy; the frame keeps them alive).
zmq::message_t to_frame(const Bytes& bytes);
// Bytes that share the frame's data (no copy; they keep the frame alive).
Bytes to_bytes(zmq::message_t&& frame);

// True when the frame starts like a Python pickle (the PROTO opcode 0x80).
bool is_python_pickle(const zmq::message_t& frame);

}  // namespace ipcpp::proto
