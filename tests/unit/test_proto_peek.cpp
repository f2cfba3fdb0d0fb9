// proto/peek.hpp: one string field of a JSON object, read without parsing the object.
#include <array>
#include <string>

#include <doctest/doctest.h>

#include "proto/peek.hpp"

using ipcpp::proto::peek_string;
using Status = ipcpp::proto::Peeked::Status;

TEST_CASE("peek_string finds a top-level string field of a header") {
  const std::string header =
      R"({"msg_id":"abc_1_2","msg_type":"status","username":"u","session":"abc",)"
      R"("date":"2026-11-21T10:00:00.000000Z","version":"5.3"})";
  auto type = peek_string(header, "msg_type");
  CHECK(type.status == Status::kFound);
  CHECK(type.value == "status");
  CHECK(peek_string(header, "msg_id").value == "abc_1_2");
  CHECK(peek_string(header, "version").value == "5.3");
  CHECK(peek_string(header, "parent").status == Status::kAbsent);
}

TEST_CASE("peek_string skips nested values, numbers and literals, and reads spaced JSON") {
  const std::string text =
      R"( { "a" : { "msg_type" : "nested", "x": [1, {"y": "}"}, "]"] } , "n": -1.5e3, )"
      "\n"
      R"( "t": true, "z": null, "list": ["msg_type"], "msg_type" : "execute_result" } )";
  auto type = peek_string(text, "msg_type");
  CHECK(type.status == Status::kFound);
  CHECK(type.value == "execute_result");
  CHECK(peek_string(text, "missing").status == Status::kAbsent);
  CHECK(peek_string("{}", "msg_type").status == Status::kAbsent);
}

TEST_CASE("peek_string answers kUnknown when only a parse can tell") {
  // A value with escapes, a value that is not a string, malformed or non-object text.
  CHECK(peek_string(R"({"msg_type":"sta\"tus"})", "msg_type").status == Status::kUnknown);
  CHECK(peek_string(R"({"msg_type":3})", "msg_type").status == Status::kUnknown);
  CHECK(peek_string(R"({"msg_type":)", "msg_type").status == Status::kUnknown);
  CHECK(peek_string(R"({"a":"b" "msg_type":"x"})", "msg_type").status == Status::kUnknown);
  CHECK(peek_string(R"(["msg_type","x"])", "msg_type").status == Status::kUnknown);
  CHECK(peek_string("", "msg_type").status == Status::kUnknown);
  CHECK(peek_string(R"({"a":"unterminated)", "msg_type").status == Status::kUnknown);
  // An escaped key is never taken for the key asked for.
  CHECK(peek_string(R"({"msg\u005ftype":"x"})", "msg_type").status == Status::kUnknown);
  // Escapes elsewhere do not matter.
  auto v = peek_string(R"({"text":"a \"quoted\" }","msg_id":"m1"})", "msg_id");
  CHECK(v.status == Status::kFound);
  CHECK(v.value == "m1");
}

TEST_CASE("peek_raw gives the raw text of a top-level value of any kind") {
  using ipcpp::proto::peek_raw;
  const std::string metadata =
      R"({"started":"2026-11-21T10:00:00.000000Z", "dependencies_met": true, "n":-12,)"
      R"( "none":null, "list":[1, {"a": "]"}], "obj":{"status":"inner"}, "esc":"a\"b",)"
      R"( "status":"ok"})";
  CHECK(peek_raw(metadata, "dependencies_met").value == "true");
  CHECK(peek_raw(metadata, "dependencies_met").status == Status::kFound);
  CHECK(peek_raw(metadata, "n").value == "-12");
  CHECK(peek_raw(metadata, "none").value == "null");
  CHECK(peek_raw(metadata, "list").value == R"([1, {"a": "]"}])");
  CHECK(peek_raw(metadata, "obj").value == R"({"status":"inner"})");
  CHECK(peek_raw(metadata, "esc").value == R"("a\"b")");
  CHECK(peek_raw(metadata, "status").value == R"("ok")");
  CHECK(peek_raw(metadata, "missing").status == Status::kAbsent);
  CHECK(peek_raw("{}", "status").status == Status::kAbsent);
  CHECK(peek_raw(R"({"status":)", "status").status == Status::kUnknown);
  CHECK(peek_raw(R"({"a":[1, "status"})", "status").status == Status::kUnknown);
  CHECK(peek_raw("[true]", "status").status == Status::kUnknown);
}

TEST_CASE("peek_strings answers for several keys in one scan what peek_string answers for each") {
  using ipcpp::proto::peek_strings;
  using ipcpp::proto::Peeked;
  const std::string_view keys[] = {"msg_id", "msg_type", "date", "missing", "n", "esc", "obj"};
  const std::string texts[] = {
      R"({"msg_type":"apply_request","n":3,"msg_id":"a_1","obj":{"msg_id":"inner"},)"
      R"("date":"2026-11-22T03:00:00Z","esc":"x\"y"})",
      R"({})",
      R"({"msg_id":"first","msg_id":"second","date":"d"})",  // the first wins, as for one key
      R"({"msg_id":"a","date":"d" "msg_type":"t"})",         // malformed after msg_id and date
      R"([1, 2])",
      R"({"msg_id":"a","obj":{"unclosed":[})",
  };
  for (const std::string& text : texts) {
    CAPTURE(text);
    std::array<Peeked, std::size(keys)> many;
    peek_strings(text, keys, many);
    for (std::size_t k = 0; k < std::size(keys); ++k) {
      CAPTURE(keys[k]);
      const Peeked one = peek_string(text, keys[k]);
      CHECK(many[k].status == one.status);
      CHECK(many[k].value == one.value);
    }
  }
  std::array<Peeked, std::size(keys)> many;
  peek_strings(texts[0], keys, many);
  CHECK(many[0].value == "a_1");
  CHECK(many[1].value == "apply_request");
  CHECK(many[2].value == "2026-11-22T03:00:00Z");
  CHECK(many[3].status == Status::kAbsent);
  CHECK(many[4].status == Status::kUnknown);  // a number, not a string
  CHECK(many[5].status == Status::kUnknown);  // escaped
  CHECK(many[6].status == Status::kUnknown);  // an object
}
