#include "proto/zmtp_socket.hpp"

#include <algorithm>
#include <arpa/inet.h>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <functional>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <stdexcept>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <system_error>
#include <unistd.h>
#include <unordered_map>
#include <utility>

#include "proto/large_buffer.hpp"

namespace ipcpp::proto {
namespace {

using Clock = std::chrono::steady_clock;

// ZMTP 3 (RFC 23, 37): frame flags.
constexpr unsigned char kMore = 0x01;
constexpr unsigned char kLong = 0x02;
constexpr unsigned char kCommand = 0x04;
constexpr std::size_t kGreetingSize = 64;

// Per connection: a controller with 1,000 engines has 4,000 of them.
constexpr std::size_t kReadBufferSize = 16 * 1024;
// Frames at least this big are read from the kernel straight into their own message.
constexpr std::size_t kDirectReadThreshold = 8 * 1024;
// Bytes read from one connection per process() call before the others get their turn.
constexpr std::size_t kReadBudget = 1024 * 1024;
// A command (READY with its properties, PING, ERROR) longer than this ends the connection.
constexpr std::size_t kMaxCommandSize = 64 * 1024;
constexpr std::size_t kMaxIovecs = 128;

std::string_view type_name(ZmtpSocketType type) {
  switch (type) {
    case ZmtpSocketType::kRouter:
      return "ROUTER";
    case ZmtpSocketType::kDealer:
      return "DEALER";
    case ZmtpSocketType::kPub:
      return "PUB";
    case ZmtpSocketType::kSub:
      return "SUB";
  }
  return "";
}

// Which peer socket types a socket of `type` may talk to (RFC 28, 29, 47 as libzmq applies them).
bool compatible(ZmtpSocketType type, std::string_view peer) {
  switch (type) {
    case ZmtpSocketType::kRouter:
    case ZmtpSocketType::kDealer:
      return peer == "ROUTER" || peer == "DEALER" || peer == "REQ" || peer == "REP";
    case ZmtpSocketType::kPub:
      return peer == "SUB" || peer == "XSUB";
    case ZmtpSocketType::kSub:
      return peer == "PUB" || peer == "XPUB";
  }
  return false;
}

void put_u32(std::string& out, std::uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8)
    out.push_back(static_cast<char>((v >> shift) & 0xFF));
}

std::uint64_t get_be(const unsigned char* p, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v = (v << 8) | p[i];
  return v;
}

std::string greeting() {
  std::string g(kGreetingSize, '\0');
  g[0] = static_cast<char>(0xFF);
  g[8] = 1;  // the length field of ZMTP 1.0's identity (empty), as libzmq sends it
  g[9] = 0x7F;
  g[10] = 3;  // version 3.1
  g[11] = 1;
  std::memcpy(g.data() + 12, "NULL", 4);  // mechanism, zero padded to 20; as-server 0; filler
  return g;
}

// A command frame with its header.
std::string command_frame(std::string_view name, std::string_view body) {
  std::string payload;
  payload.push_back(static_cast<char>(name.size()));
  payload.append(name);
  payload.append(body);
  std::string frame;
  if (payload.size() > 255) {
    frame.push_back(static_cast<char>(kCommand | kLong));
    for (int shift = 56; shift >= 0; shift -= 8)
      frame.push_back(static_cast<char>((payload.size() >> shift) & 0xFF));
  } else {
    frame.push_back(static_cast<char>(kCommand));
    frame.push_back(static_cast<char>(payload.size()));
  }
  frame.append(payload);
  return frame;
}

std::string ready_command(ZmtpSocketType type, const std::string& identity) {
  std::string props;
  auto property = [&props](std::string_view name, std::string_view value) {
    props.push_back(static_cast<char>(name.size()));
    props.append(name);
    put_u32(props, static_cast<std::uint32_t>(value.size()));
    props.append(value);
  };
  property("Socket-Type", type_name(type));
  if (type == ZmtpSocketType::kRouter || type == ZmtpSocketType::kDealer) {
    property("Identity", identity);
  }
  return command_frame("READY", props);
}

struct Endpoint {
  std::string host;
  std::string port;
};

// "tcp://host:port". To connect: a host name or an IPv4 address, and a port. To bind
// (`binding`): also "*" for every interface, and port "*" or 0 for one the OS picks.
Endpoint parse_endpoint(std::string_view endpoint, bool binding) {
  constexpr std::string_view kScheme = "tcp://";
  const std::string what =
      std::string(binding ? "cannot bind '" : "cannot connect to '") + std::string(endpoint) + "'";
  const std::string_view rest =
      endpoint.starts_with(kScheme) ? endpoint.substr(kScheme.size()) : std::string_view();
  const auto colon = rest.rfind(':');
  if (rest.empty() || colon == std::string_view::npos || colon == 0 || colon + 1 == rest.size()) {
    throw std::invalid_argument("ZMTP socket: " + what + ": tcp://host:port is needed");
  }
  const std::string_view host = rest.substr(0, colon);
  if (host.front() == '[' || (host == "*" && !binding)) {
    throw std::invalid_argument("ZMTP socket: " + what +
                                ": a host name or an IPv4 address is needed");
  }
  std::string port(rest.substr(colon + 1));
  if (binding && port == "*") port = "0";
  int number = 0;
  const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc() || end != port.data() + port.size() || number < (binding ? 0 : 1) ||
      number > 65535) {
    throw std::invalid_argument("ZMTP socket: " + what + ": no valid port");
  }
  return {std::string(host), port};
}

// One frame waiting to be written: its ZMTP header and its body. Raw frames (the greeting,
// commands) have no header of their own: their body is written as it is.
struct OutFrame {
  std::array<unsigned char, 9> head{};
  std::uint8_t head_size = 0;
  bool last = true;      // the last frame of its message
  bool control = false;  // greeting or command: written before the handshake completes
  zmq::message_t body;

  std::size_t size() const { return head_size + body.size(); }
};

OutFrame data_frame(zmq::message_t&& body, bool more) {
  OutFrame f;
  const std::size_t n = body.size();
  const unsigned char flags = more ? kMore : 0;
  if (n > 255) {
    f.head[0] = flags | kLong;
    for (std::size_t i = 0; i < 8; ++i)
      f.head[1 + i] = static_cast<unsigned char>((n >> (56 - 8 * i)) & 0xFF);
    f.head_size = 9;
  } else {
    f.head[0] = flags;
    f.head[1] = static_cast<unsigned char>(n);
    f.head_size = 2;
  }
  f.last = !more;
  f.body = std::move(body);
  return f;
}

OutFrame raw_frame(const std::string& bytes) {
  OutFrame f;
  f.control = true;
  f.body = zmq::message_t(bytes.data(), bytes.size());
  return f;
}

}  // namespace

struct ZmtpSocket::Impl {
  // kListening: a bound socket's listener. kClosed: an accepted connection that ended (it is
  // removed at the next process()).
  enum class State { kWaiting, kConnecting, kGreeting, kReady, kOpen, kListening, kClosed };

  struct Connection {
    std::string endpoint;
    Endpoint where;
    bool accepted = false;  // made by a peer connecting to a bound endpoint: never remade
    int fd = -1;
    State state = State::kWaiting;
    Clock::time_point retry_at{};
    Clock::time_point handshake_deadline{};  // kGreeting, kReady: the peer must be READY by then
    std::uint32_t events = 0;                // registered with epoll
    // Reading.
    std::vector<unsigned char> in = std::vector<unsigned char>(kReadBufferSize);
    std::size_t in_begin = 0;
    std::size_t in_end = 0;
    std::vector<zmq::message_t> partial;  // frames of the message being received
    zmq::message_t large;                 // a big frame read straight into its message
    std::size_t large_filled = 0;
    bool large_more = false;
    bool reading_large = false;
    std::string peer_id;  // ROUTER: the routing id that names this peer
    bool quiet = false;   // a problem was told since the last handshake
    // Writing.
    std::deque<OutFrame> out;
    std::size_t out_offset = 0;  // bytes of out.front() already written
    std::size_t queued_messages = 0;
    // Queued while a write batch is open and not written yet (see hold()).
    bool held = false;
    std::size_t held_bytes = 0;
  };

  ZmtpSocketOptions options;
  int epoll_fd = -1;
  int timer_fd = -1;
  std::vector<std::unique_ptr<Connection>> connections;
  struct IdHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  // ROUTER: peer id -> open connection.
  std::unordered_map<std::string, Connection*, IdHash, std::equal_to<>> routes;
  std::deque<std::vector<zmq::message_t>> inbound;
  std::vector<std::string> subscriptions;
  std::size_t next_peer = 0;  // DEALER's turn
  std::uint32_t next_routing_id = 0;
  std::uint64_t handshakes = 0;
  std::size_t open = 0;
  // Write batches open (begin_batch() without end_batch()), and the connections holding
  // messages for the batch's end.
  int batch_depth = 0;
  std::vector<Connection*> held;

  explicit Impl(ZmtpSocketOptions o) : options(std::move(o)) {
    epoll_fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    timer_fd = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (timer_fd < 0) {
      const int e = errno;
      ::close(epoll_fd);
      throw std::system_error(e, std::generic_category(), "timerfd_create");
    }
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = nullptr;  // the timer
    ::epoll_ctl(epoll_fd, EPOLL_CTL_ADD, timer_fd, &ev);
    next_routing_id = std::random_device{}();
  }

  ~Impl() {
    for (auto& c : connections) {
      if (c->fd >= 0) ::close(c->fd);
    }
    ::close(timer_fd);
    ::close(epoll_fd);
  }

  // Told once until a handshake succeeds again: not at every attempt to reconnect.
  void problem(Connection& c, std::string_view what) {
    if (options.on_problem && !c.quiet) options.on_problem(c.endpoint + ": " + std::string(what));
    c.quiet = true;
  }

  // --- connection life -----------------------------------------------------------------

  void start_connect(Connection& c) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = ::getaddrinfo(c.where.host.c_str(), c.where.port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
      problem(c, std::string("cannot resolve the host: ") + ::gai_strerror(rc));
      schedule_retry(c);
      return;
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ::freeaddrinfo(found);
      problem(c, std::string("socket: ") + std::strerror(errno));
      schedule_retry(c);
      return;
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    const int r = ::connect(fd, found->ai_addr, found->ai_addrlen);
    const int err = errno;
    ::freeaddrinfo(found);
    c.fd = fd;
    c.events = 0;
    if (r == 0) {
      connected(c);
      return;
    }
    if (err != EINPROGRESS) {
      close_connection(c, std::string("connect: ") + std::strerror(err));
      return;
    }
    c.state = State::kConnecting;
    set_events(c, EPOLLOUT);
  }

  void connected(Connection& c) {
    c.state = State::kGreeting;
    c.handshake_deadline = Clock::now() + options.handshake_timeout;
    arm_timer();
    // Greeting, then READY (NULL's only handshake command), ahead of anything queued.
    c.out.push_front(raw_frame(ready_command(options.type, options.identity)));
    c.out.push_front(raw_frame(greeting()));
    c.out_offset = 0;
    if (!write_some(c)) return;
    update_events(c);
  }

  static bool handshaking(const Connection& c) {
    return c.state == State::kGreeting || c.state == State::kReady;
  }

  void schedule_retry(Connection& c) {
    c.state = State::kWaiting;
    c.retry_at = Clock::now() + options.reconnect_interval;
    arm_timer();
  }

  void arm_timer() {
    Clock::time_point earliest = Clock::time_point::max();
    for (const auto& c : connections) {
      if (c->state == State::kWaiting) earliest = std::min(earliest, c->retry_at);
      if (handshaking(*c)) earliest = std::min(earliest, c->handshake_deadline);
    }
    itimerspec spec{};
    if (earliest != Clock::time_point::max()) {
      auto wait = earliest - Clock::now();
      if (wait < std::chrono::microseconds(1)) wait = std::chrono::microseconds(1);
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(wait).count();
      spec.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
      spec.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    }
    ::timerfd_settime(timer_fd, 0, &spec, nullptr);
  }

  void on_timer() {
    std::uint64_t expirations = 0;
    [[maybe_unused]] const auto n = ::read(timer_fd, &expirations, sizeof expirations);
    const auto now = Clock::now();
    for (std::size_t i = 0; i < connections.size(); ++i) {
      Connection& c = *connections[i];
      if (handshaking(c) && c.handshake_deadline <= now) {
        close_connection(c, "no ZMTP handshake from the peer within " +
                                std::to_string(options.handshake_timeout.count()) + " ms");
      }
      if (c.state == State::kWaiting && c.retry_at <= now) start_connect(c);
    }
    arm_timer();
  }

  // Ends a connection and schedules the next attempt. What was queued survives where the
  // socket type allows (DEALER, PUB: whole messages not yet begun); a message half written
  // is lost with the connection, as it is with libzmq.
  void close_connection(Connection& c, std::string_view why, bool report = true) {
    if (report) problem(c, why);
    if (c.fd >= 0) {
      ::epoll_ctl(epoll_fd, EPOLL_CTL_DEL, c.fd, nullptr);
      ::close(c.fd);
      c.fd = -1;
    }
    c.events = 0;
    if (c.state == State::kOpen) --open;
    if (!c.peer_id.empty()) {
      routes.erase(c.peer_id);
      c.peer_id.clear();
    }
    c.in_begin = c.in_end = 0;
    c.partial.clear();
    c.large = zmq::message_t();
    c.reading_large = false;
    c.large_filled = 0;
    // Drop the control frames and the message in progress.
    bool dropping = c.out_offset > 0;
    std::deque<OutFrame> kept;
    for (auto& f : c.out) {
      if (f.control) continue;
      if (dropping) {
        if (f.last) {
          dropping = false;
          --c.queued_messages;
        }
        continue;
      }
      kept.push_back(std::move(f));
    }
    c.out_offset = 0;
    if (options.type == ZmtpSocketType::kRouter || options.type == ZmtpSocketType::kSub) {
      kept.clear();  // a ROUTER's peer may come back under another id; SUB resends on open
    }
    c.queued_messages = 0;
    for (const auto& f : kept)
      c.queued_messages += f.last ? 1 : 0;
    c.out = std::move(kept);
    if (c.accepted) {
      c.out.clear();
      c.queued_messages = 0;
      c.state = State::kClosed;
      return;
    }
    schedule_retry(c);
  }

  // Drops accepted connections that ended. Never while an epoll batch is being handled:
  // a later event of the batch may point to one.
  void remove_closed() {
    std::erase_if(held, [](const Connection* c) { return c->state == State::kClosed; });
    std::erase_if(connections, [](const auto& c) { return c->state == State::kClosed; });
  }

  // --- listening -------------------------------------------------------------------------

  int bind(std::string_view endpoint) {
    const auto parsed = parse_endpoint(endpoint, true);
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    addrinfo* found = nullptr;
    const char* host = parsed.host == "*" ? nullptr : parsed.host.c_str();
    const int rc = ::getaddrinfo(host, parsed.port.c_str(), &hints, &found);
    if (rc != 0 || found == nullptr) {
      throw std::invalid_argument("ZMTP socket: cannot bind '" + std::string(endpoint) +
                                  "': " + ::gai_strerror(rc));
    }
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      ::freeaddrinfo(found);
      throw std::system_error(errno, std::generic_category(), "ZMTP socket: socket");
    }
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    const int r = ::bind(fd, found->ai_addr, found->ai_addrlen);
    ::freeaddrinfo(found);
    if (r != 0 || ::listen(fd, SOMAXCONN) != 0) {
      const int e = errno;
      ::close(fd);
      throw std::system_error(e, std::generic_category(),
                              "ZMTP socket: cannot bind '" + std::string(endpoint) + "'");
    }
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
    auto c = std::make_unique<Connection>();
    // Named with the port bound, for what is reported about its connections.
    c->endpoint = "tcp://" + parsed.host + ":" + std::to_string(ntohs(bound.sin_port));
    c->fd = fd;
    c->state = State::kListening;
    c->in.clear();
    c->in.shrink_to_fit();
    set_events(*c, EPOLLIN);
    connections.push_back(std::move(c));
    return ntohs(bound.sin_port);
  }

  void accept_all(Connection& listener) {
    for (;;) {
      sockaddr_in peer{};
      socklen_t len = sizeof peer;
      const int fd = ::accept4(listener.fd, reinterpret_cast<sockaddr*>(&peer), &len,
                               SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          problem(listener, std::string("accept: ") + std::strerror(errno));
        }
        return;
      }
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      std::array<char, INET_ADDRSTRLEN> ip{};
      ::inet_ntop(AF_INET, &peer.sin_addr, ip.data(), ip.size());
      auto c = std::make_unique<Connection>();
      c->endpoint =
          listener.endpoint + " <- " + ip.data() + ":" + std::to_string(ntohs(peer.sin_port));
      c->fd = fd;
      c->accepted = true;
      Connection& ref = *c;
      connections.push_back(std::move(c));
      set_events(ref, EPOLLIN);
      connected(ref);
    }
  }

  void set_events(Connection& c, std::uint32_t events) {
    if (c.fd < 0 || events == c.events) return;
    epoll_event ev{};
    ev.events = events;
    ev.data.ptr = &c;
    ::epoll_ctl(epoll_fd, c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &ev);
    c.events = events;
  }

  bool can_write_front(const Connection& c) const {
    return !c.out.empty() && (c.state == State::kOpen || c.out.front().control);
  }

  void update_events(Connection& c) {
    if (c.fd < 0 || c.state == State::kConnecting) return;
    set_events(c, EPOLLIN | (can_write_front(c) && !c.held ? EPOLLOUT : 0u));
  }

  // --- writing ---------------------------------------------------------------------------

  // Writes what may be written now. False when the connection broke (it is closed).
  bool write_some(Connection& c) {
    while (can_write_front(c)) {
      std::array<iovec, kMaxIovecs> iov{};
      std::size_t n = 0;
      std::size_t skip = c.out_offset;
      for (auto it = c.out.begin(); it != c.out.end() && n + 2 <= kMaxIovecs; ++it) {
        if (c.state != State::kOpen && !it->control) break;
        if (it->head_size > 0) {
          if (skip >= it->head_size) {
            skip -= it->head_size;
          } else {
            iov[n++] = {it->head.data() + skip, it->head_size - skip};
            skip = 0;
          }
        }
        const std::size_t body = it->body.size();
        if (skip >= body) {
          skip -= body;
        } else {
          iov[n++] = {static_cast<char*>(it->body.data()) + skip, body - skip};
          skip = 0;
        }
      }
      msghdr msg{};
      msg.msg_iov = iov.data();
      msg.msg_iovlen = n;
      const ssize_t written = ::sendmsg(c.fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (written < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
        close_connection(c, std::string("send: ") + std::strerror(errno));
        return false;
      }
      std::size_t done = c.out_offset + static_cast<std::size_t>(written);
      while (!c.out.empty() && done >= c.out.front().size()) {
        done -= c.out.front().size();
        if (c.out.front().last && !c.out.front().control) --c.queued_messages;
        c.out.pop_front();
      }
      c.out_offset = done;
    }
    return true;
  }

  // Bytes a connection holds for a batch's end before it is written anyway: a batch of many
  // small messages goes out in one sendmsg, a large message is not held back.
  static constexpr std::size_t kHoldLimit = 64 * 1024;

  void enqueue(Connection& c, std::vector<zmq::message_t>&& frames, std::size_t first) {
    for (std::size_t i = first; i < frames.size(); ++i) {
      c.held_bytes += frames[i].size();
      c.out.push_back(data_frame(std::move(frames[i]), i + 1 < frames.size()));
    }
    ++c.queued_messages;
  }

  void write_and_watch(Connection& c) {
    c.held_bytes = 0;
    if (c.fd < 0 || c.state == State::kConnecting) return;
    if (write_some(c)) update_events(c);
  }

  // After a message was queued: written now, or at the batch's end while one is open.
  void write_or_hold(Connection& c) {
    if (batch_depth > 0 && c.held_bytes < kHoldLimit && c.state == State::kOpen) {
      if (!c.held) {
        c.held = true;
        held.push_back(&c);
      }
      return;
    }
    if (c.held) {
      c.held = false;
      std::erase(held, &c);
    }
    write_and_watch(c);
  }

  void end_batch() {
    if (batch_depth == 0 || --batch_depth > 0) return;
    write_held();
  }

  void write_held() {
    std::vector<Connection*> ready;
    ready.swap(held);
    for (Connection* c : ready) {
      c->held = false;
      write_and_watch(*c);
    }
  }

  bool send(std::vector<zmq::message_t>&& frames) {
    if (frames.empty()) return false;
    switch (options.type) {
      case ZmtpSocketType::kSub:
        throw std::logic_error("ZMTP socket: a SUB socket cannot send");
      case ZmtpSocketType::kRouter: {
        if (frames.size() < 2) return false;
        const auto it = routes.find(
            std::string_view(static_cast<const char*>(frames[0].data()), frames[0].size()));
        if (it == routes.end()) return false;
        Connection& c = *it->second;
        enqueue(c, std::move(frames), 1);
        write_or_hold(c);
        return true;
      }
      case ZmtpSocketType::kDealer: {
        if (connections.empty()) return false;
        Connection* target = nullptr;
        for (std::size_t i = 0; i < connections.size() && target == nullptr; ++i) {
          Connection& c = *connections[(next_peer + i) % connections.size()];
          if (c.state == State::kOpen) {
            target = &c;
            next_peer = (next_peer + i + 1) % connections.size();
          }
        }
        for (std::size_t i = 0; i < connections.size() && target == nullptr; ++i) {
          if (!connections[i]->accepted && connections[i]->state != State::kListening) {
            target = connections[i].get();  // queued until it connects
          }
        }
        if (target == nullptr) return false;
        enqueue(*target, std::move(frames), 0);
        write_or_hold(*target);
        return true;
      }
      case ZmtpSocketType::kPub: {
        std::vector<Connection*> targets;
        for (auto& c : connections) {
          if (c->state == State::kListening || c->state == State::kClosed) continue;
          if (options.send_limit == 0 || c->queued_messages < options.send_limit) {
            targets.push_back(c.get());
          }
        }
        if (targets.empty()) return false;
        for (std::size_t t = 0; t + 1 < targets.size(); ++t) {
          std::vector<zmq::message_t> copy(frames.size());
          for (std::size_t i = 0; i < frames.size(); ++i)
            copy[i].copy(frames[i]);
          enqueue(*targets[t], std::move(copy), 0);
          write_or_hold(*targets[t]);
        }
        enqueue(*targets.back(), std::move(frames), 0);
        write_or_hold(*targets.back());
        return true;
      }
    }
    return false;
  }

  // --- reading ---------------------------------------------------------------------------

  // Reads what the kernel has (up to kReadBudget). False when the connection ended.
  bool read_some(Connection& c) {
    std::size_t budget = kReadBudget;
    while (budget > 0) {
      if (c.reading_large) {
        const std::size_t want = c.large.size() - c.large_filled;
        const ssize_t n =
            ::recv(c.fd, static_cast<char*>(c.large.data()) + c.large_filled, want, MSG_DONTWAIT);
        if (n <= 0) return read_failed(c, n);
        c.large_filled += static_cast<std::size_t>(n);
        budget -= std::min(budget, static_cast<std::size_t>(n));
        if (c.large_filled == c.large.size()) {
          c.reading_large = false;
          if (!frame_done(c, std::move(c.large), c.large_more)) return false;
          // Bytes after the frame may follow in the buffer's next read.
        } else if (static_cast<std::size_t>(n) < want) {
          return true;  // drained for now (see below)
        }
        continue;
      }
      if (c.in_begin == c.in_end) c.in_begin = c.in_end = 0;
      if (c.in.size() - c.in_end < 4096 && c.in_begin > 0) {
        std::memmove(c.in.data(), c.in.data() + c.in_begin, c.in_end - c.in_begin);
        c.in_end -= c.in_begin;
        c.in_begin = 0;
      }
      if (c.in_end == c.in.size()) c.in.resize(c.in.size() * 2);  // a long command
      const std::size_t room = c.in.size() - c.in_end;
      const ssize_t n = ::recv(c.fd, c.in.data() + c.in_end, room, MSG_DONTWAIT);
      if (n <= 0) return read_failed(c, n);
      c.in_end += static_cast<std::size_t>(n);
      budget -= std::min(budget, static_cast<std::size_t>(n));
      if (!decode(c)) return false;
      // A short read took everything the kernel had: another recv would only say EAGAIN (one
      // wasted system call per wake-up). The descriptor is level-triggered in the epoll set,
      // so bytes that arrive later make it readable again.
      if (static_cast<std::size_t>(n) < room) return true;
    }
    return true;
  }

  bool read_failed(Connection& c, ssize_t n) {
    if (n == 0) {
      // A peer that connected to us and leaves is nothing to report.
      close_connection(c, "the peer closed the connection", !c.accepted);
      return false;
    }
    // Nothing more now (or a signal): epoll reports the connection again when there is.
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return true;
    close_connection(c, std::string("recv: ") + std::strerror(errno));
    return false;
  }

  // Decodes whole greetings, commands and frames from the read buffer. False when the
  // connection was closed for what the peer sent.
  bool decode(Connection& c) {
    for (;;) {
      const unsigned char* p = c.in.data() + c.in_begin;
      const std::size_t avail = c.in_end - c.in_begin;
      if (c.state == State::kGreeting) {
        // Check the signature as soon as it is there: a peer that is not ZMTP never sends 64.
        if (avail >= 1 && p[0] != 0xFF) return reject(c, "the peer does not speak ZMTP");
        if (avail >= 10 && (p[9] & 0x01) == 0) return reject(c, "the peer does not speak ZMTP");
        if (avail >= 11 && p[10] < 3) {
          return reject(c, "the peer speaks ZMTP " + std::to_string(p[10]) + ".x, not 3");
        }
        if (avail < kGreetingSize) return true;
        const std::string_view mechanism(reinterpret_cast<const char*>(p + 12), 20);
        if (mechanism != std::string_view("NULL\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 20)) {
          const auto end = mechanism.find('\0');
          return reject(c, "the peer wants security mechanism " +
                               std::string(mechanism.substr(0, end)) + "; only NULL is spoken");
        }
        c.in_begin += kGreetingSize;
        c.state = State::kReady;
        continue;
      }
      if (avail < 2) return true;
      const unsigned char flags = p[0];
      const std::size_t head = (flags & kLong) != 0 ? 9 : 2;
      if (avail < head) return true;
      const std::uint64_t size = head == 9 ? get_be(p + 1, 8) : p[1];
      if ((flags & kCommand) != 0) {
        if (size > kMaxCommandSize) return reject(c, "the peer sent an oversized command");
        if (avail < head + size) return true;
        const std::string_view body(reinterpret_cast<const char*>(p + head),
                                    static_cast<std::size_t>(size));
        c.in_begin += head + static_cast<std::size_t>(size);
        if (!command(c, body)) return false;
        continue;
      }
      if (c.state != State::kOpen) return reject(c, "the peer sent a message before READY");
      const bool more = (flags & kMore) != 0;
      if (avail >= head + size) {
        zmq::message_t frame(p + head, static_cast<std::size_t>(size));
        c.in_begin += head + static_cast<std::size_t>(size);
        if (!frame_done(c, std::move(frame), more)) return false;
        continue;
      }
      if (size >= kDirectReadThreshold) {
        try {
          c.large = large_message(static_cast<std::size_t>(size));
        } catch (const std::exception&) {
          return reject(c, "no memory for a frame of " + std::to_string(size) + " bytes");
        }
        const std::size_t have = avail - head;
        std::memcpy(c.large.data(), p + head, have);
        c.large_filled = have;
        c.large_more = more;
        c.reading_large = true;
        c.in_begin = c.in_end = 0;
        return true;
      }
      return true;  // the rest of a small frame is still to come
    }
  }

  bool reject(Connection& c, const std::string& why) {
    close_connection(c, why);
    return false;
  }

  bool command(Connection& c, std::string_view body) {
    if (body.empty() ||
        static_cast<std::size_t>(static_cast<unsigned char>(body[0])) + 1 > body.size()) {
      return reject(c, "the peer sent a malformed command");
    }
    const std::size_t name_size = static_cast<unsigned char>(body[0]);
    const std::string_view name = body.substr(1, name_size);
    const std::string_view data = body.substr(1 + name_size);
    if (c.state == State::kReady) {
      if (name == "ERROR") {
        const std::string_view reason =
            data.empty() ? std::string_view() : data.substr(1, static_cast<unsigned char>(data[0]));
        return reject(c, "the peer refused the handshake: " + std::string(reason));
      }
      if (name != "READY") return reject(c, "the peer sent " + std::string(name) + " before READY");
      return ready(c, data);
    }
    if (name == "PING") {
      // PING: a 2-byte TTL, then a context to send back in PONG.
      const std::string_view context = data.size() > 2 ? data.substr(2) : std::string_view();
      // At the end of the queue: everything queued is whole messages, so no message is split.
      c.out.push_back(raw_frame(command_frame("PONG", context)));
      return true;
    }
    if (name == "ERROR") return reject(c, "the peer sent ERROR");
    return true;  // PONG, SUBSCRIBE, CANCEL and commands of later versions: nothing to do
  }

  bool ready(Connection& c, std::string_view props) {
    std::string socket_type;
    std::string identity;
    while (!props.empty()) {
      const std::size_t name_size = static_cast<unsigned char>(props[0]);
      if (props.size() < 1 + name_size + 4) return reject(c, "the peer sent a malformed READY");
      const std::string_view name = props.substr(1, name_size);
      const auto* v = reinterpret_cast<const unsigned char*>(props.data() + 1 + name_size);
      const std::uint64_t value_size = get_be(v, 4);
      if (props.size() < 1 + name_size + 4 + value_size) {
        return reject(c, "the peer sent a malformed READY");
      }
      const std::string_view value = props.substr(1 + name_size + 4, value_size);
      if (name == "Socket-Type") socket_type = value;
      if (name == "Identity") identity = value;
      props.remove_prefix(1 + name_size + 4 + value_size);
    }
    if (!compatible(options.type, socket_type)) {
      return reject(c, "a " + std::string(type_name(options.type)) +
                           " socket cannot talk to a peer of type '" + socket_type + "'");
    }
    c.state = State::kOpen;
    c.quiet = false;
    ++open;
    ++handshakes;
    if (options.type == ZmtpSocketType::kRouter) {
      // A peer that connects again under its identity replaces its old connection (which
      // may be half open after a network failure); elsewhere a clash gets an id made here.
      if (c.accepted && !identity.empty()) {
        if (const auto old = routes.find(identity); old != routes.end()) {
          close_connection(*old->second, "replaced by a new connection from the same peer");
        }
      }
      if (identity.empty() || routes.contains(identity)) {
        identity.assign(5, '\0');
        const std::uint32_t id = next_routing_id++;
        for (std::size_t i = 0; i < 4; ++i)
          identity[1 + i] = static_cast<char>((id >> (24 - 8 * i)) & 0xFF);
      }
      c.peer_id = identity;
      routes[identity] = &c;
    }
    if (options.type == ZmtpSocketType::kSub) {
      for (const auto& prefix : subscriptions)
        send_subscription(c, prefix);
    }
    return true;
  }

  void send_subscription(Connection& c, std::string_view prefix) {
    std::string body(1, '\x01');
    body.append(prefix);
    std::vector<zmq::message_t> frames;
    frames.emplace_back(body.data(), body.size());
    enqueue(c, std::move(frames), 0);
  }

  bool wanted(const std::vector<zmq::message_t>& frames) const {
    if (options.type != ZmtpSocketType::kSub) return true;
    const std::string_view first(static_cast<const char*>(frames.front().data()),
                                 frames.front().size());
    return std::any_of(subscriptions.begin(), subscriptions.end(),
                       [&](const std::string& p) { return first.starts_with(p); });
  }

  bool frame_done(Connection& c, zmq::message_t&& frame, bool more) {
    if (c.partial.empty() && options.type == ZmtpSocketType::kRouter) {
      c.partial.emplace_back(c.peer_id.data(), c.peer_id.size());
    }
    c.partial.push_back(std::move(frame));
    if (more) return true;
    std::vector<zmq::message_t> message = std::move(c.partial);
    c.partial.clear();
    // A PUB's peers send only subscriptions: it publishes everything (each SUB filters).
    if (options.type == ZmtpSocketType::kPub) return true;
    if (wanted(message)) inbound.push_back(std::move(message));
    return true;
  }

  // --- the loop --------------------------------------------------------------------------

  void process() {
    remove_closed();
    std::array<epoll_event, 32> events{};
    const int n = ::epoll_wait(epoll_fd, events.data(), static_cast<int>(events.size()), 0);
    for (std::size_t i = 0; i < static_cast<std::size_t>(std::max(n, 0)); ++i) {
      if (events[i].data.ptr == nullptr) {
        on_timer();
        continue;
      }
      auto& c = *static_cast<Connection*>(events[i].data.ptr);
      if (c.fd < 0) continue;  // closed by an earlier event of this round
      const std::uint32_t ev = events[i].events;
      if (c.state == State::kListening) {
        accept_all(c);
        continue;
      }
      if (c.state == State::kConnecting) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          close_connection(c, std::string("connect: ") + std::strerror(err));
          continue;
        }
        set_events(c, EPOLLIN);
        connected(c);
        continue;
      }
      if ((ev & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
        if (!read_some(c)) continue;
      }
      if ((ev & EPOLLOUT) != 0 || (can_write_front(c) && !c.held)) {
        if (!write_some(c)) continue;
      }
      update_events(c);
    }
    remove_closed();
  }

  bool all_written() const {
    return std::all_of(connections.begin(), connections.end(),
                       [](const auto& c) { return c->state != State::kOpen || c->out.empty(); });
  }

  bool flush(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    write_held();  // a flush writes what a batch still holds too
    for (;;) {
      process();
      if (all_written()) return true;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{epoll_fd, POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), 50)));
    }
  }
};

ZmtpSocket::ZmtpSocket(ZmtpSocketOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

ZmtpSocket::~ZmtpSocket() {
  if (impl_ && impl_->options.linger.count() > 0) impl_->flush(impl_->options.linger);
}

ZmtpSocket::ZmtpSocket(ZmtpSocket&&) noexcept = default;
ZmtpSocket& ZmtpSocket::operator=(ZmtpSocket&&) noexcept = default;

void ZmtpSocket::connect(std::string_view endpoint) {
  auto c = std::make_unique<Impl::Connection>();
  c->where = parse_endpoint(endpoint, false);
  c->endpoint = std::string(endpoint);
  Impl::Connection& ref = *c;
  impl_->connections.push_back(std::move(c));
  impl_->start_connect(ref);
}

int ZmtpSocket::bind(std::string_view endpoint) {
  return impl_->bind(endpoint);
}

void ZmtpSocket::subscribe(std::string_view prefix) {
  if (impl_->options.type != ZmtpSocketType::kSub) {
    throw std::logic_error("ZMTP socket: only a SUB socket subscribes");
  }
  impl_->subscriptions.emplace_back(prefix);
  for (auto& c : impl_->connections) {
    if (c->state == Impl::State::kOpen) {
      impl_->send_subscription(*c, prefix);
      impl_->write_and_watch(*c);
    }
  }
}

int ZmtpSocket::fd() const {
  return impl_->epoll_fd;
}

void ZmtpSocket::process() {
  impl_->process();
}

std::vector<zmq::message_t> ZmtpSocket::receive() {
  if (impl_->inbound.empty()) impl_->process();
  if (impl_->inbound.empty()) return {};
  std::vector<zmq::message_t> m = std::move(impl_->inbound.front());
  impl_->inbound.pop_front();
  return m;
}

bool ZmtpSocket::send(std::vector<zmq::message_t>&& frames) {
  return impl_->send(std::move(frames));
}

void ZmtpSocket::begin_batch() {
  ++impl_->batch_depth;
}

void ZmtpSocket::end_batch() {
  impl_->end_batch();
}

bool ZmtpSocket::flush(std::chrono::milliseconds timeout) {
  return impl_->flush(timeout);
}

bool ZmtpSocket::has_unsent() const {
  return !impl_->all_written();
}

std::size_t ZmtpSocket::waiting() const {
  return impl_->inbound.size();
}

std::size_t ZmtpSocket::connected_peers() const {
  return impl_->open;
}

std::uint64_t ZmtpSocket::handshakes() const {
  return impl_->handshakes;
}

std::vector<zmq::message_t> recv_frames(ZmtpSocket& socket, zmq::recv_flags flags) {
  for (;;) {
    auto m = socket.receive();
    if (!m.empty() || flags == zmq::recv_flags::dontwait) return m;
    pollfd p{socket.fd(), POLLIN, 0};
    ::poll(&p, 1, -1);
  }
}

bool send_frames(ZmtpSocket& socket, std::vector<zmq::message_t>&& frames, zmq::send_flags) {
  return socket.send(std::move(frames));
}

}  // namespace ipcpp::proto
