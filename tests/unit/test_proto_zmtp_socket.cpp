// ZmtpSocket (proto/zmtp_socket.hpp) against real libzmq peers bound on 127.0.0.1, and against
// plain TCP servers that are not ZeroMQ peers (or only pretend to be, to hold the socket in a
// state a libzmq peer never would). Every wait has a deadline; nothing asserts on speed.
#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <initializer_list>
#include <map>
#include <memory>
#include <netinet/in.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/types.h>
#include <system_error>
#include <thread>
#include <unistd.h>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <zmq.hpp>

#include "proto/wire.hpp"
#include "proto/zmtp_socket.hpp"
#include "support/frames.hpp"

using ipcpp::proto::ZmtpSocket;
using ipcpp::proto::ZmtpSocketOptions;
using ipcpp::proto::ZmtpSocketType;

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using Frames = std::vector<zmq::message_t>;
using ipcpp::test::copy_frames;
using ipcpp::test::frame;

constexpr std::chrono::milliseconds kDeadline = 5s;       // for one thing to happen
constexpr std::chrono::milliseconds kBulkDeadline = 60s;  // for 20,000 things to happen
constexpr std::chrono::milliseconds kStep = 20ms;         // the longest single poll
constexpr std::string_view kAnyPort = "tcp://127.0.0.1:*";
constexpr std::size_t kMiB = std::size_t{1} << 20;

// ---- Frames ----------------------------------------------------------------------------

Frames msg(std::initializer_list<std::string_view> parts) {
  Frames out;
  for (std::string_view p : parts)
    out.push_back(frame(p));
  return out;
}

Frames to_frames(const std::vector<std::string>& parts) {
  Frames out;
  for (const std::string& p : parts)
    out.push_back(frame(p));
  return out;
}

// `size` bytes in which every byte value occurs, shifted by `seed` so that frames differ.
std::string pattern(std::size_t size, unsigned seed) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    s[i] = static_cast<char>((i * 7 + seed) & 0xFFu);
  return s;
}

// "m17": built by appending (g++ 12 at -O3 warns falsely about "m" + std::string).
std::string numbered(std::string_view prefix, int n) {
  std::string s(prefix);
  s += std::to_string(n);
  return s;
}

// "a|b|c" from frames [from, end): a comparison that doctest prints readably.
std::string joined(const Frames& frames, std::size_t from = 0) {
  std::string out;
  for (std::size_t i = from; i < frames.size(); ++i) {
    if (i > from) out += '|';
    out += frames[i].to_string();
  }
  return out;
}

// Empty when frames [from, end) hold exactly the bytes of `want`; otherwise the first
// difference.
std::string mismatch(const Frames& got, const std::vector<std::string>& want,
                     std::size_t from = 0) {
  if (got.size() != from + want.size())
    return "got " + std::to_string(got.size()) + " frames, want " +
           std::to_string(from + want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    const zmq::message_t& f = got[from + i];
    if (f.to_string_view() == want[i]) continue;
    return "frame " + std::to_string(from + i) + ": got " + std::to_string(f.size()) +
           " bytes, want " + std::to_string(want[i].size()) +
           (f.size() == want[i].size() ? " (same size, other bytes)" : "");
  }
  return {};
}

// ---- Our socket ------------------------------------------------------------------------

ZmtpSocketOptions options(ZmtpSocketType type, std::string identity = {}) {
  ZmtpSocketOptions o;
  o.type = type;
  o.identity = std::move(identity);
  o.linger = 200ms;
  return o;
}

// Polls `ours` and `theirs` (kStep at most at a time), lets `ours` do what is ready, and
// repeats until `done` holds or `timeout` passes. Returns done()'s last value.
bool drive_until(ZmtpSocket& ours, const std::vector<zmq::socket_t*>& theirs,
                 const std::function<bool()>& done, std::chrono::milliseconds timeout = kDeadline) {
  const Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (Clock::now() >= deadline) return done();
    std::vector<zmq::pollitem_t> items;
    items.push_back(zmq::pollitem_t{nullptr, ours.fd(), ZMQ_POLLIN, 0});
    for (zmq::socket_t* s : theirs)
      items.push_back(zmq::pollitem_t{s->handle(), 0, ZMQ_POLLIN, 0});
    zmq::poll(items, kStep);
    ours.process();
  }
}

// Keeps `ours` working for `duration` without waiting for anything in particular.
void drive_for(ZmtpSocket& ours, const std::vector<zmq::socket_t*>& theirs,
               std::chrono::milliseconds duration) {
  drive_until(
      ours, theirs, [] { return false; }, duration);
}

// The next message `ours` receives within kDeadline (empty when none came).
Frames next_ours(ZmtpSocket& ours, const std::vector<zmq::socket_t*>& theirs = {}) {
  Frames got;
  drive_until(ours, theirs, [&] {
    got = ours.receive();
    return !got.empty();
  });
  return got;
}

// ---- libzmq peers ----------------------------------------------------------------------

// A libzmq socket bound on 127.0.0.1, as the real peers of a ZmtpSocket are.
struct Bound {
  zmq::socket_t socket;
  std::string endpoint;  // "tcp://127.0.0.1:<port>", the port the OS chose
};

using Configure = std::function<void(zmq::socket_t&)>;

// Binds a libzmq socket of `type` at `endpoint` (retried while a port just closed is still
// being released by libzmq's I/O thread). It closes without lingering. A ROUTER says so
// (EHOSTUNREACH) instead of dropping a message for a peer it does not know yet, and makes a
// sender wait instead of dropping at its high-water mark.
Bound bind_peer(zmq::context_t& ctx, zmq::socket_type type, std::string_view endpoint = kAnyPort,
                const Configure& configure = {}) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::linger, 0);
  if (type == zmq::socket_type::router) s.set(zmq::sockopt::router_mandatory, true);
  if (configure) configure(s);
  const Clock::time_point deadline = Clock::now() + kDeadline;
  for (;;) {
    try {
      s.bind(std::string(endpoint));
      break;
    } catch (const zmq::error_t& e) {
      if (e.num() != EADDRINUSE || Clock::now() >= deadline) throw;
      std::this_thread::sleep_for(kStep);
    }
  }
  std::string bound = s.get(zmq::sockopt::last_endpoint);
  return Bound{std::move(s), std::move(bound)};
}

// Sends a copy of `message` from libzmq socket `peer` if it can go now: false when a ROUTER
// does not know the routing id yet (its handshake with us is not done) or a queue is full.
bool try_send(zmq::socket_t& peer, const Frames& message) {
  try {
    return ipcpp::proto::send_frames(peer, copy_frames(message), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    if (e.num() == EHOSTUNREACH) return false;
    throw;
  }
}

// Sends `message` from `peer` as soon as it can go, driving `ours` meanwhile.
bool send_from(ZmtpSocket& ours, zmq::socket_t& peer, const Frames& message) {
  return drive_until(ours, {&peer}, [&] { return try_send(peer, message); });
}

// The next message libzmq socket `peer` receives within kDeadline while `ours` is driven
// (empty when none came).
Frames next_theirs(ZmtpSocket& ours, zmq::socket_t& peer) {
  Frames got;
  drive_until(ours, {&peer}, [&] {
    got = ipcpp::proto::recv_frames(peer, zmq::recv_flags::dontwait);
    return !got.empty();
  });
  return got;
}

// Connects `ours`, a DEALER named "dealer-1", to a new libzmq ROUTER too and checks that
// one message goes each way.
void check_dealer_still_works(ZmtpSocket& ours) {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ours.connect(hub.endpoint);
  REQUIRE(drive_until(ours, {&hub.socket}, [&] { return ours.connected_peers() == 1; }));
  REQUIRE(ours.send(msg({"still-here"})));
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|still-here");
  REQUIRE(send_from(ours, hub.socket, msg({"dealer-1", "and-back"})));
  CHECK(joined(next_ours(ours, {&hub.socket})) == "and-back");
}

// ---- Plain TCP peers -------------------------------------------------------------------

// A TCP server on 127.0.0.1 (port chosen by the OS) that is no ZeroMQ peer: it accepts and
// writes what the test tells it, and never reads. Connections stay open until it is
// destroyed.
class RawServer {
 public:
  // receive_buffer > 0: SO_RCVBUF of the connections, so that little is taken without reading.
  explicit RawServer(int receive_buffer = 0) {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    REQUIRE(listener_ >= 0);
    if (receive_buffer > 0)
      REQUIRE(::setsockopt(listener_, SOL_SOCKET, SO_RCVBUF, &receive_buffer,
                           sizeof receive_buffer) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = 0;
    REQUIRE(::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) == 1);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    REQUIRE(::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    port_ = ntohs(addr.sin_port);
  }
  ~RawServer() {
    for (int fd : connections_)
      ::close(fd);
    if (listener_ >= 0) ::close(listener_);
  }
  RawServer(const RawServer&) = delete;
  RawServer& operator=(const RawServer&) = delete;

  std::string endpoint() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

  // Accepts one connection if one is waiting.
  bool try_accept() {
    const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) return false;
    connections_.push_back(fd);
    return true;
  }

  // Writes all of `bytes` to the newest connection.
  void write(std::string_view bytes) {
    REQUIRE(!connections_.empty());
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n =
          ::send(connections_.back(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::vector<int> connections_;
};

// An endpoint on 127.0.0.1 where nothing listens (a port the OS chose, released again).
std::string free_endpoint() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  REQUIRE(::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) == 1);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return "tcp://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
}

// A ZMTP 3.0 greeting (RFC 23): signature, version, mechanism, as-server, filler: 64 bytes.
std::string zmtp_greeting(std::string_view mechanism) {
  std::string g(64, '\0');
  g[0] = '\xFF';
  g[9] = '\x7F';
  g[10] = '\x03';
  g[11] = '\x00';
  // Copied byte by byte: g++ 12 at -O3 warns falsely about string::replace here.
  for (std::size_t i = 0; i < mechanism.size() && i < 20; ++i)
    g[12 + i] = mechanism[i];
  return g;
}

// A short command frame READY with the one property Socket-Type.
std::string zmtp_ready(std::string_view socket_type) {
  std::string body = "\x05READY";
  body += '\x0B';
  body += "Socket-Type";
  body += std::string(3, '\0');
  body += static_cast<char>(socket_type.size());
  body += socket_type;
  return std::string{'\x04', static_cast<char>(body.size())} + body;
}

// A ZMTP 3.0 subscription to everything: a one-frame message holding the byte 1.
std::string zmtp_subscribe_all() {
  return std::string{'\x00', '\x01', '\x01'};
}

// A socket of `type` on which on_problem lines land in `lines`.
ZmtpSocketOptions reporting(ZmtpSocketType type, std::string identity,
                            std::vector<std::string>& lines) {
  ZmtpSocketOptions o = options(type, std::move(identity));
  o.on_problem = [&lines](std::string_view line) { lines.emplace_back(line); };
  return o;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string all_lines(const std::vector<std::string>& lines) {
  std::string out;
  for (const std::string& l : lines)
    out += l + "\n";
  return out;
}

// Connects a DEALER named "dealer-1" to `server`, which then writes `bytes` while keeping the
// connection open, and checks that the socket reports a problem (its lines land in `lines`)
// and completes no handshake.
void check_bad_peer_reported(ZmtpSocket& ours, RawServer& server, std::string_view bytes,
                             const std::vector<std::string>& lines) {
  ours.connect(server.endpoint());
  REQUIRE(drive_until(ours, {}, [&] { return server.try_accept(); }));
  const std::size_t before = lines.size();
  server.write(bytes);
  CHECK(drive_until(ours, {}, [&] { return lines.size() > before; }));
  INFO("reported:\n" << all_lines(lines));
  CHECK(ours.handshakes() == 0);
  CHECK(ours.connected_peers() == 0);
}

// Empty when frames [from, end) are the one frame `want`; otherwise what came instead.
std::string out_of_order(const Frames& got, std::size_t from, const std::string& want) {
  if (got.size() == from + 1 && got[from].to_string_view() == want) return {};
  return "want " + want + ", got " + joined(got, from);
}

}  // namespace

// ---- ROUTER ----------------------------------------------------------------------------

TEST_CASE(
    "zmtp socket: a libzmq ROUTER routes to a ROUTER by its identity, and replies route "
    "back by peer id") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "engine-1"));
  ours.connect(hub.endpoint);

  // libzmq knows "engine-1" only once the handshake is done there: try until it does.
  REQUIRE(send_from(ours, hub.socket, msg({"engine-1", "a", "b"})));
  Frames got = next_ours(ours, {&hub.socket});
  REQUIRE(got.size() == 3);
  CHECK(got[0].size() > 0);  // the peer id: made up here, as the hub announces none
  CHECK(joined(got, 1) == "a|b");

  Frames reply;
  reply.push_back(ipcpp::test::copy_frame(got[0]));
  reply.push_back(frame("x"));
  reply.push_back(frame("y"));
  CHECK(ours.send(std::move(reply)));
  CHECK(joined(next_theirs(ours, hub.socket)) == "engine-1|x|y");
  CHECK(ours.handshakes() == 1);
  CHECK(ours.connected_peers() == 1);
}

TEST_CASE("zmtp socket: a ROUTER drops a message for an unknown routing id and returns false") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "engine-1"));
  ours.connect(hub.endpoint);
  REQUIRE(send_from(ours, hub.socket, msg({"engine-1", "hello"})));
  Frames got = next_ours(ours, {&hub.socket});
  REQUIRE(got.size() == 2);

  CHECK_FALSE(ours.send(msg({"nobody-has-this-id", "lost"})));
  CHECK_FALSE(ours.send(msg({"", "lost"})));
  // Nothing of the dropped messages reaches the hub: the next it gets is the next good one.
  Frames good;
  good.push_back(ipcpp::test::copy_frame(got[0]));
  good.push_back(frame("kept"));
  CHECK(ours.send(std::move(good)));
  CHECK(joined(next_theirs(ours, hub.socket)) == "engine-1|kept");
}

TEST_CASE("zmtp socket: a ROUTER names a peer that announces a routing id by that id") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router, kAnyPort,
                        [](zmq::socket_t& s) { s.set(zmq::sockopt::routing_id, "hub"); });
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "engine-1"));
  ours.connect(hub.endpoint);
  REQUIRE(drive_until(ours, {&hub.socket}, [&] { return ours.connected_peers() == 1; }));

  // Known from the handshake: we can speak first.
  CHECK(ours.send(msg({"hub", "first"})));
  CHECK(joined(next_theirs(ours, hub.socket)) == "engine-1|first");
  REQUIRE(send_from(ours, hub.socket, msg({"engine-1", "second"})));
  CHECK(joined(next_ours(ours, {&hub.socket})) == "hub|second");
}

TEST_CASE("zmtp socket: a ROUTER connected to two libzmq ROUTERs tells them apart") {
  zmq::context_t ctx;
  Bound hub_a = bind_peer(ctx, zmq::socket_type::router);
  Bound hub_b = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "engine-1"));
  ours.connect(hub_a.endpoint);
  ours.connect(hub_b.endpoint);

  REQUIRE(send_from(ours, hub_a.socket, msg({"engine-1", "from-a"})));
  REQUIRE(send_from(ours, hub_b.socket, msg({"engine-1", "from-b"})));
  std::map<std::string, std::string> id_of;  // payload -> peer id
  for (int i = 0; i < 2; ++i) {
    Frames got = next_ours(ours, {&hub_a.socket, &hub_b.socket});
    REQUIRE(got.size() == 2);
    CHECK(got[0].size() > 0);
    id_of[got[1].to_string()] = got[0].to_string();
  }
  REQUIRE(id_of.count("from-a") == 1);
  REQUIRE(id_of.count("from-b") == 1);
  CHECK(id_of["from-a"] != id_of["from-b"]);
  CHECK(ours.connected_peers() == 2);

  // Sent to b first: a message that went to the wrong hub would be the first one a gets.
  CHECK(ours.send(msg({id_of["from-b"], "to-b"})));
  CHECK(ours.send(msg({id_of["from-a"], "to-a"})));
  CHECK(joined(next_theirs(ours, hub_a.socket)) == "engine-1|to-a");
  CHECK(joined(next_theirs(ours, hub_b.socket)) == "engine-1|to-b");
}

// ---- Frame sizes -----------------------------------------------------------------------

namespace {

// Sends `parts` from a DEALER to a libzmq ROUTER and back the other way, and checks that
// both sides get the same bytes.
void check_both_ways(const std::vector<std::string>& parts) {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);

  REQUIRE(ours.send(to_frames(parts)));
  Frames there = next_theirs(ours, hub.socket);
  REQUIRE(!there.empty());
  CHECK(there[0].to_string() == "dealer-1");
  CHECK(mismatch(there, parts, 1) == "");

  Frames back = msg({"dealer-1"});
  for (zmq::message_t& f : to_frames(parts))
    back.push_back(std::move(f));
  REQUIRE(send_from(ours, hub.socket, back));
  CHECK(mismatch(next_ours(ours, {&hub.socket}), parts) == "");
}

}  // namespace

TEST_CASE("zmtp socket: empty frames arrive intact both ways") {
  check_both_ways({""});
  check_both_ways({"", "x", "", ""});
}

TEST_CASE("zmtp socket: 255- and 256-byte frames (short and long ZMTP frames) arrive intact") {
  check_both_ways({pattern(255, 1)});
  check_both_ways({pattern(256, 2)});
  check_both_ways({pattern(254, 3), pattern(255, 4), pattern(256, 5), pattern(257, 6)});
}

TEST_CASE("zmtp socket: a 3 MB frame arrives intact both ways") {
  check_both_ways({pattern(3 * kMiB, 7)});
  check_both_ways({"head", pattern(3 * kMiB + 1, 8), "tail"});
}

TEST_CASE("zmtp socket: a 20-frame message arrives intact both ways") {
  std::vector<std::string> parts;
  for (unsigned i = 0; i < 20; ++i)
    parts.push_back(pattern(std::size_t{i} * 37, i));  // 0 to 703 bytes, short and long
  check_both_ways(parts);
}

// ---- Many messages ---------------------------------------------------------------------

TEST_CASE("zmtp socket: 20,000 small messages sent by us arrive in order, none lost") {
  constexpr int kCount = 20000;
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);

  int received = 0;
  std::string problem;
  const auto drain = [&] {
    for (Frames m = ipcpp::proto::recv_frames(hub.socket, zmq::recv_flags::dontwait); !m.empty();
         m = ipcpp::proto::recv_frames(hub.socket, zmq::recv_flags::dontwait)) {
      if (problem.empty() && m[0].to_string_view() != "dealer-1")
        problem = "from " + m[0].to_string();
      if (problem.empty()) problem = out_of_order(m, 1, numbered("m", received));
      ++received;
    }
  };
  int refused = 0;
  for (int i = 0; i < kCount; ++i) {
    if (!ours.send(msg({numbered("m", i)}))) ++refused;
    if (i % 256 == 0) drain();
  }
  CHECK(refused == 0);
  CHECK(drive_until(
      ours, {&hub.socket},
      [&] {
        drain();
        return received >= kCount;
      },
      kBulkDeadline));
  CHECK(received == kCount);
  CHECK(problem == "");
}

TEST_CASE("zmtp socket: 20,000 small messages sent to us arrive in order, none lost") {
  constexpr int kCount = 20000;
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  REQUIRE(ours.send(msg({"hello"})));
  REQUIRE(joined(next_theirs(ours, hub.socket)) == "dealer-1|hello");

  int sent = 0;
  int received = 0;
  std::string problem;
  CHECK(drive_until(
      ours, {&hub.socket},
      [&] {
        // The hub's queue is bounded (its high-water mark): send what it takes now.
        while (sent < kCount && try_send(hub.socket, msg({"dealer-1", numbered("m", sent)})))
          ++sent;
        for (Frames m = ours.receive(); !m.empty(); m = ours.receive()) {
          if (problem.empty()) problem = out_of_order(m, 0, numbered("m", received));
          ++received;
        }
        return received >= kCount;
      },
      kBulkDeadline));
  CHECK(sent == kCount);
  CHECK(received == kCount);
  CHECK(problem == "");
}

// ---- DEALER ----------------------------------------------------------------------------

TEST_CASE("zmtp socket: a DEALER's messages sent right after connect() arrive once connected") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  CHECK(ours.send(msg({"early-1"})));
  CHECK(ours.send(msg({"early-2", "two frames"})));

  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|early-1");
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|early-2|two frames");
  CHECK(ours.handshakes() == 1);
}

TEST_CASE("zmtp socket: a DEALER's messages wait while nothing listens and go once a peer binds") {
  std::vector<std::string> problems;
  const std::string endpoint = free_endpoint();
  ZmtpSocket ours(reporting(ZmtpSocketType::kDealer, "dealer-1", problems));
  ours.connect(endpoint);
  CHECK(ours.send(msg({"queued-1"})));
  CHECK(ours.send(msg({"queued-2"})));
  // Refused connections are reported (and made again).
  CHECK(drive_until(ours, {}, [&] { return !problems.empty(); }));
  CHECK(ours.handshakes() == 0);

  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router, endpoint);
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|queued-1");
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|queued-2");
  CHECK(ours.handshakes() == 1);
}

TEST_CASE("zmtp socket: a DEALER connected to two ROUTERs sends to them in turn") {
  zmq::context_t ctx;
  Bound hub_a = bind_peer(ctx, zmq::socket_type::router);
  Bound hub_b = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub_a.endpoint);
  ours.connect(hub_b.endpoint);
  REQUIRE(drive_until(ours, {&hub_a.socket, &hub_b.socket},
                      [&] { return ours.connected_peers() == 2; }));

  for (int i = 0; i < 4; ++i)
    CHECK(ours.send(msg({numbered("m", i)})));
  std::string at_a;
  std::string at_b;
  for (int i = 0; i < 2; ++i) {
    at_a += joined(next_theirs(ours, hub_a.socket)) + ";";
    at_b += joined(next_theirs(ours, hub_b.socket)) + ";";
  }
  // Each got two, every other one.
  const bool a_even = at_a == "dealer-1|m0;dealer-1|m2;" && at_b == "dealer-1|m1;dealer-1|m3;";
  const bool a_odd = at_a == "dealer-1|m1;dealer-1|m3;" && at_b == "dealer-1|m0;dealer-1|m2;";
  INFO("a got " << at_a << " b got " << at_b);
  CHECK((a_even || a_odd));
}

// ---- PUB and SUB -----------------------------------------------------------------------

TEST_CASE("zmtp socket: a PUB's messages reach a bound libzmq SUB under its subscription only") {
  zmq::context_t ctx;
  Bound sub = bind_peer(ctx, zmq::socket_type::sub, kAnyPort,
                        [](zmq::socket_t& s) { s.set(zmq::sockopt::subscribe, "engine."); });
  ZmtpSocket ours(options(ZmtpSocketType::kPub));
  ours.connect(sub.endpoint);

  // The subscription reaches us some time after the connection: publish until one arrives.
  Frames first;
  REQUIRE(drive_until(ours, {&sub.socket}, [&] {
    ours.send(msg({"engine.probe", "p"}));
    first = ipcpp::proto::recv_frames(sub.socket, zmq::recv_flags::dontwait);
    return !first.empty();
  }));
  CHECK(joined(first) == "engine.probe|p");

  for (std::string_view topic : {"other.1", "engine.2", "xengine.3", "engine", "engine.end"})
    ours.send(msg({topic, "body"}));
  std::string seen;
  CHECK(drive_until(ours, {&sub.socket}, [&] {
    for (Frames m = ipcpp::proto::recv_frames(sub.socket, zmq::recv_flags::dontwait); !m.empty();
         m = ipcpp::proto::recv_frames(sub.socket, zmq::recv_flags::dontwait))
      if (m[0].to_string_view() != "engine.probe") seen += joined(m) + ";";
    return seen.find("engine.end") != std::string::npos;
  }));
  CHECK(seen == "engine.2|body;engine.end|body;");
}

TEST_CASE("zmtp socket: a SUB receives what it subscribed to from a bound libzmq PUB, no more") {
  zmq::context_t ctx;
  Bound pub = bind_peer(ctx, zmq::socket_type::pub);
  ZmtpSocket ours(options(ZmtpSocketType::kSub));
  ours.subscribe("a");
  ours.connect(pub.endpoint);

  Frames first;
  REQUIRE(drive_until(ours, {}, [&] {
    try_send(pub.socket, msg({"b.probe"}));
    try_send(pub.socket, msg({"a.probe"}));
    first = ours.receive();
    return !first.empty();
  }));
  CHECK(joined(first) == "a.probe");

  for (std::string_view topic : {"b.1", "a.2", "ab", "b.a", "a.end"})
    REQUIRE(try_send(pub.socket, msg({topic, "body"})));
  std::string seen;
  CHECK(drive_until(ours, {}, [&] {
    for (Frames m = ours.receive(); !m.empty(); m = ours.receive())
      if (m[0].to_string_view() != "a.probe") seen += joined(m) + ";";
    return seen.find("a.end") != std::string::npos;
  }));
  CHECK(seen == "a.2|body;ab|body;a.end|body;");
}

TEST_CASE("zmtp socket: a SUB that subscribes once connected receives from then on") {
  zmq::context_t ctx;
  Bound pub = bind_peer(ctx, zmq::socket_type::pub);
  ZmtpSocket ours(options(ZmtpSocketType::kSub));
  ours.connect(pub.endpoint);
  REQUIRE(drive_until(ours, {}, [&] { return ours.connected_peers() == 1; }));

  ours.subscribe("x");
  std::string seen;
  CHECK(drive_until(ours, {}, [&] {
    try_send(pub.socket, msg({"y.probe"}));
    try_send(pub.socket, msg({"x.probe"}));
    for (Frames m = ours.receive(); !m.empty(); m = ours.receive())
      seen += joined(m) + ";";
    return !seen.empty();
  }));
  CHECK(seen.find("y.probe") == std::string::npos);
  CHECK(seen.find("x.probe") == 0);
}

TEST_CASE("zmtp socket: a SUB subscribes again after reconnecting") {
  zmq::context_t ctx;
  Bound pub = bind_peer(ctx, zmq::socket_type::pub);
  ZmtpSocket ours(options(ZmtpSocketType::kSub));
  ours.subscribe("a");
  ours.connect(pub.endpoint);
  // Publishes `topic` until it arrives (probes that arrive late, or come from an earlier
  // publisher, are passed over).
  const auto probe_until_received = [&](zmq::socket_t& from, std::string_view topic) {
    bool arrived = false;
    return drive_until(ours, {}, [&] {
      try_send(from, msg({topic}));
      for (Frames m = ours.receive(); !m.empty(); m = ours.receive())
        arrived = arrived || m[0].to_string_view() == topic;
      return arrived;
    });
  };
  REQUIRE(probe_until_received(pub.socket, "a.first"));
  CHECK(ours.handshakes() == 1);

  pub.socket.close();
  Bound again = bind_peer(ctx, zmq::socket_type::pub, pub.endpoint);
  CHECK(probe_until_received(again.socket, "a.again"));
  CHECK(ours.handshakes() == 2);
}

TEST_CASE("zmtp socket: a SUB cannot send") {
  ZmtpSocket ours(options(ZmtpSocketType::kSub));
  CHECK_THROWS_AS(ours.send(msg({"x"})), std::logic_error);
}

// ---- Reconnecting ----------------------------------------------------------------------

TEST_CASE("zmtp socket: a DEALER reconnects to a new ROUTER bound on the same endpoint") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  REQUIRE(ours.send(msg({"before"})));
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|before");
  CHECK(ours.handshakes() == 1);

  hub.socket.close();
  Bound again = bind_peer(ctx, zmq::socket_type::router, hub.endpoint);
  REQUIRE(drive_until(ours, {&again.socket},
                      [&] { return ours.handshakes() >= 2 && ours.connected_peers() == 1; }));
  REQUIRE(ours.send(msg({"after"})));
  CHECK(joined(next_theirs(ours, again.socket)) == "dealer-1|after");
  REQUIRE(send_from(ours, again.socket, msg({"dealer-1", "back"})));
  CHECK(joined(next_ours(ours, {&again.socket})) == "back");
  CHECK(ours.handshakes() == 2);
}

TEST_CASE("zmtp socket: a ROUTER reconnects to a new ROUTER bound on the same endpoint") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "engine-1"));
  ours.connect(hub.endpoint);
  REQUIRE(send_from(ours, hub.socket, msg({"engine-1", "before"})));
  CHECK(joined(next_ours(ours, {&hub.socket}), 1) == "before");
  CHECK(ours.handshakes() == 1);

  hub.socket.close();
  Bound again = bind_peer(ctx, zmq::socket_type::router, hub.endpoint);
  REQUIRE(send_from(ours, again.socket, msg({"engine-1", "after"})));
  Frames got = next_ours(ours, {&again.socket});
  REQUIRE(got.size() == 2);
  CHECK(got[1].to_string() == "after");
  Frames reply;
  reply.push_back(ipcpp::test::copy_frame(got[0]));
  reply.push_back(frame("reply"));
  CHECK(ours.send(std::move(reply)));
  CHECK(joined(next_theirs(ours, again.socket)) == "engine-1|reply");
  CHECK(ours.handshakes() == 2);
  CHECK(ours.connected_peers() == 1);
}

// ---- Bad peers -------------------------------------------------------------------------

TEST_CASE("zmtp socket: a peer that sends garbage is reported, not counted, and harms nothing") {
  std::vector<std::string> problems;
  RawServer server;
  ZmtpSocket ours(reporting(ZmtpSocketType::kDealer, "dealer-1", problems));
  std::string garbage = "GET / HTTP/1.1\r\nHost: not-a-zmtp-peer\r\n";
  garbage.resize(64, '?');
  check_bad_peer_reported(ours, server, garbage, problems);
  check_dealer_still_works(ours);
}

TEST_CASE("zmtp socket: a peer whose greeting names the PLAIN mechanism is reported and refused") {
  std::vector<std::string> problems;
  RawServer server;
  ZmtpSocket ours(reporting(ZmtpSocketType::kDealer, "dealer-1", problems));
  check_bad_peer_reported(ours, server, zmtp_greeting("PLAIN"), problems);
  bool named = false;
  for (const std::string& line : problems)
    named = named || lower(line).find("plain") != std::string::npos ||
            lower(line).find("mechanism") != std::string::npos;
  INFO("reported:\n" << all_lines(problems));
  CHECK(named);
  check_dealer_still_works(ours);
}

// ---- Heartbeats ------------------------------------------------------------------------

TEST_CASE("zmtp socket: a libzmq peer with heartbeats keeps the connection (PING is answered)") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router, kAnyPort, [](zmq::socket_t& s) {
    s.set(zmq::sockopt::heartbeat_ivl, 50);
    s.set(zmq::sockopt::heartbeat_timeout, 150);
  });
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  REQUIRE(ours.send(msg({"hello"})));
  REQUIRE(joined(next_theirs(ours, hub.socket)) == "dealer-1|hello");
  CHECK(ours.handshakes() == 1);

  drive_for(ours, {&hub.socket}, 600ms);  // a dozen PINGs, each to be answered within 150 ms
  CHECK(ours.handshakes() == 1);
  CHECK(ours.connected_peers() == 1);
  REQUIRE(ours.send(msg({"still"})));
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|still");
  REQUIRE(send_from(ours, hub.socket, msg({"dealer-1", "here"})));
  CHECK(joined(next_ours(ours, {&hub.socket})) == "here");
  CHECK(ours.handshakes() == 1);
}

// ---- recv_frames / send_frames ---------------------------------------------------------

TEST_CASE(
    "zmtp socket: recv_frames(dontwait) returns nothing when nothing waits, send_frames "
    "sends") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  REQUIRE(drive_until(ours, {&hub.socket}, [&] { return ours.connected_peers() == 1; }));

  CHECK(ipcpp::proto::recv_frames(ours, zmq::recv_flags::dontwait).empty());
  CHECK(ipcpp::proto::send_frames(ours, msg({"via", "send_frames"})));
  CHECK(joined(next_theirs(ours, hub.socket)) == "dealer-1|via|send_frames");

  REQUIRE(send_from(ours, hub.socket, msg({"dealer-1", "reply"})));
  Frames got;
  CHECK(drive_until(ours, {&hub.socket}, [&] {
    got = ipcpp::proto::recv_frames(ours, zmq::recv_flags::dontwait);
    return !got.empty();
  }));
  CHECK(joined(got) == "reply");
  CHECK(ipcpp::proto::recv_frames(ours, zmq::recv_flags::dontwait).empty());
}

TEST_CASE("zmtp socket: recv_frames without dontwait waits for the next message") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  auto ours = std::make_unique<ZmtpSocket>(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours->connect(hub.endpoint);
  REQUIRE(ours->send(msg({"hello"})));
  REQUIRE(joined(next_theirs(*ours, hub.socket)) == "dealer-1|hello");
  REQUIRE(try_send(hub.socket, msg({"dealer-1", "wake"})));

  // The blocking call runs on a thread of its own (which alone uses the socket until it is
  // joined), so that the test can give up on it.
  std::promise<Frames> result;
  std::future<Frames> future = result.get_future();
  std::thread reader([socket = ours.get(), promise = std::move(result)]() mutable {
    try {
      promise.set_value(ipcpp::proto::recv_frames(*socket));
    } catch (...) {
      promise.set_exception(std::current_exception());
    }
  });
  if (future.wait_for(kDeadline) != std::future_status::ready) {
    reader.detach();
    (void)ours.release();  // still in use by the reader: leaked rather than destroyed under it
    FAIL("recv_frames(socket) did not return within 5 s although a message was sent");
  }
  reader.join();
  CHECK(joined(future.get()) == "wake");
}

// ---- flush -----------------------------------------------------------------------------

TEST_CASE("zmtp socket: flush returns true once a 3 MB message is written to a peer that reads") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  ours.connect(hub.endpoint);
  REQUIRE(ours.send(msg({"hello"})));
  REQUIRE(joined(next_theirs(ours, hub.socket)) == "dealer-1|hello");
  CHECK(ours.flush(0ms));  // nothing queued

  const std::string big = pattern(3 * kMiB, 11);
  REQUIRE(ours.send(to_frames({big})));
  // The libzmq peer reads on a thread of its own, the only one to use it until joined.
  Frames got;
  std::string reader_error;
  std::thread reader([&] {
    try {
      zmq::pollitem_t item{hub.socket.handle(), 0, ZMQ_POLLIN, 0};
      const Clock::time_point deadline = Clock::now() + kDeadline;
      while (got.empty() && Clock::now() < deadline) {
        zmq::poll(&item, 1, kStep);
        got = ipcpp::proto::recv_frames(hub.socket, zmq::recv_flags::dontwait);
      }
    } catch (const std::exception& e) {
      reader_error = e.what();
    }
  });
  const bool flushed = ours.flush(2s);
  reader.join();
  CHECK(flushed);
  CHECK(reader_error == "");
  REQUIRE(!got.empty());
  CHECK(got[0].to_string() == "dealer-1");
  CHECK(mismatch(got, {big}, 1) == "");
}

TEST_CASE("zmtp socket: flush returns false after its timeout when the peer does not read") {
  // A peer that completes the handshake and then never reads, with a small receive buffer:
  // 16 MB cannot all be written.
  RawServer server(4096);
  ZmtpSocketOptions o = options(ZmtpSocketType::kDealer, "dealer-1");
  o.linger = 0ms;
  ZmtpSocket ours(std::move(o));
  ours.connect(server.endpoint());
  REQUIRE(drive_until(ours, {}, [&] { return server.try_accept(); }));
  server.write(zmtp_greeting("NULL") + zmtp_ready("ROUTER"));
  REQUIRE(drive_until(ours, {}, [&] { return ours.connected_peers() == 1; }));

  REQUIRE(ours.send(to_frames({pattern(16 * kMiB, 13)})));
  CHECK_FALSE(ours.flush(300ms));
  CHECK(ours.connected_peers() == 1);
}

TEST_CASE("zmtp socket: a PUB drops messages for a peer whose queue is full (send_limit)") {
  // A SUB that subscribes to everything and then never reads, with a small receive buffer.
  RawServer server(4096);
  ZmtpSocketOptions o = options(ZmtpSocketType::kPub);
  o.send_limit = 2;
  o.linger = 0ms;
  ZmtpSocket ours(std::move(o));
  ours.connect(server.endpoint());
  REQUIRE(drive_until(ours, {}, [&] { return server.try_accept(); }));
  server.write(zmtp_greeting("NULL") + zmtp_ready("SUB") + zmtp_subscribe_all());
  REQUIRE(drive_until(ours, {}, [&] { return ours.connected_peers() == 1; }));

  // The kernel takes a few MB; then two 1 MB messages are queued; then they are dropped.
  const std::string big = pattern(kMiB, 17);
  int accepted = 0;
  bool dropped = false;
  for (int i = 0; i < 64 && !dropped; ++i) {
    if (ours.send(to_frames({big})))
      ++accepted;
    else
      dropped = true;
  }
  INFO("accepted " << accepted << " messages of 1 MB");
  CHECK(dropped);
  CHECK(accepted >= 2);
}

// ---- The socket object -----------------------------------------------------------------

TEST_CASE("zmtp socket: connect rejects endpoints it cannot use") {
  ZmtpSocket ours(options(ZmtpSocketType::kDealer, "dealer-1"));
  CHECK_THROWS_AS(ours.connect("ipc:///tmp/zmtp-socket-test"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("127.0.0.1:5555"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("tcp://127.0.0.1"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("tcp://127.0.0.1:"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("tcp://127.0.0.1:port"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("tcp://127.0.0.1:70000"), std::invalid_argument);
  CHECK_THROWS_AS(ours.connect("tcp://127.0.0.1:*"), std::invalid_argument);
}

TEST_CASE("zmtp socket: a moved socket keeps its connections") {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket first(options(ZmtpSocketType::kDealer, "dealer-1"));
  first.connect(hub.endpoint);
  REQUIRE(first.send(msg({"from-first"})));
  REQUIRE(joined(next_theirs(first, hub.socket)) == "dealer-1|from-first");

  ZmtpSocket moved(std::move(first));
  CHECK(moved.handshakes() == 1);
  REQUIRE(moved.send(msg({"from-moved"})));
  CHECK(joined(next_theirs(moved, hub.socket)) == "dealer-1|from-moved");
  REQUIRE(send_from(moved, hub.socket, msg({"dealer-1", "to-moved"})));
  CHECK(joined(next_ours(moved, {&hub.socket})) == "to-moved");

  ZmtpSocket assigned(options(ZmtpSocketType::kDealer, "other"));
  assigned = std::move(moved);
  REQUIRE(assigned.send(msg({"from-assigned"})));
  CHECK(joined(next_theirs(assigned, hub.socket)) == "dealer-1|from-assigned");
  CHECK(assigned.handshakes() == 1);
}

// ---- Binding ---------------------------------------------------------------------------
// Our socket binds on 127.0.0.1 (port chosen by the OS); libzmq peers, or plain TCP clients,
// connect to it.

namespace {

std::string local_endpoint(int port) {
  return "tcp://127.0.0.1:" + std::to_string(port);
}

// A libzmq socket of `type` connected to 127.0.0.1:`port`. It closes without lingering.
zmq::socket_t connect_peer(zmq::context_t& ctx, zmq::socket_type type, int port,
                           const Configure& configure = {}) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::linger, 0);
  if (configure) configure(s);
  s.connect(local_endpoint(port));
  return s;
}

Configure routing_id(std::string id) {
  return [id = std::move(id)](zmq::socket_t& s) { s.set(zmq::sockopt::routing_id, id); };
}

// A reply to `request` (as our ROUTER received it): the same peer id, then `parts`.
Frames reply_to(const Frames& request, std::initializer_list<std::string_view> parts) {
  Frames out;
  out.push_back(ipcpp::test::copy_frame(request.at(0)));
  for (std::string_view p : parts)
    out.push_back(frame(p));
  return out;
}

// A plain TCP client (no ZeroMQ) connected to 127.0.0.1:`port`.
class RawClient {
 public:
  explicit RawClient(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    REQUIRE(::inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr) == 1);
    // On loopback the connection is made by the kernel's backlog, before any accept().
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  void write(std::string_view bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      REQUIRE(n > 0);
      done += static_cast<std::size_t>(n);
    }
  }

  // Reads what has arrived without waiting. True once the other side has closed the
  // connection (read returned 0, or an error such as ECONNRESET).
  bool closed_by_peer() {
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) continue;
      if (n == 0) return true;
      if (errno == EINTR) continue;
      return errno != EAGAIN && errno != EWOULDBLOCK;
    }
  }

 private:
  int fd_ = -1;
};

// What binding `endpoint` throws: empty when it does not throw; otherwise its what(), prefixed
// with "other exception: " when it is neither std::system_error nor std::invalid_argument.
std::string bind_error(ZmtpSocket& ours, const std::string& endpoint) {
  try {
    ours.bind(endpoint);
  } catch (const std::system_error& e) {
    return e.what();
  } catch (const std::invalid_argument& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("other exception: ") + e.what();
  }
  return {};
}

}  // namespace

TEST_CASE(
    "zmtp socket: bind returns the port the OS chose, and a bound ROUTER talks to a libzmq "
    "DEALER by its routing id") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  REQUIRE(port <= 65535);

  zmq::socket_t dealer = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("client-a"));
  REQUIRE(ipcpp::proto::send_frames(dealer, msg({"hello", "x"})));
  Frames got = next_ours(ours, {&dealer});
  CHECK(joined(got) == "client-a|hello|x");
  CHECK(ours.connected_peers() == 1);
  CHECK(ours.handshakes() == 1);

  CHECK(ours.send(msg({"client-a", "r"})));
  CHECK(joined(next_theirs(ours, dealer)) == "r");
}

TEST_CASE("zmtp socket: a bound ROUTER serves 20 libzmq DEALERs, each answered by its own id") {
  constexpr std::size_t kPeers = 20;
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);

  std::vector<zmq::socket_t> dealers;
  std::vector<zmq::socket_t*> theirs;
  dealers.reserve(kPeers);
  for (std::size_t i = 0; i < kPeers; ++i) {
    dealers.push_back(connect_peer(ctx, zmq::socket_type::dealer, port));
    REQUIRE(ipcpp::proto::send_frames(dealers.back(), msg({std::to_string(i)})));
  }
  for (zmq::socket_t& d : dealers)
    theirs.push_back(&d);

  // Answers every request with the index it carries, routed by the peer id it came with.
  std::map<std::string, std::string> index_of_id;
  std::string problem;
  CHECK(drive_until(ours, theirs, [&] {
    for (Frames m = ours.receive(); !m.empty(); m = ours.receive()) {
      if (m.size() != 2) {
        if (problem.empty()) problem = "request of " + std::to_string(m.size()) + " frames";
        continue;
      }
      if (m[0].size() != 5 && problem.empty())
        problem = "a made-up peer id of " + std::to_string(m[0].size()) + " bytes, not 5";
      index_of_id[m[0].to_string()] = m[1].to_string();
      if (!ours.send(reply_to(m, {m[1].to_string_view()})) && problem.empty())
        problem = "the reply to " + m[1].to_string() + " was refused";
    }
    return index_of_id.size() >= kPeers;
  }));
  CHECK(problem == "");
  CHECK(index_of_id.size() == kPeers);  // ids all differ
  CHECK(ours.connected_peers() == kPeers);

  std::vector<std::string> answer(kPeers);
  CHECK(drive_until(ours, theirs, [&] {
    bool all = true;
    for (std::size_t i = 0; i < kPeers; ++i) {
      if (answer[i].empty()) {
        Frames m = ipcpp::proto::recv_frames(dealers[i], zmq::recv_flags::dontwait);
        if (!m.empty()) answer[i] = joined(m);
      }
      all = all && !answer[i].empty();
    }
    return all;
  }));
  for (std::size_t i = 0; i < kPeers; ++i) {
    INFO("dealer " << i);
    CHECK(answer[i] == std::to_string(i));
  }
}

TEST_CASE("zmtp socket: a bound ROUTER serves a peer again after it disconnects and reconnects") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);

  {
    zmq::socket_t first = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("client-r"));
    REQUIRE(ipcpp::proto::send_frames(first, msg({"one"})));
    CHECK(joined(next_ours(ours, {&first})) == "client-r|one");
    CHECK(ours.send(msg({"client-r", "to-first"})));
    CHECK(joined(next_theirs(ours, first)) == "to-first");
    CHECK(ours.connected_peers() == 1);
  }  // closed
  CHECK(drive_until(ours, {}, [&] { return ours.connected_peers() == 0; }));
  CHECK_FALSE(ours.send(msg({"client-r", "to-nobody"})));

  zmq::socket_t again = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("client-r"));
  REQUIRE(ipcpp::proto::send_frames(again, msg({"two"})));
  CHECK(joined(next_ours(ours, {&again})) == "client-r|two");
  CHECK(ours.send(msg({"client-r", "to-again"})));
  CHECK(joined(next_theirs(ours, again)) == "to-again");
  CHECK(drive_until(ours, {&again}, [&] { return ours.connected_peers() == 1; }));
  CHECK(ours.handshakes() == 2);
}

TEST_CASE(
    "zmtp socket: a bound ROUTER hands a routing id over to a second peer that connects "
    "under it") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);

  // The first peer does not come back once replaced (libzmq would reconnect it after its
  // reconnect interval, and it would take the id back): what is checked is the handover.
  zmq::socket_t first = connect_peer(ctx, zmq::socket_type::dealer, port, [](zmq::socket_t& s) {
    s.set(zmq::sockopt::routing_id, "same");
    s.set(zmq::sockopt::reconnect_ivl, 600'000);
  });
  REQUIRE(ipcpp::proto::send_frames(first, msg({"from-first"})));
  CHECK(joined(next_ours(ours, {&first})) == "same|from-first");
  REQUIRE(ours.handshakes() == 1);

  zmq::socket_t second = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("same"));
  REQUIRE(drive_until(ours, {&first, &second}, [&] { return ours.handshakes() == 2; }));
  CHECK(drive_until(ours, {&first, &second}, [&] { return ours.connected_peers() == 1; }));

  CHECK(ours.send(msg({"same", "to-same"})));
  CHECK(joined(next_theirs(ours, second)) == "to-same");
  REQUIRE(ipcpp::proto::send_frames(second, msg({"from-second"})));
  CHECK(joined(next_ours(ours, {&first, &second})) == "same|from-second");
  drive_for(ours, {&first, &second}, 100ms);
  CHECK(joined(ipcpp::proto::recv_frames(first, zmq::recv_flags::dontwait)) == "");
  CHECK(ours.connected_peers() == 1);
}

TEST_CASE("zmtp socket: a bound SUB receives from two libzmq PUBs that connect to it") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kSub));
  ours.subscribe("");
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  zmq::socket_t pub_a = connect_peer(ctx, zmq::socket_type::pub, port);
  zmq::socket_t pub_b = connect_peer(ctx, zmq::socket_type::pub, port);

  // A PUB drops what it publishes until our subscription reaches it: publish until received.
  bool from_a = false;
  bool from_b = false;
  std::string other;
  CHECK(drive_until(ours, {&pub_a, &pub_b}, [&] {
    try_send(pub_a, msg({"from-a", "x"}));
    try_send(pub_b, msg({"from-b", "y"}));
    for (Frames m = ours.receive(); !m.empty(); m = ours.receive()) {
      const std::string got = joined(m);
      if (got == "from-a|x")
        from_a = true;
      else if (got == "from-b|y")
        from_b = true;
      else if (other.empty())
        other = got;
    }
    return from_a && from_b;
  }));
  CHECK(from_a);
  CHECK(from_b);
  CHECK(other == "");
  CHECK(ours.connected_peers() == 2);
}

TEST_CASE(
    "zmtp socket: a bound PUB delivers to a libzmq SUB that connects, under its subscription "
    "only") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kPub));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  zmq::socket_t sub = connect_peer(ctx, zmq::socket_type::sub, port,
                                   [](zmq::socket_t& s) { s.set(zmq::sockopt::subscribe, "t"); });

  Frames first;
  REQUIRE(drive_until(ours, {&sub}, [&] {
    ours.send(msg({"t.probe", "p"}));
    first = ipcpp::proto::recv_frames(sub, zmq::recv_flags::dontwait);
    return !first.empty();
  }));
  CHECK(joined(first) == "t.probe|p");

  for (std::string_view topic : {"x.1", "t.2", "u.t", "tt", "T.3", "t.end"})
    CHECK(ours.send(msg({topic, "body"})));
  std::string seen;
  CHECK(drive_until(ours, {&sub}, [&] {
    for (Frames m = ipcpp::proto::recv_frames(sub, zmq::recv_flags::dontwait); !m.empty();
         m = ipcpp::proto::recv_frames(sub, zmq::recv_flags::dontwait))
      if (m[0].to_string_view() != "t.probe") seen += joined(m) + ";";
    return seen.find("t.end") != std::string::npos;
  }));
  CHECK(seen == "t.2|body;tt|body;t.end|body;");
}

TEST_CASE(
    "zmtp socket: a client that sends garbage to a bound socket is disconnected and reported, "
    "and harms nothing") {
  std::vector<std::string> problems;
  ZmtpSocket ours(reporting(ZmtpSocketType::kRouter, "router-1", problems));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);

  RawClient client(port);
  std::string garbage = "GET / HTTP/1.1\r\nHost: not-a-zmtp-peer\r\n";
  garbage.resize(64, '?');
  client.write(garbage);
  CHECK(drive_until(ours, {}, [&] { return client.closed_by_peer(); }));
  CHECK(drive_until(ours, {}, [&] { return !problems.empty(); }));
  INFO("reported:\n" << all_lines(problems));
  CHECK(ours.handshakes() == 0);
  CHECK(ours.connected_peers() == 0);

  zmq::context_t ctx;
  zmq::socket_t dealer = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("client-g"));
  REQUIRE(ipcpp::proto::send_frames(dealer, msg({"after-garbage"})));
  CHECK(joined(next_ours(ours, {&dealer})) == "client-g|after-garbage");
  CHECK(ours.send(msg({"client-g", "served"})));
  CHECK(joined(next_theirs(ours, dealer)) == "served");
  CHECK(ours.connected_peers() == 1);
}

TEST_CASE(
    "zmtp socket: a client that connects and stays silent is disconnected after the "
    "handshake timeout") {
  std::vector<std::string> problems;
  ZmtpSocketOptions o = reporting(ZmtpSocketType::kRouter, "router-1", problems);
  o.handshake_timeout = 300ms;
  ZmtpSocket ours(std::move(o));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  RawClient silent(port);
  CHECK(drive_until(ours, {}, [&] { return silent.closed_by_peer(); }));
  INFO("reported:\n" << all_lines(problems));
  CHECK(all_lines(problems).find("no ZMTP handshake") != std::string::npos);
  CHECK(ours.handshakes() == 0);
}

TEST_CASE(
    "zmtp socket: a peer that accepts and stays silent is connected to again after the "
    "handshake timeout") {
  RawServer silent;  // accepts, never speaks ZMTP
  std::vector<std::string> problems;
  ZmtpSocketOptions o = reporting(ZmtpSocketType::kDealer, "dealer-1", problems);
  o.handshake_timeout = 300ms;
  ZmtpSocket ours(std::move(o));
  ours.connect(silent.endpoint());
  int accepted = 0;
  CHECK(drive_until(ours, {}, [&] {
    while (silent.try_accept())
      ++accepted;
    return accepted >= 2;  // the first connection, given up, and the next attempt
  }));
  INFO("reported:\n" << all_lines(problems));
  CHECK(all_lines(problems).find("no ZMTP handshake") != std::string::npos);
  CHECK(ours.handshakes() == 0);
}

TEST_CASE("zmtp socket: bind throws for a port in use and for endpoints it cannot bind") {
  SUBCASE("a port a plain TCP listener holds") {
    RawServer listener;
    ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
    const std::string error = bind_error(ours, listener.endpoint());
    INFO("what(): " << error);
    REQUIRE(error != "");
    CHECK(error.find("other exception") == std::string::npos);
    CHECK(error.find(listener.endpoint()) != std::string::npos);
  }
  SUBCASE("a port another ZmtpSocket is bound on") {
    ZmtpSocket first(options(ZmtpSocketType::kRouter, "router-1"));
    const int port = first.bind(kAnyPort);
    REQUIRE(port > 0);
    ZmtpSocket second(options(ZmtpSocketType::kRouter, "router-2"));
    const std::string error = bind_error(second, local_endpoint(port));
    INFO("what(): " << error);
    REQUIRE(error != "");
    CHECK(error.find("other exception") == std::string::npos);
    CHECK(error.find(local_endpoint(port)) != std::string::npos);
  }
  SUBCASE("endpoints without a port, or not tcp://") {
    ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
    CHECK_THROWS_AS(ours.bind("tcp://127.0.0.1"), std::invalid_argument);
    CHECK_THROWS_AS(ours.bind("ipc:///tmp/x"), std::invalid_argument);
  }
}

TEST_CASE("zmtp socket: a 3 MB frame goes each way through a bound ROUTER and a libzmq DEALER") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  zmq::socket_t dealer =
      connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("client-big"));

  const std::string up = pattern(3 * kMiB, 21);
  REQUIRE(ipcpp::proto::send_frames(dealer, to_frames({up})));
  Frames got = next_ours(ours, {&dealer});
  REQUIRE(!got.empty());
  CHECK(got[0].to_string() == "client-big");
  CHECK(mismatch(got, {up}, 1) == "");

  const std::string down = pattern(3 * kMiB, 22);
  REQUIRE(ours.send(to_frames({"client-big", down})));
  CHECK(mismatch(next_theirs(ours, dealer), {down}) == "");
}

// ---- Write batches ---------------------------------------------------------------------

namespace {

// Everything libzmq socket `peer` has received so far, as "a|b" per message.
std::vector<std::string> drain_theirs(zmq::socket_t& peer) {
  std::vector<std::string> got;
  for (Frames m = ipcpp::proto::recv_frames(peer, zmq::recv_flags::dontwait); !m.empty();
       m = ipcpp::proto::recv_frames(peer, zmq::recv_flags::dontwait))
    got.push_back(joined(m));
  return got;
}

// A DEALER "dealer-1" connected to a libzmq ROUTER, handshake done.
struct BatchPair {
  zmq::context_t ctx;
  Bound hub = bind_peer(ctx, zmq::socket_type::router);
  ZmtpSocket ours{options(ZmtpSocketType::kDealer, "dealer-1")};
  BatchPair() {
    ours.connect(hub.endpoint);
    REQUIRE(drive_until(ours, {&hub.socket}, [&] { return ours.connected_peers() == 1; }));
  }
  // What the ROUTER receives while `ours` is driven for `duration`.
  std::vector<std::string> received_during(std::chrono::milliseconds duration) {
    std::vector<std::string> got;
    drive_until(
        ours, {&hub.socket},
        [&] {
          for (auto& m : drain_theirs(hub.socket))
            got.push_back(std::move(m));
          return false;
        },
        duration);
    return got;
  }
  // What the ROUTER receives until it has `count` messages (or kDeadline passes).
  std::vector<std::string> receive(std::size_t count) {
    std::vector<std::string> got;
    drive_until(ours, {&hub.socket}, [&] {
      for (auto& m : drain_theirs(hub.socket))
        got.push_back(std::move(m));
      return got.size() >= count;
    });
    return got;
  }
};

std::vector<std::string> expected_numbered(int count) {
  std::vector<std::string> want;
  for (int i = 0; i < count; ++i)
    want.push_back("dealer-1|" + numbered("m", i));
  return want;
}

}  // namespace

TEST_CASE(
    "zmtp socket: a write batch holds small messages until it ends, then all arrive in order") {
  BatchPair pair;
  {
    ipcpp::proto::WriteBatch batch(pair.ours);
    for (int i = 0; i < 100; ++i)
      REQUIRE(pair.ours.send(msg({numbered("m", i)})));
    CHECK(pair.ours.has_unsent());
    // Driven meanwhile (reads, timers): the held messages still wait for the batch's end.
    CHECK(pair.received_during(200ms).empty());
  }
  CHECK(pair.receive(100) == expected_numbered(100));
  CHECK_FALSE(pair.ours.has_unsent());
}

TEST_CASE("zmtp socket: nested write batches write at the outermost end") {
  BatchPair pair;
  pair.ours.begin_batch();
  pair.ours.begin_batch();
  REQUIRE(pair.ours.send(msg({"m0"})));
  pair.ours.end_batch();
  CHECK(pair.received_during(200ms).empty());
  pair.ours.end_batch();
  CHECK(pair.receive(1) == expected_numbered(1));
}

TEST_CASE("zmtp socket: a batch writes a connection holding 64 KiB or more at once, in order") {
  BatchPair pair;
  const std::string big = pattern(100 * 1024, 5);
  ipcpp::proto::WriteBatch batch(pair.ours);
  REQUIRE(pair.ours.send(msg({"m0"})));
  REQUIRE(pair.ours.send(to_frames({big})));
  // Both arrive before the batch ends: the small one was written with the large one.
  const auto got = pair.receive(2);
  REQUIRE(got.size() == 2);
  CHECK(got[0] == "dealer-1|m0");
  CHECK(got[1].size() == std::string("dealer-1|").size() + big.size());
  CHECK(got[1].substr(std::string("dealer-1|").size()) == big);
}

TEST_CASE("zmtp socket: flush writes what an open batch holds") {
  BatchPair pair;
  ipcpp::proto::WriteBatch batch(pair.ours);
  REQUIRE(pair.ours.send(msg({"m0"})));
  CHECK(pair.ours.flush(kDeadline));
  CHECK(pair.receive(1) == expected_numbered(1));
  // Held again after the flush, until the batch ends.
  REQUIRE(pair.ours.send(msg({"m1"})));
  CHECK(pair.received_during(100ms).empty());
}

TEST_CASE("zmtp socket: a ROUTER's batch holds messages for several peers and writes each") {
  zmq::context_t ctx;
  ZmtpSocket ours(options(ZmtpSocketType::kRouter, "router-1"));
  const int port = ours.bind(kAnyPort);
  REQUIRE(port > 0);
  zmq::socket_t a = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("peer-a"));
  zmq::socket_t b = connect_peer(ctx, zmq::socket_type::dealer, port, routing_id("peer-b"));
  REQUIRE(ipcpp::proto::send_frames(a, to_frames({"hello"})));
  REQUIRE(ipcpp::proto::send_frames(b, to_frames({"hello"})));
  CHECK(joined(next_ours(ours, {&a, &b}), 1) == "hello");
  CHECK(joined(next_ours(ours, {&a, &b}), 1) == "hello");
  {
    ipcpp::proto::WriteBatch batch(ours);
    for (int i = 0; i < 10; ++i) {
      REQUIRE(ours.send(msg({"peer-a", numbered("a", i)})));
      REQUIRE(ours.send(msg({"peer-b", numbered("b", i)})));
    }
  }
  for (auto [peer, prefix] : {std::pair{&a, "a"}, std::pair{&b, "b"}}) {
    std::vector<std::string> got;
    drive_until(ours, {peer}, [&] {
      for (auto& m : drain_theirs(*peer))
        got.push_back(std::move(m));
      return got.size() >= 10;
    });
    std::vector<std::string> want;
    for (int i = 0; i < 10; ++i)
      want.push_back(numbered(prefix, i));
    CHECK(got == want);
  }
}
