// The bodies of the protocol's messages as typed structs, mapped to JSON in this one place.
//
// Field names are the wire names (docs/protocol.md lists each message and its socket).
// Structs declared with IPCPP_JSON_STRUCT take their default for a missing (or null) field, as
// the reference does; the few with required fields say so. A field of the wrong type is an
// error that names it. Components decode with decode_content<T>() and never pick at raw
// json["key"].
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "proto/errors.hpp"
#include "proto/json_struct.hpp"

// std::optional<T> <-> null | T (nlohmann 3.11 has no built-in support).
NLOHMANN_JSON_NAMESPACE_BEGIN
template <typename T>
struct adl_serializer<std::optional<T>> {
  static void to_json(json& j, const std::optional<T>& v) {
    if (v) {
      j = *v;
    } else {
      j = nullptr;
    }
  }
  static void from_json(const json& j, std::optional<T>& v) {
    if (j.is_null()) {
      v.reset();
    } else {
      v = j.get<T>();
    }
  }
};
NLOHMANN_JSON_NAMESPACE_END

namespace ipcpp::proto {

using nlohmann::json;

// Message types, by socket.
namespace msg_type {
// registration ROUTER (engines)
inline constexpr const char* kRegistrationRequest = "registration_request";
inline constexpr const char* kRegistrationReply = "registration_reply";
inline constexpr const char* kUnregistrationRequest = "unregistration_request";
// registration ROUTER (client queries)
inline constexpr const char* kConnectionRequest = "connection_request";
inline constexpr const char* kConnectionReply = "connection_reply";
inline constexpr const char* kQueueRequest = "queue_request";
inline constexpr const char* kQueueReply = "queue_reply";
inline constexpr const char* kResultRequest = "result_request";
inline constexpr const char* kResultReply = "result_reply";
inline constexpr const char* kHistoryRequest = "history_request";
inline constexpr const char* kHistoryReply = "history_reply";
inline constexpr const char* kDbRequest = "db_request";
inline constexpr const char* kDbReply = "db_reply";
inline constexpr const char* kPurgeRequest = "purge_request";
inline constexpr const char* kPurgeReply = "purge_reply";
inline constexpr const char* kResubmitRequest = "resubmit_request";
inline constexpr const char* kResubmitReply = "resubmit_reply";
inline constexpr const char* kShutdownRequest = "shutdown_request";  // also control
inline constexpr const char* kShutdownReply = "shutdown_reply";      // also control, iopub
inline constexpr const char* kHubError = "hub_error";
// notification PUB
inline constexpr const char* kRegistrationNotification = "registration_notification";
inline constexpr const char* kUnregistrationNotification = "unregistration_notification";
inline constexpr const char* kShutdownNotification = "shutdown_notification";
// shell (mux, task, broadcast)
inline constexpr const char* kExecuteRequest = "execute_request";
inline constexpr const char* kExecuteReply = "execute_reply";
inline constexpr const char* kApplyRequest = "apply_request";
inline constexpr const char* kApplyReply = "apply_reply";
// control
inline constexpr const char* kAbortRequest = "abort_request";
inline constexpr const char* kAbortReply = "abort_reply";
inline constexpr const char* kClearRequest = "clear_request";
inline constexpr const char* kClearReply = "clear_reply";
inline constexpr const char* kSignalRequest = "signal_request";
// iopub
inline constexpr const char* kStatus = "status";
inline constexpr const char* kStream = "stream";
inline constexpr const char* kExecuteInput = "execute_input";
inline constexpr const char* kExecuteResult = "execute_result";
inline constexpr const char* kDisplayData = "display_data";
inline constexpr const char* kError = "error";
inline constexpr const char* kDataMessage = "data_message";
// controller-internal monitor traffic
inline constexpr const char* kTaskDestination = "task_destination";
inline constexpr const char* kNewHeart = "new_heart";
inline constexpr const char* kStoppedHeart = "stopped_heart";
}  // namespace msg_type

// ---- Registration (engine <-> hub) -------------------------------------------------------

// Required: uuid. id is the engine id the engine asks for (an MPI rank), or none.
struct RegistrationRequest {
  std::string uuid;
  std::optional<std::int64_t> id;
};
void to_json(json& j, const RegistrationRequest& v);
void from_json(const json& j, RegistrationRequest& v);

// The engine side of the controller's ports, as sent in registration_reply.
struct EngineConnectionInfo {
  std::string interface;
  int registration = 0;
  int control = 0;
  int mux = 0;
  int task = 0;
  int iopub = 0;
  int hb_ping = 0;
  int hb_pong = 0;
  std::vector<int> broadcast;
};
IPCPP_JSON_STRUCT(EngineConnectionInfo, interface, registration, control, mux, task, iopub, hb_ping,
                  hb_pong, broadcast)

struct RegistrationReply {
  std::string status = "ok";
  std::int64_t id = -1;
  std::int64_t hb_period = 3000;  // ms
  EngineConnectionInfo connection_info;
};
IPCPP_JSON_STRUCT(RegistrationReply, status, id, hb_period, connection_info)

struct UnregistrationRequest {
  std::optional<std::int64_t> id;
};
IPCPP_JSON_STRUCT(UnregistrationRequest, id)

// registration_notification and unregistration_notification.
struct EngineNotification {
  std::int64_t id = -1;
  std::string uuid;
};
IPCPP_JSON_STRUCT(EngineNotification, id, uuid)

struct StatusOnly {  // shutdown_notification, purge_reply, abort_reply, clear_reply, ...
  std::string status = "ok";
};
IPCPP_JSON_STRUCT(StatusOnly, status)

// ---- Hub queries (client <-> hub) ----------------------------------------------------------

struct ConnectionReply {
  std::string status = "ok";
  std::map<std::string, std::string> engines;  // "<id>" -> uuid, registered engines only
};
IPCPP_JSON_STRUCT(ConnectionReply, status, engines)

// targets: null (all) or a list of engine ids (ints) or uuids (strings).
struct QueueRequest {
  json targets = nullptr;
  bool verbose = false;
};
IPCPP_JSON_STRUCT(QueueRequest, targets, verbose)

// One engine's queues: counts, or lists of msg_ids when verbose.
struct EngineQueueStatus {
  json queue = 0;
  json completed = 0;
  json tasks = 0;
};
IPCPP_JSON_STRUCT(EngineQueueStatus, queue, completed, tasks)

// {status, "<id>": {queue, completed, tasks}, ..., unassigned}
struct QueueReply {
  std::string status = "ok";
  std::map<std::int64_t, EngineQueueStatus> engines;
  json unassigned = 0;
};
void to_json(json& j, const QueueReply& v);
void from_json(const json& j, QueueReply& v);

struct ResultRequest {
  std::vector<std::string> msg_ids;
  bool status_only = false;
};
IPCPP_JSON_STRUCT(ResultRequest, msg_ids, status_only)

// {status, pending, completed, "<msg_id>": {header, metadata, result_header, ...}, ...}
struct ResultReply {
  std::string status = "ok";
  std::vector<std::string> pending;
  std::vector<std::string> completed;
  std::map<std::string, json> results;  // completed msg_id -> record view (when !status_only)
};
void to_json(json& j, const ResultReply& v);
void from_json(const json& j, ResultReply& v);

struct HistoryReply {
  std::string status = "ok";
  std::vector<std::string> history;
};
IPCPP_JSON_STRUCT(HistoryReply, status, history)

// query: a Mongo-style dict ({"completed": {"$ne": null}}); keys: the record fields wanted.
struct DbRequest {
  json query = json::object();
  std::optional<std::vector<std::string>> keys;
};
IPCPP_JSON_STRUCT(DbRequest, query, keys)

struct DbReply {
  std::string status = "ok";
  json records = json::array();
  std::optional<std::vector<std::int64_t>> buffer_lens;
  std::optional<std::vector<std::int64_t>> result_buffer_lens;
};
IPCPP_JSON_STRUCT(DbReply, status, records, buffer_lens, result_buffer_lens)

// msg_ids: a list, or the string "all" (every completed record), or absent.
struct PurgeRequest {
  bool all = false;
  std::vector<std::string> msg_ids;
  std::vector<std::int64_t> engine_ids;
};
void to_json(json& j, const PurgeRequest& v);
void from_json(const json& j, PurgeRequest& v);

struct ResubmitRequest {
  std::vector<std::string> msg_ids;
};
IPCPP_JSON_STRUCT(ResubmitRequest, msg_ids)

struct ResubmitReply {
  std::string status = "ok";
  std::map<std::string, std::string> resubmitted;  // old msg_id -> new msg_id
};
IPCPP_JSON_STRUCT(ResubmitReply, status, resubmitted)

// ---- Errors (every channel) ----------------------------------------------------------------

// The error content of a reply, an iopub error, or hub_error.
struct ErrorContent {
  std::string status = "error";
  std::string ename;
  std::string evalue;
  std::vector<std::string> traceback;
  json engine_info = json::object();  // {engine_uuid, engine_id, method} from engines
};
IPCPP_JSON_STRUCT(ErrorContent, status, ename, evalue, traceback, engine_info)

// ---- Shell requests (mux, task, broadcast) -------------------------------------------------

struct ExecuteRequest {
  std::string code;
  bool silent = false;
  bool store_history = true;
  json user_expressions = json::object();
  bool allow_stdin = false;
  bool stop_on_error = true;
};
IPCPP_JSON_STRUCT(ExecuteRequest, code, silent, store_history, user_expressions, allow_stdin,
                  stop_on_error)

// status "ok" or "aborted"; an error reply is ErrorContent plus these fields.
struct ExecuteReply {
  std::string status = "ok";
  std::int64_t execution_count = 0;
  json user_expressions = json::object();
  json payload = json::array();
};
IPCPP_JSON_STRUCT(ExecuteReply, status, execution_count, user_expressions, payload)

// apply_request content is {}; the function and arguments travel in the buffers.
// apply_reply content is StatusOnly, or ErrorContent.

// ---- Control -------------------------------------------------------------------------------

// msg_ids absent or null: abort every queued execute_request (the reference crashes here;
// we reply). An empty list does the same.
struct AbortRequest {
  std::optional<std::vector<std::string>> msg_ids;
};
IPCPP_JSON_STRUCT(AbortRequest, msg_ids)

struct ShutdownRequest {
  bool restart = false;
};
IPCPP_JSON_STRUCT(ShutdownRequest, restart)

struct ShutdownReply {
  std::string status = "ok";
  bool restart = false;
};
IPCPP_JSON_STRUCT(ShutdownReply, status, restart)

// sig: a number, or a name such as "SIGINT".
struct SignalRequest {
  json sig = nullptr;
};
IPCPP_JSON_STRUCT(SignalRequest, sig)

// ---- IOPub ---------------------------------------------------------------------------------

struct StatusContent {
  std::string execution_state;  // "busy", "idle", "starting"
};
IPCPP_JSON_STRUCT(StatusContent, execution_state)

struct StreamContent {
  std::string name;  // "stdout" or "stderr"
  std::string text;
};
IPCPP_JSON_STRUCT(StreamContent, name, text)

struct ExecuteInputContent {
  std::string code;
  std::int64_t execution_count = 0;
};
IPCPP_JSON_STRUCT(ExecuteInputContent, code, execution_count)

// execute_result and display_data.
struct DataContent {
  json data = json::object();  // mime type -> representation
  json metadata = json::object();
  std::int64_t execution_count = 0;
};
IPCPP_JSON_STRUCT(DataContent, data, metadata, execution_count)

// ---- Task and broadcast metadata -----------------------------------------------------------

// A dependency set: a list of msg_ids (all=true, success=true, failure=false), or the dict
// form {"dependencies": [...], "all": b, "success": b, "failure": b}.
struct Dependency {
  std::vector<std::string> dependencies;
  bool all = true;
  bool success = true;
  bool failure = false;
};
void to_json(json& j, const Dependency& v);
void from_json(const json& j, Dependency& v);

// The metadata of a load-balanced request.
struct TaskMetadata {
  Dependency after;
  Dependency follow;
  std::optional<double> timeout;     // seconds; null or 0 means none
  std::vector<std::string> targets;  // engine uuids; empty means any
  std::int64_t retries = 0;
};
IPCPP_JSON_STRUCT(TaskMetadata, after, follow, timeout, targets, retries)

// Quiet statuses, an ipcpp extension (docs/protocol.md). A request whose metadata has
// `"ipcpp_quiet_status": true` asks an ipcpp engine to publish its busy and idle statuses only
// when the request publishes something else on iopub (a stream, a result, an error). The reply
// then says in `"ipcpp_idle_follows"` whether an idle status follows it: when false, the
// request's output is complete with the reply. Engines that do not know the key (ipyparallel's)
// publish both statuses as always and say nothing, so a client waits for idle as before.
inline constexpr const char* kQuietStatusKey = "ipcpp_quiet_status";
inline constexpr const char* kIdleFollowsKey = "ipcpp_idle_follows";

// The metadata an engine puts on every reply (the schedulers and the client rely on it).
struct ReplyMetadata {
  std::string started;
  bool dependencies_met = true;
  std::string engine;  // the engine's uuid
  bool is_broadcast = false;
  bool is_coalescing = false;
  std::string original_msg_id;
  std::string status = "ok";
  json engine_info = nullptr;        // {engine_uuid, engine_id} when status is "error"
  std::optional<bool> idle_follows;  // kIdleFollowsKey: only for requests with kQuietStatusKey
};
void to_json(json& j, const ReplyMetadata& v);
void from_json(const json& j, ReplyMetadata& v);

// Controller-internal: which engine a task went to, and heartbeat changes.
struct TaskDestination {
  std::string msg_id;
  std::string engine_id;  // the engine's uuid
};
IPCPP_JSON_STRUCT(TaskDestination, msg_id, engine_id)

struct HeartChange {  // new_heart, stopped_heart
  std::vector<std::string> hearts;
};
IPCPP_JSON_STRUCT(HeartChange, hearts)

// ---- Decoding ------------------------------------------------------------------------------

// Converts a message's content (or metadata) to T. Returns kBadContent, naming `what` (e.g.
// "queue_request content") and the field, when it does not fit.
template <class T>
Result<T> decode_content(const json& j, std::string_view what) {
  try {
    return j.get<T>();
  } catch (const FieldError& e) {
    return Error{Errc::kBadContent, std::string(what) + ": " + e.what()};
  } catch (const json::exception& e) {
    return Error{Errc::kBadContent, std::string(what) + ": " + json_error_reason(e)};
  }
}

}  // namespace ipcpp::proto
