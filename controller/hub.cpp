#include "controller/hub.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "profiles/secure_file.hpp"
#include "proto/clock.hpp"
#include "proto/large_buffer.hpp"
#include "proto/payload.hpp"
#include "proto/peek.hpp"
#include "proto/poller.hpp"
#include "proto/wire.hpp"

namespace ipcpp::controller {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

struct EngineEntry {
  std::int64_t id = -1;
  std::string uuid;
  std::set<std::string> queue;  // pending direct (mux) requests
  std::set<std::string> tasks;  // pending load-balanced tasks
  std::size_t completed = 0;
};

struct Incoming {
  std::int64_t id = -1;
  SteadyClock::time_point deadline;
};

struct Pending {
  std::string queue;   // "mux" or "task"
  std::string engine;  // uuid, or "" while unassigned
};

std::optional<proto::Timestamp> date_of(const json& header, const char* key = "date") {
  if (!header.is_object()) return std::nullopt;
  const auto it = header.find(key);
  if (it == header.end() || !it->is_string()) return std::nullopt;
  return proto::parse_timestamp(it->get<std::string>());
}

// The buffers of a request or reply, for its record. With `copy_large`, a frame of
// megabytes is copied into memory of its own, and the receiving thread's buffer goes back to
// it warm as soon as the frame is sent on. Kept by the record instead, every large frame
// needed fresh pages on the relay's path: their page faults were about 40% of the mux
// thread's time in a scatter (bench/RESULTS.md). The copy and its faults are the hub's.
std::vector<Bytes> to_bytes(std::vector<zmq::message_t>& frames, bool copy_large) {
  std::vector<Bytes> out;
  out.reserve(frames.size());
  for (auto& f : frames) {
    std::shared_ptr<std::byte[]> copy;
    if (copy_large && f.size() >= proto::kLargeBufferMin) {
      try {
        copy = proto::large_bytes(f.size(), proto::LargeBufferUse::kKept);
      } catch (const std::bad_alloc&) {
        // No memory for a copy: the record keeps the frame itself, as it did before copies.
      }
    }
    if (copy) {
      std::memcpy(copy.get(), f.data(), f.size());
      const std::byte* data = copy.get();
      out.emplace_back(std::move(copy), data, f.size());
      f = zmq::message_t();
    } else {
      out.push_back(proto::to_bytes(std::move(f)));
    }
  }
  return out;
}

// ---- reading requests and replies without parsing them ------------------------------------
//
// The hub sees a copy of every request and reply; parsing the four JSON frames of each was
// about a third of the controller's time per task, for records that are seldom queried. So
// for these it peeks at the few fields it needs (proto/peek.hpp) and keeps the frames' text
// in the record (LazyJson). Whatever a peek cannot read for sure (escapes, a null, a frame
// that is not shaped like an object) goes through Session::parse as before, which reads it
// or rejects the message as malformed: what the hub does with a message never depends on
// which way it was read.

// A request as the hub records it.
struct SeenRequest {
  std::string msg_id;
  std::string date;     // the header's date, "" when it has none
  std::string session;  // the header's session, "" when it has none
  LazyJson header;
  LazyJson metadata;
  LazyJson content;
  std::vector<zmq::message_t> buffers;
};

// A reply as the hub records it.
struct SeenReply {
  std::string parent_msg_id;                // "" when it has no parent
  std::string date;                         // the header's date, "" when it has none
  std::optional<std::string> engine;        // metadata.engine, when it is a string
  std::optional<proto::Timestamp> started;  // metadata.started, when it is a time
  LazyJson header;
  LazyJson metadata;
  LazyJson content;
  std::vector<zmq::message_t> buffers;
};

// A parsed request. Its header is proto::Header written again, as the hub always recorded it.
SeenRequest request_of(proto::Message& m) {
  SeenRequest seen;
  seen.msg_id = m.header.msg_id;
  seen.date = m.header.date;
  seen.session = m.header.session;
  seen.header = json(m.header);
  seen.metadata = std::move(m.metadata);
  seen.content = std::move(m.content);
  seen.buffers = std::move(m.buffers);
  return seen;
}

// A parsed reply.
SeenReply reply_of(proto::Message& m) {
  SeenReply seen;
  seen.parent_msg_id = m.parent_msg_id();
  seen.date = m.header.date;
  if (const auto it = m.metadata.find("engine"); it != m.metadata.end() && it->is_string()) {
    seen.engine = it->get<std::string>();
  }
  seen.started = date_of(m.metadata, "started");
  seen.header = json(m.header);
  seen.metadata = std::move(m.metadata);
  seen.content = std::move(m.content);
  seen.buffers = std::move(m.buffers);
  return seen;
}

// An optional string field of a JSON object's text: its value, "" when the object has no such
// key (as proto::Header reads a missing field), nullopt when only a parse can tell (a null or
// other non-string, escapes, text that is not an object).
std::optional<std::string_view> optional_string(const proto::Peeked& peeked) {
  switch (peeked.status) {
    case proto::Peeked::Status::kFound:
      return peeked.value;
    case proto::Peeked::Status::kAbsent:
      return std::string_view();
    case proto::Peeked::Status::kUnknown:
      break;
  }
  return std::nullopt;
}

std::optional<std::string_view> peek_optional(std::string_view object, std::string_view key) {
  return optional_string(proto::peek_string(object, key));
}

struct PeekedHeader {
  std::string_view msg_id;
  std::string_view date;     // "" when absent
  std::string_view session;  // "" when absent
};

// A header's fields, when a peek shows it is one Session::parse accepts: msg_id and msg_type
// strings, username, session, date and version strings or absent. nullopt otherwise (also
// for a null among the optional ones, which proto::Header accepts: rare, left to the parse).
std::optional<PeekedHeader> peek_header(std::string_view text) {
  static constexpr std::string_view kKeys[] = {"msg_id",  "msg_type", "date",
                                               "session", "username", "version"};
  std::array<proto::Peeked, std::size(kKeys)> f;
  proto::peek_strings(text, kKeys, f);  // one scan for all six
  if (!f[0].found() || !f[1].found()) return std::nullopt;
  const auto date = optional_string(f[2]);
  const auto session = optional_string(f[3]);
  if (!date || !session || !optional_string(f[4]) || !optional_string(f[5])) return std::nullopt;
  return PeekedHeader{f[0].value, *date, *session};
}

// True when the four dict frames are shaped like JSON objects, which Session::parse requires;
// the text inside is not checked (it reads as null if it is not JSON).
bool dicts_look_like_objects(const proto::WireMessage& wire) {
  return LazyJson::looks_like_object(view(wire.header)) &&
         LazyJson::looks_like_object(view(wire.parent_header)) &&
         LazyJson::looks_like_object(view(wire.metadata)) &&
         LazyJson::looks_like_object(view(wire.content));
}

LazyJson lazy_json(zmq::message_t&& frame) {
  return LazyJson::from_text(proto::to_bytes(std::move(frame)));
}

// The request in `wire`, read by peeking; nullopt, with `wire` untouched, when it must be
// parsed.
std::optional<SeenRequest> peek_request(proto::WireMessage& wire) {
  if (!dicts_look_like_objects(wire)) return std::nullopt;
  const std::optional<PeekedHeader> header = peek_header(view(wire.header));
  if (!header) return std::nullopt;
  SeenRequest seen;
  // Copied before the frames move: a small frame's bytes live inside its message_t.
  seen.msg_id = header->msg_id;
  seen.date = header->date;
  seen.session = header->session;
  seen.header = lazy_json(std::move(wire.header));
  seen.metadata = lazy_json(std::move(wire.metadata));
  seen.content = lazy_json(std::move(wire.content));
  seen.buffers = std::move(wire.buffers);
  return seen;
}

// The reply in `wire`, read by peeking; nullopt, with `wire` untouched, when it must be
// parsed.
std::optional<SeenReply> peek_reply(proto::WireMessage& wire) {
  if (!dicts_look_like_objects(wire)) return std::nullopt;
  const std::optional<PeekedHeader> header = peek_header(view(wire.header));
  if (!header) return std::nullopt;
  // A parent without msg_id is no reply the hub records (a parse says so too: "").
  const auto parent_msg_id = peek_optional(view(wire.parent_header), "msg_id");
  static constexpr std::string_view kMetadataKeys[] = {"engine", "started"};
  std::array<proto::Peeked, 2> md;
  proto::peek_strings(view(wire.metadata), kMetadataKeys, md);
  const proto::Peeked& engine = md[0];
  const proto::Peeked& started = md[1];
  // started is null in the controller's own EngineError replies: those are parsed.
  if (!parent_msg_id || engine.status == proto::Peeked::Status::kUnknown ||
      started.status == proto::Peeked::Status::kUnknown) {
    return std::nullopt;
  }
  SeenReply seen;
  // Copied before the frames move: a small frame's bytes live inside its message_t.
  seen.parent_msg_id = *parent_msg_id;
  seen.date = header->date;
  if (engine.found()) seen.engine = std::string(engine.value);
  if (started.found()) seen.started = proto::parse_timestamp(started.value);
  seen.header = lazy_json(std::move(wire.header));
  seen.metadata = lazy_json(std::move(wire.metadata));
  seen.content = lazy_json(std::move(wire.content));
  seen.buffers = std::move(wire.buffers);
  return seen;
}

class Hub {
 public:
  Hub(HubSockets sockets, HubOptions options, std::unique_ptr<TaskStore> store,
      proto::SessionOptions session_options, Logger log)
      : s_(std::move(sockets)),
        options_(std::move(options)),
        store_(std::move(store)),
        session_(std::move(session_options)),
        log_(std::move(log)) {}

  void run() {
    if (options_.restore_engines) restore_engines();
    // One poll(2) per wait (proto/poller.hpp).
    proto::Poller poller;
    const std::size_t monitor = poller.add(s_.monitor);
    const std::size_t registration = poller.add(s_.registration);
    const std::size_t resubmit = poller.add(s_.resubmit);
    auto next_housekeeping = SteadyClock::now();
    // The copies on the monitor are taken in batches: once it has been read empty, it is left
    // alone for kMonitorRest. Under load the hub then wakes about a thousand times a second
    // instead of once or more per task, and the threads that publish the copies are not
    // preempted to wake it each time. Nothing waits on it: a query reads the monitor empty
    // before it is answered, and a lone copy on a quiet controller wakes the hub at once.
    constexpr auto kMonitorRest = std::chrono::milliseconds(1);
    auto monitor_rests_until = SteadyClock::time_point{};
    try {
      while (true) {
        const bool resting = SteadyClock::now() < monitor_rests_until;
        poller.set_enabled(monitor, !resting);
        poller.wait(!set_aside_.empty() ? std::chrono::milliseconds(0)
                    : resting           ? kMonitorRest
                                        : std::chrono::milliseconds(100));
        if (poller.readable(monitor)) {
          for (int i = 0; i < 4096; ++i) {
            auto frames = proto::recv_frames(s_.monitor, zmq::recv_flags::dontwait);
            if (frames.empty()) {
              poller.emptied(monitor);
              break;
            }
            on_monitor(std::move(frames));
          }
          monitor_rests_until = SteadyClock::now() + kMonitorRest;
        }
        if (registration_read_elsewhere_) {
          // take_waiting_unregistrations() read it: it may have taken the signal.
          registration_read_elsewhere_ = false;
          poller.touched(registration);
        }
        if (poller.readable(registration) || !set_aside_.empty()) {
          for (int i = 0; i < 256; ++i) {
            std::vector<zmq::message_t> frames;
            if (!set_aside_.empty()) {
              frames = std::move(set_aside_.front());
              set_aside_.pop_front();
            } else {
              frames = proto::recv_frames(s_.registration, zmq::recv_flags::dontwait);
            }
            if (frames.empty()) {
              poller.emptied(registration);  // its answers were sent before this recv
              break;
            }
            // Every copy queued before the query first: the relays queue a request's copy
            // before its reply leaves, so a client that asks about a reply it has finds it.
            for (;;) {
              auto copy = proto::recv_frames(s_.monitor, zmq::recv_flags::dontwait);
              if (copy.empty()) break;
              on_monitor(std::move(copy));
            }
            on_query(std::move(frames));
          }
          poller.touched(resubmit);  // a resubmit query sends on it
        }
        if (poller.readable(resubmit)) {
          // Replies to resubmitted tasks: the monitor's "outtask" copy is what counts.
          while (!proto::recv_frames(s_.resubmit, zmq::recv_flags::dontwait).empty()) {
          }
          poller.emptied(resubmit);
        }
        if (SteadyClock::now() >= next_housekeeping) {
          housekeeping();
          next_housekeeping = SteadyClock::now() + std::chrono::milliseconds(250);
        }
      }
    } catch (const zmq::error_t& e) {
      if (!is_shutdown(e)) log_->critical("hub stopped: {}", e.what());
    }
    flush();
  }

 private:
  // ---- housekeeping -----------------------------------------------------------------------

  void housekeeping() {
    const auto now = SteadyClock::now();
    for (auto it = incoming_.begin(); it != incoming_.end();) {
      if (it->second.deadline <= now) {
        log_->warn("registration of engine {} ('{}') purged: its heart never beat within {} ms",
                   it->second.id, printable(it->first), options_.registration_timeout.count());
        it = incoming_.erase(it);
      } else {
        ++it;
      }
    }
    if (dirty_) flush();
  }

  void flush() {
    dirty_ = false;
    if (auto status = store_->flush(); !status) {
      log_->error("task store: {}", status.error().reason);
    }
  }

  void store(TaskRecord record) {
    if (auto status = store_->put(std::move(record)); !status) {
      log_->error("task store: {}", status.error().reason);
    }
    dirty_ = true;
  }

  // ---- the engine registry file ------------------------------------------------------------

  void save_engines() {
    if (options_.engines_file.empty()) return;
    json engines = json::object();
    for (const auto& [id, e] : engines_)
      engines[std::to_string(id)] = e.uuid;
    const json state = {{"engines", engines}, {"next_id", next_id_}};
    try {
      profiles::write_private_file(options_.engines_file, state.dump(1));
    } catch (const std::exception& e) {
      log_->error("hub: cannot save the engine registry: {}", e.what());
    }
  }

  void restore_engines() {
    std::ifstream in(options_.engines_file);
    if (!in) return;
    const json state = json::parse(in, nullptr, false);
    if (!state.is_object() || !state.contains("engines") || !state["engines"].is_object()) {
      log_->warn("hub: ignored the engine registry {}: not an object with 'engines'",
                 options_.engines_file.string());
      return;
    }
    if (state.contains("next_id") && state["next_id"].is_number_integer()) {
      next_id_ = state["next_id"].get<std::int64_t>();
    }
    const auto deadline = SteadyClock::now() + options_.registration_timeout;
    for (const auto& [key, uuid] : state["engines"].items()) {
      if (!uuid.is_string()) continue;
      std::int64_t id = -1;
      try {
        id = std::stoll(key);
      } catch (const std::exception&) {
        continue;
      }
      incoming_[uuid.get<std::string>()] = Incoming{id, deadline};
      next_id_ = std::max(next_id_, id + 1);
    }
    log_->info("hub: waiting for the hearts of {} engine(s) registered before the restart",
               incoming_.size());
  }

  // ---- sending ----------------------------------------------------------------------------

  void reply(std::vector<zmq::message_t>& route, const proto::Message& request,
             std::string_view type, const json& content, std::vector<zmq::message_t> buffers = {}) {
    std::vector<zmq::message_t> ids;
    for (auto& f : route)
      ids.push_back(share(f));
    proto::send_frames(s_.registration,
                       session_.build(std::move(ids), type, content, json(request.header),
                                      json::object(), std::move(buffers)));
  }

  void reply_error(std::vector<zmq::message_t>& route, const proto::Message& request,
                   std::string_view type, std::string_view ename, const std::string& evalue) {
    log_->info("hub: {} from {} answered with {}: {}", request.msg_type(), request.header.session,
               ename, evalue);
    reply(route, request, type, error_content(ename, evalue));
  }

  void notify(const char* type, const json& content, const json& parent = json::object()) {
    proto::send_frames(s_.notification, session_.build({}, type, content, parent));
  }

  // ---- engines ----------------------------------------------------------------------------

  void on_registration(std::vector<zmq::message_t>& route, const proto::Message& request) {
    auto req = proto::decode_content<proto::RegistrationRequest>(request.content,
                                                                 "registration_request content");
    if (!req) {
      reply_error(route, request, proto::msg_type::kRegistrationReply, "ValueError",
                  req.error().reason);
      return;
    }
    const std::string& uuid = req->uuid;
    if (by_uuid_.contains(uuid) || incoming_.contains(uuid)) {
      // Like the reference, but the answer's parent is {} as it always is for registration.
      std::vector<zmq::message_t> ids;
      for (auto& f : route)
        ids.push_back(share(f));
      const std::string evalue = "\"uuid '" + uuid + "' in use\"";
      log_->warn("hub: registration refused: uuid '{}' is in use", printable(uuid));
      proto::send_frames(s_.registration,
                         session_.build(std::move(ids), proto::msg_type::kRegistrationReply,
                                        error_content("KeyError", evalue)));
      return;
    }
    std::int64_t id = next_id_;
    if (req->id && *req->id >= 0 && !engines_.contains(*req->id) && !incoming_id(*req->id)) {
      id = *req->id;
    }
    next_id_ = std::max(next_id_, id + 1);
    incoming_[uuid] = Incoming{id, SteadyClock::now() + options_.registration_timeout};

    proto::RegistrationReply content;
    content.id = id;
    content.hb_period = options_.heartbeat_period.count();
    content.connection_info = options_.engine_info;
    std::vector<zmq::message_t> ids;
    for (auto& f : route)
      ids.push_back(share(f));
    // The reference sends registration_reply with an empty parent; engines expect that.
    proto::send_frames(
        s_.registration,
        session_.build(std::move(ids), proto::msg_type::kRegistrationReply, json(content)));
    log_->info("hub: engine '{}' asked to register: id {}, waiting for its heart", printable(uuid),
               id);
    // Its heart may have been heard before it registered.
    if (early_hearts_.erase(uuid) > 0) complete_registration(uuid);
  }

  bool incoming_id(std::int64_t id) const {
    return std::any_of(incoming_.begin(), incoming_.end(),
                       [id](const auto& kv) { return kv.second.id == id; });
  }

  void complete_registration(const std::string& uuid) {
    auto node = incoming_.extract(uuid);
    if (node.empty()) {
      // A heart before its registration_request: remember it for a short while.
      if (!by_uuid_.contains(uuid)) {
        early_hearts_.insert(uuid);
        if (early_hearts_.size() > 4096) early_hearts_.clear();
      }
      return;
    }
    const std::int64_t id = node.mapped().id;
    EngineEntry entry;
    entry.id = id;
    entry.uuid = uuid;
    engines_.emplace(id, std::move(entry));
    by_uuid_[uuid] = id;
    log_->info("hub: engine {} registered ('{}')", id, printable(uuid));
    notify(proto::msg_type::kRegistrationNotification, {{"id", id}, {"uuid", uuid}});
    save_engines();
  }

  void unregister(std::int64_t id, std::string_view why) {
    auto it = engines_.find(id);
    if (it == engines_.end()) return;
    EngineEntry entry = std::move(it->second);
    engines_.erase(it);
    by_uuid_.erase(entry.uuid);
    // An engine that asked to go is news; one whose heart stopped is a warning.
    log_->log(why == "its heart stopped" ? spdlog::level::warn : spdlog::level::info,
              "hub: engine {} ('{}') unregistered: {}", id, printable(entry.uuid), why);
    notify(proto::msg_type::kUnregistrationNotification, {{"id", id}, {"uuid", entry.uuid}});
    save_engines();
    // Direct requests it had: record them failed now (the task scheduler answers for tasks).
    for (const auto& msg_id : entry.queue) {
      pending_.erase(msg_id);
      TaskRecord record = take_record(msg_id);
      const std::string evalue = "Engine " + std::to_string(id) + " ('" + entry.uuid +
                                 "') died while running task '" + msg_id + "'";
      const json& header = record.header.json();
      const std::string request_type =
          header.is_object() ? header.value("msg_type", "apply_request") : "apply_request";
      record.result_header = json(session_.make_header(reply_type(request_type)));
      record.result_metadata = {{"status", "error"}, {"engine", entry.uuid}};
      record.result_content =
          error_content("EngineError", evalue, {{"engine_uuid", entry.uuid}, {"engine_id", id}});
      record.completed = proto::now();
      record.received = record.completed;
      record.engine_uuid = entry.uuid;
      remember_completed(msg_id);
      store(std::move(record));
    }
  }

  // An engine that stops cleanly sends unregistration_request and then closes its
  // connections, but the heartbeat thread may report the closed connection before the hub has
  // read the request. Before a stopped heart counts as a death, the unregistrations waiting
  // on the registration socket are handled; other queries are set aside, in order, for the
  // main loop (which reads the monitor empty before each).
  void take_waiting_unregistrations() {
    for (;;) {
      auto frames = proto::recv_frames(s_.registration, zmq::recv_flags::dontwait);
      if (frames.empty()) return;
      registration_read_elsewhere_ = true;
      if (is_unregistration(frames)) {
        on_query(std::move(frames));
      } else {
        set_aside_.push_back(std::move(frames));
      }
    }
  }

  static bool is_unregistration(const std::vector<zmq::message_t>& frames) {
    const auto delimiter = std::find_if(frames.begin(), frames.end(),
                                        [](const auto& f) { return view(f) == proto::kDelimiter; });
    if (std::distance(delimiter, frames.end()) < 3) return false;
    const auto type = proto::peek_string(view(*(delimiter + 2)), "msg_type");
    return type.found() && type.value == proto::msg_type::kUnregistrationRequest;
  }

  void on_heart(const proto::Message& m) {
    auto change = proto::decode_content<proto::HeartChange>(m.content, m.msg_type());
    if (!change) return;
    for (const auto& heart : change->hearts) {
      if (m.msg_type() == proto::msg_type::kNewHeart) {
        complete_registration(heart);
      } else if (by_uuid_.contains(heart)) {
        take_waiting_unregistrations();
        // Still registered unless it asked to leave just before its connection closed.
        if (auto it = by_uuid_.find(heart); it != by_uuid_.end())
          unregister(it->second, "its heart stopped");
      } else {
        incoming_.erase(heart);
      }
    }
  }

  // ---- records ----------------------------------------------------------------------------

  // The record of msg_id: the live one while pending, else the stored one, else a new one.
  TaskRecord take_record(const std::string& msg_id) {
    if (auto node = live_.extract(msg_id); !node.empty()) return std::move(node.mapped());
    if (auto stored = store_->get(msg_id)) return std::move(*stored);
    TaskRecord record;
    record.msg_id = msg_id;
    return record;
  }

  void remember_completed(const std::string& msg_id) {
    if (store_->keeps_records()) return;
    // With no store, the hub still answers result_request status for recent ids.
    if (recent_completed_.insert(msg_id).second) {
      recent_order_.push_back(msg_id);
      if (recent_order_.size() > 65536) {
        recent_completed_.erase(recent_order_.front());
        recent_order_.pop_front();
      }
    }
  }

  bool is_completed(const std::string& msg_id) {
    if (!store_->keeps_records()) return recent_completed_.contains(msg_id);
    auto record = store_->get(msg_id);
    return record && record->completed.has_value();
  }

  void on_request_seen(SeenRequest&& seen, const std::string& queue, const std::string& engine) {
    const std::string& msg_id = seen.msg_id;
    TaskRecord& record = live_[msg_id];
    if (auto early = early_outputs_.extract(msg_id); !early.empty()) {
      TaskRecord& out = early.mapped();
      record.stdout_text = std::move(out.stdout_text);
      record.stderr_text = std::move(out.stderr_text);
      record.error = std::move(out.error);
      record.execute_input = std::move(out.execute_input);
      record.execute_result = std::move(out.execute_result);
    }
    record.msg_id = msg_id;
    record.header = std::move(seen.header);
    record.metadata = std::move(seen.metadata);
    record.content = std::move(seen.content);
    record.buffers = to_bytes(seen.buffers, store_->keeps_records());
    record.submitted = proto::parse_timestamp(seen.date);
    record.client_uuid = std::move(seen.session);
    record.queue = queue;
    if (!engine.empty()) record.engine_uuid = engine;
    pending_[msg_id] = Pending{queue, engine};
    if (engine.empty()) {
      unassigned_.insert(msg_id);
    } else if (auto e = engine_by_uuid(engine)) {
      (queue == "mux" ? e->queue : e->tasks).insert(msg_id);
    }
  }

  EngineEntry* engine_by_uuid(const std::string& uuid) {
    auto it = by_uuid_.find(uuid);
    if (it == by_uuid_.end()) return nullptr;
    return &engines_.at(it->second);
  }

  void on_result_seen(SeenReply&& seen, std::string engine) {
    const std::string& msg_id = seen.parent_msg_id;
    if (msg_id.empty()) return;
    if (seen.engine) engine = std::move(*seen.engine);
    if (auto p = pending_.find(msg_id); p != pending_.end()) {
      if (engine.empty()) engine = p->second.engine;
      if (auto e = engine_by_uuid(p->second.engine)) {
        e->queue.erase(msg_id);
        e->tasks.erase(msg_id);
      }
      pending_.erase(p);
    }
    unassigned_.erase(msg_id);
    if (auto e = engine_by_uuid(engine)) ++e->completed;

    TaskRecord record = take_record(msg_id);
    if (!engine.empty()) record.engine_uuid = engine;
    record.started = seen.started;
    record.completed = proto::parse_timestamp(seen.date);
    if (!record.completed) record.completed = proto::now();
    record.received = proto::now();
    record.result_header = std::move(seen.header);
    record.result_metadata = std::move(seen.metadata);
    record.result_content = std::move(seen.content);
    record.result_buffers = to_bytes(seen.buffers, store_->keeps_records());
    remember_completed(msg_id);
    store(std::move(record));
  }

  void on_iopub(proto::Message& m) {
    const std::string& type = m.msg_type();
    if (type == proto::msg_type::kStatus) return;
    if (type == proto::msg_type::kShutdownReply) {
      if (auto it = by_uuid_.find(m.header.session); it != by_uuid_.end()) {
        unregister(it->second, "it shut down");
      }
      return;
    }
    const bool stream = type == proto::msg_type::kStream;
    if (!stream && type != proto::msg_type::kError && type != proto::msg_type::kExecuteInput &&
        type != proto::msg_type::kExecuteResult) {
      return;
    }
    const std::string msg_id = m.parent_msg_id();
    if (msg_id.empty()) return;
    auto apply = [&](TaskRecord& record) {
      if (stream) {
        const std::string name = m.content.value("name", "stdout");
        const std::string text = m.content.value("text", "");
        (name == "stderr" ? record.stderr_text : record.stdout_text) += text;
      } else if (type == proto::msg_type::kError) {
        record.error = std::move(m.content);
      } else if (type == proto::msg_type::kExecuteInput) {
        record.execute_input = m.content.value("code", "");
      } else {
        record.execute_result = std::move(m.content);
      }
    };
    if (auto it = live_.find(msg_id); it != live_.end()) {
      apply(it->second);
      return;
    }
    if (!store_->keeps_records()) return;
    if (auto stored = store_->get(msg_id)) {
      apply(*stored);
      store(std::move(*stored));
      return;
    }
    // Output that overtook its request (they travel through different threads), or output
    // of a request the hub never sees (broadcasts): keep a bounded number for a while.
    auto [it, inserted] = early_outputs_.try_emplace(msg_id);
    if (inserted) {
      it->second.msg_id = msg_id;
      early_order_.push_back(msg_id);
      if (early_order_.size() > 4096) {
        early_outputs_.erase(early_order_.front());
        early_order_.pop_front();
      }
    }
    apply(it->second);
  }

  // The task scheduler sent task `msg_id` to engine `engine_uuid`.
  void on_task_destination(const std::string& msg_id, const std::string& engine_uuid) {
    unassigned_.erase(msg_id);
    if (auto p = pending_.find(msg_id); p != pending_.end()) {
      if (auto old = engine_by_uuid(p->second.engine)) old->tasks.erase(msg_id);
      p->second.engine = engine_uuid;
    }
    if (auto e = engine_by_uuid(engine_uuid)) e->tasks.insert(msg_id);
    if (auto it = live_.find(msg_id); it != live_.end()) it->second.engine_uuid = engine_uuid;
  }

  void on_monitor(std::vector<zmq::message_t>&& frames) {
    if (frames.size() < 2) return;
    const std::string kind(view(frames[0]));
    if (kind == "incontrol" || kind == "outcontrol") return;
    if (kind == "tracktask") {
      if (frames.size() == 3)
        on_task_destination(std::string(view(frames[1])), std::string(view(frames[2])));
      return;
    }
    frames.erase(frames.begin());
    auto wire = proto::split(std::move(frames));
    if (!wire) {
      log_->error("hub: unreadable {} copy from the monitor: {}", kind, wire.error().reason);
      return;
    }
    std::vector<std::string> ids;
    for (const auto& f : wire->identities)
      ids.emplace_back(view(f));
    const bool request = kind == "in" || kind == "intask";
    const bool reply = kind == "out" || kind == "outtask";
    // Requests and replies, most of the traffic, are peeked at when they can be (see
    // peek_request); the others, and what a peek cannot read, are parsed.
    if (request) {
      if (auto seen = peek_request(wire.value())) {
        on_request_copy(kind, ids, std::move(*seen));
        return;
      }
    } else if (reply) {
      if (auto seen = peek_reply(wire.value())) {
        on_reply_copy(ids, std::move(*seen));
        return;
      }
    }
    auto parsed = proto::Session::parse(std::move(wire.value()));
    if (!parsed) {
      // Peers' messages were authenticated, not parsed, by the relays: this is where a
      // well-signed but malformed one shows up.
      log_->warn("hub: ignored a malformed {} message: {}", kind, parsed.error().reason);
      return;
    }
    proto::Message& m = parsed.value();
    if (request) {
      on_request_copy(kind, ids, request_of(m));
    } else if (reply) {
      on_reply_copy(ids, reply_of(m));
    } else if (kind == "iopub") {
      on_iopub(m);
    } else if (kind == "heartmonitor") {
      on_heart(m);
    }
  }

  // A request copied by the mux relay ("in", routed by the engine's identity) or the task
  // scheduler ("intask").
  void on_request_copy(const std::string& kind, const std::vector<std::string>& ids,
                       SeenRequest&& seen) {
    if (kind == "in") {
      if (!ids.empty()) on_request_seen(std::move(seen), "mux", ids[0]);
    } else {
      // Also the copy of a task the hub resubmitted itself, already counted as pending.
      on_request_seen(std::move(seen), "task", {});
    }
  }

  // A reply copied by the mux relay ("out") or the task scheduler ("outtask"); the second
  // identity is the engine's.
  void on_reply_copy(const std::vector<std::string>& ids, SeenReply&& seen) {
    on_result_seen(std::move(seen), ids.size() >= 2 ? ids[1] : std::string());
  }

  // ---- queries ----------------------------------------------------------------------------

  void on_query(std::vector<zmq::message_t>&& frames) {
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("hub: dropped a message on the registration socket: {}", wire.error().reason);
      return;
    }
    std::vector<zmq::message_t> route;
    for (auto& f : wire->identities)
      route.push_back(share(f));
    auto parsed = proto::Session::parse(std::move(wire.value()));
    if (!parsed) {
      log_->warn("hub: dropped a message on the registration socket: {}", parsed.error().reason);
      return;
    }
    proto::Message& m = parsed.value();
    const std::string& type = m.msg_type();
    namespace t = proto::msg_type;
    if (type == t::kConnectionRequest) {
      proto::ConnectionReply content;
      for (const auto& [id, e] : engines_)
        content.engines[std::to_string(id)] = e.uuid;
      reply(route, m, t::kConnectionReply, json(content));
    } else if (type == t::kRegistrationRequest) {
      on_registration(route, m);
    } else if (type == t::kUnregistrationRequest) {
      auto req = proto::decode_content<proto::UnregistrationRequest>(m.content, type);
      if (req && req->id) unregister(*req->id, "it asked to");
    } else if (type == t::kQueueRequest) {
      on_queue_request(route, m);
    } else if (type == t::kResultRequest) {
      on_result_request(route, m);
    } else if (type == t::kHistoryRequest) {
      on_history_request(route, m);
    } else if (type == t::kDbRequest) {
      on_db_request(route, m);
    } else if (type == t::kPurgeRequest) {
      on_purge_request(route, m);
    } else if (type == t::kResubmitRequest) {
      on_resubmit_request(route, m);
    } else if (type == t::kShutdownRequest) {
      log_->warn("hub: shutdown requested by client {}", m.header.session);
      reply(route, m, t::kShutdownReply, {{"status", "ok"}});
      notify(t::kShutdownNotification, {{"status", "ok"}}, json(m.header));
      flush();
      if (options_.on_shutdown) options_.on_shutdown();
    } else {
      reply_error(route, m, t::kHubError, "ValueError",
                  "unknown message type '" + type + "' on the registration socket");
    }
  }

  void on_queue_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    auto req = proto::decode_content<proto::QueueRequest>(m.content, "queue_request content");
    if (!req) {
      reply_error(route, m, proto::msg_type::kHubError, "ValueError", req.error().reason);
      return;
    }
    std::vector<std::int64_t> ids;
    if (req->targets.is_null()) {
      for (const auto& [id, e] : engines_)
        ids.push_back(id);
    } else {
      const json targets = req->targets.is_array() ? req->targets : json::array({req->targets});
      std::vector<std::string> bad;
      for (const auto& t : targets) {
        if (t.is_number_integer() && engines_.contains(t.get<std::int64_t>())) {
          ids.push_back(t.get<std::int64_t>());
        } else if (t.is_string() && by_uuid_.contains(t.get<std::string>())) {
          ids.push_back(by_uuid_.at(t.get<std::string>()));
        } else {
          bad.push_back(t.dump());
        }
      }
      if (!bad.empty()) {
        std::string list;
        for (const auto& b : bad)
          list += (list.empty() ? "" : ", ") + b;
        reply_error(route, m, proto::msg_type::kHubError, "IndexError",
                    "No Such Engine: [" + list + "]");
        return;
      }
    }
    json content = {{"status", "ok"}};
    for (const auto id : ids) {
      const EngineEntry& e = engines_.at(id);
      json status;
      if (req->verbose) {
        status["queue"] = std::vector<std::string>(e.queue.begin(), e.queue.end());
        status["tasks"] = std::vector<std::string>(e.tasks.begin(), e.tasks.end());
        std::vector<std::string> done;
        if (store_->keeps_records()) {
          auto q = RecordQuery::parse({{"engine_uuid", e.uuid}, {"completed", {{"$ne", nullptr}}}});
          if (q) {
            if (auto found = store_->find(q.value())) {
              for (const auto& r : found.value())
                done.push_back(r.msg_id);
            }
          }
        }
        status["completed"] = done;
      } else {
        status["queue"] = e.queue.size();
        status["completed"] = e.completed;
        status["tasks"] = e.tasks.size();
      }
      content[std::to_string(id)] = status;
    }
    if (req->verbose) {
      content["unassigned"] = std::vector<std::string>(unassigned_.begin(), unassigned_.end());
    } else {
      content["unassigned"] = unassigned_.size();
    }
    reply(route, m, proto::msg_type::kQueueReply, content);
  }

  void on_result_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    auto req = proto::decode_content<proto::ResultRequest>(m.content, "result_request content");
    if (!req) {
      reply_error(route, m, proto::msg_type::kResultReply, "ValueError", req.error().reason);
      return;
    }
    std::set<std::string> msg_ids(req->msg_ids.begin(), req->msg_ids.end());
    json content = {{"status", "ok"}};
    std::vector<std::string> pending;
    std::vector<std::string> completed;
    std::vector<zmq::message_t> buffers;
    for (const auto& msg_id : msg_ids) {
      if (pending_.contains(msg_id)) {
        pending.push_back(msg_id);
        continue;
      }
      std::optional<TaskRecord> record;
      if (store_->keeps_records()) record = store_->get(msg_id);
      if (record && record->completed) {
        completed.push_back(msg_id);
        if (!req->status_only) {
          content[msg_id] = {
              {"header", record->header.json()},
              {"metadata", record->metadata.json()},
              {"result_metadata", record->result_metadata.json()},
              {"result_header", record->result_header.json()},
              {"result_content", record->result_content.json()},
              {"received",
               record->received ? json(proto::format_timestamp(*record->received)) : json(nullptr)},
              {"io",
               {{"execute_input",
                 record->execute_input ? json(*record->execute_input) : json(nullptr)},
                {"execute_result", record->execute_result},
                {"error", record->error},
                {"stdout", record->stdout_text},
                {"stderr", record->stderr_text}}}};
          for (const auto& b : record->result_buffers)
            buffers.push_back(proto::to_frame(b));
        }
      } else if (record) {
        pending.push_back(msg_id);
      } else if (!store_->keeps_records() && recent_completed_.contains(msg_id) &&
                 req->status_only) {
        completed.push_back(msg_id);
      } else {
        std::string evalue = "'No such message: " + msg_id + "'";
        if (!store_->keeps_records() && !req->status_only) {
          evalue = "'the task store is none: results are not kept (" + msg_id + ")'";
        }
        reply_error(route, m, proto::msg_type::kResultReply, "KeyError", evalue);
        return;
      }
    }
    content["pending"] = pending;
    content["completed"] = completed;
    reply(route, m, proto::msg_type::kResultReply, content, std::move(buffers));
  }

  // Records matching a query: the stored ones and the live (pending) ones.
  proto::Result<std::vector<TaskRecord>> find(const RecordQuery& query) {
    auto found = store_->find(query);
    if (!found) return found;
    std::vector<TaskRecord> records = std::move(found.value());
    std::unordered_set<std::string> seen;
    for (const auto& r : records)
      seen.insert(r.msg_id);
    for (const auto& [msg_id, record] : live_) {
      if (!seen.contains(msg_id) && query.matches(record)) records.push_back(record);
    }
    return records;
  }

  void on_history_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    if (!store_->keeps_records()) {
      reply_error(route, m, proto::msg_type::kHistoryReply, "KeyError",
                  "'the task store is none: no history is kept'");
      return;
    }
    std::vector<std::pair<proto::Timestamp, std::string>> live;
    for (const auto& [msg_id, record] : live_) {
      if (record.submitted) live.emplace_back(*record.submitted, msg_id);
    }
    std::sort(live.begin(), live.end());
    std::vector<std::string> history = store_->history();
    for (auto& [when, msg_id] : live)
      history.push_back(std::move(msg_id));
    reply(route, m, proto::msg_type::kHistoryReply, {{"status", "ok"}, {"history", history}});
  }

  void on_db_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    auto req = proto::decode_content<proto::DbRequest>(m.content, "db_request content");
    if (!req) {
      reply_error(route, m, proto::msg_type::kDbReply, "ValueError", req.error().reason);
      return;
    }
    auto query = RecordQuery::parse(req->query);
    if (!query) {
      reply_error(route, m, proto::msg_type::kDbReply, "ValueError", query.error().reason);
      return;
    }
    auto found = find(query.value());
    if (!found) {
      reply_error(route, m, proto::msg_type::kDbReply, "KeyError", found.error().reason);
      return;
    }
    const std::vector<std::string> keys = req->keys.value_or(std::vector<std::string>{});
    for (const auto& k : keys) {
      const auto& known = task_record_keys();
      if (std::find(known.begin(), known.end(), k) == known.end()) {
        reply_error(route, m, proto::msg_type::kDbReply, "KeyError",
                    "'unknown record key: " + k + "'");
        return;
      }
    }
    const bool want_buffers = std::find(keys.begin(), keys.end(), "buffers") != keys.end();
    const bool want_results = std::find(keys.begin(), keys.end(), "result_buffers") != keys.end();
    json records = json::array();
    json buffer_lens = want_buffers ? json::array() : json(nullptr);
    json result_buffer_lens = want_results ? json::array() : json(nullptr);
    std::vector<zmq::message_t> buffers;
    for (const auto& r : found.value()) {
      records.push_back(record_to_json(r, keys));
      if (want_buffers) {
        buffer_lens.push_back(r.buffers.size());
        for (const auto& b : r.buffers)
          buffers.push_back(proto::to_frame(b));
      }
      if (want_results) {
        result_buffer_lens.push_back(r.result_buffers.size());
        for (const auto& b : r.result_buffers)
          buffers.push_back(proto::to_frame(b));
      }
    }
    reply(route, m, proto::msg_type::kDbReply,
          {{"status", "ok"},
           {"records", records},
           {"buffer_lens", buffer_lens},
           {"result_buffer_lens", result_buffer_lens}},
          std::move(buffers));
  }

  void on_purge_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    auto req = proto::decode_content<proto::PurgeRequest>(m.content, "purge_request content");
    if (!req) {
      reply_error(route, m, proto::msg_type::kPurgeReply, "ValueError", req.error().reason);
      return;
    }
    auto drop = [&](const json& query) -> bool {
      auto q = RecordQuery::parse(query);
      if (!q) return false;
      auto removed = store_->remove_matching(q.value());
      if (!removed) {
        reply_error(route, m, proto::msg_type::kPurgeReply, "IOError", removed.error().reason);
        return false;
      }
      dirty_ = true;
      return true;
    };
    if (req->all) {
      if (!drop({{"completed", {{"$ne", nullptr}}}})) return;
      recent_completed_.clear();
      recent_order_.clear();
    } else {
      for (const auto& msg_id : req->msg_ids) {
        if (pending_.contains(msg_id)) {
          reply_error(route, m, proto::msg_type::kPurgeReply, "IndexError",
                      "msg pending: '" + msg_id + "'");
          return;
        }
      }
      if (!req->msg_ids.empty() && !drop({{"msg_id", {{"$in", req->msg_ids}}}})) return;
      for (const auto id : req->engine_ids) {
        auto it = engines_.find(id);
        if (it == engines_.end()) {
          reply_error(route, m, proto::msg_type::kPurgeReply, "IndexError",
                      "No such engine: " + std::to_string(id));
          return;
        }
        if (!drop({{"engine_uuid", it->second.uuid}, {"completed", {{"$ne", nullptr}}}})) return;
      }
    }
    reply(route, m, proto::msg_type::kPurgeReply, {{"status", "ok"}});
  }

  void on_resubmit_request(std::vector<zmq::message_t>& route, const proto::Message& m) {
    auto req = proto::decode_content<proto::ResubmitRequest>(m.content, "resubmit_request content");
    if (!req) {
      reply_error(route, m, proto::msg_type::kResubmitReply, "ValueError", req.error().reason);
      return;
    }
    if (!store_->keeps_records()) {
      reply_error(route, m, proto::msg_type::kResubmitReply, "KeyError",
                  "'the task store is none: no requests are kept to resubmit'");
      return;
    }
    std::vector<TaskRecord> records;
    std::vector<std::string> missing;
    for (const auto& msg_id : req->msg_ids) {
      auto it = live_.find(msg_id);
      if (it != live_.end() && it->second.header.json().is_object()) {
        records.push_back(it->second);
      } else if (auto stored = store_->get(msg_id); stored && stored->header.json().is_object()) {
        records.push_back(std::move(*stored));
      } else {
        missing.push_back(msg_id);
      }
    }
    if (!missing.empty()) {
      std::string list;
      for (const auto& id : missing)
        list += (list.empty() ? "'" : ", '") + id + "'";
      reply_error(route, m, proto::msg_type::kResubmitReply, "KeyError",
                  "No such msg(s): [" + list + "]");
      return;
    }
    json resubmitted = json::object();
    for (auto& record : records) {
      // Direct requests too go through the task scheduler, as in the reference: the engine
      // they named may be gone.
      const json& header = record.header.json();
      const proto::Header fresh = session_.make_header(header.value("msg_type", "apply_request"));
      // Unlike the reference, the metadata (targets, dependencies, retries, timeout) is kept.
      proto::Message out;
      out.header.msg_id = fresh.msg_id;
      out.header.msg_type = header.value("msg_type", "apply_request");
      out.header.username = header.value("username", "");
      out.header.session = header.value("session", "");
      out.header.date = fresh.date;
      out.header.version = header.value("version", proto::kProtocolVersion);
      out.parent_header = header;
      out.metadata = record.metadata.json().is_object() ? record.metadata.json() : json::object();
      out.content = record.content.json().is_object() ? record.content.json() : json::object();
      for (const auto& b : record.buffers)
        out.buffers.push_back(proto::to_frame(b));
      proto::send_frames(s_.resubmit, session_.serialize(std::move(out)));
      resubmitted[record.msg_id] = fresh.msg_id;
      pending_[fresh.msg_id] = Pending{"task", {}};
      unassigned_.insert(fresh.msg_id);
      record.resubmitted = fresh.msg_id;
      if (auto it = live_.find(record.msg_id); it != live_.end()) {
        it->second.resubmitted = fresh.msg_id;
      } else {
        store(std::move(record));
      }
    }
    reply(route, m, proto::msg_type::kResubmitReply,
          {{"status", "ok"}, {"resubmitted", resubmitted}});
  }

  HubSockets s_;
  HubOptions options_;
  // Registration messages read by take_waiting_unregistrations(), answered by the main loop.
  std::deque<std::vector<zmq::message_t>> set_aside_;
  bool registration_read_elsewhere_ = false;
  std::unique_ptr<TaskStore> store_;
  proto::Session session_;
  Logger log_;
  bool dirty_ = false;

  std::map<std::int64_t, EngineEntry> engines_;  // registered engines by id
  std::unordered_map<std::string, std::int64_t> by_uuid_;
  std::unordered_map<std::string, Incoming> incoming_;  // registrations waiting for a heart
  std::unordered_set<std::string> early_hearts_;
  std::int64_t next_id_ = 0;

  std::unordered_map<std::string, Pending> pending_;
  std::set<std::string> unassigned_;
  std::unordered_map<std::string, TaskRecord> live_;           // records of pending requests
  std::unordered_map<std::string, TaskRecord> early_outputs_;  // output before its request
  std::deque<std::string> early_order_;
  std::unordered_set<std::string> recent_completed_;  // only with the "none" store
  std::deque<std::string> recent_order_;
};

}  // namespace

void run_hub(HubSockets sockets, HubOptions options, std::unique_ptr<TaskStore> store,
             proto::SessionOptions session_options, Logger log) {
  Hub hub(std::move(sockets), std::move(options), std::move(store), std::move(session_options),
          std::move(log));
  hub.run();
}

}  // namespace ipcpp::controller
