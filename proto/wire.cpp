#include "proto/wire.hpp"

#include <iterator>
#include <string>

namespace ipcpp::proto {
namespace {

bool is_delimiter(const zmq::message_t& frame) {
  return frame.size() == kDelimiter.size() && frame.to_string_view() == kDelimiter;
}

}  // namespace

Result<WireMessage> split(std::vector<zmq::message_t>&& frames) {
  std::size_t delimiter = 0;
  while (delimiter < frames.size() && !is_delimiter(frames[delimiter]))
    ++delimiter;
  if (delimiter == frames.size()) {
    return Error{Errc::kMissingDelimiter, "no <IDS|MSG> delimiter frame among the " +
                                              std::to_string(frames.size()) + " frames"};
  }
  const std::size_t after = frames.size() - delimiter - 1;
  if (after < 1 + kSignedFrameCount) {
    return Error{Errc::kTruncated,
                 "truncated message: " + std::to_string(after) +
                     " frames after the <IDS|MSG> delimiter, at least 5 needed (signature, "
                     "header, parent_header, metadata, content)"};
  }
  WireMessage m;
  auto it = frames.begin();
  const auto delim_it = it + static_cast<std::ptrdiff_t>(delimiter);
  m.identities.assign(std::make_move_iterator(it), std::make_move_iterator(delim_it));
  it = delim_it + 1;
  m.signature = std::move(*it++);
  m.header = std::move(*it++);
  m.parent_header = std::move(*it++);
  m.metadata = std::move(*it++);
  m.content = std::move(*it++);
  m.buffers.assign(std::make_move_iterator(it), std::make_move_iterator(frames.end()));
  return m;
}

std::vector<zmq::message_t> join(WireMessage&& m) {
  std::vector<zmq::message_t> frames;
  frames.reserve(m.identities.size() + 6 + m.buffers.size());
  for (auto& f : m.identities)
    frames.push_back(std::move(f));
  frames.emplace_back(kDelimiter.data(), kDelimiter.size());
  frames.push_back(std::move(m.signature));
  frames.push_back(std::move(m.header));
  frames.push_back(std::move(m.parent_header));
  frames.push_back(std::move(m.metadata));
  frames.push_back(std::move(m.content));
  for (auto& f : m.buffers)
    frames.push_back(std::move(f));
  return frames;
}

std::vector<zmq::message_t> recv_frames(zmq::socket_t& socket, zmq::recv_flags flags) {
  std::vector<zmq::message_t> frames;
  while (true) {
    zmq::message_t frame;
    if (!socket.recv(frame, flags)) return frames;  // would block before the first frame
    const bool more = frame.more();
    frames.push_back(std::move(frame));
    if (!more) return frames;
    flags = zmq::recv_flags::none;  // the rest of a multipart message is already here
  }
}

bool send_frames(zmq::socket_t& socket, std::vector<zmq::message_t>&& frames,
                 zmq::send_flags flags) {
  for (std::size_t i = 0; i < frames.size(); ++i) {
    const bool last = i + 1 == frames.size();
    const auto f = last ? flags : (flags | zmq::send_flags::sndmore);
    if (!socket.send(frames[i], f)) return false;  // only the first frame can would-block
  }
  return true;
}

}  // namespace ipcpp::proto
