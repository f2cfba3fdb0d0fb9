#include "engine/control.hpp"

#include <cstdlib>
#include <map>
#include <optional>
#include <signal.h>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>

#include "engine/heartbeat.hpp"
#include "engine/kernel.hpp"
#include "proto/messages.hpp"
#include "proto/wire.hpp"

namespace ipcpp::engine {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace mt = proto::msg_type;

// How long a cleanly stopping engine leaves its unregistration_request on the wire before it
// closes its connections.
constexpr std::chrono::milliseconds kUnregistrationLead(50);

zmq::message_t text_frame(std::string_view text) {
  return zmq::message_t(text.data(), text.size());
}

class Control {
 public:
  Control(ControlSockets sockets, proto::SessionOptions session, ControlOptions options,
          RunningTask& running, StopState& stop, std::shared_ptr<spdlog::logger> log)
      : s_(std::move(sockets)),
        session_(std::move(session)),
        uuid_(session_.id()),
        options_(std::move(options)),
        running_(running),
        stop_(stop),
        log_(std::move(log)) {}

  void run() {
    std::vector<zmq::pollitem_t> items{zmq::pollitem_t{s_.control.handle(), 0, ZMQ_POLLIN, 0},
                                       zmq::pollitem_t{s_.kernel.handle(), 0, ZMQ_POLLIN, 0},
                                       zmq::pollitem_t{s_.heartbeat.handle(), 0, ZMQ_POLLIN, 0}};
    if (options_.signal_fd >= 0) {
      items.push_back(zmq::pollitem_t{nullptr, options_.signal_fd, ZMQ_POLLIN, 0});
    }
    try {
      while (!done_) {
        std::chrono::milliseconds wait(-1);
        if (stop_deadline_) {
          wait = std::max(std::chrono::milliseconds(0),
                          std::chrono::duration_cast<std::chrono::milliseconds>(*stop_deadline_ -
                                                                                Clock::now()));
        }
        zmq::poll(items.data(), items.size(), wait);
        if ((items[0].revents & ZMQ_POLLIN) != 0) serve_requests();
        if ((items[1].revents & ZMQ_POLLIN) != 0) serve_kernel();
        if ((items[2].revents & ZMQ_POLLIN) != 0) serve_heartbeat();
        if (items.size() > 3 && (items[3].revents & ZMQ_POLLIN) != 0) serve_signal();
        if (stop_deadline_ && Clock::now() >= *stop_deadline_) give_up();
      }
    } catch (const zmq::error_t& e) {
      if (e.num() != ETERM) log_->error("control thread: {}", e.what());
    }
  }

 private:
  void serve_requests() {
    for (;;) {
      auto frames = proto::recv_frames(s_.control, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      auto message = session_.decode(std::move(frames));
      if (!message) {
        log_->warn("dropped a message on the control socket: {}", message.error().reason);
        continue;
      }
      handle(std::move(message).value());
    }
  }

  void reply(proto::Message& request, std::string_view type, const json& content) {
    const std::string status = content.value("status", std::string("ok"));
    proto::send_frames(s_.control, session_.build(std::move(request.identities), type, content,
                                                  json(request.header),
                                                  json{{"engine", uuid_}, {"status", status}}));
  }

  void handle(proto::Message&& m) {
    const std::string type = m.msg_type();
    if (type == mt::kAbortRequest) {
      auto content = proto::decode_content<proto::AbortRequest>(m.content, "abort_request");
      if (!content) {
        reply(m, mt::kAbortReply, error("ValueError", content.error().reason));
        return;
      }
      if (!content->msg_ids || content->msg_ids->empty()) {
        send_kernel({kernel_command::kAbortQueued});
      } else {
        std::vector<zmq::message_t> queued;
        queued.push_back(text_frame(kernel_command::kAbort));
        for (const auto& id : *content->msg_ids) {
          if (running_.cancel(id)) {
            log_->info("aborting the running task {}", id);
          } else {
            queued.push_back(text_frame(id));
          }
        }
        if (queued.size() > 1) proto::send_frames(s_.kernel, std::move(queued));
      }
      reply(m, mt::kAbortReply, json{{"status", "ok"}});
    } else if (type == mt::kClearRequest) {
      // The kernel clears its namespace when it is between tasks, then answers.
      const std::string token = m.header.msg_id;
      send_kernel({kernel_command::kClear, token});
      pending_clears_.emplace(token, std::move(m));
    } else if (type == mt::kShutdownRequest) {
      auto content = proto::decode_content<proto::ShutdownRequest>(m.content, "shutdown_request");
      reply(m, mt::kShutdownReply,
            json{{"status", "ok"}, {"restart", content ? content->restart : false}});
      begin_stop(0, "a client asked the engine to shut down");
    } else if (type == mt::kSignalRequest) {
      handle_signal_request(m);
    } else {
      log_->warn("ignored a {} on the control socket", type);
      if (type.ends_with("_request")) {
        reply(m, type.substr(0, type.size() - 8) + "_reply",
              error("NotImplementedError", "this engine does not handle " + type));
      }
    }
  }

  void handle_signal_request(proto::Message& m) {
    auto content = proto::decode_content<proto::SignalRequest>(m.content, "signal_request");
    int sig = 0;
    if (content && content->sig.is_number_integer()) {
      sig = content->sig.get<int>();
    } else if (content && content->sig.is_string()) {
      const std::string name = content->sig.get<std::string>();
      if (name == "SIGINT") sig = SIGINT;
      if (name == "SIGTERM") sig = SIGTERM;
      if (name == "SIGKILL") sig = SIGKILL;
      if (name == "SIGHUP") sig = SIGHUP;
    }
    if (sig == SIGINT) {
      const std::string running = running_.cancel_current();
      if (!running.empty()) log_->info("interrupting the running task {}", running);
      reply(m, "signal_reply", json{{"status", "ok"}});
    } else if (sig == SIGTERM || sig == SIGKILL || sig == SIGHUP) {
      reply(m, "signal_reply", json{{"status", "ok"}});
      begin_stop(0, "a client sent signal " + std::to_string(sig));
    } else {
      reply(m, "signal_reply",
            error("ValueError", "unsupported signal " + (content ? content->sig.dump() : "?") +
                                    ": use SIGINT (interrupt the running task) or SIGTERM"));
    }
  }

  static json error(const std::string& ename, const std::string& evalue) {
    return json{{"status", "error"},
                {"ename", ename},
                {"evalue", evalue},
                {"traceback", json::array({ename + ": " + evalue + "\n"})},
                {"engine_info", json::object()}};
  }

  void send_kernel(std::initializer_list<std::string_view> parts) {
    std::vector<zmq::message_t> frames;
    for (auto p : parts)
      frames.push_back(text_frame(p));
    proto::send_frames(s_.kernel, std::move(frames));
  }

  void serve_kernel() {
    for (;;) {
      auto frames = proto::recv_frames(s_.kernel, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      if (frames.size() == 1 && frames[0].to_string_view() == kernel_command::kStopped) {
        // The kernel answered the request it was running (aborted): the controller may now
        // forget this engine without failing that request for a death. A controller that is
        // gone is not told (the message would hold the exit for its linger).
        stop_deadline_.reset();
        if (stop_.exit_code.load() == 0) {
          unregister();
          // The request crosses the registration connection while the heartbeat connection
          // closes right after this thread returns: a moment on the wire lets the controller
          // read the request before it sees the connection close (else the hub records a
          // death, which is only a warning too many: it handles either order).
          std::this_thread::sleep_for(kUnregistrationLead);
        }
        done_ = true;  // the engine closes its sockets once this thread has returned
        return;
      } else if (frames.size() == 2 && frames[0].to_string_view() == kernel_command::kCleared) {
        auto it = pending_clears_.find(frames[1].to_string());
        if (it != pending_clears_.end()) {
          reply(it->second, mt::kClearReply, json{{"status", "ok"}});
          pending_clears_.erase(it);
        }
      }
    }
  }

  void serve_heartbeat() {
    auto frames = proto::recv_frames(s_.heartbeat, zmq::recv_flags::dontwait);
    if (frames.size() == 2 && frames[0].to_string_view() == kControllerGone) {
      begin_stop(1, "no heartbeat from the controller at " + options_.controller_url + " for " +
                        frames[1].to_string() + " s: it is gone");
    }
  }

  void serve_signal() {
    signalfd_siginfo info{};
    if (::read(options_.signal_fd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) {
      return;
    }
    const int sig = static_cast<int>(info.ssi_signo);
    begin_stop(0, std::string("received ") + (sig == SIGTERM  ? "SIGTERM"
                                              : sig == SIGINT ? "SIGINT"
                                                              : "SIGHUP"));
  }

  void begin_stop(int exit_code, const std::string& why) {
    if (stopping_) return;
    stopping_ = true;
    if (exit_code == 0) {
      log_->info("stopping: {}", why);
    } else {
      log_->error("stopping: {}", why);
    }
    stop_.exit_code.store(exit_code);
    running_.stop();
    send_kernel({kernel_command::kStop});
    stop_deadline_ = Clock::now() + options_.stop_grace;
  }

  void unregister() {
    if (unregistered_) return;
    unregistered_ = true;
    proto::send_frames(
        s_.registration,
        session_.build({}, mt::kUnregistrationRequest, json{{"id", options_.engine_id}}),
        zmq::send_flags::dontwait);
  }

  void give_up() {
    const std::string task = running_.current();
    log_->warn(
        "the running task {} did not stop within {} ms of its cancellation; exiting "
        "without it",
        task.empty() ? std::string("(none)") : task, options_.stop_grace.count());
    unregister();
    log_->flush();
    // The control replies went out at least stop_grace ago; give the unregistration a moment
    // on the wire (no socket can be closed while the kernel thread still runs).
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    std::_Exit(stop_.exit_code.load());
  }

  ControlSockets s_;
  proto::Session session_;
  std::string uuid_;
  ControlOptions options_;
  RunningTask& running_;
  StopState& stop_;
  std::shared_ptr<spdlog::logger> log_;
  std::map<std::string, proto::Message> pending_clears_;
  std::optional<Clock::time_point> stop_deadline_;
  bool stopping_ = false;
  bool unregistered_ = false;
  bool done_ = false;  // the kernel stopped: this thread's work is over
};

}  // namespace

void run_control(ControlSockets sockets, proto::SessionOptions session, ControlOptions options,
                 RunningTask& running, StopState& stop, std::shared_ptr<spdlog::logger> log) {
  Control control(std::move(sockets), std::move(session), std::move(options), running, stop,
                  std::move(log));
  control.run();
}

}  // namespace ipcpp::engine
