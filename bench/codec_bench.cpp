// codec_bench: what the wire codec costs per message, and a loopback echo with and without it.
//
//   build/bench/bin/codec_bench [--quick]
//
// Prints one line per measurement; never fails. Figures go to bench/RESULTS.md with the date
// and the machine.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "proto/payload.hpp"
#include "proto/session.hpp"

namespace {

using namespace ipcpp::proto;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kKey = "59807942-e8a9f55b0320832d5149c3df";

Session keyed() {
  return Session(SessionOptions{.key = kKey, .digest_history_size = 65536});
}

// A typical load-balanced apply_request: task metadata, an ipcpp payload buffer.
std::vector<zmq::message_t> task_message(Session& s, std::size_t buffer_bytes) {
  std::vector<zmq::message_t> ids;
  ids.emplace_back("engine-uuid-7d718f69-966e855b4d", 30);
  std::vector<zmq::message_t> bufs;
  bufs.emplace_back(R"({"ipcpp":1,"f":"sleep","args":[0],"kwargs":{}})", 47);
  if (buffer_bytes > 0) bufs.emplace_back(buffer_bytes);
  const json md = {{"after", json::array()},
                   {"follow", json::array()},
                   {"timeout", nullptr},
                   {"targets", json::array()},
                   {"retries", 0}};
  return s.build(std::move(ids), "apply_request", json::object(), json::object(), md,
                 std::move(bufs));
}

std::vector<zmq::message_t> copy(const std::vector<zmq::message_t>& frames) {
  std::vector<zmq::message_t> out;
  out.reserve(frames.size());
  for (const auto& f : frames)
    out.emplace_back(f.data(), f.size());
  return out;
}

template <class F>
void per_op(const char* name, int n, F&& f) {
  const auto t0 = Clock::now();
  for (int i = 0; i < n; ++i)
    f(i);
  const double ns = std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / n;
  std::printf("%-58s %10.0f ns/op %12.0f ops/s\n", name, ns, 1e9 / ns);
}

// Median and p99 round trip of n DEALER->ROUTER->DEALER echoes over tcp 127.0.0.1.
// With `signed_codec`, each side decodes what it receives and builds a new signed message.
void echo(const char* name, int n, bool signed_codec) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.bind("tcp://127.0.0.1:*");
  const std::string ep = router.get(zmq::sockopt::last_endpoint);
  std::thread server([&] {
    Session s = keyed();
    for (int i = 0; i < n; ++i) {
      auto frames = recv_frames(router);
      if (signed_codec) {
        auto m = s.decode(std::move(frames));
        if (!m) std::abort();
        std::vector<zmq::message_t> ids;
        ids.push_back(std::move(m->identities[0]));
        frames = s.build(std::move(ids), "apply_reply", json{{"status", "ok"}}, m->header,
                         json{{"status", "ok"}, {"engine", "e"}});
      }
      send_frames(router, std::move(frames));
    }
  });
  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.connect(ep);
  Session c = keyed();
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(n));
  const auto proto_msg = task_message(c, 0);
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    auto out = signed_codec ? c.build({}, "apply_request", json::object(), json::object(),
                                      json{{"targets", json::array()}})
                            : copy(proto_msg);
    send_frames(dealer, std::move(out));
    auto in = recv_frames(dealer);
    if (signed_codec && !c.decode(std::move(in))) std::abort();
    rtt.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  server.join();
  std::sort(rtt.begin(), rtt.end());
  std::printf("%-58s median %6.1f us   p99 %6.1f us\n", name, rtt[rtt.size() / 2],
              rtt[rtt.size() * 99 / 100]);
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  const int n = quick ? 20000 : 200000;
  Session sender = keyed();
  Session receiver(SessionOptions{.key = kKey, .digest_history_size = 0});  // replays allowed
  const auto small = task_message(sender, 0);
  const auto large = task_message(sender, 1 << 20);

  per_op("build + sign a task message", n, [&](int) { (void)task_message(sender, 0); });
  per_op("authenticate (split + HMAC check), relay path", n,
         [&](int) { (void)receiver.authenticate(copy(small)); });
  per_op("decode (authenticate + parse 4 dicts)", n,
         [&](int) { (void)receiver.decode(copy(small)); });
  Session with_history = keyed();
  per_op("build + decode with replay memory (65536)", n,
         [&](int) { (void)with_history.decode(task_message(sender, 0)); });
  {
    // Distinct messages through the default replay memory (65536 signatures), filled first
    // so that each new signature also evicts the oldest: the cost every receiving hop pays.
    std::vector<std::vector<zmq::message_t>> distinct;
    const int count = quick ? 100000 : 200000;
    distinct.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i)
      distinct.push_back(task_message(sender, 0));
    Session remembering(SessionOptions{.key = kKey});
    for (int i = 0; i < 65536; ++i)
      (void)remembering.authenticate(std::move(distinct[static_cast<std::size_t>(i)]));
    per_op("authenticate with a full replay memory (65536)", count - 65536, [&](int i) {
      if (!remembering.authenticate(std::move(distinct[static_cast<std::size_t>(65536 + i)])))
        std::abort();
    });
  }
  per_op("decode with a 1 MiB buffer (buffer copied by the bench)", n / 20,
         [&](int) { (void)receiver.decode(copy(large)); });

  // A load-balanced no-op's arguments, as the engine decodes them for each task.
  const auto echo_call = encode_apply("echo", ipcpp::Value::list({ipcpp::Value(12345)}));
  per_op("decode_apply of echo(12345)", n, [&](int) {
    auto call = decode_apply(copy(echo_call));
    if (!call) std::abort();
  });
  per_op("encode_apply of echo(12345)", n,
         [&](int) { (void)encode_apply("echo", ipcpp::Value::list({ipcpp::Value(12345)})); });

  std::vector<double> big(10'000'000, 1.0);
  const ipcpp::Value args = ipcpp::Value::list({ipcpp::Value(std::move(big))});
  per_op("encode_apply + decode_apply of 10^7 doubles (80 MB)", quick ? 200 : 2000, [&](int) {
    auto call = decode_apply(encode_apply("sum", args));
    if (!call) std::abort();
  });

  echo("raw ZeroMQ DEALER-ROUTER echo, tcp 127.0.0.1 (the floor)", quick ? 5000 : 50000, false);
  echo("signed echo: both sides decode + build + sign", quick ? 5000 : 50000, true);
  return 0;
}
