// The typed message bodies and their JSON mapping (proto/messages.hpp).
#include <doctest/doctest.h>

#include "proto/messages.hpp"

using namespace ipcpp::proto;
using nlohmann::json;

TEST_CASE("a registration request needs a uuid and may ask for an id") {
  auto r = decode_content<RegistrationRequest>(json{{"uuid", "fake-a42014d6"}, {"id", 5}},
                                               "registration_request content");
  REQUIRE(r.ok());
  CHECK(r->uuid == "fake-a42014d6");
  CHECK(r->id == 5);
  CHECK(json(*r) == json{{"uuid", "fake-a42014d6"}, {"id", 5}});

  auto no_id = decode_content<RegistrationRequest>(json{{"uuid", "u"}}, "x");
  REQUIRE(no_id.ok());
  CHECK_FALSE(no_id->id.has_value());
  CHECK(json(*no_id) == json{{"uuid", "u"}});

  auto missing =
      decode_content<RegistrationRequest>(json::object(), "registration_request content");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::kBadContent);
  CHECK(missing.error().reason ==
        "registration_request content: field 'uuid': a non-empty string is required");
}

TEST_CASE("a registration reply has the reference's shape") {
  RegistrationReply reply;
  reply.id = 5;
  reply.hb_period = 1000;
  reply.connection_info = {"tcp://127.0.0.1", 35071, 42979, 53831, 35419, 42371, 47637, 37479,
                           {43839, 42859}};
  const json expected = json::parse(R"({"id":5,"status":"ok","hb_period":1000,
      "connection_info":{"interface":"tcp://127.0.0.1","registration":35071,"control":42979,
      "mux":53831,"task":35419,"iopub":42371,"hb_ping":47637,"hb_pong":37479,
      "broadcast":[43839,42859]}})");
  CHECK(json(reply) == expected);
  auto back = decode_content<RegistrationReply>(expected, "registration_reply");
  REQUIRE(back.ok());
  CHECK(back->connection_info.broadcast == std::vector<int>{43839, 42859});
}

TEST_CASE("a field of the wrong type is an error that names it") {
  auto r = decode_content<RegistrationReply>(json{{"id", "five"}}, "registration_reply content");
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().reason ==
        "registration_reply content: field 'id': type must be number, but is string");

  auto nested = decode_content<RegistrationReply>(json{{"connection_info", {{"mux", "x"}}}},
                                                  "registration_reply content");
  REQUIRE_FALSE(nested.ok());
  CHECK(nested.error().reason ==
        "registration_reply content: field 'connection_info.mux': type must be number, but is "
        "string");

  auto not_object = decode_content<ExecuteRequest>(json::array(), "execute_request content");
  REQUIRE_FALSE(not_object.ok());
  CHECK(not_object.error().reason ==
        "execute_request content: field '(top)': expected a JSON object for ExecuteRequest, got "
        "array");
}

TEST_CASE("missing and null fields take their defaults") {
  auto r = decode_content<ExecuteRequest>(json{{"code", "x"}, {"silent", nullptr}}, "x");
  REQUIRE(r.ok());
  CHECK(r->code == "x");
  CHECK_FALSE(r->silent);
  CHECK(r->stop_on_error);
  CHECK(r->store_history);
}

TEST_CASE("queue replies carry one entry per engine id") {
  const json wire = json::parse(
      R"({"status":"ok","0":{"queue":0,"completed":3,"tasks":1},"1":{"queue":2,"completed":0,"tasks":0},"unassigned":4})");
  auto r = decode_content<QueueReply>(wire, "queue_reply");
  REQUIRE(r.ok());
  REQUIRE(r->engines.size() == 2);
  CHECK(r->engines[0].completed == 3);
  CHECK(r->engines[1].queue == 2);
  CHECK(r->unassigned == 4);
  CHECK(json(*r) == wire);
}

TEST_CASE("result replies keep the per-message records") {
  const json wire = json::parse(
      R"({"status":"ok","pending":["a"],"completed":["b"],"b":{"result_content":{"status":"ok"}}})");
  auto r = decode_content<ResultReply>(wire, "result_reply");
  REQUIRE(r.ok());
  CHECK(r->pending == std::vector<std::string>{"a"});
  CHECK(r->results.at("b")["result_content"]["status"] == "ok");
  CHECK(json(*r) == wire);
}

TEST_CASE("purge requests take a list of ids or \"all\"") {
  auto all = decode_content<PurgeRequest>(json{{"msg_ids", "all"}}, "purge_request");
  REQUIRE(all.ok());
  CHECK(all->all);
  CHECK(json(*all)["msg_ids"] == "all");
  auto some = decode_content<PurgeRequest>(json{{"msg_ids", {"a"}}, {"engine_ids", {1}}}, "p");
  REQUIRE(some.ok());
  CHECK_FALSE(some->all);
  CHECK(some->msg_ids == std::vector<std::string>{"a"});
  CHECK(some->engine_ids == std::vector<std::int64_t>{1});
  auto bad = decode_content<PurgeRequest>(json{{"msg_ids", "some"}}, "purge_request content");
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().reason ==
        "purge_request content: field 'msg_ids': a list of msg_ids or the "
        "string \"all\" is required");
}

TEST_CASE("task metadata reads dependencies as lists or as dicts") {
  const json wire = json::parse(R"({"after":["a","b"],
      "follow":{"dependencies":["c"],"all":false,"success":false,"failure":true},
      "timeout":1.5,"targets":["uuid-1"],"retries":2})");
  auto r = decode_content<TaskMetadata>(wire, "task metadata");
  REQUIRE(r.ok());
  CHECK(r->after.dependencies == std::vector<std::string>{"a", "b"});
  CHECK(r->after.all);
  CHECK(r->after.success);
  CHECK_FALSE(r->after.failure);
  CHECK_FALSE(r->follow.all);
  CHECK(r->follow.failure);
  CHECK(r->timeout == 1.5);
  CHECK(r->retries == 2);

  auto none = decode_content<TaskMetadata>(json{{"timeout", nullptr}}, "task metadata");
  REQUIRE(none.ok());
  CHECK_FALSE(none->timeout.has_value());

  auto both_false = decode_content<TaskMetadata>(
      json{{"after", {{"dependencies", {"a"}}, {"success", false}, {"failure", false}}}},
      "task metadata");
  REQUIRE_FALSE(both_false.ok());
  CHECK(both_false.error().reason ==
        "task metadata: field 'after.success': success and failure cannot both be false");
}

TEST_CASE("reply metadata carries what schedulers require") {
  ReplyMetadata md;
  md.started = "2026-11-21T08:26:14.733169Z";
  md.engine = "uuid";
  const json j = md;
  for (const char* key : {"started", "dependencies_met", "engine", "is_broadcast", "is_coalescing",
                          "original_msg_id", "status"}) {
    CHECK_MESSAGE(j.contains(key), key);
  }
  CHECK_FALSE(j.contains("engine_info"));
  md.status = "error";
  md.engine_info = {{"engine_uuid", "uuid"}, {"engine_id", 3}};
  CHECK(json(md)["engine_info"]["engine_id"] == 3);
}

TEST_CASE("error content has the standard shape") {
  ErrorContent e{"error", "KeyError", "'No such message: x'", {"KeyError: x\n"}, json::object()};
  CHECK(json(e) == json::parse(R"({"status":"error","ename":"KeyError",
      "evalue":"'No such message: x'","traceback":["KeyError: x\n"],"engine_info":{}})"));
}
