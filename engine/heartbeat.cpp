#include "engine/heartbeat.hpp"

#include <algorithm>
#include <string>

#include "proto/wire.hpp"

namespace ipcpp::engine {

void run_heartbeat(HeartbeatSockets sockets, std::chrono::milliseconds controller_timeout,
                   std::shared_ptr<spdlog::logger> log) {
  using Clock = std::chrono::steady_clock;
  auto last_ping = Clock::now();
  bool reported = false;
  std::array<zmq::pollitem_t, 1> items{zmq::pollitem_t{sockets.ping.handle(), 0, ZMQ_POLLIN, 0}};
  try {
    for (;;) {
      std::chrono::milliseconds wait(1000);
      if (controller_timeout.count() > 0 && !reported) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            last_ping + controller_timeout - Clock::now());
        wait = std::clamp(left, std::chrono::milliseconds(1), wait);
      }
      zmq::poll(items.data(), items.size(), wait);
      if ((items[0].revents & ZMQ_POLLIN) != 0) {
        // Each ping goes straight back: the frames are forwarded, not copied.
        for (;;) {
          auto frames = proto::recv_frames(sockets.ping, zmq::recv_flags::dontwait);
          if (frames.empty()) break;
          proto::send_frames(sockets.pong, std::move(frames), zmq::send_flags::dontwait);
        }
        last_ping = Clock::now();
        reported = false;
        continue;
      }
      if (controller_timeout.count() > 0 && !reported &&
          Clock::now() - last_ping >= controller_timeout) {
        reported = true;
        const std::string seconds = std::to_string(
            std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - last_ping).count());
        log->debug("no heartbeat for {} s", seconds);
        std::vector<zmq::message_t> notice;
        notice.emplace_back(kControllerGone.data(), kControllerGone.size());
        notice.emplace_back(seconds.data(), seconds.size());
        proto::send_frames(sockets.control, std::move(notice));
      }
    }
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) log->error("heartbeat thread: {}", e.what());
  }
}

}  // namespace ipcpp::engine
