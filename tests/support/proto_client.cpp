#include "support/proto_client.hpp"

#include <algorithm>
#include <stdexcept>

#include "proto/messages.hpp"
#include "proto/wire.hpp"

namespace ipcpp::test {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace mt = proto::msg_type;

proto::ClientConnectionFile read_file(const std::filesystem::path& path) {
  auto file = proto::read_client_connection_file(path);
  if (!file) throw std::runtime_error(file.error().reason);
  return std::move(file).value();
}

std::chrono::milliseconds left(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

}  // namespace

ProtoClient::ProtoClient(const std::filesystem::path& client_file)
    : file_(read_file(client_file)),
      session_(proto::SessionOptions{.key = file_.key, .signature_scheme = file_.signature_scheme}),
      query_(ctx_, zmq::socket_type::dealer),
      notification_(ctx_, zmq::socket_type::sub),
      mux_(ctx_, zmq::socket_type::dealer),
      task_(ctx_, zmq::socket_type::dealer),
      iopub_(ctx_, zmq::socket_type::sub) {
  for (auto* s : {&query_, &notification_, &mux_, &task_, &iopub_}) {
    s->set(zmq::sockopt::linger, 0);
    s->set(zmq::sockopt::rcvhwm, 0);
    s->set(zmq::sockopt::sndhwm, 0);
  }
  notification_.set(zmq::sockopt::subscribe, "");
  iopub_.set(zmq::sockopt::subscribe, "");
  query_.connect(file_.url(file_.registration));
  notification_.connect(file_.url(file_.notification));
  mux_.connect(file_.url(file_.mux));
  task_.connect(file_.url(file_.task));
  iopub_.connect(file_.url(file_.iopub));
}

std::map<std::int64_t, std::string> ProtoClient::wait_for_engines(
    std::size_t n, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  std::map<std::int64_t, std::string> engines;
  auto receive = [&](zmq::socket_t& socket) -> std::optional<proto::Message> {
    zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, left(deadline)) == 0) return std::nullopt;
    auto m = session_.decode(proto::recv_frames(socket));
    if (!m) return std::nullopt;
    return std::move(m).value();
  };
  while (Clock::now() < deadline) {
    // Ask the hub again now and then: a registration may complete between the question and
    // the subscription.
    proto::send_frames(query_, session_.build({}, mt::kConnectionRequest, json::object()));
    auto reply = receive(query_);
    if (!reply) break;
    auto content = proto::decode_content<proto::ConnectionReply>(reply->content, "connection");
    if (content) {
      engines.clear();
      for (const auto& [id, uuid] : content->engines)
        engines[std::stoll(id)] = uuid;
    }
    if (engines.size() >= n) return engines;
    const auto until = std::min(deadline, Clock::now() + std::chrono::milliseconds(500));
    while (Clock::now() < until) {
      zmq::pollitem_t item{notification_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, left(until)) == 0) break;
      proto::recv_frames(notification_);
    }
  }
  throw std::runtime_error("fewer than " + std::to_string(n) + " engines registered (" +
                           std::to_string(engines.size()) + ")");
}

std::string ProtoClient::send(Queue queue, const std::string& uuid, const char* type,
                              const json& content, std::vector<zmq::message_t> buffers,
                              const json& metadata) {
  proto::Message m;
  m.header = session_.make_header(type);
  m.content = content;
  m.buffers = std::move(buffers);
  m.metadata = json::object();
  if (queue == Queue::kDirect) {
    m.identities.emplace_back(uuid.data(), uuid.size());
  } else {
    m.metadata = json{{"after", json::array()},
                      {"follow", json::array()},
                      {"timeout", nullptr},
                      {"targets", json::array({uuid})},
                      {"retries", 0}};
  }
  for (const auto& item : metadata.items())
    m.metadata[item.key()] = item.value();
  std::string msg_id = m.header.msg_id;
  proto::send_frames(queue == Queue::kDirect ? mux_ : task_, session_.serialize(std::move(m)));
  return msg_id;
}

std::string ProtoClient::apply(Queue queue, const std::string& uuid,
                               std::vector<zmq::message_t> buffers, const json& metadata) {
  return send(queue, uuid, mt::kApplyRequest, json::object(), std::move(buffers), metadata);
}

std::string ProtoClient::execute(Queue queue, const std::string& uuid, const std::string& code) {
  return send(queue, uuid, mt::kExecuteRequest,
              json{{"code", code}, {"silent", false}, {"user_expressions", json::object()}}, {});
}

proto::Message ProtoClient::reply(const std::string& msg_id, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto it = replies_.find(msg_id);
    if (it != replies_.end()) {
      proto::Message m = std::move(it->second);
      replies_.erase(it);
      return m;
    }
    zmq::pollitem_t items[] = {{mux_.handle(), 0, ZMQ_POLLIN, 0},
                               {task_.handle(), 0, ZMQ_POLLIN, 0}};
    if (zmq::poll(items, 2, left(deadline)) == 0) {
      throw std::runtime_error("no reply to " + msg_id + " within " +
                               std::to_string(timeout.count()) + " ms");
    }
    for (int i = 0; i < 2; ++i) {
      if ((items[i].revents & ZMQ_POLLIN) == 0) continue;
      auto m = session_.decode(proto::recv_frames(i == 0 ? mux_ : task_));
      if (!m) throw std::runtime_error("bad reply: " + m.error().reason);
      const std::string parent = m->parent_msg_id();
      replies_.emplace(parent, std::move(m).value());
    }
  }
}

std::vector<std::string> ProtoClient::published(const std::string& msg_id,
                                                const std::string& until_idle_of,
                                                std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto is_idle_of = [&](const proto::Message& m) {
    return m.msg_type() == mt::kStatus && m.parent_msg_id() == until_idle_of &&
           m.content.value("execution_state", std::string()) == "idle";
  };
  while (std::none_of(iopub_messages_.begin(), iopub_messages_.end(), is_idle_of)) {
    zmq::pollitem_t item{iopub_.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, left(deadline)) == 0) {
      throw std::runtime_error("no idle status for " + until_idle_of + " within " +
                               std::to_string(timeout.count()) + " ms");
    }
    auto m = session_.decode(proto::recv_frames(iopub_));
    if (!m) throw std::runtime_error("bad iopub message: " + m.error().reason);
    iopub_messages_.push_back(std::move(m).value());
  }
  std::vector<std::string> out;
  for (const auto& m : iopub_messages_) {
    if (m.parent_msg_id() != msg_id) continue;
    out.push_back(m.msg_type() == mt::kStatus
                      ? "status:" + m.content.value("execution_state", std::string())
                      : m.msg_type());
  }
  return out;
}

}  // namespace ipcpp::test
