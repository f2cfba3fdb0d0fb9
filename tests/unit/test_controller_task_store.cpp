// Tests of controller/task_store.hpp: records as JSON, record queries, and the memory, none and
// sqlite task stores (culling, history, removal, durability, a full disk).
#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/stat.h>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <sqlite3.h>
#include <zmq.hpp>

#include "controller/task_store.hpp"
#include "proto/clock.hpp"
#include "proto/payload.hpp"
#include "support/files.hpp"
#include "support/small_disk.hpp"
#include "support/temp_dir.hpp"

using ipcpp::test::mode_of;
using ipcpp::test::read_text;

namespace {

// "<prefix><i>" (built by appending: g++ 12 -O3 warns falsely on "literal" + std::string&&).
std::string numbered(std::string_view prefix, long i) {
  std::string s(prefix);
  s += std::to_string(i);
  return s;
}

namespace fs = std::filesystem;
using ipcpp::Bytes;
using ipcpp::controller::LazyJson;
using ipcpp::controller::make_task_store;
using ipcpp::controller::record_to_json;
using ipcpp::controller::RecordQuery;
using ipcpp::controller::task_record_keys;
using ipcpp::controller::TaskRecord;
using ipcpp::controller::TaskStore;
using ipcpp::controller::TaskStoreOptions;
using ipcpp::proto::Errc;
using ipcpp::proto::Timestamp;
using ipcpp::test::TempDir;
using nlohmann::json;
using Ids = std::vector<std::string>;

Timestamp at(std::string_view iso) {
  const auto t = ipcpp::proto::parse_timestamp(iso);
  REQUIRE_MESSAGE(t.has_value(), iso);
  return *t;
}

Bytes bytes(std::string_view s) {
  return Bytes::copy_of(s.data(), s.size());
}

std::string text_of(const Bytes& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::vector<std::string> texts_of(const std::vector<Bytes>& buffers) {
  std::vector<std::string> out;
  for (const Bytes& b : buffers)
    out.push_back(text_of(b));
  return out;
}

// Every field, including the buffers, is the same.
void check_same(const TaskRecord& got, const TaskRecord& want) {
  CHECK(record_to_json(got) == record_to_json(want));
  CHECK(texts_of(got.buffers) == texts_of(want.buffers));
  CHECK(texts_of(got.result_buffers) == texts_of(want.result_buffers));
}

RecordQuery query(const json& q) {
  auto parsed = RecordQuery::parse(q);
  REQUIRE_MESSAGE(parsed.ok(), q.dump() << ": " << parsed.error().reason);
  return parsed.value();
}

Ids ids_of(const std::vector<TaskRecord>& records) {
  Ids out;
  for (const TaskRecord& r : records)
    out.push_back(r.msg_id);
  return out;
}

Ids find_ids(TaskStore& store, const json& q) {
  auto found = store.find(query(q));
  REQUIRE_MESSAGE(found.ok(), found.error().reason);
  return ids_of(found.value());
}

TaskRecord pending(const std::string& id) {
  TaskRecord r;
  r.msg_id = id;
  r.queue = "task";
  return r;
}

TaskRecord completed(const std::string& id, std::size_t buffer_size = 0) {
  TaskRecord r = pending(id);
  r.completed = at("2026-11-21T08:00:00Z");
  if (buffer_size > 0) r.result_buffers.push_back(bytes(std::string(buffer_size, 'r')));
  return r;
}

// A record with every field set.
TaskRecord full_record() {
  TaskRecord r;
  r.msg_id = "a1b2-full";
  r.header = {{"msg_id", "a1b2-full"}, {"msg_type", "apply_request"}, {"session", "c1"}};
  r.metadata = {{"targets", {1, 2}}, {"retries", 0}};
  r.content = json::object();
  r.buffers = {bytes(std::string_view("can\0ned", 7)), bytes(""), bytes(std::string(70000, 'x'))};
  r.submitted = at("2026-11-21T08:26:12.742857Z");
  r.client_uuid = "c1";
  r.engine_uuid = "e1";
  r.started = at("2026-11-21T08:26:12.800001Z");
  r.completed = at("2026-11-21T08:26:13Z");
  r.resubmitted = "a1b2-again";
  r.received = at("2026-11-21T08:26:13.000002Z");
  r.result_header = {{"msg_type", "apply_reply"}, {"date", "2026-11-21T08:26:13Z"}};
  r.result_metadata = {{"status", "ok"}, {"started", "2026-11-21T08:26:12.800001Z"}};
  r.result_content = {{"status", "ok"}, {"value", 1.5}, {"unicode", "\xc3\xa9t\xc3\xa9"}};
  r.result_buffers = {bytes(std::string_view("\0\x01\xff", 3))};
  r.queue = "task";
  r.execute_input = "x = 1";
  r.execute_result = {{"data", {{"text/plain", "42"}}}};
  r.error = {{"ename", "ValueError"}};
  r.stdout_text = "hello\n";
  r.stderr_text = "warning\n";
  return r;
}

// Five records, put in this order: a b c d e.
//   a  task, e1, submitted :00, completed :05, ok, stdout "hello\n", buffers
//   b  mux, e2, submitted :01, completed :07, error, stderr, execute_input "x = 1"
//   c  task, pending and unassigned, submitted :02
//   d  nothing but msg_id
//   e  task, e1, submitted :03.5, completed :04, ok, resubmitted as f, execute_input "y = 2"
std::vector<TaskRecord> sample_records() {
  TaskRecord a;
  a.msg_id = "a";
  a.header = {{"msg_id", "a"}, {"msg_type", "apply_request"}};
  a.metadata = {{"retries", 0}};
  a.buffers = {bytes("abc")};
  a.submitted = at("2026-11-21T08:00:00Z");
  a.client_uuid = "c1";
  a.engine_uuid = "e1";
  a.started = at("2026-11-21T08:00:01Z");
  a.completed = at("2026-11-21T08:00:05Z");
  a.received = at("2026-11-21T08:00:05.2Z");
  a.result_content = {{"status", "ok"}};
  a.result_buffers = {bytes(std::string_view("\0\x01", 2))};
  a.queue = "task";
  a.stdout_text = "hello\n";

  TaskRecord b;
  b.msg_id = "b";
  b.metadata = {{"retries", 2}};
  b.submitted = at("2026-11-21T08:00:01Z");
  b.client_uuid = "c1";
  b.engine_uuid = "e2";
  b.completed = at("2026-11-21T08:00:07Z");
  b.result_content = {{"status", "error"}};
  b.queue = "mux";
  b.execute_input = "x = 1";
  b.stderr_text = "oops";

  TaskRecord c;
  c.msg_id = "c";
  c.submitted = at("2026-11-21T08:00:02Z");
  c.client_uuid = "c2";
  c.queue = "task";

  TaskRecord d;
  d.msg_id = "d";

  TaskRecord e;
  e.msg_id = "e";
  e.submitted = at("2026-11-21T08:00:03.5Z");
  e.client_uuid = "c2";
  e.engine_uuid = "e1";
  e.completed = at("2026-11-21T08:00:04Z");
  e.resubmitted = "f";
  e.received = at("2026-11-21T08:00:04.1Z");
  e.result_content = {{"status", "ok"}};
  e.queue = "task";
  e.execute_input = "y = 2";
  return {a, b, c, d, e};
}

struct QueryCase {
  json query;
  Ids expected;
};

// Every operator on text, date and JSON fields, null, several keys, several operators, and the
// two DictDB bugs (see the comments).
std::vector<QueryCase> query_cases() {
  const Ids all{"a", "b", "c", "d", "e"};
  // More values than SQLite binds in one statement.
  json many = json::array();
  for (int i = 0; i < 40000; ++i)
    many.push_back(numbered("zz", i));
  many.push_back("c");
  many.push_back("a");
  many.push_back("e1");
  return {
      {json::object(), all},
      {{{"queue", "task"}}, {"a", "c", "e"}},
      // DictDB binds plain equality late: with two keys it matched nothing.
      {{{"queue", "task"}, {"msg_id", "a"}}, {"a"}},
      {{{"msg_id", "a"}, {"queue", "mux"}}, {}},
      {{{"client_uuid", "c1"}, {"queue", "task"}}, {"a"}},
      {{{"queue", {{"$eq", "mux"}}}}, {"b"}},
      {{{"queue", {{"$ne", "task"}}}}, {"b", "d"}},
      {{{"engine_uuid", nullptr}}, {"c", "d"}},
      {{{"engine_uuid", {{"$eq", nullptr}}}}, {"c", "d"}},
      {{{"engine_uuid", {{"$ne", nullptr}}}}, {"a", "b", "e"}},
      {{{"engine_uuid", {{"$in", {nullptr, "e2"}}}}}, {"b", "c", "d"}},
      {{{"engine_uuid", {{"$nin", {nullptr, "e2"}}}}}, {"a", "e"}},
      {{{"msg_id", {{"$in", {"a", "c", "zz"}}}}}, {"a", "c"}},
      {{{"msg_id", {{"$nin", {"a", "c"}}}}}, {"b", "d", "e"}},
      {{{"msg_id", {{"$eq", "b"}}}}, {"b"}},
      {{{"msg_id", {{"$eq", 5}}}}, {}},
      {{{"msg_id", {{"$in", {"e", "a", "a", nullptr, 5}}}}}, {"a", "e"}},
      {{{"msg_id", {{"$in", many}}}}, {"a", "c"}},
      {{{"engine_uuid", {{"$nin", many}}}}, {"b", "c", "d"}},
      {{{"engine_uuid", {{"$in", {nullptr}}}}}, {"c", "d"}},
      {{{"engine_uuid", {{"$nin", {nullptr}}}}}, {"a", "b", "e"}},
      {{{"engine_uuid", {{"$nin", {"e2"}}}}}, {"a", "c", "d", "e"}},
      {{{"msg_id", {{"$in", json::array()}}}}, {}},
      {{{"msg_id", {{"$nin", json::array()}}}}, all},
      // DictDB's $gt tested "less than".
      {{{"engine_uuid", {{"$gt", "e1"}}}}, {"b"}},
      {{{"engine_uuid", {{"$gte", "e1"}}}}, {"a", "b", "e"}},
      {{{"engine_uuid", {{"$lt", "e2"}}}}, {"a", "e"}},
      {{{"engine_uuid", {{"$lte", "e2"}}}}, {"a", "b", "e"}},
      {{{"engine_uuid", {{"$gt", "e1"}, {"$lt", "e2"}}}}, {}},
      // Ordering a string against a number or null is false; inequality is true.
      {{{"engine_uuid", {{"$gt", 5}}}}, {}},
      {{{"engine_uuid", {{"$lt", nullptr}}}}, {}},
      {{{"engine_uuid", {{"$ne", 5}}}}, all},
      {{{"engine_uuid", 5}}, {}},
      {{{"completed", {{"$ne", nullptr}}}}, {"a", "b", "e"}},
      {{{"completed", nullptr}}, {"c", "d"}},
      {{{"completed", {{"$gt", "2026-11-21T08:00:05Z"}}}}, {"b"}},
      {{{"completed", {{"$gte", "2026-11-21T08:00:05Z"}}}}, {"a", "b"}},
      {{{"completed", {{"$lt", "2026-11-21T10:00:05+02:00"}}}}, {"e"}},
      {{{"completed", {{"$lte", "2026-11-21T08:00:05.000Z"}}}}, {"a", "e"}},
      {{{"completed", "2026-11-21T08:00:05+00:00"}}, {"a"}},
      {{{"completed", {{"$eq", "2026-11-21 08:00:05"}}}}, {"a"}},
      {{{"completed", {{"$lt", nullptr}}}}, {}},
      {{{"completed", {{"$gte", nullptr}}}}, {}},
      {{{"submitted", {{"$gte", "2026-11-21T08:00:01Z"}, {"$lt", "2026-11-21T08:00:03.5Z"}}}},
       {"b", "c"}},
      {{{"submitted", {{"$gt", "2026-11-21T08:00:03.4999Z"}}}}, {"e"}},
      {{{"submitted", {{"$in", {"2026-11-21T08:00:01.000000Z", nullptr}}}}}, {"b", "d"}},
      {{{"submitted", {{"$nin", {"2026-11-21T09:00:01+01:00", nullptr}}}}}, {"a", "c", "e"}},
      {{{"received", {{"$ne", nullptr}}}}, {"a", "e"}},
      {{{"stdout", ""}}, {"b", "c", "d", "e"}},
      {{{"stdout", nullptr}}, {}},
      {{{"stdout", {{"$gt", "a"}}}}, {"a"}},
      {{{"stderr", {{"$ne", ""}}}}, {"b"}},
      {{{"execute_input", {{"$gte", "y"}}}}, {"e"}},
      {{{"resubmitted", "f"}}, {"e"}},
      // JSON fields compare as JSON values.
      {{{"result_content", {{"status", "ok"}}}}, {"a", "e"}},
      {{{"result_content", {{"$ne", nullptr}}}}, {"a", "b", "e"}},
      {{{"result_content", {{"$in", {{{"status", "error"}}}}}}}, {"b"}},
      {{{"result_content", {{"$gt", "x"}}}}, {}},
      {{{"metadata", {{"retries", 2}}}}, {"b"}},
      {{{"metadata", {{"retries", 2.0}}}}, {"b"}},
      {{{"metadata", {{"retries", {{"$gt", 1}}}}}}, {}},
      {{{"header", {{"msg_id", "a"}, {"msg_type", "apply_request"}}}}, {"a"}},
      {{{"header", {{"msg_type", "apply_request"}}}}, {}},
      {{{"error", nullptr}}, all},
      {{{"queue", "task"},
        {"completed", {{"$ne", nullptr}}},
        {"result_content", {{"status", "ok"}}}},
       {"a", "e"}},
      {{{"queue", "task"}, {"result_content", {{"$ne", nullptr}}}, {"engine_uuid", {{"$gt", 1}}}},
       {}},
  };
}

// A store of the kind, in `dir` for sqlite.
std::unique_ptr<TaskStore> open_store(const std::string& kind, const TempDir& dir,
                                      TaskStoreOptions options = {}) {
  options.kind = kind;
  options.sqlite_path = dir.path() / "tasks.db";
  return make_task_store(options);
}

}  // namespace

TEST_CASE("task_record_keys lists the task store's fields as the wire spells them, in order") {
  CHECK(task_record_keys() ==
        Ids{"msg_id",         "header",      "metadata",      "content",         "buffers",
            "submitted",      "client_uuid", "engine_uuid",   "started",         "completed",
            "resubmitted",    "received",    "result_header", "result_metadata", "result_content",
            "result_buffers", "queue",       "execute_input", "execute_result",  "error",
            "stdout",         "stderr"});
}

TEST_CASE("a task store record's buffer_bytes counts its buffers and result buffers") {
  const TaskRecord r = full_record();
  CHECK(r.buffer_bytes() == 7 + 0 + 70000 + 3);
  CHECK(TaskRecord{}.buffer_bytes() == 0);
}

namespace {

// `text` as a received frame's bytes, shared as the hub shares them.
Bytes frame_bytes(std::string_view text) {
  return ipcpp::proto::to_bytes(zmq::message_t(text.data(), text.size()));
}

const char* chars_of(const Bytes& b) {
  return reinterpret_cast<const char*>(b.data());
}

}  // namespace

TEST_CASE("a lazy JSON field keeps the text it was given and parses it when first read") {
  const std::string text = R"({ "msg_id" : "m1", "n": [1, {"x": null}], "s": "caf\u00e9" })";
  const Bytes frame = frame_bytes(text);
  const LazyJson field = LazyJson::from_text(frame);
  CHECK_FALSE(field.is_parsed());
  REQUIRE(field.text().has_value());
  CHECK(*field.text() == text);
  CHECK(field.text()->data() == chars_of(frame));  // the frame's bytes, not a copy

  SUBCASE("read, it is parsed once and still offers its text") {
    const json want = {{"msg_id", "m1"}, {"n", {1, {{"x", nullptr}}}}, {"s", "caf\xc3\xa9"}};
    CHECK(field.json() == want);
    CHECK(field.is_parsed());
    CHECK(&field.json() == &field.json());
    REQUIRE(field.text().has_value());
    CHECK(*field.text() == text);
  }
  SUBCASE("copies share the text and are parsed on their own") {
    const LazyJson copy = field;
    REQUIRE(copy.text().has_value());
    CHECK(copy.text()->data() == chars_of(frame));
    CHECK(copy.json()["msg_id"] == "m1");
    CHECK(copy.is_parsed());
    CHECK_FALSE(field.is_parsed());
  }
  SUBCASE("spaces around the object are kept as received") {
    const LazyJson spaced = LazyJson::from_text(frame_bytes(" \n{\"a\": 1}\t"));
    REQUIRE(spaced.text().has_value());
    CHECK(*spaced.text() == " \n{\"a\": 1}\t");
    CHECK(spaced.json() == json{{"a", 1}});
  }
}

TEST_CASE("a lazy JSON field whose text is not a valid JSON object reads as null") {
  SUBCASE("text not shaped like an object is dropped at once") {
    for (std::string_view bad : {"", "  ", "[1, 2]", "\"text\"", "null", "42", "{", "}", "{}x"}) {
      CAPTURE(bad);
      const LazyJson field = LazyJson::from_text(bytes(bad));
      CHECK(field.is_parsed());
      CHECK_FALSE(field.text().has_value());
      CHECK(field.json().is_null());
    }
  }
  SUBCASE("invalid text between braces is kept until read, then null") {
    for (std::string_view bad :
         {"{\"a\": }", "{} {}", "{\"a\": 1,}", "{\"a\" 1}", "{\"s\": \"\xff\"}", "{[}"}) {
      CAPTURE(bad);
      const LazyJson field = LazyJson::from_text(bytes(bad));
      CHECK_FALSE(field.is_parsed());
      CHECK(field.text().has_value());
      CHECK(field.json().is_null());
      CHECK(field.is_parsed());
      CHECK_FALSE(field.text().has_value());  // no longer offered as the value's text
    }
  }
}

TEST_CASE("a lazy JSON field is null by default and assigned from JSON trees and braced lists") {
  TaskRecord r;
  for (const LazyJson* field : {&r.header, &r.metadata, &r.content, &r.result_header,
                                &r.result_metadata, &r.result_content}) {
    CHECK(field->json().is_null());
    CHECK_FALSE(field->text().has_value());
    CHECK(field->is_parsed());
  }
  r.header = LazyJson::from_text(bytes(R"({"msg_id": "old"})"));
  r.header = json{{"msg_id", "new"}};
  CHECK_FALSE(r.header.text().has_value());
  CHECK(r.header.json() == json{{"msg_id", "new"}});
  r.content = {{"status", "ok"}};
  CHECK(r.content.json() == json{{"status", "ok"}});
  r.metadata = {{"a", 1}, {"b", {1, 2}}};
  CHECK(r.metadata.json() == json{{"a", 1}, {"b", {1, 2}}});
  r.result_content = json::array({1, 2});  // a tree is kept as given, object or not
  CHECK(r.result_content.json() == json::array({1, 2}));
  r.result_content = nullptr;
  CHECK(r.result_content.json().is_null());
  const json tree = {{"k", "v"}};
  const LazyJson from_tree = tree;
  CHECK(from_tree.json() == tree);

  // TaskRecord stays copyable and movable, the text shared by the copies.
  r.result_header = LazyJson::from_text(frame_bytes(R"({"msg_type": "apply_reply"})"));
  const TaskRecord copy = r;
  REQUIRE(copy.result_header.text().has_value());
  CHECK(copy.result_header.text()->data() == r.result_header.text()->data());
  TaskRecord moved = std::move(r);
  CHECK(moved.result_header.json()["msg_type"] == "apply_reply");
  CHECK(moved.header.json() == json{{"msg_id", "new"}});
}

TEST_CASE("task store records with unparsed JSON fields are queried, kept and written as text") {
  // What the hub records: the frames' text, as the peers wrote it.
  const std::string header_text = R"({"msg_id": "lazy", "msg_type":"apply_request",  "x": 1})";
  const std::string result_text = R"({"status" : "ok", "value": "caf\u00e9"})";
  const std::string metadata_text = R"({"targets": [1,})";  // not JSON: reads as null
  auto lazy_record = [&] {
    TaskRecord r = completed("lazy");
    r.header = LazyJson::from_text(frame_bytes(header_text));
    r.metadata = LazyJson::from_text(frame_bytes(metadata_text));
    r.result_content = LazyJson::from_text(frame_bytes(result_text));
    return r;
  };
  const TaskRecord r = lazy_record();
  const json j = record_to_json(r, {"header", "metadata", "result_content"});
  CHECK(j["header"] == json{{"msg_id", "lazy"}, {"msg_type", "apply_request"}, {"x", 1}});
  CHECK(j["metadata"].is_null());
  CHECK(j["result_content"] == json{{"status", "ok"}, {"value", "caf\xc3\xa9"}});
  CHECK(query({{"result_content", {{"status", "ok"}, {"value", "caf\xc3\xa9"}}}}).matches(r));
  CHECK(query({{"metadata", nullptr}}).matches(lazy_record()));

  SUBCASE("the memory store keeps them unparsed, also when it culls") {
    auto store = make_task_store(TaskStoreOptions{.kind = "memory", .record_limit = 2});
    REQUIRE(store->put(lazy_record()).ok());
    const auto got = store->get("lazy");
    REQUIRE(got.has_value());
    CHECK_FALSE(got->header.is_parsed());
    CHECK_FALSE(got->metadata.is_parsed());
    CHECK_FALSE(got->result_content.is_parsed());
    check_same(*got, r);
    REQUIRE(store->put(completed("c1")).ok());
    REQUIRE(store->put(completed("c2")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"c1", "c2"});
  }
  SUBCASE("the sqlite store writes their text as it came, and reads it back") {
    TempDir dir;
    const fs::path path = dir.path() / "tasks.db";
    {
      auto store = make_task_store(TaskStoreOptions{.kind = "sqlite", .sqlite_path = path});
      REQUIRE(store->put(lazy_record()).ok());
    }
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db,
                               "SELECT header, metadata, result_content, result_header FROM "
                               "ipcpp_tasks WHERE msg_id = 'lazy'",
                               -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    auto column = [st](int i) {
      return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, i)),
                         static_cast<std::size_t>(sqlite3_column_bytes(st, i)));
    };
    CHECK(column(0) == header_text);
    CHECK(column(1) == metadata_text);
    CHECK(column(2) == result_text);
    CHECK(sqlite3_column_type(st, 3) == SQLITE_NULL);
    sqlite3_finalize(st);
    sqlite3_close(db);

    auto store = make_task_store(TaskStoreOptions{.kind = "sqlite", .sqlite_path = path});
    const auto got = store->get("lazy");
    REQUIRE(got.has_value());
    check_same(*got, r);
  }
}

TEST_CASE("record_to_json gives every task store field but the buffers, dates as ISO text") {
  const json j = record_to_json(full_record());
  CHECK(j.size() == 20);
  CHECK_FALSE(j.contains("buffers"));
  CHECK_FALSE(j.contains("result_buffers"));
  CHECK(j["msg_id"] == "a1b2-full");
  CHECK(j["header"]["msg_type"] == "apply_request");
  CHECK(j["content"] == json::object());
  CHECK(j["submitted"] == "2026-11-21T08:26:12.742857Z");
  CHECK(j["started"] == "2026-11-21T08:26:12.800001Z");
  CHECK(j["completed"] == "2026-11-21T08:26:13Z");
  CHECK(j["received"] == "2026-11-21T08:26:13.000002Z");
  CHECK(j["client_uuid"] == "c1");
  CHECK(j["engine_uuid"] == "e1");
  CHECK(j["resubmitted"] == "a1b2-again");
  CHECK(j["queue"] == "task");
  CHECK(j["execute_input"] == "x = 1");
  CHECK(j["execute_result"] == json{{"data", {{"text/plain", "42"}}}});
  CHECK(j["error"] == json{{"ename", "ValueError"}});
  CHECK(j["stdout"] == "hello\n");
  CHECK(j["stderr"] == "warning\n");

  SUBCASE("an empty record has null for every unset field and empty output") {
    TaskRecord r;
    r.msg_id = "m";
    const json e = record_to_json(r);
    CHECK(e.size() == 20);
    for (const auto& [key, value] : e.items()) {
      CAPTURE(key);
      if (key == "msg_id") {
        CHECK(value == "m");
      } else if (key == "stdout" || key == "stderr") {
        CHECK(value == "");
      } else {
        CHECK(value.is_null());
      }
    }
  }
  SUBCASE("asked for some keys, it gives those and msg_id") {
    CHECK(record_to_json(full_record(), {"completed", "stdout", "buffers"}) ==
          json{{"msg_id", "a1b2-full"},
               {"completed", "2026-11-21T08:26:13Z"},
               {"stdout", "hello\n"}});
    CHECK(record_to_json(full_record(), {"msg_id"}) == json{{"msg_id", "a1b2-full"}});
  }
}

TEST_CASE("task store queries not of the Mongo form are refused naming the key or operator") {
  auto reason = [](const json& q) {
    auto parsed = RecordQuery::parse(q);
    REQUIRE_FALSE(parsed.ok());
    CHECK(parsed.error().code == Errc::kBadContent);
    return parsed.error().reason;
  };
  CHECK(reason(json::array()) == "db query: the query must be a JSON object, not array");
  CHECK(reason({{"bogus", 1}}) == "db query: unknown key 'bogus'");
  CHECK(reason({{"completed", {{"$foo", 1}}}}) ==
        "db query: unknown operator '$foo' on key 'completed'");
  CHECK(reason({{"completed", {{"$ne", nullptr}, {"x", 1}}}}) ==
        "db query: unknown operator 'x' on key 'completed'");
  CHECK(reason({{"msg_id", {{"$in", "a"}}}}) ==
        "db query: operator '$in' on key 'msg_id' needs a list, not \"a\"");
  CHECK(reason({{"msg_id", {{"$nin", nullptr}}}}) ==
        "db query: operator '$nin' on key 'msg_id' needs a list, not null");
  CHECK(reason({{"buffers", nullptr}}) ==
        "db query: key 'buffers' cannot be queried (buffers are not compared)");
  CHECK(reason({{"completed", {{"$gt", "yesterday"}}}}) ==
        "db query: key 'completed' compares dates: \"yesterday\" is neither null nor an ISO 8601 "
        "time");
  CHECK(reason({{"submitted", {{"$in", {"2026-11-21T08:00:00Z", 5}}}}}) ==
        "db query: key 'submitted' compares dates: 5 is neither null nor an ISO 8601 time");
}

TEST_CASE("a task store query keeps its JSON, and the empty query matches every record") {
  const json q = {{"queue", "task"}};
  CHECK(query(q).json() == q);
  CHECK(RecordQuery{}.json() == json::object());
  CHECK(RecordQuery{}.matches(TaskRecord{}));
  CHECK(query(json::object()).matches(TaskRecord{}));
}

TEST_CASE("task store queries select the same records in the memory and the sqlite store") {
  TempDir dir;
  std::string kind;
  SUBCASE("memory") {
    kind = "memory";
  }
  SUBCASE("sqlite") {
    kind = "sqlite";
  }
  CAPTURE(kind);
  auto store = open_store(kind, dir);
  for (const TaskRecord& r : sample_records())
    REQUIRE(store->put(r).ok());
  // Half of the cases before a flush (an open sqlite transaction), half after.
  const std::vector<QueryCase> cases = query_cases();
  std::size_t n = 0;
  for (const QueryCase& c : cases) {
    CAPTURE(c.query.dump());
    CHECK(find_ids(*store, c.query) == c.expected);
    if (++n == cases.size() / 2) REQUIRE(store->flush().ok());
  }
  // RecordQuery::matches agrees with both.
  for (const QueryCase& c : cases) {
    CAPTURE(c.query.dump());
    const RecordQuery q = query(c.query);
    Ids matched;
    for (const TaskRecord& r : sample_records()) {
      if (q.matches(r)) matched.push_back(r.msg_id);
    }
    CHECK(matched == c.expected);
  }
}

TEST_CASE("remove_matching in the memory and the sqlite store removes what find finds") {
  for (const QueryCase& c : query_cases()) {
    CAPTURE(c.query.dump());
    for (const char* kind : {"memory", "sqlite"}) {
      CAPTURE(kind);
      TempDir dir;
      auto store = open_store(kind, dir);
      for (const TaskRecord& r : sample_records())
        REQUIRE(store->put(r).ok());
      auto removed = store->remove_matching(query(c.query));
      REQUIRE(removed.ok());
      CHECK(*removed == c.expected.size());
      for (const TaskRecord& r : sample_records()) {
        const bool was_removed =
            std::find(c.expected.begin(), c.expected.end(), r.msg_id) != c.expected.end();
        CHECK(store->get(r.msg_id).has_value() == !was_removed);
      }
    }
  }
}

namespace {

// The body of the next test case for one kind of store (its subcases nest in the kind's).
void check_keeps_replaces_removes(const std::string& kind) {
  TempDir dir;
  CAPTURE(kind);
  auto store = open_store(kind, dir);
  CHECK(store->name() == kind);
  CHECK(store->keeps_records());
  CHECK_FALSE(store->get("a").has_value());

  for (const TaskRecord& r : sample_records())
    REQUIRE(store->put(r).ok());
  for (const TaskRecord& r : sample_records()) {
    const auto got = store->get(r.msg_id);
    REQUIRE(got.has_value());
    check_same(*got, r);
  }

  SUBCASE("a record put again replaces the old one and keeps its place") {
    TaskRecord c = sample_records()[2];
    c.engine_uuid = "e3";
    c.completed = at("2026-11-21T08:00:09Z");
    c.result_buffers = {bytes("new")};
    REQUIRE(store->put(c).ok());
    check_same(store->get("c").value(), c);
    CHECK(find_ids(*store, json::object()) == Ids{"a", "b", "c", "d", "e"});
    CHECK(find_ids(*store, {{"engine_uuid", "e3"}}) == Ids{"c"});
  }
  SUBCASE("remove drops the records named and ignores missing ones") {
    REQUIRE(store->remove({"b", "zz", "d"}).ok());
    CHECK_FALSE(store->get("b").has_value());
    CHECK_FALSE(store->get("d").has_value());
    CHECK(find_ids(*store, json::object()) == Ids{"a", "c", "e"});
    CHECK(store->history() == Ids{"a", "c", "e"});
    REQUIRE(store->remove({}).ok());
  }
  SUBCASE("remove_matching completed != null removes the completed records only") {
    auto removed = store->remove_matching(query({{"completed", {{"$ne", nullptr}}}}));
    REQUIRE(removed.ok());
    CHECK(*removed == 3);
    CHECK(find_ids(*store, json::object()) == Ids{"c", "d"});
    removed = store->remove_matching(query({{"completed", {{"$ne", nullptr}}}}));
    REQUIRE(removed.ok());
    CHECK(*removed == 0);
  }
  SUBCASE("remove_matching with a JSON condition removes the records that match it") {
    auto removed = store->remove_matching(query({{"result_content", {{"status", "ok"}}}}));
    REQUIRE(removed.ok());
    CHECK(*removed == 2);
    CHECK(find_ids(*store, json::object()) == Ids{"b", "c", "d"});
  }
  CHECK(store->flush().ok());
}

}  // namespace

TEST_CASE("a task store keeps records by msg_id, replaces them in place, removes them") {
  SUBCASE("memory") {
    check_keeps_replaces_removes("memory");
  }
  SUBCASE("sqlite") {
    check_keeps_replaces_removes("sqlite");
  }
}

TEST_CASE("a task store's history lists the submitted records by submitted time, then msg_id") {
  TempDir dir;
  std::string kind;
  SUBCASE("memory") {
    kind = "memory";
  }
  SUBCASE("sqlite") {
    kind = "sqlite";
  }
  CAPTURE(kind);
  auto store = open_store(kind, dir);
  CHECK(store->history().empty());
  auto submitted = [](const std::string& id, std::string_view when) {
    TaskRecord r = pending(id);
    r.submitted = at(when);
    return r;
  };
  REQUIRE(store->put(submitted("z", "2026-11-21T08:00:00Z")).ok());
  REQUIRE(store->put(submitted("y", "2026-11-21T08:00:02Z")).ok());
  REQUIRE(store->put(pending("never-submitted")).ok());
  REQUIRE(store->put(submitted("x", "2026-11-21T08:00:01Z")).ok());
  REQUIRE(store->put(submitted("w", "2026-11-21T08:00:01Z")).ok());
  REQUIRE(store->put(submitted("v", "2026-11-21T08:00:00.000001Z")).ok());
  CHECK(store->history() == Ids{"z", "v", "w", "x", "y"});
  // A record put again with another time moves.
  REQUIRE(store->put(submitted("z", "2026-11-21T09:00:00Z")).ok());
  CHECK(store->history() == Ids{"v", "w", "x", "y", "z"});
  REQUIRE(store->put(pending("y")).ok());
  CHECK(store->history() == Ids{"v", "w", "x", "z"});
  REQUIRE(store->flush().ok());
  CHECK(store->history() == Ids{"v", "w", "x", "z"});
}

TEST_CASE("the memory store culls the oldest completed records past its record limit") {
  auto store = make_task_store(TaskStoreOptions{.kind = "memory", .record_limit = 3});
  REQUIRE(store->put(pending("p1")).ok());
  REQUIRE(store->put(completed("c1")).ok());
  REQUIRE(store->put(completed("c2")).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p1", "c1", "c2"});
  REQUIRE(store->put(pending("p2")).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p1", "c2", "p2"});
  CHECK_FALSE(store->get("c1").has_value());
  REQUIRE(store->put(completed("c3")).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p1", "p2", "c3"});

  SUBCASE("pending records are never culled, even past the limit") {
    REQUIRE(store->put(pending("p3")).ok());
    REQUIRE(store->put(pending("p4")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"p1", "p2", "p3", "p4"});
    // Once they complete, the oldest go first, by the order they were first put.
    REQUIRE(store->put(completed("p2")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"p1", "p3", "p4"});
    REQUIRE(store->put(completed("p4")).ok());
    REQUIRE(store->put(completed("p1")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"p1", "p3", "p4"});
    REQUIRE(store->put(pending("p5")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"p3", "p4", "p5"});
  }
  SUBCASE("a pending record that completes is culled by its first-put place") {
    REQUIRE(store->put(completed("p1")).ok());  // now the oldest completed
    REQUIRE(store->put(completed("c4")).ok());
    CHECK(find_ids(*store, json::object()) == Ids{"p2", "c3", "c4"});
  }
}

TEST_CASE("the memory store culls the oldest completed records past its byte limit") {
  auto store = make_task_store(TaskStoreOptions{.kind = "memory", .size_limit = 100});
  TaskRecord p = pending("p");
  p.buffers = {bytes(std::string(30, 'b'))};
  REQUIRE(store->put(p).ok());
  REQUIRE(store->put(completed("c1", 30)).ok());
  REQUIRE(store->put(completed("c2", 30)).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p", "c1", "c2"});
  REQUIRE(store->put(completed("c3", 30)).ok());  // 120 bytes: c1 goes
  CHECK(find_ids(*store, json::object()) == Ids{"p", "c2", "c3"});
  REQUIRE(store->put(completed("big", 95)).ok());  // 185: c2, c3, then big itself go
  CHECK(find_ids(*store, json::object()) == Ids{"p"});
  // A pending record over the limit stays; replacing a record counts its new size only.
  TaskRecord huge = pending("huge");
  huge.buffers = {bytes(std::string(500, 'h'))};
  REQUIRE(store->put(huge).ok());
  REQUIRE(store->put(completed("c4", 1)).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p", "huge"});
  REQUIRE(store->put(pending("huge")).ok());
  REQUIRE(store->put(completed("c5", 60)).ok());
  CHECK(find_ids(*store, json::object()) == Ids{"p", "huge", "c5"});
}

TEST_CASE("the memory store keeps puts cheap with many pending records before the completed") {
  // Were culling to scan from the oldest record, this would take minutes.
  auto store = make_task_store(TaskStoreOptions{.kind = "memory", .record_limit = 20100});
  for (int i = 0; i < 20000; ++i)
    REQUIRE(store->put(pending(numbered("p", i))).ok());
  for (int i = 0; i < 30000; ++i)
    REQUIRE(store->put(completed(numbered("c", i))).ok());
  CHECK(store->get("p0").has_value());
  CHECK(store->get("p19999").has_value());
  CHECK_FALSE(store->get("c29899").has_value());
  CHECK(store->get("c29900").has_value());
  auto found = store->find(query({{"completed", {{"$ne", nullptr}}}}));
  REQUIRE(found.ok());
  CHECK(found->size() == 100);
}

TEST_CASE("the none store keeps nothing and says so") {
  auto store = make_task_store(TaskStoreOptions{.kind = "none"});
  CHECK(std::string(store->name()) == "none");
  CHECK_FALSE(store->keeps_records());
  CHECK(store->put(full_record()).ok());
  CHECK_FALSE(store->get("a1b2-full").has_value());
  auto found = store->find(query({{"msg_id", "a1b2-full"}}));
  REQUIRE_FALSE(found.ok());
  CHECK(found.error().code == Errc::kUnsupported);
  CHECK(found.error().reason ==
        "the task store is 'none': no records are kept (start the controller with --db memory or "
        "--db sqlite)");
  CHECK(store->history().empty());
  CHECK(store->remove({"a1b2-full"}).ok());
  auto removed = store->remove_matching(RecordQuery{});
  REQUIRE(removed.ok());
  CHECK(*removed == 0);
  CHECK(store->flush().ok());
}

TEST_CASE("make_task_store refuses an unknown kind and an sqlite store without a file") {
  CHECK_THROWS_WITH_AS(make_task_store(TaskStoreOptions{.kind = "mongodb"}),
                       "unknown task store 'mongodb' (expected memory, sqlite or none)",
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(make_task_store(TaskStoreOptions{.kind = "sqlite"}),
                       "task store 'sqlite' needs a database file (sqlite_path is empty)",
                       std::invalid_argument);
}

TEST_CASE("the sqlite store cannot be opened where the file cannot be") {
  TempDir dir;
  SUBCASE("under a regular file") {
    const fs::path file = dir.path() / "file";
    std::ofstream(file) << "x";
    const fs::path path = file / "tasks.db";
    CHECK_THROWS_WITH_AS(make_task_store(TaskStoreOptions{.kind = "sqlite", .sqlite_path = path}),
                         ("cannot open task store " + path.string() + ": Not a directory").c_str(),
                         std::runtime_error);
  }
  SUBCASE("in a file that is not a database") {
    const fs::path path = dir.path() / "tasks.db";
    std::ofstream(path) << std::string(8192, 'j');
    CHECK_THROWS_WITH_AS(
        make_task_store(TaskStoreOptions{.kind = "sqlite", .sqlite_path = path}),
        ("cannot open task store " + path.string() + ": file is not a database").c_str(),
        std::runtime_error);
  }
}

TEST_CASE("the sqlite store creates its file mode 0600 and its directories, and writes a WAL") {
  TempDir dir;
  const fs::path path = dir.path() / "profile_x" / "db" / "tasks.db";
  {
    auto store = make_task_store(TaskStoreOptions{.kind = "sqlite", .sqlite_path = path});
    CHECK(std::string(store->name()) == "sqlite");
    CHECK(mode_of(path) == 0600);
    CHECK(mode_of(path.parent_path()) == 0700);
    REQUIRE(store->put(full_record()).ok());
    REQUIRE(store->flush().ok());
    CHECK(fs::exists(path.string() + "-wal"));
    CHECK(mode_of(path.string() + "-wal") == 0600);
  }
  // Closed: the log was checkpointed into the file, which holds the table.
  CHECK_FALSE(fs::exists(path.string() + "-wal"));
  const std::string content = read_text(path);
  CHECK(content.rfind(std::string("SQLite format 3\0", 16), 0) == 0);
  CHECK(content.find("CREATE TABLE ipcpp_tasks (\"msg_id\" TEXT PRIMARY KEY") != std::string::npos);
}

TEST_CASE("the sqlite store returns what it was given, before a flush and after a reopen") {
  TempDir dir;
  const TaskStoreOptions options{.kind = "sqlite", .sqlite_path = dir.path() / "tasks.db"};
  const TaskRecord full = full_record();
  TaskRecord bare;
  bare.msg_id = "bare";
  {
    auto store = make_task_store(options);
    REQUIRE(store->put(full).ok());
    REQUIRE(store->put(bare).ok());
    // Not flushed yet: the same connection sees it.
    check_same(store->get(full.msg_id).value(), full);
    CHECK(find_ids(*store, {{"queue", "task"}}) == Ids{"a1b2-full"});
    CHECK(store->history() == Ids{"a1b2-full"});
    // Destroyed without a flush: the destructor flushes.
  }
  {
    auto store = make_task_store(options);
    const auto got = store->get(full.msg_id);
    REQUIRE(got.has_value());
    check_same(*got, full);
    CHECK(text_of(got->buffers[0]) == std::string("can\0ned", 7));
    CHECK(got->buffers[1].size() == 0);
    CHECK(got->buffers[2].size() == 70000);
    check_same(store->get("bare").value(), bare);
    CHECK(store->get("bare")->buffers.empty());
    CHECK(find_ids(*store, json::object()) == Ids{"a1b2-full", "bare"});
    // New records go after the old ones.
    REQUIRE(store->put(pending("later")).ok());
    REQUIRE(store->put(full).ok());
    REQUIRE(store->flush().ok());
    CHECK(find_ids(*store, json::object()) == Ids{"a1b2-full", "bare", "later"});
    REQUIRE(store->remove({"bare"}).ok());
  }
  {
    auto store = make_task_store(options);
    CHECK(find_ids(*store, json::object()) == Ids{"a1b2-full", "later"});
  }
}

TEST_CASE(
    "the sqlite store on a full disk reports kIo naming the file and keeps what was flushed") {
  // A real full file system: a 256 KiB tmpfs.
  ipcpp::test::SmallDisk small_disk("256k");
  if (!small_disk.mounted()) {
    MESSAGE("skipped: " << small_disk.why());
    return;
  }
  const fs::path& disk = small_disk.path();

  // Room to free later.
  const fs::path filler = disk / "filler";
  std::ofstream(filler) << std::string(48 * 1024, 'f');
  REQUIRE(fs::file_size(filler) == 48 * 1024);

  const fs::path path = disk / "tasks.db";
  const TaskStoreOptions options{.kind = "sqlite", .sqlite_path = path};
  auto big = [](int i) {
    TaskRecord r = completed(numbered("r", i));
    std::string data(20000, static_cast<char>('a' + i % 26));
    data[0] = '\0';
    r.result_buffers = {bytes(data), bytes(std::to_string(i))};
    return r;
  };
  {
    auto store = make_task_store(options);
    std::vector<int> flushed;
    std::optional<ipcpp::proto::Error> error;
    for (int i = 0; i < 100 && !error; ++i) {
      if (auto s = store->put(big(i)); !s) {
        error = s.error();
      } else if (auto f = store->flush(); !f) {
        error = f.error();
      } else {
        flushed.push_back(i);
      }
    }
    REQUIRE_MESSAGE(error.has_value(), "100 records of 20 KB fit in 256 KiB");
    CHECK(error->code == Errc::kIo);
    CHECK(error->reason == "task store " + path.string() + ": database or disk is full");
    REQUIRE_FALSE(flushed.empty());
    MESSAGE(flushed.size() << " records flushed before the disk was full");
    for (int i : flushed)
      check_same(store->get(numbered("r", i)).value(), big(i));
    CHECK(find_ids(*store, json::object()).size() >= flushed.size());

    // With room again, the store works: the disk was the only reason.
    fs::remove(filler);
    REQUIRE(store->flush().ok());
    const int failed = flushed.back() + 1;
    if (auto r = store->get(numbered("r", failed))) check_same(*r, big(failed));
    REQUIRE(store->put(big(1000)).ok());
    REQUIRE(store->flush().ok());
    check_same(store->get("r1000").value(), big(1000));
  }
  // And the file reopens with what was flushed.
  auto store = make_task_store(options);
  check_same(store->get("r0").value(), big(0));
  check_same(store->get("r1000").value(), big(1000));
}
