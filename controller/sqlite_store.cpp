// The "sqlite" task store: records in a SQLite file, so that they survive a restart.
//
// The file holds one table, ipcpp_tasks, with one column per TaskRecord field:
//   msg_id TEXT PRIMARY KEY, and seq INTEGER, the order in which records were first put;
//   header, metadata, content, result_header, result_metadata, result_content, execute_result,
//     error: TEXT, the field as JSON text, NULL when the field is null;
//   submitted, started, completed, received: INTEGER, microseconds since 1970-01-01 UTC, NULL
//     when unset;
//   client_uuid, engine_uuid, resubmitted, queue, execute_input: TEXT, NULL when unset;
//   stdout, stderr: TEXT, never NULL;
//   buffers, result_buffers: BLOB, NULL when there are none, else
//     u32 count, then for each buffer u64 length and the bytes (integers little-endian).
// The journal is a write-ahead log (WAL) with synchronous=NORMAL. Writes are batched: the first
// write after a flush opens a transaction, flush() commits it. Reads on the same connection see
// what is not committed yet.
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <string_view>
#include <sys/stat.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <variant>

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include "controller/task_store.hpp"

namespace ipcpp::controller {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using proto::Errc;
using proto::Error;
using proto::Result;
using proto::Status;
using proto::Timestamp;

constexpr const char* kTable = "ipcpp_tasks";

// What a column holds. Columns are in task_record_keys() order; seq is not among them.
enum class Column : std::uint8_t { kText, kJson, kDate, kBlob };

struct ColumnSpec {
  const char* name;
  Column kind;
};

constexpr std::array<ColumnSpec, 22> kColumns = {{
    {"msg_id", Column::kText},         {"header", Column::kJson},
    {"metadata", Column::kJson},       {"content", Column::kJson},
    {"buffers", Column::kBlob},        {"submitted", Column::kDate},
    {"client_uuid", Column::kText},    {"engine_uuid", Column::kText},
    {"started", Column::kDate},        {"completed", Column::kDate},
    {"resubmitted", Column::kText},    {"received", Column::kDate},
    {"result_header", Column::kJson},  {"result_metadata", Column::kJson},
    {"result_content", Column::kJson}, {"result_buffers", Column::kBlob},
    {"queue", Column::kText},          {"execute_input", Column::kText},
    {"execute_result", Column::kJson}, {"error", Column::kJson},
    {"stdout", Column::kText},         {"stderr", Column::kText},
}};

// Returns the column spec named `key`, or nullptr.
const ColumnSpec* column_named(std::string_view key) {
  for (const ColumnSpec& c : kColumns) {
    if (key == c.name) return &c;
  }
  return nullptr;
}

std::string quoted(const char* name) {
  return std::string("\"") + name + "\"";
}

std::string select_columns() {
  std::string s = "SELECT ";
  for (std::size_t i = 0; i < kColumns.size(); ++i) {
    if (i > 0) s += ", ";
    s += quoted(kColumns[i].name);
  }
  return s + " FROM " + kTable;
}

std::string create_table_sql() {
  std::string s = std::string("CREATE TABLE IF NOT EXISTS ") + kTable + " (";
  for (const ColumnSpec& c : kColumns) {
    s += quoted(c.name);
    if (std::string_view(c.name) == "msg_id") {
      s += " TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL";
    } else if (std::string_view(c.name) == "stdout" || std::string_view(c.name) == "stderr") {
      s += " TEXT NOT NULL DEFAULT ''";
    } else {
      switch (c.kind) {
        case Column::kText:
        case Column::kJson:
          s += " TEXT";
          break;
        case Column::kDate:
          s += " INTEGER";
          break;
        case Column::kBlob:
          s += " BLOB";
          break;
      }
    }
    s += ", ";
  }
  s.resize(s.size() - 2);
  s += ");\n";
  s += std::string("CREATE INDEX IF NOT EXISTS ipcpp_tasks_seq ON ") + kTable + " (seq);\n";
  s += std::string("CREATE INDEX IF NOT EXISTS ipcpp_tasks_submitted ON ") + kTable +
       " (submitted, msg_id);\n";
  return s;
}

// ?1 msg_id, ?2 seq, then ?3... the other columns in order.
std::string upsert_sql() {
  std::string names = "msg_id, seq";
  std::string values = "?1, ?2";
  std::string updates;
  for (std::size_t i = 1; i < kColumns.size(); ++i) {
    const std::string name = quoted(kColumns[i].name);
    names += ", " + name;
    values += ", ?" + std::to_string(i + 2);
    updates += (i > 1 ? ", " : "") + name + " = excluded." + name;
  }
  return std::string("INSERT INTO ") + kTable + " (" + names + ") VALUES (" + values +
         ") ON CONFLICT(msg_id) DO UPDATE SET " + updates;
}

struct DbCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct StmtFinalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};
using Db = std::unique_ptr<sqlite3, DbCloser>;
using Stmt = std::unique_ptr<sqlite3_stmt, StmtFinalizer>;

// Resets a statement and clears its parameters when the scope ends, so that it can run again
// and holds no read lock.
class Resetter {
 public:
  explicit Resetter(sqlite3_stmt* s) : s_(s) {}
  ~Resetter() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  Resetter(const Resetter&) = delete;
  Resetter& operator=(const Resetter&) = delete;

 private:
  sqlite3_stmt* s_;
};

// A buffers blob: see the file comment. Returns an empty string for no buffers (stored NULL).
std::string encode_buffers(const std::vector<Bytes>& buffers) {
  if (buffers.empty()) return {};
  std::size_t total = 4;
  for (const Bytes& b : buffers)
    total += 8 + b.size();
  std::string out;
  out.reserve(total);
  auto put_le = [&out](std::uint64_t v, int n) {
    for (int i = 0; i < n; ++i)
      out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  put_le(buffers.size(), 4);
  for (const Bytes& b : buffers) {
    put_le(b.size(), 8);
    out.append(reinterpret_cast<const char*>(b.data()), b.size());
  }
  return out;
}

// Returns the buffers of a blob (views into one shared copy of it), or nullopt when the blob is
// not in the format.
std::optional<std::vector<Bytes>> decode_buffers(const void* data, std::size_t size) {
  auto owner = std::make_shared<std::vector<std::byte>>(size);
  if (size > 0) std::memcpy(owner->data(), data, size);
  const std::byte* p = owner->data();
  std::size_t pos = 0;
  auto get_le = [&](int n) -> std::optional<std::uint64_t> {
    if (size - pos < static_cast<std::size_t>(n)) return std::nullopt;
    std::uint64_t v = 0;
    for (int i = 0; i < n; ++i) {
      v |= static_cast<std::uint64_t>(
               std::to_integer<unsigned>(p[pos + static_cast<std::size_t>(i)]))
           << (8 * i);
    }
    pos += static_cast<std::size_t>(n);
    return v;
  };
  const auto count = get_le(4);
  if (!count) return std::nullopt;
  std::vector<Bytes> out;
  for (std::uint64_t i = 0; i < *count; ++i) {
    const auto length = get_le(8);
    if (!length || *length > size - pos) return std::nullopt;
    const auto n = static_cast<std::size_t>(*length);
    out.emplace_back(owner, p + pos, n);
    pos += n;
  }
  if (pos != size) return std::nullopt;
  return out;
}

std::int64_t micros(Timestamp t) {
  return t.time_since_epoch().count();
}

// A bound parameter of a translated query: NULL, text or an integer.
using Param = std::variant<std::monostate, std::string, std::int64_t>;

// A query as SQL: `where` ("" for none) with `params` for its ?s. `complete` is false when some
// conditions could not be put in SQL; the rows must then also pass RecordQuery::matches.
struct Translation {
  std::string where;
  std::vector<Param> params;
  bool complete = true;
};

// The most parameters a translated query binds (SQLite 3.32 and later take 32766).
constexpr std::size_t kMaxParams = 30000;

// Returns the operand as a parameter for the column, or nullopt when SQL would not compare it
// the way RecordQuery does (a number compared with a text column, a JSON column).
std::optional<Param> to_param(const ColumnSpec& column, const json& v) {
  if (v.is_null()) return Param{};
  if (!v.is_string()) return std::nullopt;
  const auto& s = v.get_ref<const std::string&>();
  if (column.kind == Column::kText) return Param{s};
  if (column.kind == Column::kDate) {
    if (const auto t = proto::parse_timestamp(s)) return Param{micros(*t)};
  }
  return std::nullopt;
}

// Appends the SQL for `column op operand` to `t`, or marks `t` incomplete.
void translate_condition(Translation& t, const ColumnSpec& column, std::string_view op,
                         const json& operand) {
  const bool list = op == "$in" || op == "$nin";
  std::vector<Param> params;
  bool null_listed = false;  // a list's null, kept out of `params`
  if (list) {
    if (!operand.is_array()) {
      t.complete = false;
      return;
    }
    for (const json& v : operand) {
      auto p = to_param(column, v);
      if (!p) {
        t.complete = false;
        return;
      }
      if (std::holds_alternative<std::monostate>(*p)) {
        null_listed = true;
      } else {
        params.push_back(std::move(*p));
      }
    }
  } else {
    auto p = to_param(column, operand);
    if (!p) {
      t.complete = false;
      return;
    }
    params.push_back(std::move(*p));
  }
  if (t.params.size() + params.size() > kMaxParams) {
    t.complete = false;  // more than SQLite takes: RecordQuery::matches does it
    return;
  }
  const std::string name = quoted(column.name);
  std::string sql;
  if (op == "$eq") {
    sql = name + " IS ?";  // IS: null equals an unset field
  } else if (op == "$ne") {
    sql = name + " IS NOT ?";
  } else if (op == "$lt") {
    sql = name + " < ?";  // false against NULL, as an ordering with null is
  } else if (op == "$gt") {
    sql = name + " > ?";
  } else if (op == "$lte") {
    sql = name + " <= ?";
  } else if (op == "$gte") {
    sql = name + " >= ?";
  } else if (list) {
    // IN uses the indexes but never matches NULL: a listed null is an IS NULL of its own.
    std::string values = "(";
    for (std::size_t i = 0; i < params.size(); ++i)
      values += i > 0 ? ", ?" : "?";
    values += ")";
    if (op == "$in") {
      if (params.empty()) {
        sql = null_listed ? name + " IS NULL" : "0";
      } else {
        sql = name + " IN " + values;
        if (null_listed) sql = "(" + sql + " OR " + name + " IS NULL)";
      }
    } else {
      if (params.empty()) {
        sql = null_listed ? name + " IS NOT NULL" : "1";
      } else {
        sql = name + " NOT IN " + values;  // NULL for an unset field
        if (!null_listed) sql = "(" + name + " IS NULL OR " + sql + ")";
      }
    }
  } else {
    t.complete = false;
    return;
  }
  if (!t.where.empty()) t.where += " AND ";
  t.where += sql;
  for (Param& p : params)
    t.params.push_back(std::move(p));
}

// Translates what it can of a parsed query.
Translation translate(const json& query) {
  Translation t;
  if (!query.is_object()) {
    t.complete = false;
    return t;
  }
  for (const auto& [key, value] : query.items()) {
    const ColumnSpec* column = column_named(key);
    if (column == nullptr || column->kind == Column::kJson || column->kind == Column::kBlob) {
      t.complete = false;
      continue;
    }
    bool operators = false;
    if (value.is_object()) {
      for (const auto& item : value.items()) {
        if (!item.key().empty() && item.key().front() == '$') operators = true;
      }
    }
    if (!operators) {
      translate_condition(t, *column, "$eq", value);
      continue;
    }
    for (const auto& [op, operand] : value.items())
      translate_condition(t, *column, op, operand);
  }
  return t;
}

std::string errno_text(int err) {
  return std::strerror(err);
}

class SqliteStore final : public TaskStore {
 public:
  // Throws std::runtime_error "cannot open task store <path>: <reason>".
  explicit SqliteStore(fs::path path) : path_(std::move(path)) {
    auto fail = [this](const std::string& reason) {
      return std::runtime_error("cannot open task store " + path_.string() + ": " + reason);
    };
    if (const std::string reason = prepare_file(); !reason.empty()) throw fail(reason);

    sqlite3* raw = nullptr;
    const int rc =
        sqlite3_open_v2(path_.c_str(), &raw, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
    db_.reset(raw);
    if (rc != SQLITE_OK) {
      throw fail(raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc));
    }
    sqlite3_extended_result_codes(db_.get(), 1);
    sqlite3_busy_timeout(db_.get(), 2000);
    const std::string setup =
        "PRAGMA journal_mode=WAL;\nPRAGMA synchronous=NORMAL;\n" + create_table_sql();
    if (sqlite3_exec(db_.get(), setup.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
      throw fail(sqlite3_errmsg(db_.get()));
    }
    if (const std::string reason = check_columns(); !reason.empty()) throw fail(reason);

    auto prepare_or_throw = [&](Stmt& slot, const std::string& sql) {
      if (auto s = prepare(slot, sql); !s) throw fail(sqlite3_errmsg(db_.get()));
    };
    prepare_or_throw(begin_, "BEGIN");
    prepare_or_throw(commit_, "COMMIT");
    prepare_or_throw(upsert_, upsert_sql());
    prepare_or_throw(get_, select_columns() + " WHERE msg_id = ?1");
    prepare_or_throw(delete_, std::string("DELETE FROM ") + kTable + " WHERE msg_id = ?1");
    prepare_or_throw(history_, std::string("SELECT msg_id FROM ") + kTable +
                                   " WHERE submitted IS NOT NULL ORDER BY submitted, msg_id");
    Stmt max_seq;
    prepare_or_throw(max_seq, std::string("SELECT COALESCE(MAX(seq), 0) FROM ") + kTable);
    if (sqlite3_step(max_seq.get()) != SQLITE_ROW) throw fail(sqlite3_errmsg(db_.get()));
    next_seq_ = sqlite3_column_int64(max_seq.get(), 0) + 1;
  }

  ~SqliteStore() override {
    if (const Status s = flush(); !s) {
      spdlog::error("{} (the records put since the last flush are lost)", s.error().reason);
    }
    // The statements are finalized before db_ is closed (members are destroyed in reverse).
  }

  SqliteStore(const SqliteStore&) = delete;
  SqliteStore& operator=(const SqliteStore&) = delete;

  const char* name() const override { return "sqlite"; }
  bool keeps_records() const override { return true; }

  Status put(TaskRecord record) override {
    if (Status s = begin_if_needed(); !s) return s;
    sqlite3_stmt* st = upsert_.get();
    Resetter reset(st);
    // The texts and blobs bound below must live until the statement has run.
    std::vector<std::string> keep;
    keep.reserve(kColumns.size());
    bool bound = sqlite3_bind_int64(st, 2, next_seq_) == SQLITE_OK;
    for (std::size_t i = 0; i < kColumns.size() && bound; ++i) {
      const int param = i == 0 ? 1 : static_cast<int>(i) + 2;
      bound = bind_field(st, param, record, i, keep) == SQLITE_OK;
    }
    if (!bound || sqlite3_step(st) != SQLITE_DONE) return io_error();
    ++next_seq_;
    return {};
  }

  std::optional<TaskRecord> get(const std::string& msg_id) override {
    sqlite3_stmt* st = get_.get();
    Resetter reset(st);
    if (bind_text(st, 1, msg_id) != SQLITE_OK) return log_read_error();
    const int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) return read_row(st);
    if (rc != SQLITE_DONE) return log_read_error();
    return std::nullopt;
  }

  Result<std::vector<TaskRecord>> find(const RecordQuery& query) override {
    const Translation t = translate(query.json());
    std::string sql = select_columns();
    if (!t.where.empty()) sql += " WHERE " + t.where;
    sql += " ORDER BY seq";
    spdlog::trace("task store {}: {} ({})", path_.string(), sql,
                  t.complete ? "all in SQL" : "then filtered");
    auto stmt = cached(sql);
    if (!stmt) return stmt.error();
    sqlite3_stmt* st = *stmt;
    Resetter reset(st);
    if (!bind_params(st, t.params)) return io_error();
    std::vector<TaskRecord> out;
    for (;;) {
      const int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return io_error();
      TaskRecord r = read_row(st);
      if (t.complete || query.matches(r)) out.push_back(std::move(r));
    }
    return out;
  }

  std::vector<std::string> history() override {
    sqlite3_stmt* st = history_.get();
    Resetter reset(st);
    std::vector<std::string> out;
    for (;;) {
      const int rc = sqlite3_step(st);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) {
        log_read_error();
        break;
      }
      out.push_back(column_text(st, 0).value_or(""));
    }
    return out;
  }

  Status remove(const std::vector<std::string>& msg_ids) override {
    if (msg_ids.empty()) return {};
    if (Status s = begin_if_needed(); !s) return s;
    sqlite3_stmt* st = delete_.get();
    for (const std::string& id : msg_ids) {
      Resetter reset(st);
      if (bind_text(st, 1, id) != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE) return io_error();
    }
    return {};
  }

  Result<std::size_t> remove_matching(const RecordQuery& query) override {
    const Translation t = translate(query.json());
    if (!t.complete) {
      auto found = find(query);
      if (!found) return found.error();
      std::vector<std::string> ids;
      ids.reserve(found->size());
      for (const TaskRecord& r : *found)
        ids.push_back(r.msg_id);
      if (Status s = remove(ids); !s) return s.error();
      return ids.size();
    }
    std::string sql = std::string("DELETE FROM ") + kTable;
    if (!t.where.empty()) sql += " WHERE " + t.where;
    if (Status s = begin_if_needed(); !s) return s.error();
    auto stmt = cached(sql);
    if (!stmt) return stmt.error();
    sqlite3_stmt* st = *stmt;
    Resetter reset(st);
    if (!bind_params(st, t.params) || sqlite3_step(st) != SQLITE_DONE) return io_error();
    return static_cast<std::size_t>(sqlite3_changes64(db_.get()));
  }

  Status flush() override {
    if (sqlite3_get_autocommit(db_.get()) != 0) return {};  // no open transaction
    Resetter reset(commit_.get());
    // When the commit fails SQLite either keeps the transaction open (the next flush retries
    // it) or rolls it back.
    if (sqlite3_step(commit_.get()) != SQLITE_DONE) return io_error();
    return {};
  }

 private:
  // Creates the missing directories (mode 0700) and the file (mode 0600) if it is missing.
  // Returns "" on success, else the reason.
  std::string prepare_file() {
    const fs::path parent = path_.parent_path();
    if (!parent.empty()) {
      std::vector<fs::path> missing;
      for (fs::path p = parent; !p.empty(); p = p.parent_path()) {
        struct stat st {};
        if (::stat(p.c_str(), &st) == 0) break;
        if (errno != ENOENT) return errno_text(errno);
        missing.push_back(p);
        if (p == p.parent_path()) break;
      }
      for (auto it = missing.rbegin(); it != missing.rend(); ++it) {
        if (::mkdir(it->c_str(), 0700) != 0 && errno != EEXIST) return errno_text(errno);
      }
    }
    const int fd = ::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0) {
      // Exactly 0600, whatever the umask.
      const int rc = ::fchmod(fd, 0600);
      const int err = errno;
      ::close(fd);
      if (rc != 0) return errno_text(err);
    } else if (errno != EEXIST) {
      return errno_text(errno);
    }
    return {};
  }

  // Returns "" when the table has exactly the expected columns, else the reason.
  std::string check_columns() {
    Stmt info;
    if (!prepare(info, std::string("PRAGMA table_info(") + kTable + ")")) {
      return sqlite3_errmsg(db_.get());
    }
    std::vector<std::string> have;
    for (;;) {
      const int rc = sqlite3_step(info.get());
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return sqlite3_errmsg(db_.get());
      have.push_back(column_text(info.get(), 1).value_or(""));
    }
    std::vector<std::string> want;
    for (const ColumnSpec& c : kColumns) {
      want.emplace_back(c.name);
      if (want.back() == "msg_id") want.emplace_back("seq");
    }
    if (have != want) {
      return std::string("table ") + kTable +
             " has other columns than this version of ipcpp writes (a file of another version?)";
    }
    return {};
  }

  // Prepares `sql` into `slot`. Returns kIo on failure.
  Status prepare(Stmt& slot, const std::string& sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v3(db_.get(), sql.c_str(), static_cast<int>(sql.size() + 1),
                                      SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    slot.reset(raw);
    if (rc != SQLITE_OK) return io_error();
    return {};
  }

  // Returns the prepared statement for `sql` from the cache (preparing it on first use).
  Result<sqlite3_stmt*> cached(const std::string& sql) {
    if (const auto found = cache_.find(sql); found != cache_.end()) return found->second.get();
    if (cache_.size() >= kCacheSize) cache_.clear();
    Stmt stmt;
    if (Status s = prepare(stmt, sql); !s) return s.error();
    sqlite3_stmt* raw = stmt.get();
    cache_.emplace(sql, std::move(stmt));
    return raw;
  }

  Status begin_if_needed() {
    if (sqlite3_get_autocommit(db_.get()) == 0) return {};  // a transaction is open
    Resetter reset(begin_.get());
    if (sqlite3_step(begin_.get()) != SQLITE_DONE) return io_error();
    return {};
  }

  Error io_error() const {
    return Error{Errc::kIo, "task store " + path_.string() + ": " + sqlite3_errmsg(db_.get())};
  }

  std::nullopt_t log_read_error() const {
    spdlog::error("{}", io_error().reason);
    return std::nullopt;
  }

  static int bind_text(sqlite3_stmt* st, int param, const std::string& s) {
    return sqlite3_bind_text64(st, param, s.c_str(), s.size(), SQLITE_STATIC, SQLITE_UTF8);
  }

  static bool bind_params(sqlite3_stmt* st, const std::vector<Param>& params) {
    for (std::size_t i = 0; i < params.size(); ++i) {
      const int n = static_cast<int>(i) + 1;
      int rc = SQLITE_OK;
      if (const auto* s = std::get_if<std::string>(&params[i])) {
        rc = bind_text(st, n, *s);
      } else if (const auto* v = std::get_if<std::int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(st, n, *v);
      } else {
        rc = sqlite3_bind_null(st, n);
      }
      if (rc != SQLITE_OK) return false;
    }
    return true;
  }

  // Binds field `i` (task_record_keys() order) of `r` to `param`. Encoded values are kept in
  // `keep`, which must not reallocate (it is reserved for every column).
  static int bind_field(sqlite3_stmt* st, int param, const TaskRecord& r, std::size_t i,
                        std::vector<std::string>& keep) {
    auto text = [&](const std::optional<std::string>& s) {
      return s ? bind_text(st, param, *s) : sqlite3_bind_null(st, param);
    };
    auto date = [&](const std::optional<Timestamp>& t) {
      return t ? sqlite3_bind_int64(st, param, micros(*t)) : sqlite3_bind_null(st, param);
    };
    auto json_text = [&](const json& j) {
      if (j.is_null()) return sqlite3_bind_null(st, param);
      keep.push_back(j.dump(-1, ' ', false, json::error_handler_t::replace));
      return bind_text(st, param, keep.back());
    };
    // A field still holding the text it was received as is stored as that text: no parse and
    // dump. (Text that is not valid JSON reads back as null, as it would have read here.)
    auto lazy_json_text = [&](const LazyJson& j) {
      if (const std::optional<std::string_view> t = j.text()) {
        return sqlite3_bind_text64(st, param, t->data(), t->size(), SQLITE_STATIC, SQLITE_UTF8);
      }
      return json_text(j.json());
    };
    auto blob = [&](const std::vector<Bytes>& buffers) {
      if (buffers.empty()) return sqlite3_bind_null(st, param);
      keep.push_back(encode_buffers(buffers));
      return sqlite3_bind_blob64(st, param, keep.back().data(), keep.back().size(), SQLITE_STATIC);
    };
    switch (i) {
      case 0:
        return bind_text(st, param, r.msg_id);
      case 1:
        return lazy_json_text(r.header);
      case 2:
        return lazy_json_text(r.metadata);
      case 3:
        return lazy_json_text(r.content);
      case 4:
        return blob(r.buffers);
      case 5:
        return date(r.submitted);
      case 6:
        return text(r.client_uuid);
      case 7:
        return text(r.engine_uuid);
      case 8:
        return date(r.started);
      case 9:
        return date(r.completed);
      case 10:
        return text(r.resubmitted);
      case 11:
        return date(r.received);
      case 12:
        return lazy_json_text(r.result_header);
      case 13:
        return lazy_json_text(r.result_metadata);
      case 14:
        return lazy_json_text(r.result_content);
      case 15:
        return blob(r.result_buffers);
      case 16:
        return text(r.queue);
      case 17:
        return text(r.execute_input);
      case 18:
        return json_text(r.execute_result);
      case 19:
        return json_text(r.error);
      case 20:
        return bind_text(st, param, r.stdout_text);
      case 21:
        return bind_text(st, param, r.stderr_text);
      default:
        return SQLITE_RANGE;
    }
  }

  static std::optional<std::string> column_text(sqlite3_stmt* st, int i) {
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return std::nullopt;
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(st, i));
    const int n = sqlite3_column_bytes(st, i);
    return p != nullptr ? std::string(p, static_cast<std::size_t>(n)) : std::string();
  }

  json column_json(sqlite3_stmt* st, int i) const {
    const auto text = column_text(st, i);
    if (!text) return nullptr;
    json j = json::parse(*text, nullptr, false);
    if (j.is_discarded()) {
      spdlog::warn("task store {}: column {} is not JSON; read as null", path_.string(),
                   kColumns[static_cast<std::size_t>(i)].name);
      return nullptr;
    }
    return j;
  }

  static std::optional<Timestamp> column_date(sqlite3_stmt* st, int i) {
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return std::nullopt;
    return Timestamp(std::chrono::microseconds(sqlite3_column_int64(st, i)));
  }

  std::vector<Bytes> column_buffers(sqlite3_stmt* st, int i) const {
    if (sqlite3_column_type(st, i) == SQLITE_NULL) return {};
    const void* data = sqlite3_column_blob(st, i);
    const auto size = static_cast<std::size_t>(sqlite3_column_bytes(st, i));
    auto buffers = decode_buffers(data, size);
    if (!buffers) {
      spdlog::warn("task store {}: column {} is not a buffer list; read as none", path_.string(),
                   kColumns[static_cast<std::size_t>(i)].name);
      return {};
    }
    return std::move(*buffers);
  }

  // The record in the current row of a statement that selects select_columns().
  TaskRecord read_row(sqlite3_stmt* st) const {
    TaskRecord r;
    r.msg_id = column_text(st, 0).value_or("");
    r.header = column_json(st, 1);
    r.metadata = column_json(st, 2);
    r.content = column_json(st, 3);
    r.buffers = column_buffers(st, 4);
    r.submitted = column_date(st, 5);
    r.client_uuid = column_text(st, 6);
    r.engine_uuid = column_text(st, 7);
    r.started = column_date(st, 8);
    r.completed = column_date(st, 9);
    r.resubmitted = column_text(st, 10);
    r.received = column_date(st, 11);
    r.result_header = column_json(st, 12);
    r.result_metadata = column_json(st, 13);
    r.result_content = column_json(st, 14);
    r.result_buffers = column_buffers(st, 15);
    r.queue = column_text(st, 16);
    r.execute_input = column_text(st, 17);
    r.execute_result = column_json(st, 18);
    r.error = column_json(st, 19);
    r.stdout_text = column_text(st, 20).value_or("");
    r.stderr_text = column_text(st, 21).value_or("");
    return r;
  }

  static constexpr std::size_t kCacheSize = 64;

  fs::path path_;
  Db db_;  // declared before the statements: closed after they are finalized
  Stmt begin_, commit_, upsert_, get_, delete_, history_;
  std::unordered_map<std::string, Stmt> cache_;  // find and remove_matching, by SQL text
  std::int64_t next_seq_ = 1;
};

}  // namespace

namespace detail {

std::unique_ptr<TaskStore> make_sqlite_store(const std::filesystem::path& path) {
  return std::make_unique<SqliteStore>(path);
}

}  // namespace detail

}  // namespace ipcpp::controller
