// A ZeroMQ-compatible socket that speaks ZMTP 3 (RFC 23/37, NULL mechanism) itself over
// plain TCP connections, with no ZeroMQ I/O thread between the caller and the kernel.
//
// Why: with libzmq every message crosses the sender's and the receiver's background I/O
// threads, two thread hand-offs per hop on top of the TCP stack (bench/RESULTS.md measures
// them as most of a direct round trip's CPU). A ZmtpSocket reads and writes its connections
// from the thread that owns it, in the same call that sends or receives, so a hop costs one
// wake-up on each side. Peers cannot tell: they see an ordinary ZMTP 3 peer of the socket's
// type (real libzmq and pyzmq sockets, ipyparallel's controller included).
//
// Scope: socket types ROUTER, DEALER, PUB and SUB over tcp:// endpoints (IPv4), connecting
// and binding. Each endpoint connected to has one connection, made again after it breaks
// (every reconnect_interval), as libzmq does; a bound endpoint accepts any number of peers.
//
// Threading: like a zmq::socket_t, one ZmtpSocket belongs to one thread. It is polled through
// one file descriptor (fd(), an epoll set of its connections and its reconnect timer) that
// sits next to ZeroMQ sockets in a proto::Poller (proto/poller.hpp) or a zmq::poll list.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <zmq.hpp>

namespace ipcpp::proto {

enum class ZmtpSocketType { kRouter, kDealer, kPub, kSub };

struct ZmtpSocketOptions {
  ZmtpSocketType type = ZmtpSocketType::kDealer;
  // The routing id announced to peers (ROUTER, DEALER): a peer ROUTER routes to us by it.
  std::string identity;
  // How long to wait before connecting again after a connection fails or breaks.
  std::chrono::milliseconds reconnect_interval{100};
  // PUB: whole messages queued for one peer before new ones for that peer are dropped, as
  // libzmq's send high-water mark drops them (0: no limit). Other types never drop what
  // they queue for a connected peer.
  std::size_t send_limit = 0;
  // A connection whose peer has not completed the ZMTP handshake this long after the TCP
  // connection was made is closed (and, when we connected, made again), as libzmq's
  // ZMQ_HANDSHAKE_IVL does: a silent peer holds nothing for good.
  std::chrono::milliseconds handshake_timeout{30000};
  // How long the destructor keeps writing what is still queued.
  std::chrono::milliseconds linger{1000};
  // Told about a connection's problem (refused, broken, a peer that is not ZMTP 3 or speaks
  // another mechanism): one line, for the owner's log. Once per endpoint until a handshake
  // succeeds again, so that a peer that stays away is not reported at every reconnect.
  // May be empty.
  std::function<void(std::string_view)> on_problem;
};

class ZmtpSocket {
 public:
  explicit ZmtpSocket(ZmtpSocketOptions options);
  ~ZmtpSocket();  // writes what is queued for up to options.linger, then closes
  ZmtpSocket(const ZmtpSocket&) = delete;
  ZmtpSocket& operator=(const ZmtpSocket&) = delete;
  ZmtpSocket(ZmtpSocket&&) noexcept;
  ZmtpSocket& operator=(ZmtpSocket&&) noexcept;

  // Starts connecting to "tcp://host:port" (a host name or an IPv4 address). Returns at once;
  // the connection is made, and made again, while the socket is used. Throws
  // std::invalid_argument for an endpoint it cannot use.
  void connect(std::string_view endpoint);

  // Listens on "tcp://ip:port" ("*" for every interface; port "*" or 0 for one the OS picks)
  // and accepts peers as they come; returns the port. An accepted connection that ends is
  // gone (its peer connects again). A ROUTER peer that connects again under the identity of
  // a connection still open replaces that connection (libzmq would refuse the newcomer until
  // the old one times out). Throws std::invalid_argument or std::system_error when the
  // endpoint cannot be bound.
  int bind(std::string_view endpoint);

  // SUB: receive only messages whose first frame starts with `prefix` ("" for all). Sent to
  // every peer now and after every reconnect.
  void subscribe(std::string_view prefix);

  // Readable (POLLIN) whenever process() has something to do. Poll it, then call receive()
  // until it returns nothing: a message already read from the kernel does not make fd()
  // readable again.
  int fd() const;

  // Does whatever is ready without blocking: connection progress, reading, writing, reconnect
  // timers. receive() and send() call it; call it directly after polling fd() when not
  // receiving.
  void process();

  // One whole message, or an empty vector when none has arrived. ROUTER: the first frame is
  // the routing id of the peer it came from (the peer's announced identity, or 5 bytes made
  // up here, as libzmq makes them).
  std::vector<zmq::message_t> receive();

  // Queues one whole message and writes as much of it as the kernel takes now (the rest is
  // written by later calls). Frames are written from their own memory, never copied.
  // ROUTER: the first frame names the peer and is not sent; returns false (the message is
  //   dropped) when no connected peer has that routing id.
  // DEALER: to the connected peers in turn; with none connected, queued for the first
  //   endpoint until it connects.
  // PUB: to every peer; returns false when every peer's queue was full (send_limit).
  // SUB: throws std::logic_error.
  bool send(std::vector<zmq::message_t>&& frames);

  // Write batches. Between begin_batch() and the matching end_batch(), send() only queues
  // what it is given (a connection holding 64 KiB or more is written at once all the same);
  // end_batch() writes what was held, each connection's messages in as few sendmsg calls as
  // the kernel takes. A thread that handles a burst of input opens a batch around it, so the
  // messages it sends in reply leave in one write per peer rather than one each, and the
  // peer wakes once for all of them. Batches nest (the outermost end writes). Never block
  // (poll) with a batch open: what it holds would wait. WriteBatch does both ends.
  void begin_batch();
  void end_batch();

  // Writes until nothing is queued for any connected peer or `timeout` passes; true when
  // everything was written.
  bool flush(std::chrono::milliseconds timeout);

  // True while something queued for a connected peer is not fully written yet (process()
  // writes more of it when fd() is readable).
  bool has_unsent() const;

  // Messages read from the kernel and not yet taken by receive(). A caller that stops taking
  // before receive() returns nothing must not block on fd() while this is not zero.
  std::size_t waiting() const;

  // Connections whose ZMTP handshake is complete.
  std::size_t connected_peers() const;
  // Handshakes completed since the socket was made (a reconnect counts again).
  std::uint64_t handshakes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A write batch of `socket` (ZmtpSocket::begin_batch) for the guard's lifetime.
class WriteBatch {
 public:
  explicit WriteBatch(ZmtpSocket& socket) : socket_(socket) { socket_.begin_batch(); }
  ~WriteBatch() { socket_.end_batch(); }
  WriteBatch(const WriteBatch&) = delete;
  WriteBatch& operator=(const WriteBatch&) = delete;

 private:
  ZmtpSocket& socket_;
};

// The same calls as for a zmq::socket_t (proto/wire.hpp), so code can hold either.
// recv_frames never blocks with recv_flags::dontwait; with recv_flags::none it polls fd().
std::vector<zmq::message_t> recv_frames(ZmtpSocket& socket,
                                        zmq::recv_flags flags = zmq::recv_flags::none);
// Always queues (a ZmtpSocket never blocks a sender): returns what send() returns.
bool send_frames(ZmtpSocket& socket, std::vector<zmq::message_t>&& frames,
                 zmq::send_flags flags = zmq::send_flags::none);

}  // namespace ipcpp::proto
