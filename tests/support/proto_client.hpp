// A minimal synchronous client built on proto/ alone, for tests that check what travels on
// the wire: it sends apply and execute requests to one engine through the direct (mux) or the
// load-balanced (task) queue and waits for their replies, frames and all.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <zmq.hpp>

#include "proto/connection_file.hpp"
#include "proto/message.hpp"
#include "proto/session.hpp"

namespace ipcpp::test {

class ProtoClient {
 public:
  enum class Queue { kDirect, kLoadBalanced };

  // Connects to the controller of a client connection file. Throws std::runtime_error when
  // the file cannot be read.
  explicit ProtoClient(const std::filesystem::path& client_file);

  // Asks the hub, then follows notifications until `n` engines are registered.
  // Returns id -> uuid. Throws std::runtime_error after `timeout`.
  std::map<std::int64_t, std::string> wait_for_engines(std::size_t n,
                                                       std::chrono::milliseconds timeout);

  // Sends an apply_request whose buffers are `buffers` (e.g. from proto::encode_apply) to the
  // engine `uuid`, with `metadata`'s fields added to the request's. Returns its msg_id.
  std::string apply(Queue queue, const std::string& uuid, std::vector<zmq::message_t> buffers,
                    const nlohmann::json& metadata = nlohmann::json::object());
  // Sends an execute_request. Returns its msg_id.
  std::string execute(Queue queue, const std::string& uuid, const std::string& code);

  // The reply to `msg_id`. Throws std::runtime_error after `timeout`.
  proto::Message reply(const std::string& msg_id, std::chrono::milliseconds timeout);

  // What was published on iopub for `msg_id`, in order: msg_types, a status as
  // "status:busy" / "status:idle". Reads iopub until the idle status of `until_idle_of`
  // arrives (a request sent after `msg_id` to the same engine, which publishes in order).
  // Throws std::runtime_error after `timeout`.
  std::vector<std::string> published(const std::string& msg_id, const std::string& until_idle_of,
                                     std::chrono::milliseconds timeout);

 private:
  std::string send(Queue queue, const std::string& uuid, const char* type,
                   const nlohmann::json& content, std::vector<zmq::message_t> buffers,
                   const nlohmann::json& metadata = nlohmann::json::object());

  proto::ClientConnectionFile file_;
  proto::Session session_;
  zmq::context_t ctx_;
  zmq::socket_t query_;
  zmq::socket_t notification_;
  zmq::socket_t mux_;
  zmq::socket_t task_;
  zmq::socket_t iopub_;
  std::map<std::string, proto::Message> replies_;  // received, not yet asked for
  std::vector<proto::Message> iopub_messages_;     // received, in order
};

}  // namespace ipcpp::test
