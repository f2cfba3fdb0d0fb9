// Values (include/ipcpp/value.hpp) and the ipcpp apply payload (proto/payload.hpp).
#include <numeric>

#include <doctest/doctest.h>

#include "ipcpp/value.hpp"

#include "proto/payload.hpp"

using namespace ipcpp;
using nlohmann::json;

TEST_CASE("a numeric vector becomes an array value without copying its elements") {
  std::vector<double> v(1000);
  std::iota(v.begin(), v.end(), 0.0);
  const double* data = v.data();
  Value value(std::move(v));
  REQUIRE(value.is_array());
  CHECK(value.json() == json{{"__buffer__", 0}, {"dtype", "f8"}, {"shape", {1000}}});
  CHECK(reinterpret_cast<const double*>(value.array().bytes().data()) == data);
  CHECK(value.array().view<double>()[999] == 999.0);
  CHECK(value.as<std::vector<double>>().size() == 1000);
  CHECK_THROWS_WITH(value.array().view<float>(), "array holds f8, not f4");
}

TEST_CASE("lists of values renumber their arrays in order") {
  Value list = Value::list({Value(json(1)), Value(std::vector<int>{1, 2}),
                            Value::list({Value(std::vector<float>{3.5f})})});
  CHECK(list.json() == json::parse(R"([1, {"__buffer__":0,"dtype":"i4","shape":[2]},
                        [{"__buffer__":1,"dtype":"f4","shape":[1]}]])"));
  REQUIRE(list.arrays().size() == 2);
  CHECK(list.size() == 3);
  CHECK(list[0].as<int>() == 1);
  CHECK(list[1].as<std::vector<int>>() == std::vector<int>{1, 2});
  CHECK(list[2][0].as<std::vector<float>>() == std::vector<float>{3.5f});
  CHECK(list[2][0].json()["__buffer__"] == 0);
}

TEST_CASE("plain JSON may not impersonate an array reference") {
  CHECK_THROWS_AS(Value(json{{"a", {{"__buffer__", 0}}}}), std::invalid_argument);
}

TEST_CASE("an array's byte count must match its shape") {
  CHECK_THROWS_WITH(Array(DType::kFloat64, {3}, Bytes::copy_of("abcdefgh", 8)),
                    "array of 3 f8 elements needs 24 bytes, got 8");
}

TEST_CASE("dtype names follow NumPy") {
  CHECK(dtype_name(dtype_of<std::uint8_t>()) == "u1");
  CHECK(dtype_name(dtype_of<std::int64_t>()) == "i8");
  CHECK(dtype_from_name("<f8") == DType::kFloat64);
  CHECK_FALSE(dtype_from_name("c16").has_value());
}

TEST_CASE("an apply call travels as one JSON head and raw array frames") {
  std::vector<double> big(100000, 1.5);
  auto frames =
      proto::encode_apply("sum", Value::list({Value(std::move(big)), Value(json("label"))}),
                          Value::object({{"scale", Value(json(2))}}));
  REQUIRE(frames.size() == 2);
  CHECK(json::parse(frames[0].to_string_view()) == json::parse(R"({"ipcpp":1,"f":"sum",
            "args":[{"__buffer__":0,"dtype":"f8","shape":[100000]},"label"],
            "kwargs":{"scale":2}})"));
  CHECK(frames[1].size() == 100000 * sizeof(double));

  auto call = proto::decode_apply(std::move(frames));
  REQUIRE_MESSAGE(call.ok(), call.error().reason);
  CHECK(call->function == "sum");
  CHECK(call->args.size() == 2);
  CHECK(call->args[0].as<std::vector<double>>()[99999] == 1.5);
  CHECK(call->args[1].as<std::string>() == "label");
  CHECK(call->kwargs.at("scale").as<int>() == 2);
}

TEST_CASE("a result value round-trips through its frames") {
  Value v = Value::object({{"n", Value(json(3))}, {"xs", Value(std::vector<std::int16_t>{-1, 2})}});
  auto back = proto::decode_value(proto::encode_value(v));
  REQUIRE(back.ok());
  CHECK(*back == v);
}

namespace {
std::vector<zmq::message_t> frames_of(std::initializer_list<std::string_view> parts) {
  std::vector<zmq::message_t> out;
  for (auto p : parts)
    out.emplace_back(p.data(), p.size());
  return out;
}
}  // namespace

TEST_CASE("a Python pickle is refused with a reason that says why") {
  const std::string pickle("\x80\x04\x95\x14\x00", 5);
  auto r = proto::decode_apply(frames_of({pickle, "\x80\x04K\x02."}));
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == proto::Errc::kUnsupported);
  CHECK(r.error().reason ==
        "apply request is a Python pickle (protocol 4): this engine runs C++ functions, not "
        "Python ones");
}

TEST_CASE("malformed payloads are refused, never crash") {
  auto check = [](std::vector<zmq::message_t> frames, const std::string& reason) {
    auto r = proto::decode_apply(std::move(frames));
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().reason == reason);
  };
  check({}, "apply request has no buffers");
  check(frames_of({"not json"}),
        "apply request: first buffer is not JSON: parse error at line 1, column 2: syntax error "
        "while parsing value - invalid literal; last read: 'no'");
  check(frames_of({R"({"f":"x"})"}),
        "apply request: first buffer is not an ipcpp payload (no \"ipcpp\" key)");
  check(frames_of({R"({"ipcpp":2,"f":"x"})"}),
        "apply request: payload version 2 is not supported (we speak 1)");
  check(frames_of({R"({"ipcpp":1,"args":[]})"}), "apply request: field 'f' must name a function");
  check(
      frames_of({R"({"ipcpp":1,"f":"x","args":[{"__buffer__":0,"dtype":"f8","shape":[2]}]})"}),
      R"(apply request: array reference {"__buffer__":0,"dtype":"f8","shape":[2]} names no buffer (0 sent))");
  check(
      frames_of(
          {R"({"ipcpp":1,"f":"x","args":[{"__buffer__":0,"dtype":"f8","shape":[2]}]})", "short"}),
      R"(apply request: array reference {"__buffer__":0,"dtype":"f8","shape":[2]}: array of 2 f8 elements needs 16 bytes, got 5)");
  check(frames_of({R"({"ipcpp":1,"f":"x","args":[]})", "stray"}),
        "apply request: buffer 0 is referenced by nothing");
}

TEST_CASE("an apply call without arrays decodes its arguments and keywords, defaults included") {
  auto call = proto::decode_apply(
      proto::encode_apply("echo", Value::list({Value(json(12345)), Value(json("x"))}),
                          Value::object({{"k", Value(json(true))}})));
  REQUIRE_MESSAGE(call.ok(), call.error().reason);
  CHECK(call->function == "echo");
  REQUIRE(call->args.size() == 2);
  CHECK(call->args[0].as<int>() == 12345);
  CHECK(call->args[1].as<std::string>() == "x");
  CHECK(call->kwargs.at("k").as<bool>());

  // A head without args or kwargs: an empty list and an empty object.
  auto bare = proto::decode_apply(frames_of({R"({"ipcpp":1,"f":"echo"})"}));
  REQUIRE_MESSAGE(bare.ok(), bare.error().reason);
  CHECK(bare->function == "echo");
  CHECK(bare->args.json() == json::array());
  CHECK(bare->kwargs.json() == json::object());
}
