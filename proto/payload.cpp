#include "proto/payload.hpp"

#include <functional>

#include "proto/json_struct.hpp"

namespace ipcpp::proto {
namespace {

using nlohmann::json;

zmq::message_t text_frame(const std::string& text) {
  return zmq::message_t(text.data(), text.size());
}

std::vector<zmq::message_t> frames_of(const json& head, const Value& value) {
  std::vector<zmq::message_t> frames;
  frames.reserve(1 + value.arrays().size());
  frames.push_back(text_frame(head.dump(-1, ' ', false, json::error_handler_t::replace)));
  for (const auto& a : value.arrays())
    frames.push_back(to_frame(a.bytes()));
  return frames;
}

// Parses the head frame and turns the remaining frames into arrays as its references say.
Result<json> read_head(std::vector<zmq::message_t>& buffers, const char* what) {
  if (buffers.empty()) {
    return Error{Errc::kBadContent, std::string(what) + " has no buffers"};
  }
  if (is_python_pickle(buffers[0])) {
    const int protocol = buffers[0].size() > 1 ? buffers[0].data<unsigned char>()[1] : 0;
    return Error{Errc::kUnsupported, std::string(what) + " is a Python pickle (protocol " +
                                         std::to_string(protocol) +
                                         "): this engine runs C++ functions, not Python ones"};
  }
  json head;
  try {
    head = json::parse(buffers[0].data<char>(), buffers[0].data<char>() + buffers[0].size());
  } catch (const json::parse_error& e) {
    return Error{Errc::kBadContent,
                 std::string(what) + ": first buffer is not JSON: " + json_error_reason(e)};
  }
  if (!head.is_object() || !head.contains("ipcpp")) {
    return Error{Errc::kBadContent,
                 std::string(what) + ": first buffer is not an ipcpp payload (no \"ipcpp\" key)"};
  }
  if (head["ipcpp"] != kPayloadVersion) {
    return Error{Errc::kUnsupported, std::string(what) + ": payload version " +
                                         head["ipcpp"].dump() + " is not supported (we speak " +
                                         std::to_string(kPayloadVersion) + ")"};
  }
  return head;
}

// The arrays of buffers[1..], described by the references found in `doc`.
Result<Value> value_of(json doc, std::vector<zmq::message_t>& buffers, const char* what) {
  const std::size_t n = buffers.size() - 1;
  std::vector<std::optional<Array>> arrays(n);
  std::string problem;
  std::function<void(const json&)> visit = [&](const json& j) {
    if (!problem.empty()) return;
    if (j.is_object() && j.contains("__buffer__")) {
      const auto& k = j["__buffer__"];
      const auto dtype = j.contains("dtype") && j["dtype"].is_string()
                             ? dtype_from_name(j["dtype"].get<std::string>())
                             : std::nullopt;
      if (!k.is_number_unsigned() || k.get<std::size_t>() >= n) {
        problem =
            "array reference " + j.dump() + " names no buffer (" + std::to_string(n) + " sent)";
      } else if (!dtype) {
        problem = "array reference " + j.dump() + " has no known dtype";
      } else if (!j.contains("shape") || !j["shape"].is_array()) {
        problem = "array reference " + j.dump() + " has no shape";
      } else if (!arrays[k.get<std::size_t>()]) {
        try {
          const auto shape = j["shape"].get<std::vector<std::size_t>>();
          auto& frame = buffers[1 + k.get<std::size_t>()];
          arrays[k.get<std::size_t>()] = Array(*dtype, shape, to_bytes(std::move(frame)));
        } catch (const std::exception& e) {
          problem = "array reference " + j.dump() + ": " + e.what();
        }
      }
      return;
    }
    if (j.is_structured()) {
      for (const auto& child : j)
        visit(child);
    }
  };
  visit(doc);
  if (problem.empty()) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!arrays[i]) problem = "buffer " + std::to_string(i) + " is referenced by nothing";
    }
  }
  if (!problem.empty()) return Error{Errc::kBadContent, std::string(what) + ": " + problem};
  std::vector<Array> list;
  list.reserve(n);
  for (auto& a : arrays)
    list.push_back(std::move(*a));
  try {
    return Value::from_parts(std::move(doc), std::move(list));
  } catch (const std::exception& e) {
    return Error{Errc::kBadContent, std::string(what) + ": " + e.what()};
  }
}

}  // namespace

bool is_python_pickle(const zmq::message_t& frame) {
  return frame.size() >= 1 && frame.data<unsigned char>()[0] == 0x80;
}

zmq::message_t to_frame(const Bytes& bytes) {
  if (bytes.size() == 0) return zmq::message_t();
  auto* keep = new std::shared_ptr<const void>(bytes.owner());
  return zmq::message_t(
      const_cast<std::byte*>(bytes.data()), bytes.size(),
      [](void*, void* hint) { delete static_cast<std::shared_ptr<const void>*>(hint); }, keep);
}

Bytes to_bytes(zmq::message_t&& frame) {
  auto owner = std::make_shared<zmq::message_t>(std::move(frame));
  const auto* data = owner->data<std::byte>();
  const std::size_t size = owner->size();
  return Bytes(std::move(owner), data, size);
}

std::vector<zmq::message_t> encode_apply(std::string_view function, const Value& args,
                                         const Value& kwargs) {
  if (!args.json().is_array()) throw std::invalid_argument("apply arguments must be a list");
  if (!kwargs.json().is_null() && !kwargs.json().is_object()) {
    throw std::invalid_argument("apply keyword arguments must be an object");
  }
  const Value both = Value::object(
      {{"args", args}, {"kwargs", kwargs.json().is_null() ? Value(json::object()) : kwargs}});
  json head = {{"ipcpp", kPayloadVersion}, {"f", function}};
  head["args"] = both.json()["args"];
  head["kwargs"] = both.json()["kwargs"];
  return frames_of(head, both);
}

Result<ApplyCall> decode_apply(std::vector<zmq::message_t>&& buffers) {
  auto head = read_head(buffers, "apply request");
  if (!head) return head.error();
  const auto f = head->find("f");
  if (f == head->end() || !f->is_string() || f->get_ref<const std::string&>().empty()) {
    return Error{Errc::kBadContent, "apply request: field 'f' must name a function"};
  }
  // The parts are moved out of the head, not copied: a task's arguments are decoded once per
  // request on the engine's hot path.
  std::string function = std::move(f->get_ref<std::string&>());
  json args = json::array();
  if (const auto a = head->find("args"); a != head->end()) args = std::move(*a);
  json kwargs = json::object();
  if (const auto k = head->find("kwargs"); k != head->end()) kwargs = std::move(*k);
  if (!args.is_array())
    return Error{Errc::kBadContent, "apply request: field 'args' must be a list"};
  if (!kwargs.is_object()) {
    return Error{Errc::kBadContent, "apply request: field 'kwargs' must be an object"};
  }
  if (buffers.size() == 1) {
    // No arrays: each part stands alone (a stray array reference is still an error).
    auto a = value_of(std::move(args), buffers, "apply request");
    if (!a) return a.error();
    auto k = value_of(std::move(kwargs), buffers, "apply request");
    if (!k) return k.error();
    return ApplyCall{std::move(function), std::move(a).value(), std::move(k).value()};
  }
  auto both = value_of(json{{"args", std::move(args)}, {"kwargs", std::move(kwargs)}}, buffers,
                       "apply request");
  if (!both) return both.error();
  return ApplyCall{std::move(function), both->at("args"), both->at("kwargs")};
}

std::vector<zmq::message_t> encode_value(const Value& value) {
  return frames_of(json{{"ipcpp", kPayloadVersion}, {"value", value.json()}}, value);
}

Result<Value> decode_value(std::vector<zmq::message_t>&& buffers) {
  auto head = read_head(buffers, "result");
  if (!head) return head.error();
  return value_of(head->value("value", json()), buffers, "result");
}

}  // namespace ipcpp::proto
