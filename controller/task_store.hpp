// The task store: the hub's record of every request it has seen and of its result.
//
// One interface, three implementations (make_task_store):
//   memory  records in this process, bounded by a record limit and a byte limit; when either
//           is exceeded the oldest completed records are culled first (pending ones never).
//   sqlite  records in a SQLite file in the profile, so that they survive a restart.
//   none    keeps nothing: lookups fail with a reason that says so.
//
// Thread-safety: none. The store belongs to the hub thread.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/value.hpp"

#include "proto/clock.hpp"
#include "proto/errors.hpp"

namespace ipcpp::controller {

namespace detail {
struct CompiledQuery;  // RecordQuery's parsed conditions (task_store.cpp)
// nlohmann::json itself, however referred to.
template <class T>
concept JsonTree = std::same_as<std::remove_cvref_t<T>, nlohmann::json>;
}  // namespace detail

// A JSON field of a TaskRecord that is parsed only when someone looks at it.
//
// The hub records a copy of every request and reply, but most records are never queried:
// parsing their frames and building JSON trees for them would cost about a third of the
// controller's time per task. So a LazyJson holds one of:
//   - nothing: the value is null (a default-constructed LazyJson);
//   - a tree: the value, as assigned from nlohmann::json;
//   - text: the JSON text of a frame as received (shared with the frame, not copied), parsed
//     on the first call to json() and cached.
// Text that is not a valid JSON object reads as null, silently: whoever receives a frame is the
// one to complain about it (the hub does, when it cannot read what it needs from the frame).
//
// Copies share the text; a tree (or a parsed text) is copied with them.
// Thread-safety: none; json() fills a cache, so even const use needs one thread (the hub's).
class LazyJson {
 public:
  LazyJson() = default;
  // Implicit, so that a tree goes wherever a LazyJson is wanted. Only nlohmann::json itself
  // converts (not the braced lists nlohmann::json takes), so that `field = {{"key", value}}`
  // means the assignment below and is not ambiguous.
  template <detail::JsonTree Json>
  LazyJson(Json&& value) : value_(std::forward<Json>(value)) {}
  LazyJson& operator=(nlohmann::json value);

  // The value of `text`, a JSON object's text, parsed when first needed. Text that cannot be
  // one (it does not start with '{' and end with '}', spaces aside) is dropped at once: the
  // value is null.
  static LazyJson from_text(Bytes text);
  // True when `text` starts with '{' and ends with '}', spaces aside: the shape of a JSON
  // object, checked without parsing (the text between may still be invalid).
  static bool looks_like_object(std::string_view text);

  // The value: null, the tree assigned, or the text parsed (null when it is not a valid JSON
  // object). The first call on text parses it; the result is kept.
  const nlohmann::json& json() const;
  // The JSON text as received, when the value is still that text: writers can use it as it is
  // instead of dumping json(). nullopt for null, for a tree, and for text that failed to parse.
  // Not checked: text never parsed may still turn out invalid.
  std::optional<std::string_view> text() const;
  // True when json() will not parse (for tests and diagnostics).
  bool is_parsed() const { return !unparsed_; }

 private:
  // (Not std::optional<nlohmann::json>: instantiating it here would clash with the
  // adl_serializer<std::optional<T>> that proto/messages.hpp declares.)
  // The received text; reset when it does not parse. Mutable for json()'s sake.
  mutable std::optional<Bytes> text_;
  // The value: null, the tree, or text_ once parsed.
  mutable nlohmann::json value_;
  // True while text_ waits for its first parse (value_ is null until then).
  mutable bool unparsed_ = false;
};

// One request and its result: the fields of ipyparallel's TaskRecord. JSON fields are null when
// unset; buffers are shared, never copied. The request's and the reply's dicts are LazyJson:
// the hub stores the frames' text and nothing parses it until a query needs it.
struct TaskRecord {
  std::string msg_id;
  LazyJson header;                            // the request's header
  LazyJson metadata;                          // the request's metadata
  LazyJson content;                           // the request's content
  std::vector<Bytes> buffers;                 // the request's buffers
  std::optional<proto::Timestamp> submitted;  // the request header's date
  std::optional<std::string> client_uuid;     // the request header's session
  std::optional<std::string> engine_uuid;     // the engine that ran (or runs) it
  std::optional<proto::Timestamp> started;    // reply metadata.started
  std::optional<proto::Timestamp> completed;  // reply header date
  std::optional<std::string> resubmitted;     // msg_id of the resubmitted copy
  std::optional<proto::Timestamp> received;   // when the hub got the reply
  LazyJson result_header;
  LazyJson result_metadata;
  LazyJson result_content;
  std::vector<Bytes> result_buffers;
  std::optional<std::string> queue;          // "mux" or "task"
  std::optional<std::string> execute_input;  // the code of an execute_request (iopub)
  nlohmann::json execute_result = nullptr;   // iopub execute_result content
  nlohmann::json error = nullptr;            // iopub error content
  std::string stdout_text;                   // accumulated iopub stdout ("stdout" on the wire)
  std::string stderr_text;                   // accumulated iopub stderr ("stderr" on the wire)

  // Bytes of buffers plus result_buffers: what the memory store's byte limit counts.
  std::size_t buffer_bytes() const;
};

// The names of TaskRecord's fields as the wire and queries spell them, in declaration order:
// msg_id header metadata content buffers submitted client_uuid engine_uuid started completed
// resubmitted received result_header result_metadata result_content result_buffers queue
// execute_input execute_result error stdout stderr.
const std::vector<std::string>& task_record_keys();

// The record as a JSON object with the given keys (all keys when `keys` is empty; msg_id is
// always included). Dates are ISO strings ending in Z, unset fields null. "buffers" and
// "result_buffers" are never put in the JSON (they travel as frames); they are skipped, as are
// keys that are not fields.
nlohmann::json record_to_json(const TaskRecord& record, const std::vector<std::string>& keys = {});

// A Mongo-style query on records, as sent in db_request: {"key": value} (equality) or
// {"key": {"$op": value, ...}} with $lt $gt $eq $ne $lte $gte $in $nin; several keys and
// several operators must all hold. Comparisons on the date keys (submitted, started,
// completed, received) compare times, whatever the ISO spelling of the query's value. null
// compares equal to an unset field ({"completed": {"$ne": null}} = completed records).
// Ordering operators between values of different kinds (a number and a string, a value and
// null) are false. A default-constructed query is {} and matches every record.
class RecordQuery {
 public:
  // Returns kBadContent naming the key or operator when `query` is not of that form: not an
  // object, an unknown key ("buffers" and "result_buffers" cannot be queried), an unknown
  // operator, $in or $nin without a list, or a date key compared with something that is neither
  // null nor an ISO 8601 time.
  static proto::Result<RecordQuery> parse(const nlohmann::json& query);
  // Returns true when every condition of the query holds for the record.
  bool matches(const TaskRecord& record) const;
  // The query as parsed (for stores that translate it).
  const nlohmann::json& json() const { return query_; }

 private:
  nlohmann::json query_ = nlohmann::json::object();
  // The conditions, compiled by parse (null: none, every record matches).
  std::shared_ptr<const detail::CompiledQuery> compiled_;
};

class TaskStore {
 public:
  virtual ~TaskStore() = default;

  // "memory", "sqlite" or "none".
  virtual const char* name() const = 0;
  // False for "none": the hub then answers record queries with an error.
  virtual bool keeps_records() const = 0;

  // Inserts the record, or replaces the one with the same msg_id.
  // Returns kIo with the reason when it cannot be written (a full disk); nothing is lost from
  // what was stored before. (sqlite: what was flushed before; when SQLite gives up the open
  // transaction on an error, the puts since the last successful flush are lost with it.)
  virtual proto::Status put(TaskRecord record) = 0;
  // The record, or nullopt when there is none (never stored, culled or purged). sqlite: also
  // nullopt when the file cannot be read (the reason is logged).
  virtual std::optional<TaskRecord> get(const std::string& msg_id) = 0;
  // Records matching the query, in the order they were first put.
  virtual proto::Result<std::vector<TaskRecord>> find(const RecordQuery& query) = 0;
  // msg_ids of the records that have a submitted time, sorted by it (then by msg_id). sqlite:
  // the ids read before a read error (the reason is logged).
  virtual std::vector<std::string> history() = 0;
  // Removes these records (missing ids are ignored).
  virtual proto::Status remove(const std::vector<std::string>& msg_ids) = 0;
  // Removes every record matching the query; returns how many.
  virtual proto::Result<std::size_t> remove_matching(const RecordQuery& query) = 0;
  // Makes what was put durable (sqlite commits; the others do nothing). The hub calls it
  // every few hundred milliseconds when something changed, and at shutdown.
  // Returns kIo with the reason when the commit fails (a full disk).
  virtual proto::Status flush() = 0;
};

struct TaskStoreOptions {
  std::string kind = "memory";  // memory | sqlite | none
  // memory: most records kept. Default: 1024 (ipyparallel's DictDB).
  std::size_t record_limit = 1024;
  // memory: most bytes of buffers kept. Default: 1 GiB.
  std::size_t size_limit = std::size_t{1} << 30;
  // sqlite: the database file (created with mode 0600; missing directories with mode 0700).
  std::filesystem::path sqlite_path;
};

// Throws std::invalid_argument for an unknown kind or an empty sqlite_path with kind sqlite, and
// std::runtime_error "cannot open task store <path>: <reason>" when the sqlite file cannot be
// opened or created (or holds a table of another layout).
std::unique_ptr<TaskStore> make_task_store(const TaskStoreOptions& options);

namespace detail {
// The implementations behind make_task_store, one per source file; they throw as it does.
std::unique_ptr<TaskStore> make_memory_store(std::size_t record_limit, std::size_t size_limit);
std::unique_ptr<TaskStore> make_none_store();
std::unique_ptr<TaskStore> make_sqlite_store(const std::filesystem::path& path);
}  // namespace detail

}  // namespace ipcpp::controller
