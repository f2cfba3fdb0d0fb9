// The request the kernel is running, and whether it has been cancelled. The kernel thread
// begins and ends tasks; the control thread cancels them (abort_request, signal_request,
// shutdown); a running task reads the flag and sleeps on it. The only state the engine's
// threads share besides their inproc sockets.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>

namespace ipcpp::engine {

class RunningTask {
 public:
  // The kernel starts running `msg_id`. Clears the flag, unless the engine is stopping.
  void begin(const std::string& msg_id) {
    std::lock_guard lock(mutex_);
    msg_id_ = msg_id;
    cancelled_.store(stopping_, std::memory_order_release);
  }
  // The kernel is done with it.
  void end() {
    std::lock_guard lock(mutex_);
    msg_id_.clear();
    cancelled_.store(stopping_, std::memory_order_release);
  }
  // Cancels `msg_id` if it is the one running. Returns true if it was.
  bool cancel(const std::string& msg_id) {
    std::lock_guard lock(mutex_);
    if (msg_id_.empty() || msg_id_ != msg_id) return false;
    cancelled_.store(true, std::memory_order_release);
    cv_.notify_all();
    return true;
  }
  // Cancels whatever runs. Returns its msg_id, or "" when idle.
  std::string cancel_current() {
    std::lock_guard lock(mutex_);
    if (!msg_id_.empty()) {
      cancelled_.store(true, std::memory_order_release);
      cv_.notify_all();
    }
    return msg_id_;
  }
  // The engine is stopping: the running task and any later one are cancelled.
  void stop() {
    std::lock_guard lock(mutex_);
    stopping_ = true;
    cancelled_.store(true, std::memory_order_release);
    cv_.notify_all();
  }
  // The msg_id running now, or "".
  std::string current() const {
    std::lock_guard lock(mutex_);
    return msg_id_;
  }

  bool cancelled() const { return cancelled_.load(std::memory_order_acquire); }

  // Waits up to `duration` or until cancelled. Returns false if cancelled.
  bool sleep_for(std::chrono::nanoseconds duration) {
    std::unique_lock lock(mutex_);
    return !cv_.wait_for(lock, duration, [this] { return cancelled(); });
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::string msg_id_;     // guarded by mutex_
  bool stopping_ = false;  // guarded by mutex_
  std::atomic<bool> cancelled_{false};
};

}  // namespace ipcpp::engine
