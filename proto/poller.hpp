// Waiting on ZmtpSockets and ZeroMQ sockets together, with one poll(2) per wait.
//
// Why not zmq::poll: when nothing is ready, zmq_poll makes two poll calls per blocking wait
// (a first pass with a zero timeout), and before and after each it reads ZMQ_EVENTS of every
// ZeroMQ socket in the list, which costs a further poll of that socket's mailbox each time. A
// thread with one inproc socket beside its TCP connections made four or more system calls per
// wake-up; on a direct round trip, about 37 polls across the client, the controller and the
// engine (bench/RESULTS.md). A Poller waits on every descriptor in one poll(2) and reads
// ZMQ_EVENTS only for a ZeroMQ socket whose descriptor fired or whose state it cannot know.
//
// How it stays correct: a ZeroMQ socket's ZMQ_FD signals that the socket has commands to
// process (a message arrived in an empty pipe, the context ends), and any call on the socket
// (send, recv, ZMQ_EVENTS) may process them, and so take the signal. Reading ZMQ_EVENTS and
// finding no message, or a recv that finds nothing, processes every command: from then on
// the descriptor fires for the next message, and the Poller sleeps on it without asking
// again. After the owner's other calls on the socket (a recv that returned a message, a
// send) its state is unknown: readable() entries are looked at again by the next wait unless
// the owner says emptied(); a socket the owner also sends on needs touched() after the send.
// A ZeroMQ socket of a terminated context throws zmq::error_t (ETERM) from wait(), as
// zmq::poll does.
//
// Threading: like the sockets it waits on, a Poller belongs to one thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <poll.h>
#include <vector>

#include <zmq.hpp>

namespace ipcpp::proto {

class Poller {
 public:
  // A descriptor, readable on POLLIN (or an error or hang-up, which its owner handles when it
  // reads): a ZmtpSocket's fd(), a signalfd. Returns its index.
  std::size_t add(int fd);
  // A ZeroMQ socket, readable when ZMQ_EVENTS has ZMQ_POLLIN. Returns its index.
  std::size_t add(zmq::socket_t& socket);

  // A disabled entry is not waited on and never readable (the hub rests its monitor so).
  void set_enabled(std::size_t index, bool enabled);

  // Waits up to `timeout` (negative: without limit) until an entry is readable; returns at
  // once when a ZeroMQ socket already has a message. A signal (EINTR) ends the wait early
  // with nothing new readable. Throws zmq::error_t for ETERM, std::system_error otherwise.
  void wait(std::chrono::milliseconds timeout);

  // Whether the entry was readable at the end of the last wait().
  bool readable(std::size_t index) const { return entries_[index].readable; }

  // The owner's last call on this ZeroMQ socket was a recv that found nothing (EAGAIN): the
  // next wait() may sleep on its descriptor without reading its ZMQ_EVENTS.
  void emptied(std::size_t index);
  // The owner sent on this ZeroMQ socket (or made another call that may have processed its
  // commands) since it was last found empty: the next wait() reads its ZMQ_EVENTS.
  void touched(std::size_t index) { entries_[index].known_empty = false; }

 private:
  struct Entry {
    zmq::socket_t* socket = nullptr;  // null for a plain descriptor
    bool enabled = true;
    bool known_empty = false;  // ZeroMQ: found without a message, nothing done on it since
    bool readable = false;
  };
  std::vector<Entry> entries_;
  std::vector<pollfd> fds_;
};

}  // namespace ipcpp::proto
