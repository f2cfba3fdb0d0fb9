#include "controller/common.hpp"

#include <cctype>
#include <cstdio>
#include <stdexcept>

namespace ipcpp::controller {

zmq::socket_t make_socket(zmq::context_t& context, zmq::socket_type type, std::string_view identity,
                          int linger_ms) {
  zmq::socket_t socket(context, type);
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  if (!identity.empty()) socket.set(zmq::sockopt::routing_id, zmq::buffer(identity));
  return socket;
}

int bind_tcp(zmq::socket_t& socket, const std::string& ip, int port) {
  const std::string wanted =
      "tcp://" + ip + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  try {
    socket.bind(wanted);
  } catch (const zmq::error_t& e) {
    throw std::runtime_error("cannot listen on " + wanted + ": " + e.what());
  }
  const std::string endpoint = socket.get(zmq::sockopt::last_endpoint);
  const auto colon = endpoint.rfind(':');
  return std::stoi(endpoint.substr(colon + 1));
}

int bind_tcp(proto::ZmtpSocket& socket, const std::string& ip, int port) {
  const std::string wanted =
      "tcp://" + ip + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  try {
    return socket.bind(wanted);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot listen on " + wanted + ": " + e.what());
  }
}

proto::ZmtpSocket make_zmtp_socket(proto::ZmtpSocketType type, const Logger& log,
                                   const std::string& name, const std::string& identity) {
  proto::ZmtpSocketOptions o;
  o.type = type;
  o.identity = identity;
  o.linger = std::chrono::milliseconds(0);
  o.on_problem = [log, name](std::string_view what) { log->warn("{}: {}", name, what); };
  return proto::ZmtpSocket(std::move(o));
}

zmq::message_t share(zmq::message_t& m) {
  zmq::message_t copy;
  copy.copy(m);
  return copy;
}

std::string printable(std::string_view bytes, std::size_t limit) {
  std::string out;
  for (std::size_t i = 0; i < bytes.size() && i < limit; ++i) {
    const auto c = static_cast<unsigned char>(bytes[i]);
    if (std::isprint(c) != 0 && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  if (bytes.size() > limit) out += "...";
  return out;
}

std::string printable(const std::vector<zmq::message_t>& frames, std::size_t limit) {
  std::string out = "[";
  for (std::size_t i = 0; i < frames.size(); ++i) {
    if (i != 0) out += ", ";
    if (i == 8) {
      out += std::to_string(frames.size() - 8);
      out += " more";
      break;
    }
    out += '\'';
    out += printable(view(frames[i]), limit);
    out += '\'';
  }
  out += "]";
  return out;
}

nlohmann::json error_content(std::string_view ename, std::string_view evalue,
                             nlohmann::json engine_info) {
  std::string last = std::string(ename) + ": " + std::string(evalue);
  return nlohmann::json{{"status", "error"},
                        {"ename", ename},
                        {"evalue", evalue},
                        {"traceback", nlohmann::json::array({last})},
                        {"engine_info", std::move(engine_info)}};
}

std::string reply_type(std::string_view request_type) {
  constexpr std::string_view kSuffix = "_request";
  if (request_type.size() > kSuffix.size() && request_type.ends_with(kSuffix)) {
    return std::string(request_type.substr(0, request_type.size() - kSuffix.size())) + "_reply";
  }
  return std::string(request_type) + "_reply";
}

}  // namespace ipcpp::controller

#include "proto/messages.hpp"
#include "proto/session.hpp"

namespace ipcpp::controller {

EngineRoster::Event EngineRoster::apply(std::vector<zmq::message_t>&& frames) {
  auto wire = proto::split(std::move(frames));
  if (!wire) return {};
  auto message = proto::Session::parse(std::move(wire.value()));
  if (!message) return {};
  const std::string& type = message->msg_type();
  if (type == proto::msg_type::kShutdownNotification) return {Change::kShutdown, -1, {}};
  const bool registered = type == proto::msg_type::kRegistrationNotification;
  if (!registered && type != proto::msg_type::kUnregistrationNotification) return {};
  auto note = proto::decode_content<proto::EngineNotification>(message->content, type);
  if (!note) return {};
  if (registered) {
    ids_[note->uuid] = note->id;
    return {Change::kRegistered, note->id, note->uuid};
  }
  ids_.erase(note->uuid);
  return {Change::kUnregistered, note->id, note->uuid};
}

std::int64_t EngineRoster::id_of(const std::string& uuid) const {
  const auto it = ids_.find(uuid);
  return it == ids_.end() ? -1 : it->second;
}

}  // namespace ipcpp::controller

namespace ipcpp::controller {
std::optional<nlohmann::json> parse_json_frame(const zmq::message_t& frame) {
  auto j = nlohmann::json::parse(frame.data<char>(), frame.data<char>() + frame.size(), nullptr,
                                 /*allow_exceptions=*/false);
  if (!j.is_object()) return std::nullopt;
  return std::optional<nlohmann::json>(std::in_place, std::move(j));
}
}  // namespace ipcpp::controller
