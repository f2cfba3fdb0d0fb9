#include "proto/poller.hpp"

#include <cerrno>
#include <system_error>

namespace ipcpp::proto {
namespace {

bool has_message(zmq::socket_t& socket) {
  return (socket.get(zmq::sockopt::events) & ZMQ_POLLIN) != 0;
}

}  // namespace

std::size_t Poller::add(int fd) {
  entries_.push_back(Entry{});
  fds_.push_back(pollfd{fd, POLLIN, 0});
  return entries_.size() - 1;
}

std::size_t Poller::add(zmq::socket_t& socket) {
  Entry e;
  e.socket = &socket;
  entries_.push_back(e);
  fds_.push_back(pollfd{socket.get(zmq::sockopt::fd), POLLIN, 0});
  return entries_.size() - 1;
}

void Poller::set_enabled(std::size_t index, bool enabled) {
  entries_[index].enabled = enabled;
  fds_[index].events = enabled ? POLLIN : 0;
  if (!enabled) entries_[index].readable = false;
}

void Poller::emptied(std::size_t index) {
  entries_[index].known_empty = true;
  entries_[index].readable = false;
}

void Poller::wait(std::chrono::milliseconds timeout) {
  // ZeroMQ sockets first: one whose state is unknown may hold a message that no signal will
  // announce any more (an earlier call took the signal); a message waiting means no sleep.
  bool message_waiting = false;
  for (Entry& e : entries_) {
    if (e.socket == nullptr) continue;
    e.readable = false;
    if (!e.enabled || e.known_empty) continue;
    e.readable = has_message(*e.socket);
    e.known_empty = !e.readable;
    message_waiting = message_waiting || e.readable;
  }
  const int ms = message_waiting ? 0 : timeout.count() < 0 ? -1 : static_cast<int>(timeout.count());
  const int n = ::poll(fds_.data(), fds_.size(), ms);
  if (n < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "poll");
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    Entry& e = entries_[i];
    const short revents = n > 0 ? fds_[i].revents : short{0};
    if (e.socket == nullptr) {
      e.readable = e.enabled && (revents & (POLLIN | POLLERR | POLLHUP)) != 0;
      continue;
    }
    // Its descriptor fired: reading ZMQ_EVENTS processes the commands, clearing the signal.
    if (e.enabled && !e.readable && (revents & POLLIN) != 0) {
      e.readable = has_message(*e.socket);
      e.known_empty = !e.readable;
    }
    // What the owner does with a readable socket is not known here.
    if (e.readable) e.known_empty = false;
  }
}

}  // namespace ipcpp::proto
