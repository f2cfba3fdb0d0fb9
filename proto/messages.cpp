#include "proto/messages.hpp"

#include <charconv>

namespace ipcpp::proto {

std::string json_error_reason(const json::exception& e) {
  std::string_view what = e.what();
  if (!what.empty() && what.front() == '[') {
    if (const auto pos = what.find("] "); pos != std::string_view::npos)
      what.remove_prefix(pos + 2);
  }
  return std::string(what);
}

namespace detail {
void require_object(const json& j, const char* type_name) {
  if (!j.is_object()) {
    throw FieldError(
        "(top)", std::string("expected a JSON object for ") + type_name + ", got " + j.type_name());
  }
}
}  // namespace detail

void to_json(json& j, const RegistrationRequest& v) {
  j = json{{"uuid", v.uuid}};
  if (v.id) j["id"] = *v.id;
}

void from_json(const json& j, RegistrationRequest& v) {
  detail::require_object(j, "RegistrationRequest");
  const auto it = j.find("uuid");
  if (it == j.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    throw FieldError("uuid", "a non-empty string is required");
  }
  v.uuid = it->get<std::string>();
  detail::read_field(j, "id", v.id);
}

void to_json(json& j, const QueueReply& v) {
  j = json{{"status", v.status}, {"unassigned", v.unassigned}};
  for (const auto& [id, queues] : v.engines)
    j[std::to_string(id)] = queues;
}

void from_json(const json& j, QueueReply& v) {
  detail::require_object(j, "QueueReply");
  detail::read_field(j, "status", v.status);
  detail::read_field(j, "unassigned", v.unassigned);
  for (const auto& [key, value] : j.items()) {
    std::int64_t id = 0;
    const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
    if (ec != std::errc() || end != key.data() + key.size()) continue;  // status, unassigned
    try {
      v.engines[id] = value.get<EngineQueueStatus>();
    } catch (const FieldError& e) {
      throw FieldError(key + "." + e.path(), e.reason());
    }
  }
}

void to_json(json& j, const ResultReply& v) {
  j = json{{"status", v.status}, {"pending", v.pending}, {"completed", v.completed}};
  for (const auto& [msg_id, record] : v.results)
    j[msg_id] = record;
}

void from_json(const json& j, ResultReply& v) {
  detail::require_object(j, "ResultReply");
  detail::read_field(j, "status", v.status);
  detail::read_field(j, "pending", v.pending);
  detail::read_field(j, "completed", v.completed);
  for (const auto& id : v.completed) {
    if (const auto it = j.find(id); it != j.end()) v.results[id] = *it;
  }
}

void to_json(json& j, const PurgeRequest& v) {
  j = json{{"engine_ids", v.engine_ids}};
  if (v.all) {
    j["msg_ids"] = "all";
  } else {
    j["msg_ids"] = v.msg_ids;
  }
}

void from_json(const json& j, PurgeRequest& v) {
  detail::require_object(j, "PurgeRequest");
  if (const auto it = j.find("msg_ids"); it != j.end() && it->is_string()) {
    if (it->get_ref<const std::string&>() != "all") {
      throw FieldError("msg_ids", "a list of msg_ids or the string \"all\" is required");
    }
    v.all = true;
  } else {
    detail::read_field(j, "msg_ids", v.msg_ids);
  }
  detail::read_field(j, "engine_ids", v.engine_ids);
}

void to_json(json& j, const Dependency& v) {
  j = json{{"dependencies", v.dependencies},
           {"all", v.all},
           {"success", v.success},
           {"failure", v.failure}};
}

void from_json(const json& j, Dependency& v) {
  if (j.is_null()) {
    v = Dependency{};
  } else if (j.is_array()) {
    v = Dependency{};
    j.get_to(v.dependencies);
  } else {
    detail::require_object(j, "Dependency");
    detail::read_field(j, "dependencies", v.dependencies);
    detail::read_field(j, "all", v.all);
    detail::read_field(j, "success", v.success);
    detail::read_field(j, "failure", v.failure);
  }
  if (!v.success && !v.failure) {
    throw FieldError("success", "success and failure cannot both be false");
  }
}

void to_json(json& j, const ReplyMetadata& v) {
  j = json{{"started", v.started},
           {"dependencies_met", v.dependencies_met},
           {"engine", v.engine},
           {"is_broadcast", v.is_broadcast},
           {"is_coalescing", v.is_coalescing},
           {"original_msg_id", v.original_msg_id},
           {"status", v.status}};
  if (!v.engine_info.is_null()) j["engine_info"] = v.engine_info;
  if (v.idle_follows) j[kIdleFollowsKey] = *v.idle_follows;
}

void from_json(const json& j, ReplyMetadata& v) {
  detail::require_object(j, "ReplyMetadata");
  detail::read_field(j, "started", v.started);
  detail::read_field(j, "dependencies_met", v.dependencies_met);
  detail::read_field(j, "engine", v.engine);
  detail::read_field(j, "is_broadcast", v.is_broadcast);
  detail::read_field(j, "is_coalescing", v.is_coalescing);
  detail::read_field(j, "original_msg_id", v.original_msg_id);
  detail::read_field(j, "status", v.status);
  detail::read_field(j, "engine_info", v.engine_info);
  if (j.contains(kIdleFollowsKey)) {
    bool follows = true;
    detail::read_field(j, kIdleFollowsKey, follows);
    v.idle_follows = follows;
  }
}

}  // namespace ipcpp::proto
