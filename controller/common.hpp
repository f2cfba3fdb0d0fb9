// What the controller's threads share: inproc endpoints, socket set-up, frame helpers and
// the error replies the controller itself makes.
//
// Every thread owns its sockets. The controller creates and binds them in the main thread
// (so that ports are known and bind errors are reported before anything runs), then moves
// each socket into the one thread that uses it from then on.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/logger.h>
#include <zmq.hpp>

#include "proto/zmtp_socket.hpp"

namespace ipcpp::controller {

using Logger = std::shared_ptr<spdlog::logger>;

// The hub binds a SUB here; relays, schedulers and the heartbeat monitor publish copies of
// their traffic to it, each message prefixed by one frame naming its kind ("in", "out",
// "intask", "tracktask", "outtask", "iopub", "heartmonitor", ...). All are signed messages
// as received or sent, except "tracktask": [msg_id, engine uuid].
inline constexpr const char* kMonitorEndpoint = "inproc://ipcpp-monitor";
// The hub's notification PUB is bound here as well as on TCP; schedulers and relays learn of
// engines coming and going from it.
inline constexpr const char* kNotificationEndpoint = "inproc://ipcpp-notification";
// The task scheduler's client-facing ROUTER is bound here as well; the hub resubmits tasks
// through it.
inline constexpr const char* kTaskEndpoint = "inproc://ipcpp-task";
// The routing id of the hub's socket to kTaskEndpoint: replies to the tasks it resubmits go
// back there, not to the clients' TCP port.
inline constexpr std::string_view kResubmitId = "hub-resubmit";

// A socket with the controller's settings: no high-water mark (nothing is dropped), linger
// `linger_ms` on close, and the routing identity when one is given.
zmq::socket_t make_socket(zmq::context_t& context, zmq::socket_type type,
                          std::string_view identity = {}, int linger_ms = 0);

// Binds tcp://ip:port (port 0: a port chosen by the OS) and returns the port bound.
// Throws std::runtime_error "cannot listen on tcp://IP:PORT: REASON".
int bind_tcp(zmq::socket_t& socket, const std::string& ip, int port);
int bind_tcp(proto::ZmtpSocket& socket, const std::string& ip, int port);
// A socket that speaks ZMTP itself (proto/zmtp_socket.hpp), announcing `identity` (ROUTER);
// its connection problems go to `log`, prefixed with `name`.
proto::ZmtpSocket make_zmtp_socket(proto::ZmtpSocketType type, const Logger& log,
                                   const std::string& name, const std::string& identity = {});

inline zmq::message_t frame(std::string_view text) {
  return zmq::message_t(text.data(), text.size());
}
inline std::string_view view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}
// A frame sharing `m`'s data where ZeroMQ can (large frames are reference-counted).
zmq::message_t share(zmq::message_t& m);

// Frames as printable text for logs: at most `limit` characters per frame, non-printable
// bytes as \xNN.
std::string printable(const std::vector<zmq::message_t>& frames, std::size_t limit = 40);
std::string printable(std::string_view bytes, std::size_t limit = 80);

// The error dict of ipyparallel (ename, evalue, traceback, engine_info) for an error the
// controller raises itself, such as EngineError or TaskTimeout.
nlohmann::json error_content(std::string_view ename, std::string_view evalue,
                             nlohmann::json engine_info = nlohmann::json::object());

// "<x>_reply" for a "<x>_request" msg_type (the reply type a client waits for).
std::string reply_type(std::string_view request_type);

}  // namespace ipcpp::controller

namespace ipcpp::controller {

// The registered engines as the hub's notifications announce them (uuid <-> id).
class EngineRoster {
 public:
  enum class Change { kNone, kRegistered, kUnregistered, kShutdown };
  struct Event {
    Change change = Change::kNone;
    std::int64_t id = -1;
    std::string uuid;
  };
  // Reads one notification (frames as received on a SUB of kNotificationEndpoint) and updates
  // the roster. Returns what changed; kNone for anything it does not understand.
  Event apply(std::vector<zmq::message_t>&& frames);
  bool contains(const std::string& uuid) const { return ids_.contains(uuid); }
  // The id of a registered engine, or -1.
  std::int64_t id_of(const std::string& uuid) const;
  const std::unordered_map<std::string, std::int64_t>& ids() const { return ids_; }

 private:
  std::unordered_map<std::string, std::int64_t> ids_;
};

// True when `e` says the context is shutting down: the thread should return.
inline bool is_shutdown(const zmq::error_t& e) {
  return e.num() == ETERM;
}

}  // namespace ipcpp::controller

namespace ipcpp::controller {
// The JSON object in one of a message's dict frames, or nullopt when it is not one.
std::optional<nlohmann::json> parse_json_frame(const zmq::message_t& frame);
}  // namespace ipcpp::controller
