// Small helpers for building and copying ZeroMQ frames in tests.
#pragma once

#include <string_view>
#include <vector>

#include <zmq.hpp>

namespace ipcpp::test {

// A frame holding a copy of `bytes` (NUL bytes included when the view spans them).
inline zmq::message_t frame(std::string_view bytes) {
  return zmq::message_t(bytes.data(), bytes.size());
}

inline zmq::message_t copy_frame(const zmq::message_t& f) {
  return zmq::message_t(f.data(), f.size());
}

// A deep copy of a multipart message, so that the same frames can be sent or decoded twice.
inline std::vector<zmq::message_t> copy_frames(const std::vector<zmq::message_t>& frames) {
  std::vector<zmq::message_t> out;
  out.reserve(frames.size());
  for (const auto& f : frames)
    out.push_back(copy_frame(f));
  return out;
}

}  // namespace ipcpp::test
