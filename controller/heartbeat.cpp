#include "controller/heartbeat.hpp"

#include <cstdio>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "proto/messages.hpp"
#include "proto/wire.hpp"

namespace ipcpp::controller {
namespace {

using SteadyClock = std::chrono::steady_clock;

class HeartMonitor {
 public:
  HeartMonitor(HeartbeatSockets sockets, HeartbeatOptions options,
               proto::SessionOptions session_options, Logger log)
      : s_(std::move(sockets)),
        options_(options),
        session_(std::move(session_options)),
        log_(std::move(log)),
        start_(SteadyClock::now()) {}

  void run() {
    auto next_tick = SteadyClock::now();
    zmq::pollitem_t items[] = {{s_.pong.handle(), 0, ZMQ_POLLIN, 0},
                               {s_.notification.handle(), 0, ZMQ_POLLIN, 0}};
    while (true) {
      const auto now = SteadyClock::now();
      if (now >= next_tick) {
        tick();
        next_tick += options_.period;
        if (next_tick < now) next_tick = now + options_.period;  // we were stalled
        continue;
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
      zmq::poll(items, 2, wait + std::chrono::milliseconds(1));
      if ((items[0].revents & ZMQ_POLLIN) != 0) {
        while (receive_pong()) {
        }
      }
      if ((items[1].revents & ZMQ_POLLIN) != 0) read_notifications();
    }
  }

 private:
  // Returns false when no pong was waiting.
  bool receive_pong() {
    auto frames = proto::recv_frames(s_.pong, zmq::recv_flags::dontwait);
    if (frames.empty()) return false;
    if (frames.size() != 2) {
      log_->warn("heartbeat: dropped a pong of {} frames (expected the engine uuid and the ping)",
                 frames.size());
      return true;
    }
    const std::string_view payload = view(frames[1]);
    if (payload != current_ && payload != previous_) {
      log_->debug("heartbeat: ignored a stale or unknown pong '{}' from '{}'", printable(payload),
                  printable(view(frames[0])));
      return true;
    }
    std::string heart(view(frames[0]));
    auto it = misses_.find(heart);
    if (it == misses_.end()) {
      misses_.emplace(heart, 0);
      report(proto::msg_type::kNewHeart, heart);
    } else {
      it->second = 0;
    }
    answered_.insert(std::move(heart));
    return true;
  }

  void read_notifications() {
    while (true) {
      auto frames = proto::recv_frames(s_.notification, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      const auto event = roster_.apply(std::move(frames));
      if (event.change == EngineRoster::Change::kUnregistered) {
        misses_.erase(event.uuid);
        answered_.erase(event.uuid);
      }
    }
  }

  void tick() {
    std::vector<std::string> stopped;
    for (auto it = misses_.begin(); it != misses_.end();) {
      if (answered_.contains(it->first)) {
        it->second = 0;
        ++it;
        continue;
      }
      if (++it->second >= options_.misses) {
        log_->warn("heartbeat: engine '{}' missed {} heartbeats in a row", printable(it->first),
                   it->second);
        stopped.push_back(it->first);
        it = misses_.erase(it);
      } else {
        log_->debug("heartbeat: engine '{}' missed {} heartbeat(s)", printable(it->first),
                    it->second);
        ++it;
      }
    }
    answered_.clear();
    for (const auto& heart : stopped)
      report(proto::msg_type::kStoppedHeart, heart);
    previous_ = std::move(current_);
    const double seconds = std::chrono::duration<double>(SteadyClock::now() - start_).count();
    char text[32];
    std::snprintf(text, sizeof text, "%.6f", seconds);
    current_ = text;
    s_.ping.send(frame(current_), zmq::send_flags::none);
  }

  void report(const char* type, const std::string& heart) {
    std::vector<zmq::message_t> ids;
    ids.push_back(frame("heartmonitor"));
    ids.push_back(frame(""));
    proto::send_frames(s_.monitor, session_.build(std::move(ids), type, {{"hearts", {heart}}}));
  }

  HeartbeatSockets s_;
  HeartbeatOptions options_;
  proto::Session session_;
  Logger log_;
  SteadyClock::time_point start_;
  std::string current_ = "-";
  std::string previous_ = "-";
  std::unordered_map<std::string, int> misses_;  // hearts being watched -> misses in a row
  std::unordered_set<std::string> answered_;     // hearts that answered since the last tick
  EngineRoster roster_;
};

}  // namespace

void run_heartbeat(HeartbeatSockets sockets, HeartbeatOptions options,
                   proto::SessionOptions session_options, Logger log) {
  HeartMonitor monitor(std::move(sockets), options, std::move(session_options), log);
  try {
    monitor.run();
  } catch (const zmq::error_t& e) {
    if (!is_shutdown(e)) log->critical("heartbeat monitor stopped: {}", e.what());
  }
}

}  // namespace ipcpp::controller
