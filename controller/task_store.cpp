// TaskRecord, record_to_json, RecordQuery and make_task_store (the stores themselves are in
// memory_store.cpp and sqlite_store.cpp).
#include "controller/task_store.hpp"

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace ipcpp::controller {

namespace {

using nlohmann::json;
using proto::Errc;
using proto::Error;
using proto::Timestamp;

// TaskRecord's fields, in task_record_keys() order.
enum class Field : std::uint8_t {
  kMsgId,
  kHeader,
  kMetadata,
  kContent,
  kBuffers,
  kSubmitted,
  kClientUuid,
  kEngineUuid,
  kStarted,
  kCompleted,
  kResubmitted,
  kReceived,
  kResultHeader,
  kResultMetadata,
  kResultContent,
  kResultBuffers,
  kQueue,
  kExecuteInput,
  kExecuteResult,
  kError,
  kStdout,
  kStderr,
};

constexpr std::array<std::string_view, 22> kKeyNames = {
    "msg_id",         "header",      "metadata",      "content",         "buffers",
    "submitted",      "client_uuid", "engine_uuid",   "started",         "completed",
    "resubmitted",    "received",    "result_header", "result_metadata", "result_content",
    "result_buffers", "queue",       "execute_input", "execute_result",  "error",
    "stdout",         "stderr"};

// Returns the field named `key`, or nullopt for a name that is not a field.
std::optional<Field> field_of(std::string_view key) {
  for (std::size_t i = 0; i < kKeyNames.size(); ++i) {
    if (kKeyNames[i] == key) return static_cast<Field>(i);
  }
  return std::nullopt;
}

// How a field's value is held, which decides how it compares.
enum class Kind : std::uint8_t { kJson, kText, kDate, kBuffers };

Kind kind_of(Field f) {
  switch (f) {
    case Field::kMsgId:
    case Field::kClientUuid:
    case Field::kEngineUuid:
    case Field::kResubmitted:
    case Field::kQueue:
    case Field::kExecuteInput:
    case Field::kStdout:
    case Field::kStderr:
      return Kind::kText;
    case Field::kSubmitted:
    case Field::kStarted:
    case Field::kCompleted:
    case Field::kReceived:
      return Kind::kDate;
    case Field::kBuffers:
    case Field::kResultBuffers:
      return Kind::kBuffers;
    default:
      return Kind::kJson;
  }
}

const json& json_field(const TaskRecord& r, Field f) {
  switch (f) {
    case Field::kHeader:
      return r.header.json();
    case Field::kMetadata:
      return r.metadata.json();
    case Field::kContent:
      return r.content.json();
    case Field::kResultHeader:
      return r.result_header.json();
    case Field::kResultMetadata:
      return r.result_metadata.json();
    case Field::kResultContent:
      return r.result_content.json();
    case Field::kExecuteResult:
      return r.execute_result;
    case Field::kError:
      return r.error;
    default:
      break;
  }
  static const json kNull = nullptr;
  return kNull;
}

// Returns the text field, or nullptr when it is unset.
const std::string* text_field(const TaskRecord& r, Field f) {
  auto opt = [](const std::optional<std::string>& s) { return s ? &*s : nullptr; };
  switch (f) {
    case Field::kMsgId:
      return &r.msg_id;
    case Field::kClientUuid:
      return opt(r.client_uuid);
    case Field::kEngineUuid:
      return opt(r.engine_uuid);
    case Field::kResubmitted:
      return opt(r.resubmitted);
    case Field::kQueue:
      return opt(r.queue);
    case Field::kExecuteInput:
      return opt(r.execute_input);
    case Field::kStdout:
      return &r.stdout_text;
    case Field::kStderr:
      return &r.stderr_text;
    default:
      return nullptr;
  }
}

std::optional<Timestamp> date_field(const TaskRecord& r, Field f) {
  switch (f) {
    case Field::kSubmitted:
      return r.submitted;
    case Field::kStarted:
      return r.started;
    case Field::kCompleted:
      return r.completed;
    case Field::kReceived:
      return r.received;
    default:
      return std::nullopt;
  }
}

json date_json(const std::optional<Timestamp>& t) {
  return t ? json(proto::format_timestamp(*t)) : json(nullptr);
}

json text_json(const std::string* s) {
  return s != nullptr ? json(*s) : json(nullptr);
}

enum class Op : std::uint8_t { kEq, kNe, kLt, kGt, kLte, kGte, kIn, kNin };

std::optional<Op> op_of(std::string_view name) {
  if (name == "$eq") return Op::kEq;
  if (name == "$ne") return Op::kNe;
  if (name == "$lt") return Op::kLt;
  if (name == "$gt") return Op::kGt;
  if (name == "$lte") return Op::kLte;
  if (name == "$gte") return Op::kGte;
  if (name == "$in") return Op::kIn;
  if (name == "$nin") return Op::kNin;
  return std::nullopt;
}

// -1, 0 or 1 when a and b are of the same orderable kind (numbers, strings, booleans); nullopt
// otherwise.
std::optional<int> order(const json& a, const json& b) {
  const bool same_kind = (a.is_number() && b.is_number()) || (a.is_string() && b.is_string()) ||
                         (a.is_boolean() && b.is_boolean());
  if (!same_kind) return std::nullopt;
  if (a < b) return -1;
  if (b < a) return 1;
  return 0;
}

std::optional<int> order(const std::string* field, const json& operand) {
  if (field == nullptr || !operand.is_string()) return std::nullopt;
  const int c = field->compare(operand.get_ref<const std::string&>());
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

std::optional<int> order(const std::optional<Timestamp>& a, const std::optional<Timestamp>& b) {
  if (!a || !b) return std::nullopt;
  return *a < *b ? -1 : (*b < *a ? 1 : 0);
}

bool equal(const json& a, const json& b) {
  return a == b;
}

bool equal(const std::string* field, const json& operand) {
  if (field == nullptr) return operand.is_null();
  return operand.is_string() && *field == operand.get_ref<const std::string&>();
}

bool equal(const std::optional<Timestamp>& a, const std::optional<Timestamp>& b) {
  return a == b;
}

// Applies an ordering operator to the result of order().
bool ordered(Op op, std::optional<int> c) {
  if (!c) return false;
  switch (op) {
    case Op::kLt:
      return *c < 0;
    case Op::kGt:
      return *c > 0;
    case Op::kLte:
      return *c <= 0;
    case Op::kGte:
      return *c >= 0;
    default:
      return false;
  }
}

}  // namespace

namespace detail {

// One condition: field OP operand(s). Date fields hold their operands as times, the others as
// JSON; single-operand operators use the first element.
struct Condition {
  Field field;
  Op op;
  std::vector<json> values;
  std::vector<std::optional<Timestamp>> times;
};

struct CompiledQuery {
  std::vector<Condition> conditions;
};

}  // namespace detail

namespace {

template <class FieldValue, class Operand>
bool holds(Op op, const FieldValue& field, const std::vector<Operand>& operands) {
  switch (op) {
    case Op::kEq:
      return equal(field, operands.front());
    case Op::kNe:
      return !equal(field, operands.front());
    case Op::kIn:
      return std::any_of(operands.begin(), operands.end(),
                         [&](const Operand& o) { return equal(field, o); });
    case Op::kNin:
      return std::none_of(operands.begin(), operands.end(),
                          [&](const Operand& o) { return equal(field, o); });
    default:
      return ordered(op, order(field, operands.front()));
  }
}

bool holds(const detail::Condition& c, const TaskRecord& r) {
  switch (kind_of(c.field)) {
    case Kind::kText:
      return holds(c.op, text_field(r, c.field), c.values);
    case Kind::kDate:
      return holds(c.op, date_field(r, c.field), c.times);
    case Kind::kJson:
      return holds(c.op, json_field(r, c.field), c.values);
    case Kind::kBuffers:
      break;
  }
  return false;
}

Error bad_query(std::string reason) {
  return Error{Errc::kBadContent, "db query: " + reason};
}

// Adds the condition `key op operand` to `out`. Returns an error when the operand does not fit.
std::optional<Error> add_condition(std::vector<detail::Condition>& out, Field field,
                                   const std::string& key, Op op, std::string_view op_name,
                                   const json& operand) {
  detail::Condition c{field, op, {}, {}};
  if (op == Op::kIn || op == Op::kNin) {
    if (!operand.is_array()) {
      return bad_query("operator '" + std::string(op_name) + "' on key '" + key +
                       "' needs a list, not " + operand.dump());
    }
    c.values.assign(operand.begin(), operand.end());
  } else {
    c.values.push_back(operand);
  }
  if (kind_of(field) == Kind::kDate) {
    for (const json& v : c.values) {
      if (v.is_null()) {
        c.times.emplace_back(std::nullopt);
        continue;
      }
      std::optional<Timestamp> t;
      if (v.is_string()) t = proto::parse_timestamp(v.get_ref<const std::string&>());
      if (!t) {
        return bad_query("key '" + key + "' compares dates: " + v.dump() +
                         " is neither null nor an ISO 8601 time");
      }
      c.times.emplace_back(t);
    }
    c.values.clear();
  }
  out.push_back(std::move(c));
  return std::nullopt;
}

}  // namespace

LazyJson& LazyJson::operator=(nlohmann::json value) {
  text_.reset();
  value_ = std::move(value);
  unparsed_ = false;
  return *this;
}

bool LazyJson::looks_like_object(std::string_view text) {
  // JSON's whitespace.
  constexpr std::string_view kSpace = " \t\n\r";
  const std::size_t first = text.find_first_not_of(kSpace);
  const std::size_t last = text.find_last_not_of(kSpace);
  return first != std::string_view::npos && last > first && text[first] == '{' && text[last] == '}';
}

LazyJson LazyJson::from_text(Bytes text) {
  LazyJson out;
  const std::string_view chars(reinterpret_cast<const char*>(text.data()), text.size());
  if (looks_like_object(chars)) {
    out.text_ = std::move(text);
    out.unparsed_ = true;
  }
  return out;
}

const nlohmann::json& LazyJson::json() const {
  if (unparsed_) {
    unparsed_ = false;
    const auto* begin = reinterpret_cast<const char*>(text_->data());
    nlohmann::json value = nlohmann::json::parse(begin, begin + text_->size(), nullptr, false);
    if (value.is_object()) {
      value_ = std::move(value);
    } else {
      // Not valid JSON (text between braces that parses is an object): null, and text() must
      // no longer offer the text as the value.
      text_.reset();
    }
  }
  return value_;
}

std::optional<std::string_view> LazyJson::text() const {
  if (!text_) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(text_->data()), text_->size());
}

std::size_t TaskRecord::buffer_bytes() const {
  std::size_t n = 0;
  for (const Bytes& b : buffers)
    n += b.size();
  for (const Bytes& b : result_buffers)
    n += b.size();
  return n;
}

const std::vector<std::string>& task_record_keys() {
  static const std::vector<std::string> keys(kKeyNames.begin(), kKeyNames.end());
  return keys;
}

json record_to_json(const TaskRecord& record, const std::vector<std::string>& keys) {
  json out = json::object();
  for (std::size_t i = 0; i < kKeyNames.size(); ++i) {
    const auto field = static_cast<Field>(i);
    const std::string_view name = kKeyNames[i];
    const bool wanted = keys.empty() || field == Field::kMsgId ||
                        std::find(keys.begin(), keys.end(), name) != keys.end();
    if (!wanted) continue;
    switch (kind_of(field)) {
      case Kind::kText:
        out[std::string(name)] = text_json(text_field(record, field));
        break;
      case Kind::kDate:
        out[std::string(name)] = date_json(date_field(record, field));
        break;
      case Kind::kJson:
        out[std::string(name)] = json_field(record, field);
        break;
      case Kind::kBuffers:
        break;  // they travel as frames
    }
  }
  return out;
}

proto::Result<RecordQuery> RecordQuery::parse(const nlohmann::json& query) {
  if (!query.is_object()) {
    return bad_query(std::string("the query must be a JSON object, not ") + query.type_name());
  }
  auto compiled = std::make_shared<detail::CompiledQuery>();
  for (const auto& [key, value] : query.items()) {
    const std::optional<Field> field = field_of(key);
    if (!field) return bad_query("unknown key '" + key + "'");
    if (kind_of(*field) == Kind::kBuffers) {
      return bad_query("key '" + key + "' cannot be queried (buffers are not compared)");
    }
    // An object with a key starting with '$' is a set of operators; any other value (also an
    // object without such keys) is compared for equality.
    bool operators = false;
    if (value.is_object()) {
      for (const auto& item : value.items()) {
        if (!item.key().empty() && item.key().front() == '$') operators = true;
      }
    }
    if (!operators) {
      if (auto e = add_condition(compiled->conditions, *field, key, Op::kEq, "$eq", value)) {
        return *e;
      }
      continue;
    }
    for (const auto& [name, operand] : value.items()) {
      const std::optional<Op> op = op_of(name);
      if (!op) return bad_query("unknown operator '" + name + "' on key '" + key + "'");
      if (auto e = add_condition(compiled->conditions, *field, key, *op, name, operand)) {
        return *e;
      }
    }
  }
  RecordQuery q;
  q.query_ = query;
  q.compiled_ = std::move(compiled);
  return q;
}

bool RecordQuery::matches(const TaskRecord& record) const {
  if (!compiled_) return true;
  return std::all_of(compiled_->conditions.begin(), compiled_->conditions.end(),
                     [&](const detail::Condition& c) { return holds(c, record); });
}

std::unique_ptr<TaskStore> make_task_store(const TaskStoreOptions& options) {
  if (options.kind == "memory") {
    return detail::make_memory_store(options.record_limit, options.size_limit);
  }
  if (options.kind == "none") return detail::make_none_store();
  if (options.kind == "sqlite") {
    if (options.sqlite_path.empty()) {
      throw std::invalid_argument(
          "task store 'sqlite' needs a database file (sqlite_path is empty)");
    }
    return detail::make_sqlite_store(options.sqlite_path);
  }
  throw std::invalid_argument("unknown task store '" + options.kind +
                              "' (expected memory, sqlite or none)");
}

}  // namespace ipcpp::controller
