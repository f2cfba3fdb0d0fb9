// DirectView and LoadBalancedView: requests built here, on the calling thread, and handed to
// the client's I/O thread.
#include <algorithm>

#include "client/core.hpp"
#include "client/partition.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"

namespace ipcpp {
namespace {

using detail::ClientCore;
using detail::Combine;
using detail::ResultSet;
using nlohmann::json;
namespace mt = proto::msg_type;

// The name of the engines' built-in that maps a function over sequences (engine/kernel.cpp).
constexpr const char* kMapBuiltin = "map";

std::vector<zmq::message_t> encode(const detail::Call& call) {
  return proto::encode_apply(call.function, Value::list(call.args),
                             call.kwargs.empty() ? Value() : Value::object(call.kwargs));
}

json execute_content(const std::string& code) {
  // silent=false: a Python ipengine then publishes the code's result too.
  return json{{"code", code},           {"silent", false},
              {"store_history", false}, {"user_expressions", json::object()},
              {"allow_stdin", false},   {"stop_on_error", true}};
}

std::string ids_text(const std::vector<std::int64_t>& ids) {
  std::string s;
  for (auto id : ids) {
    if (!s.empty()) s += ", ";
    s += std::to_string(id);
  }
  return s.empty() ? "none" : s;
}

// The length shared by every sequence of a map. Throws std::invalid_argument.
std::size_t common_length(const std::vector<Value>& seqs) {
  if (seqs.empty()) throw std::invalid_argument("map needs at least one sequence");
  std::size_t n = 0;
  for (std::size_t i = 0; i < seqs.size(); ++i) {
    const std::string what = "map's sequence " + std::to_string(i + 1);
    const std::size_t len = detail::sequence_length(seqs[i], what.c_str());
    if (i == 0) {
      n = len;
    } else if (len != n) {
      throw std::invalid_argument("map's sequences differ in length: " + std::to_string(n) +
                                  " and " + std::to_string(len));
    }
  }
  return n;
}

// A map call on items [begin, end) of every sequence of `call`, with its keyword arguments.
detail::Call map_chunk(const detail::Call& call, std::size_t begin, std::size_t end) {
  detail::Call chunk{kMapBuiltin, {}, call.kwargs};
  chunk.args.reserve(call.args.size() + 1);
  chunk.args.emplace_back(call.function);
  for (const auto& seq : call.args)
    chunk.args.push_back(detail::slice(seq, begin, end));
  return chunk;
}

// Every apply and execute asks ipcpp engines for statuses only around output
// (proto::kQuietStatusKey, docs/protocol.md): a request that prints nothing costs no busy and
// idle messages, and its reply says that its output is complete. Engines that do not know the
// key publish both statuses, and the client waits for idle as before.
const std::string& direct_metadata() {
  static const std::string text = json{{proto::kQuietStatusKey, true}}.dump();
  return text;
}

json task_metadata(const ClientCore& core, const TaskOptions& o) {
  proto::TaskMetadata m;
  m.after.dependencies = o.after;
  m.follow.dependencies = o.follow;
  if (o.timeout) m.timeout = o.timeout->count();
  m.retries = o.retries;
  for (auto id : o.targets) {
    auto uuid = core.uuid_of(id);
    if (!uuid) throw Error("engine " + std::to_string(id) + " is not registered");
    m.targets.push_back(*uuid);
  }
  json j(m);
  j[proto::kQuietStatusKey] = true;
  return j;
}

std::shared_ptr<ResultSet> new_set(std::shared_ptr<ClientCore> core, Combine combine) {
  auto set = std::make_shared<ResultSet>();
  set->core = std::move(core);
  set->combine = combine;
  return set;
}

void add(ResultSet& set, std::shared_ptr<detail::RequestState> state) {
  set.msg_ids.push_back(state->msg_id);
  set.requests.push_back(std::move(state));
}

const std::shared_ptr<ClientCore>& live(const std::shared_ptr<ClientCore>& core) {
  if (!core) throw Error("the view has no client (default-constructed)");
  return core;
}

}  // namespace

// ---- DirectView ------------------------------------------------------------------------------

std::vector<std::int64_t> DirectView::targets() const {
  std::vector<std::int64_t> ids;
  target_uuids(&ids);
  return ids;
}

std::vector<std::string> DirectView::target_uuids(std::vector<std::int64_t>* ids) const {
  const auto engines = live(core_)->engines();
  std::vector<std::string> uuids;
  if (kind_ == Kind::kAll) {
    if (engines.empty()) {
      throw Error(
          "no engines are registered: start some, and wait for them with "
          "Client::wait_for_engines");
    }
    for (const auto& [id, uuid] : engines) {
      uuids.push_back(uuid);
      if (ids != nullptr) ids->push_back(id);
    }
    return uuids;
  }
  std::vector<std::int64_t> registered;
  for (const auto& [id, uuid] : engines)
    registered.push_back(id);
  for (auto id : ids_) {
    auto it = engines.find(id);
    if (it == engines.end()) {
      throw Error("engine " + std::to_string(id) +
                  " is not registered (registered: " + ids_text(registered) + ")");
    }
    uuids.push_back(it->second);
    if (ids != nullptr) ids->push_back(id);
  }
  return uuids;
}

AsyncResult DirectView::finish(AsyncResult result) const {
  if (block_) result.get();
  return result;
}

AsyncResult DirectView::apply_call(detail::Call call) const {
  const auto uuids = target_uuids(nullptr);
  auto set = new_set(core_, kind_ == Kind::kOne ? Combine::kOne : Combine::kList);
  for (const auto& uuid : uuids) {
    add(*set,
        core_->submit_apply(ClientCore::Channel::kMux, uuid, direct_metadata(), encode(call)));
  }
  return AsyncResult(std::move(set));
}

AsyncResult DirectView::map_call(detail::Call call) const {
  const std::size_t n = common_length(call.args);
  const auto uuids = target_uuids(nullptr);
  auto set = new_set(core_, Combine::kConcat);
  const auto pieces = detail::partition(n, uuids.size());
  for (std::size_t p = 0; p < uuids.size(); ++p) {
    if (pieces[p].first == pieces[p].second) continue;  // nothing for this engine
    add(*set, core_->submit_apply(ClientCore::Channel::kMux, uuids[p], direct_metadata(),
                                  encode(map_chunk(call, pieces[p].first, pieces[p].second))));
  }
  return AsyncResult(std::move(set));
}

AsyncResult DirectView::execute(const std::string& code) const {
  const auto uuids = target_uuids(nullptr);
  auto set = new_set(core_, kind_ == Kind::kOne ? Combine::kOne : Combine::kList);
  for (const auto& uuid : uuids) {
    add(*set, core_->submit(ClientCore::Channel::kMux, uuid, mt::kExecuteRequest,
                            execute_content(code), json{{proto::kQuietStatusKey, true}}, {}, true));
  }
  AsyncResult result(std::move(set));
  if (block_) {
    result.get();
    result.wait_for_output();
  }
  return result;
}

Value DirectView::execute_sync(const std::string& code) const {
  DirectView v = *this;
  v.block_ = false;
  AsyncResult r = v.execute(code);
  Value value = r.get();
  r.wait_for_output();
  return value;
}

AsyncResult DirectView::push(Kwargs names) const {
  const auto uuids = target_uuids(nullptr);
  detail::Call call{"push", {}, std::move(names)};
  auto set = new_set(core_, Combine::kNone);
  for (const auto& uuid : uuids) {
    add(*set,
        core_->submit_apply(ClientCore::Channel::kMux, uuid, direct_metadata(), encode(call)));
  }
  return finish(AsyncResult(std::move(set)));
}

AsyncResult DirectView::pull(const std::string& name) const {
  return finish(apply_call(detail::Call{"pull", {Value(name)}, {}}));
}

Value DirectView::pull_sync(const std::string& name) const {
  return apply_call(detail::Call{"pull", {Value(name)}, {}}).get();
}

AsyncResult DirectView::scatter(const std::string& name, Value seq) const {
  const std::size_t n = detail::sequence_length(seq, "scatter's sequence");
  const auto uuids = target_uuids(nullptr);
  const auto pieces = detail::partition(n, uuids.size());
  auto set = new_set(core_, Combine::kNone);
  for (std::size_t p = 0; p < uuids.size(); ++p) {
    detail::Call call{"push", {}, {{name, detail::slice(seq, pieces[p].first, pieces[p].second)}}};
    add(*set,
        core_->submit_apply(ClientCore::Channel::kMux, uuids[p], direct_metadata(), encode(call)));
  }
  return finish(AsyncResult(std::move(set)));
}

AsyncResult DirectView::gather(const std::string& name) const {
  const auto uuids = target_uuids(nullptr);
  auto set = new_set(core_, Combine::kConcat);
  const detail::Call call{"pull", {Value(name)}, {}};
  for (const auto& uuid : uuids) {
    add(*set,
        core_->submit_apply(ClientCore::Channel::kMux, uuid, direct_metadata(), encode(call)));
  }
  return finish(AsyncResult(std::move(set)));
}

Value DirectView::gather_sync(const std::string& name) const {
  DirectView v = *this;
  v.block_ = false;
  return v.gather(name).get();
}

DirectView::Item& DirectView::Item::operator=(Value value) {
  DirectView v = view_;
  v.block_ = false;
  v.push({{name_, std::move(value)}}).get();
  return *this;
}

DirectView::Item::operator Value() const {
  return get();
}

Value DirectView::Item::get() const {
  return view_.pull_sync(name_);
}

void DirectView::abort(const std::vector<std::string>& msg_ids) const {
  const json ids = msg_ids.empty() ? json(nullptr) : json(msg_ids);
  live(core_)->control(mt::kAbortRequest, json{{"msg_ids", ids}}, target_uuids(nullptr));
}

void DirectView::clear() const {
  live(core_)->control(mt::kClearRequest, json::object(), target_uuids(nullptr));
}

// ---- LoadBalancedView ------------------------------------------------------------------------

AsyncResult LoadBalancedView::finish(AsyncResult result) const {
  if (block_) result.get();
  return result;
}

AsyncResult LoadBalancedView::apply_call(detail::Call call) const {
  const std::string metadata = ClientCore::compact(task_metadata(*live(core_), options_));
  auto set = new_set(core_, Combine::kOne);
  add(*set, core_->submit_apply(ClientCore::Channel::kTask, "", metadata, encode(call)));
  return AsyncResult(std::move(set));
}

AsyncResult LoadBalancedView::map_call(detail::Call call) const {
  const std::size_t n = common_length(call.args);
  const std::size_t chunk = std::max<std::size_t>(1, options_.chunksize);
  // The metadata is the same for every task of the map: written once.
  const std::string metadata = ClientCore::compact(task_metadata(*live(core_), options_));
  auto set = new_set(core_, Combine::kConcat);
  set->ordered = options_.ordered;
  for (std::size_t begin = 0; begin < n; begin += chunk) {
    const std::size_t end = std::min(n, begin + chunk);
    add(*set, core_->submit_apply(ClientCore::Channel::kTask, "", metadata,
                                  encode(map_chunk(call, begin, end))));
  }
  return AsyncResult(std::move(set));
}

AsyncResult LoadBalancedView::execute(const std::string& code) const {
  const json metadata = task_metadata(*live(core_), options_);
  auto set = new_set(core_, Combine::kOne);
  add(*set, core_->submit(ClientCore::Channel::kTask, "", mt::kExecuteRequest,
                          execute_content(code), metadata, {}, true));
  AsyncResult result(std::move(set));
  if (block_) {
    result.get();
    result.wait_for_output();
  }
  return result;
}

}  // namespace ipcpp
