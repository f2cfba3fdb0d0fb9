// proto/poller.hpp: one poll(2) over plain descriptors and ZeroMQ sockets.
#include <chrono>
#include <thread>
#include <unistd.h>

#include <doctest/doctest.h>
#include <zmq.hpp>

#include "proto/poller.hpp"

using ipcpp::proto::Poller;
using std::chrono::milliseconds;

namespace {

// Long enough never to end a wait that should end at once: a wait that ends only by it
// means the Poller slept through something readable.
constexpr milliseconds kLong{10000};

// Two inproc sockets of one context, the first bound and the second connected to it.
struct Connected {
  Connected(zmq::socket_type reader_type, zmq::socket_type writer_type, const char* endpoint)
      : reader(ctx, reader_type), writer(ctx, writer_type) {
    reader.bind(endpoint);
    writer.connect(endpoint);
  }
  zmq::context_t ctx;
  zmq::socket_t reader;
  zmq::socket_t writer;
};

bool recv_one(zmq::socket_t& s, std::string* text = nullptr) {
  zmq::message_t m;
  if (!s.recv(m, zmq::recv_flags::dontwait)) return false;
  if (text != nullptr) *text = m.to_string();
  return true;
}

}  // namespace

TEST_CASE("poller: a descriptor is readable once written to") {
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  Poller p;
  const auto i = p.add(pipe_fds[0]);
  p.wait(milliseconds(0));
  CHECK_FALSE(p.readable(i));
  REQUIRE(::write(pipe_fds[1], "x", 1) == 1);
  p.wait(kLong);
  CHECK(p.readable(i));
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_CASE("poller: a ZeroMQ socket's message ends a wait; one left unread is found again") {
  Connected c(zmq::socket_type::pull, zmq::socket_type::push, "inproc://poller-test");
  zmq::socket_t& pull = c.reader;
  zmq::socket_t& push = c.writer;
  Poller p;
  const auto i = p.add(pull);
  p.wait(milliseconds(0));
  CHECK_FALSE(p.readable(i));

  push.send(zmq::str_buffer("a"));
  push.send(zmq::str_buffer("b"));
  p.wait(kLong);
  REQUIRE(p.readable(i));
  std::string text;
  REQUIRE(recv_one(pull, &text));
  CHECK(text == "a");
  // "b" is still there, and the recv took the descriptor's signal: the wait must ask.
  p.wait(kLong);
  CHECK(p.readable(i));
  REQUIRE(recv_one(pull, &text));
  CHECK(text == "b");
  CHECK_FALSE(recv_one(pull));
  p.emptied(i);

  // Emptied: the wait sleeps on the descriptor, which fires for the next message.
  p.wait(milliseconds(20));
  CHECK_FALSE(p.readable(i));
  std::thread later([&push] {
    std::this_thread::sleep_for(milliseconds(50));
    push.send(zmq::str_buffer("c"));
  });
  p.wait(kLong);
  later.join();
  CHECK(p.readable(i));
  REQUIRE(recv_one(pull, &text));
  CHECK(text == "c");
}

TEST_CASE("poller: touched() after a send makes a wait look at a socket it also reads") {
  Connected c(zmq::socket_type::pair, zmq::socket_type::pair, "inproc://poller-pair");
  zmq::socket_t& a = c.reader;
  zmq::socket_t& b = c.writer;
  Poller p;
  const auto i = p.add(a);
  p.wait(milliseconds(0));  // found empty: the Poller would sleep on a's descriptor
  REQUIRE_FALSE(p.readable(i));
  b.send(zmq::str_buffer("to a"));
  // A send on `a` processes its commands (past libzmq's 1 ms throttle) and so may take the
  // signal that announced b's message.
  std::this_thread::sleep_for(milliseconds(5));
  a.send(zmq::str_buffer("to b"));
  p.touched(i);
  p.wait(kLong);
  CHECK(p.readable(i));
  std::string text;
  REQUIRE(recv_one(a, &text));
  CHECK(text == "to a");
}

TEST_CASE("poller: a disabled entry is neither waited on nor readable") {
  Connected c(zmq::socket_type::pull, zmq::socket_type::push, "inproc://poller-disabled");
  zmq::socket_t& pull = c.reader;
  zmq::socket_t& push = c.writer;
  int pipe_fds[2];
  REQUIRE(::pipe(pipe_fds) == 0);
  Poller p;
  const auto z = p.add(pull);
  const auto d = p.add(pipe_fds[0]);
  push.send(zmq::str_buffer("m"));
  REQUIRE(::write(pipe_fds[1], "x", 1) == 1);
  p.set_enabled(z, false);
  p.set_enabled(d, false);
  p.wait(milliseconds(20));
  CHECK_FALSE(p.readable(z));
  CHECK_FALSE(p.readable(d));
  p.set_enabled(z, true);
  p.wait(kLong);
  CHECK(p.readable(z));
  CHECK_FALSE(p.readable(d));
  p.set_enabled(d, true);
  p.wait(kLong);
  CHECK(p.readable(d));
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST_CASE("poller: the end of the context ends a wait with ETERM") {
  zmq::context_t ctx;
  int error = 0;
  std::thread waiter([&ctx, &error] {
    zmq::socket_t pull(ctx, zmq::socket_type::pull);
    pull.set(zmq::sockopt::linger, 0);
    pull.bind("inproc://poller-term");
    Poller p;
    p.add(pull);
    try {
      for (;;)
        p.wait(milliseconds(-1));
    } catch (const zmq::error_t& e) {
      error = e.num();
    }
  });
  std::this_thread::sleep_for(milliseconds(50));
  ctx.shutdown();
  waiter.join();
  CHECK(error == ETERM);
}
