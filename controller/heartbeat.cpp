#include "controller/heartbeat.hpp"

#include <cstdint>
#include <cstdio>
#include <cstring>
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
                               {s_.notification.handle(), 0, ZMQ_POLLIN, 0},
                               {s_.pong_events.handle(), 0, ZMQ_POLLIN, 0}};
    while (true) {
      const auto now = SteadyClock::now();
      if (now >= next_tick) {
        tick();
        next_tick += options_.period;
        if (next_tick < now) next_tick = now + options_.period;  // we were stalled
        continue;
      }
      const auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_tick - now);
      zmq::poll(items, 3, wait + std::chrono::milliseconds(1));
      // Closed connections first: a descriptor closed before a pong arrived on its reuse.
      if ((items[2].revents & ZMQ_POLLIN) != 0 || (items[0].revents & ZMQ_POLLIN) != 0) {
        read_connection_events();
      }
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
    // The payload frame came off the wire and carries its connection's metadata; the routing
    // id frame, made by the ROUTER, does not.
    remember_connection(heart, zmq_msg_get(frames[1].handle(), ZMQ_SRCFD));
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
        forget_connection(event.uuid);
      }
    }
  }

  // Which heart's pongs come on which TCP connection (file descriptor).
  void remember_connection(const std::string& heart, int fd) {
    if (fd < 0) return;
    auto it = fd_of_heart_.find(heart);
    if (it != fd_of_heart_.end()) {
      if (it->second == fd) return;
      heart_of_fd_.erase(it->second);
    }
    fd_of_heart_[heart] = fd;
    heart_of_fd_[fd] = heart;
  }

  void forget_connection(const std::string& heart) {
    auto it = fd_of_heart_.find(heart);
    if (it == fd_of_heart_.end()) return;
    heart_of_fd_.erase(it->second);
    fd_of_heart_.erase(it);
  }

  // A closed connection stops its heart at once.
  void read_connection_events() {
    while (true) {
      auto frames = proto::recv_frames(s_.pong_events, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      if (frames.size() < 1 || frames[0].size() != 6) continue;
      std::uint16_t event = 0;
      std::int32_t fd = -1;
      std::memcpy(&event, frames[0].data(), sizeof event);
      std::memcpy(&fd, static_cast<const char*>(frames[0].data()) + 2, sizeof fd);
      if (event != ZMQ_EVENT_DISCONNECTED) continue;
      auto it = heart_of_fd_.find(fd);
      if (it == heart_of_fd_.end()) continue;
      const std::string heart = it->second;
      heart_of_fd_.erase(it);
      fd_of_heart_.erase(heart);
      answered_.erase(heart);
      if (misses_.erase(heart) > 0) {
        // Info, not a warning: an engine that stops cleanly closes its connection too. The
        // hub's verdict (asked to leave, or its heart stopped) is the line that matters.
        log_->info("heartbeat: engine '{}' closed its connection", printable(heart));
        report(proto::msg_type::kStoppedHeart, heart);
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
  std::unordered_map<std::string, int> misses_;       // hearts being watched -> misses in a row
  std::unordered_set<std::string> answered_;          // hearts that answered since the last tick
  std::unordered_map<std::string, int> fd_of_heart_;  // the connection of each heart's pongs
  std::unordered_map<int, std::string> heart_of_fd_;
  EngineRoster roster_;
};

}  // namespace

zmq::socket_t monitor_disconnections(zmq::context_t& ctx, zmq::socket_t& pong) {
  const std::string endpoint =
      "inproc://ipcpp-heartbeat-pong-events-" +
      std::to_string(reinterpret_cast<std::uintptr_t>(static_cast<void*>(pong.handle())));
  if (zmq_socket_monitor(pong.handle(), endpoint.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) {
    throw zmq::error_t();
  }
  zmq::socket_t events(ctx, zmq::socket_type::pair);
  events.set(zmq::sockopt::linger, 0);
  events.connect(endpoint);
  return events;
}

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
