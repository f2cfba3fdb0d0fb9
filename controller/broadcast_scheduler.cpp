#include "controller/broadcast_scheduler.hpp"

#include <chrono>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "proto/wire.hpp"

namespace ipcpp::controller {
namespace {

constexpr std::string_view kRootId = "sub_scheduler_0";

std::string dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

struct Target {
  std::string uuid;
  std::int64_t id = -1;
};

struct Broadcast {
  std::vector<zmq::message_t> route;  // the client's routing frames
  nlohmann::json header;              // the client's request header
  bool coalescing = false;
  std::vector<Target> order;  // targets, leaf 0's first, then leaf 1's
  // coalescing: one slot per target, filled by its reply (or by its loss)
  std::unordered_map<std::string, std::optional<proto::WireMessage>> replies;
  std::size_t pending = 0;
  bool engine_lost = false;
  std::string lost_uuid;
};

class BroadcastScheduler {
 public:
  BroadcastScheduler(BroadcastSockets sockets, proto::SessionOptions options, Logger log)
      : s_(std::move(sockets)), session_(std::move(options)), log_(std::move(log)) {}

  void run() {
    zmq::pollitem_t items[] = {{s_.notification.handle(), 0, ZMQ_POLLIN, 0},
                               {s_.leaves[0].handle(), 0, ZMQ_POLLIN, 0},
                               {s_.leaves[1].handle(), 0, ZMQ_POLLIN, 0},
                               {s_.client.handle(), 0, ZMQ_POLLIN, 0}};
    while (true) {
      zmq::poll(items, 4, std::chrono::milliseconds(-1));
      if ((items[0].revents & ZMQ_POLLIN) != 0) read_notifications();
      for (int leaf = 0; leaf < 2; ++leaf) {
        if ((items[1 + leaf].revents & ZMQ_POLLIN) == 0) continue;
        while (true) {
          auto frames = proto::recv_frames(s_.leaves[static_cast<std::size_t>(leaf)],
                                           zmq::recv_flags::dontwait);
          if (frames.empty()) break;
          on_reply(std::move(frames));
        }
      }
      if ((items[3].revents & ZMQ_POLLIN) != 0) {
        read_notifications();
        while (true) {
          auto frames = proto::recv_frames(s_.client, zmq::recv_flags::dontwait);
          if (frames.empty()) break;
          on_request(std::move(frames));
        }
      }
    }
  }

 private:
  void read_notifications() {
    while (true) {
      auto frames = proto::recv_frames(s_.notification, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      const auto event = roster_.apply(std::move(frames));
      if (event.change == EngineRoster::Change::kUnregistered) engine_lost(event.uuid);
    }
  }

  void on_request(std::vector<zmq::message_t>&& frames) {
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("broadcast: dropped a request from a client: {}", wire.error().reason);
      return;
    }
    auto header = parse_json_frame(wire->header);
    auto metadata = parse_json_frame(wire->metadata);
    if (wire->identities.empty() || !header || !metadata || !header->contains("msg_id") ||
        !(*header)["msg_id"].is_string() || !metadata->contains("targets") ||
        !(*metadata)["targets"].is_array()) {
      log_->warn(
          "broadcast: dropped a request without a client route, a msg_id or "
          "metadata.targets");
      return;
    }
    const std::string msg_id = (*header)["msg_id"].get<std::string>();
    const std::string original = metadata->value("original_msg_id", msg_id);
    const bool coalescing = metadata->value("is_coalescing", false);

    std::array<std::vector<Target>, 2> by_leaf;
    std::vector<std::string> unknown;
    for (const auto& t : (*metadata)["targets"]) {
      Target target;
      if (t.is_array() && t.size() == 2 && t[0].is_string() && t[1].is_number_integer()) {
        target = {t[0].get<std::string>(), t[1].get<std::int64_t>()};
      } else if (t.is_string()) {
        target = {t.get<std::string>(), roster_.id_of(t.get<std::string>())};
      } else {
        unknown.push_back(t.dump());
        continue;
      }
      if (!roster_.contains(target.uuid)) {
        unknown.push_back(target.uuid);
        continue;
      }
      target.id = roster_.id_of(target.uuid);
      by_leaf[static_cast<std::size_t>(target.id % 2)].push_back(std::move(target));
    }
    if (!unknown.empty()) {
      std::string list;
      for (const auto& u : unknown)
        list += (list.empty() ? "" : ", ") + u;
      log_->warn("broadcast: request {} names engines that are not registered: {}", msg_id, list);
      reply_error(wire->identities, *header, "EngineError",
                  "broadcast to engines that are not registered: " + list, original, coalescing);
      return;
    }

    auto& broadcast = broadcasts_[original];
    for (auto& f : wire->identities)
      broadcast.route.push_back(share(f));
    broadcast.header = *header;
    broadcast.coalescing = coalescing;

    nlohmann::json md = *metadata;
    md["original_msg_id"] = original;
    md["is_broadcast"] = true;
    md["is_coalescing"] = coalescing;
    for (std::size_t leaf = 0; leaf < 2; ++leaf) {
      nlohmann::json leaf_targets = nlohmann::json::array();
      for (const auto& t : by_leaf[leaf])
        leaf_targets.push_back({t.uuid, t.id});
      md["targets"] = leaf_targets;
      const std::string md_text = dump(md);
      for (const auto& t : by_leaf[leaf]) {
        nlohmann::json h = *header;
        const std::string sub_id = original + "_" + t.uuid;
        h["msg_id"] = sub_id;
        proto::WireMessage out;
        out.identities.push_back(frame(t.uuid));
        out.identities.push_back(frame(kRootId));
        for (auto& f : wire->identities)
          out.identities.push_back(share(f));
        out.header = frame(dump(h));
        out.parent_header = share(wire->parent_header);
        out.metadata = frame(md_text);
        out.content = share(wire->content);
        for (auto& b : wire->buffers)
          out.buffers.push_back(share(b));
        session_.sign(out);
        proto::send_frames(s_.leaves[leaf], proto::join(std::move(out)));
        sub_to_original_[sub_id] = original;
        by_engine_[t.uuid].insert(sub_id);
        broadcast.order.push_back(t);
        if (coalescing) broadcast.replies.emplace(t.uuid, std::nullopt);
        ++broadcast.pending;
      }
    }
    if (broadcast.pending == 0) {
      // No targets: nothing will answer. Say so rather than leave the client waiting.
      broadcasts_.erase(original);
      reply_error(wire->identities, *header, "ValueError", "broadcast request with no targets",
                  original, coalescing);
    }
  }

  void on_reply(std::vector<zmq::message_t>&& frames) {
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("broadcast: dropped a reply from an engine: {}", wire.error().reason);
      return;
    }
    if (wire->identities.size() < 3) {
      log_->warn("broadcast: dropped a reply without its routing frames");
      return;
    }
    auto parent = parse_json_frame(wire->parent_header);
    const std::string uuid(view(wire->identities[0]));
    if (!parent || !parent->contains("msg_id") || !(*parent)["msg_id"].is_string()) {
      log_->warn("broadcast: dropped a reply from '{}' without a parent msg_id", printable(uuid));
      return;
    }
    const std::string sub_id = (*parent)["msg_id"].get<std::string>();
    auto sub = sub_to_original_.find(sub_id);
    if (sub == sub_to_original_.end()) {
      log_->info("broadcast: dropped a reply to unknown request {} from '{}'", sub_id,
                 printable(uuid));
      return;
    }
    const std::string original = sub->second;
    sub_to_original_.erase(sub);
    if (auto e = by_engine_.find(uuid); e != by_engine_.end()) e->second.erase(sub_id);
    auto it = broadcasts_.find(original);
    if (it == broadcasts_.end()) return;
    Broadcast& b = it->second;
    --b.pending;
    if (!b.coalescing) {
      // [engine, root, client..., <IDS|MSG>, ...] -> [client..., <IDS|MSG>, ...] unchanged.
      auto& ids = wire->identities;
      ids.erase(ids.begin(), ids.begin() + 2);
      proto::send_frames(s_.client, proto::join(std::move(wire.value())));
      if (b.pending == 0) broadcasts_.erase(it);
      return;
    }
    last_reply_[original] = uuid;
    b.replies[uuid] = std::move(wire.value());
    if (b.pending == 0) coalesce(original);
  }

  void coalesce(const std::string& original) {
    auto node = broadcasts_.extract(original);
    Broadcast& b = node.mapped();
    nlohmann::json targets = nlohmann::json::array();
    for (const auto& t : b.order)
      targets.push_back({t.uuid, t.id});
    const std::string last = last_reply_[original];
    last_reply_.erase(original);
    if (b.engine_lost || last.empty()) {
      reply_error(b.route, b.header, "EngineError",
                  "engine '" + b.lost_uuid + "' died before answering broadcast " + original,
                  original, true);
      return;
    }
    proto::WireMessage& final_reply = *b.replies[last];
    auto metadata = parse_json_frame(final_reply.metadata).value_or(nlohmann::json::object());
    metadata["broadcast_targets"] = targets;
    proto::WireMessage out;
    for (auto& f : b.route)
      out.identities.push_back(std::move(f));
    out.header = std::move(final_reply.header);
    out.parent_header = std::move(final_reply.parent_header);
    out.metadata = frame(dump(metadata));
    out.content = std::move(final_reply.content);
    for (const auto& t : b.order) {
      auto& r = b.replies[t.uuid];
      if (!r) continue;
      for (auto& buf : r->buffers)
        out.buffers.push_back(std::move(buf));
    }
    session_.sign(out);
    proto::send_frames(s_.client, proto::join(std::move(out)));
  }

  void engine_lost(const std::string& uuid) {
    auto node = by_engine_.extract(uuid);
    if (node.empty()) return;
    for (const auto& sub_id : node.mapped()) {
      auto sub = sub_to_original_.find(sub_id);
      if (sub == sub_to_original_.end()) continue;
      const std::string original = sub->second;
      sub_to_original_.erase(sub);
      auto it = broadcasts_.find(original);
      if (it == broadcasts_.end()) continue;
      Broadcast& b = it->second;
      --b.pending;
      // Non-coalescing: the client fails this engine's part itself when it learns of the
      // unregistration (as ipyparallel's client does); a coalesced reply is ours to finish.
      if (b.coalescing) {
        b.engine_lost = true;
        b.lost_uuid = uuid;
        if (b.pending == 0) {
          coalesce(original);
          continue;
        }
      }
      if (b.pending == 0) broadcasts_.erase(it);
    }
  }

  void reply_error(std::vector<zmq::message_t>& route, const nlohmann::json& header,
                   std::string_view ename, const std::string& evalue, const std::string& original,
                   bool coalescing) {
    std::vector<zmq::message_t> ids;
    for (auto& f : route)
      ids.push_back(share(f));
    const nlohmann::json metadata = {{"status", "error"},
                                     {"is_broadcast", true},
                                     {"is_coalescing", coalescing},
                                     {"original_msg_id", original},
                                     {"dependencies_met", true}};
    proto::send_frames(
        s_.client,
        session_.build(std::move(ids), reply_type(header.value("msg_type", "apply_request")),
                       error_content(ename, evalue), header, metadata));
  }

  BroadcastSockets s_;
  proto::Session session_;
  Logger log_;
  EngineRoster roster_;
  std::unordered_map<std::string, Broadcast> broadcasts_;         // by original msg_id
  std::unordered_map<std::string, std::string> sub_to_original_;  // engine copy -> original
  std::unordered_map<std::string, std::unordered_set<std::string>> by_engine_;
  std::unordered_map<std::string, std::string> last_reply_;  // original -> uuid of last reply
};

}  // namespace

void run_broadcast_scheduler(BroadcastSockets sockets, proto::SessionOptions session_options,
                             Logger log) {
  BroadcastScheduler scheduler(std::move(sockets), std::move(session_options), log);
  try {
    scheduler.run();
  } catch (const zmq::error_t& e) {
    if (!is_shutdown(e)) log->critical("broadcast scheduler stopped: {}", e.what());
  }
}

}  // namespace ipcpp::controller
