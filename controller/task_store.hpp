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

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/value.hpp"

#include "proto/clock.hpp"
#include "proto/errors.hpp"

namespace ipcpp::controller {

namespace detail {
struct CompiledQuery;  // RecordQuery's parsed conditions (task_store.cpp)
}  // namespace detail

// One request and its result: the fields of ipyparallel's TaskRecord. JSON fields are null when
// unset; buffers are shared, never copied.
struct TaskRecord {
  std::string msg_id;
  nlohmann::json header = nullptr;            // the request's header
  nlohmann::json metadata = nullptr;          // the request's metadata
  nlohmann::json content = nullptr;           // the request's content
  std::vector<Bytes> buffers;                 // the request's buffers
  std::optional<proto::Timestamp> submitted;  // the request header's date
  std::optional<std::string> client_uuid;     // the request header's session
  std::optional<std::string> engine_uuid;     // the engine that ran (or runs) it
  std::optional<proto::Timestamp> started;    // reply metadata.started
  std::optional<proto::Timestamp> completed;  // reply header date
  std::optional<std::string> resubmitted;     // msg_id of the resubmitted copy
  std::optional<proto::Timestamp> received;   // when the hub got the reply
  nlohmann::json result_header = nullptr;
  nlohmann::json result_metadata = nullptr;
  nlohmann::json result_content = nullptr;
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
