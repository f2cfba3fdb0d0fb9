// A decoded message: header fields typed, the other three dicts as JSON, frames for the rest.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

namespace ipcpp::proto {

// The protocol version we speak and put in every header.
inline constexpr const char* kProtocolVersion = "5.3";

struct Header {
  std::string msg_id;
  std::string msg_type;
  std::string username;
  std::string session;
  std::string date;  // proto/clock.hpp format
  std::string version = kProtocolVersion;
};
void to_json(nlohmann::json& j, const Header& h);
// Requires msg_id and msg_type as strings; the other fields default to "" when absent.
// Throws nlohmann::json::exception naming the field otherwise (Session::parse turns that into
// a kBadHeader Error).
void from_json(const nlohmann::json& j, Header& h);

struct Message {
  std::vector<zmq::message_t> identities;  // routing frames, in order
  Header header;
  nlohmann::json parent_header = nlohmann::json::object();  // the request's header, or {}
  nlohmann::json metadata = nlohmann::json::object();
  nlohmann::json content = nlohmann::json::object();
  std::vector<zmq::message_t> buffers;
  // A received message's header frame as it came (the parent of what answers it, sent on
  // without writing it again). Empty for a message built here.
  zmq::message_t raw_header;
  // When not empty, serialize() sends this as the parent header frame instead of writing
  // parent_header.
  zmq::message_t raw_parent_header;

  const std::string& msg_type() const { return header.msg_type; }
  // parent_header.msg_id, or "" when there is no parent.
  std::string parent_msg_id() const;
};

}  // namespace ipcpp::proto
