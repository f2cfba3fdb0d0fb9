#include "controller/relay.hpp"

#include <chrono>
#include <utility>

#include "proto/messages.hpp"
#include "proto/peek.hpp"
#include "proto/poller.hpp"
#include "proto/wire.hpp"

namespace ipcpp::controller {
namespace {

// The monitor's copy of `frames`: the prefix, then every frame shared (not copied).
std::vector<zmq::message_t> monitor_copy(std::string_view prefix,
                                         std::vector<zmq::message_t>& frames) {
  std::vector<zmq::message_t> copy;
  copy.reserve(frames.size() + 1);
  copy.push_back(frame(prefix));
  for (auto& f : frames)
    copy.push_back(share(f));
  return copy;
}

void drain_notifications(zmq::socket_t& socket, EngineRoster& roster) {
  while (true) {
    auto frames = proto::recv_frames(socket, zmq::recv_flags::dontwait);
    if (frames.empty()) return;
    roster.apply(std::move(frames));
  }
}

class Queue {
 public:
  Queue(QueueSockets sockets, QueueNames names, proto::SessionOptions options, Logger log)
      : s_(std::move(sockets)),
        names_(std::move(names)),
        session_(std::move(options)),
        log_(std::move(log)) {}

  void run() {
    // One poll(2) per wait (proto/poller.hpp).
    proto::Poller poller;
    const std::size_t notification = poller.add(s_.notification);
    const std::size_t client = poller.add(s_.client.fd());
    const std::size_t engine = poller.add(s_.engine.fd());
    while (true) {
      // Messages already read (a batch left them) must not wait for the next wake-up.
      const bool waiting = s_.client.waiting() > 0 || s_.engine.waiting() > 0;
      poller.wait(std::chrono::milliseconds(waiting ? 0 : -1));
      // What this turn sends leaves at its end, one write per peer (proto::WriteBatch).
      proto::WriteBatch to_engines(s_.engine);
      proto::WriteBatch to_clients(s_.client);
      if (poller.readable(notification)) {
        drain_notifications(s_.notification, roster_);
        poller.emptied(notification);  // read until nothing was left
      }
      // A bounded batch from each side per turn keeps both directions moving. A readable
      // descriptor may also mean that queued output can be written or a peer connects.
      if (poller.readable(engine) || s_.engine.waiting() > 0) {
        for (int i = 0; i < 64 && from_engine(); ++i) {
        }
      }
      if (poller.readable(client) || s_.client.waiting() > 0) {
        for (int i = 0; i < 64 && from_client(); ++i) {
        }
      }
    }
  }

 private:
  // One request from a client. Returns false when nothing was waiting.
  bool from_client() {
    auto frames = s_.client.receive();
    if (frames.empty()) return false;
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("{}: dropped a request from a client: {}", names_.name, wire.error().reason);
      return true;
    }
    auto& ids = wire->identities;
    if (ids.size() != 2) {
      log_->warn(
          "{}: dropped a request from a client: expected one routing frame (the engine uuid) "
          "before <IDS|MSG>, got {}",
          names_.name, ids.size() - 1);
      return true;
    }
    std::string target(view(ids[1]));
    if (!roster_.contains(target)) {
      drain_notifications(s_.notification, roster_);
      if (!roster_.contains(target)) {
        reply_unknown_engine(std::move(wire.value()), target);
        return true;
      }
    }
    std::swap(ids[0], ids[1]);
    auto out = proto::join(std::move(wire.value()));
    auto copy = monitor_copy(names_.in_prefix, out);
    s_.engine.send(std::move(out));
    proto::send_frames(s_.monitor, std::move(copy));
    return true;
  }

  // One reply from an engine. Returns false when nothing was waiting.
  bool from_engine() {
    auto frames = s_.engine.receive();
    if (frames.empty()) return false;
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("{}: dropped a reply from an engine: {}", names_.name, wire.error().reason);
      return true;
    }
    auto& ids = wire->identities;
    if (ids.size() < 2) {
      log_->warn("{}: dropped a reply from engine '{}': it has no client routing frame",
                 names_.name, printable(view(ids.front())));
      return true;
    }
    std::swap(ids[0], ids[1]);
    auto out = proto::join(std::move(wire.value()));
    auto copy = monitor_copy(names_.out_prefix, out);
    // The hub's copy first: once a client has a reply, the hub knows of it (a query that
    // follows at once finds the record).
    proto::send_frames(s_.monitor, std::move(copy));
    s_.client.send(std::move(out));
    return true;
  }

  // The reference drops such a request and the client waits forever; we answer at once.
  void reply_unknown_engine(proto::WireMessage&& wire, const std::string& target) {
    zmq::message_t client = std::move(wire.identities[0]);
    auto request = proto::Session::parse(std::move(wire));
    if (!request) {
      log_->warn("{}: dropped a request for unknown engine '{}': {}", names_.name,
                 printable(target), request.error().reason);
      return;
    }
    log_->warn("{}: request {} is for engine '{}', which is not registered: replying EngineError",
               names_.name, request->header.msg_id, printable(target));
    const nlohmann::json content = error_content(
        "EngineError", "engine '" + target + "' is not registered with this controller");
    const nlohmann::json metadata = {
        {"status", "error"}, {"engine", target}, {"dependencies_met", true}, {"started", nullptr}};
    std::vector<zmq::message_t> ids;
    ids.push_back(std::move(client));
    auto reply = session_.build(std::move(ids), reply_type(request->msg_type()), content,
                                nlohmann::json(request->header), metadata);
    auto copy = monitor_copy(names_.out_prefix, reply);
    // The hub's copy first: once a client has a reply, the hub knows of it (a query that
    // follows at once finds the record).
    proto::send_frames(s_.monitor, std::move(copy));
    s_.client.send(std::move(reply));
  }

  QueueSockets s_;
  QueueNames names_;
  proto::Session session_;
  Logger log_;
  EngineRoster roster_;
};

}  // namespace

void run_queue(QueueSockets sockets, QueueNames names, proto::SessionOptions session_options,
               Logger log) {
  Queue queue(std::move(sockets), std::move(names), std::move(session_options), log);
  try {
    queue.run();
  } catch (const zmq::error_t& e) {
    if (!is_shutdown(e)) log->critical("queue stopped: {}", e.what());
  }
}

void run_iopub(IopubSockets s, proto::SessionOptions session_options, Logger log) {
  proto::Session session(std::move(session_options));
  // One poll(2) per wait (proto/poller.hpp). The monitor socket is in it only for the
  // context's shutdown, which ends the loop.
  proto::Poller poller;
  poller.add(s.monitor);
  poller.add(s.engine.fd());
  poller.add(s.client.fd());
  try {
    while (true) {
      {
        // What one turn forwards leaves at its end, one write per client (proto::WriteBatch);
        // a bounded turn, so that clients still get accepted and written to under a steady
        // stream from the engines.
        proto::WriteBatch to_clients(s.client);
        for (int i = 0; i < 256; ++i) {
          auto frames = s.engine.receive();
          if (frames.empty()) break;
          auto wire = session.authenticate(std::move(frames));
          if (!wire) {
            log->warn("iopub: dropped a message from an engine: {}", wire.error().reason);
            continue;
          }
          // The hub records outputs; busy/idle statuses (two per request) are only forwarded.
          const auto type = proto::peek_string(view(wire->header), "msg_type");
          const bool status = type.found() && type.value == proto::msg_type::kStatus;
          auto out = proto::join(std::move(wire.value()));
          if (!status) {
            // The hub's copy first: once a client has a reply, the hub knows of it (a query
            // that follows at once finds the record).
            proto::send_frames(s.monitor, monitor_copy("iopub", out));
          }
          s.client.send(std::move(out));
        }
      }
      // Clients connecting, and output not yet written to them, are handled here too.
      s.client.process();
      if (s.engine.waiting() == 0) poller.wait(std::chrono::milliseconds(-1));
    }
  } catch (const zmq::error_t& e) {
    if (!is_shutdown(e)) log->critical("iopub forwarder stopped: {}", e.what());
  }
}

}  // namespace ipcpp::controller
