// Client: the engines, views, and the controller's queries.
#include <algorithm>

#include "client/core.hpp"
#include "proto/messages.hpp"

namespace ipcpp {
namespace {

using detail::ClientCore;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
namespace mt = proto::msg_type;

const std::shared_ptr<ClientCore>& live(const std::shared_ptr<ClientCore>& core) {
  if (!core) throw Error("the client is closed");
  return core;
}

std::string seconds_text(Seconds s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s.count());
  return buf;
}

// The uuids of `targets`, or of every engine when empty.
std::vector<std::string> uuids_of(const ClientCore& core,
                                  const std::vector<std::int64_t>& targets) {
  const auto engines = core.engines();
  std::vector<std::string> out;
  if (targets.empty()) {
    for (const auto& [id, uuid] : engines)
      out.push_back(uuid);
    return out;
  }
  for (auto id : targets) {
    auto it = engines.find(id);
    if (it == engines.end()) throw Error("engine " + std::to_string(id) + " is not registered");
    out.push_back(it->second);
  }
  return out;
}

}  // namespace

Client::Client(ClientOptions options) : core_(ClientCore::connect(options)) {}

Client::~Client() {
  close();
}

Client::Client(Client&&) noexcept = default;

Client& Client::operator=(Client&& other) noexcept {
  if (this != &other) {
    close();
    core_ = std::move(other.core_);
  }
  return *this;
}

std::vector<std::int64_t> Client::ids() const {
  return live(core_)->ids();
}

void Client::wait_for_engines(std::size_t n, Seconds timeout,
                              const std::function<void(std::size_t)>& progress) const {
  const auto& core = live(core_);
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(timeout);
  std::size_t last = static_cast<std::size_t>(-1);
  for (;;) {
    std::size_t count = 0;
    // Notifications keep the count current; once a second the hub is asked too, in case one
    // was missed (ClientCore::refresh_engines).
    const auto slice_end = std::min(deadline, SteadyClock::now() + std::chrono::seconds(1));
    core->wait_until(slice_end, [&] {
      count = core->ids_locked_count();
      return count >= n || count != last;
    });
    {
      std::lock_guard lock(core->mu);
      count = core->ids_locked_count();
      if (core->io_stopped_locked()) {
        throw Error("the client is closed" + core->stop_reason_locked());
      }
    }
    if (count != last) {
      last = count;
      if (progress) progress(count);
    }
    if (count >= n) return;
    try {
      core->refresh_engines();
    } catch (const TimeoutError&) {
      // The hub did not answer within the client's timeout: go on with the notifications.
    }
    if (SteadyClock::now() >= deadline) {
      {
        std::lock_guard lock(core->mu);
        count = core->ids_locked_count();
      }
      if (count != last && progress) progress(count);
      if (count >= n) return;
      throw TimeoutError(std::to_string(count) + " of " + std::to_string(n) +
                         " engines registered after " + seconds_text(timeout) + " s");
    }
  }
}

DirectView Client::operator[](std::int64_t id) const {
  const auto& core = live(core_);
  if (!core->uuid_of(id)) {
    std::string ids;
    for (auto i : core->ids())
      ids += (ids.empty() ? "" : ", ") + std::to_string(i);
    throw Error("engine " + std::to_string(id) +
                " is not registered (registered: " + (ids.empty() ? "none" : ids) + ")");
  }
  return DirectView(core, DirectView::Kind::kOne, {id});
}

DirectView Client::operator[](std::vector<std::int64_t> ids) const {
  DirectView view(live(core_), DirectView::Kind::kList, std::move(ids));
  view.targets();  // throws for an id that is not registered
  return view;
}

DirectView Client::all() const {
  return DirectView(live(core_), DirectView::Kind::kAll, {});
}

LoadBalancedView Client::load_balanced_view(TaskOptions options) const {
  return LoadBalancedView(live(core_), std::move(options));
}

QueueStatus Client::queue_status() const {
  const json reply =
      live(core_)->query(mt::kQueueRequest, json{{"targets", nullptr}, {"verbose", false}});
  auto decoded = proto::decode_content<proto::QueueReply>(reply, "queue_reply");
  if (!decoded) throw Error(decoded.error().reason);
  QueueStatus out;
  const auto registered = core_->engines();
  for (const auto& [id, q] : decoded->engines) {
    if (registered.count(id) == 0) continue;  // the controller also lists engines that left
    EngineQueue e;
    e.queue = q.queue.is_number_integer() ? q.queue.get<std::int64_t>() : 0;
    e.tasks = q.tasks.is_number_integer() ? q.tasks.get<std::int64_t>() : 0;
    e.completed = q.completed.is_number_integer() ? q.completed.get<std::int64_t>() : 0;
    out.engines[id] = e;
  }
  out.unassigned =
      decoded->unassigned.is_number_integer() ? decoded->unassigned.get<std::int64_t>() : 0;
  return out;
}

void Client::purge_results(const std::vector<std::string>& msg_ids,
                           const std::vector<std::int64_t>& targets) const {
  proto::PurgeRequest request;
  request.all = msg_ids.empty() && targets.empty();
  request.msg_ids = msg_ids;
  request.engine_ids = targets;
  live(core_)->query(mt::kPurgeRequest, json(request));
}

void Client::purge_everything() const {
  purge_results({}, {});
}

void Client::abort(const std::vector<std::string>& msg_ids,
                   const std::vector<std::int64_t>& targets) const {
  const auto& core = live(core_);
  const json ids = msg_ids.empty() ? json(nullptr) : json(msg_ids);
  core->control(mt::kAbortRequest, json{{"msg_ids", ids}}, uuids_of(*core, targets));
}

void Client::clear(const std::vector<std::int64_t>& targets) const {
  const auto& core = live(core_);
  core->control(mt::kClearRequest, json::object(), uuids_of(*core, targets));
}

void Client::shutdown(const std::vector<std::int64_t>& targets, bool hub) const {
  const auto& core = live(core_);
  core->control(mt::kShutdownRequest, json{{"restart", false}}, uuids_of(*core, targets));
  if (hub) core->query(mt::kShutdownRequest, json::object());
}

json Client::db_query(const json& query, const std::vector<std::string>& keys) const {
  json request{{"query", query}, {"keys", keys.empty() ? json(nullptr) : json(keys)}};
  json reply = live(core_)->query(mt::kDbRequest, request);
  return reply.contains("records") ? reply["records"] : json::array();
}

std::vector<std::string> Client::hub_history() const {
  json reply = live(core_)->query(mt::kHistoryRequest, json::object());
  auto decoded = proto::decode_content<proto::HistoryReply>(reply, "history_reply");
  if (!decoded) throw Error(decoded.error().reason);
  return decoded->history;
}

AsyncResult Client::get_result(const std::string& msg_id) const {
  const auto& core = live(core_);
  // Asks once now, so that an unknown msg_id throws here (KeyError from the controller).
  core->query(mt::kResultRequest, json{{"msg_ids", json::array({msg_id})}, {"status_only", true}});
  auto set = std::make_shared<detail::ResultSet>();
  set->core = core;
  set->combine = detail::Combine::kOne;
  set->from_hub = true;
  auto state = std::make_shared<detail::RequestState>();
  state->msg_id = msg_id;
  state->meta.msg_id = msg_id;
  set->msg_ids.push_back(msg_id);
  set->requests.push_back(std::move(state));
  return AsyncResult(std::move(set));
}

bool Client::wait(std::optional<Seconds> timeout) const {
  const auto& core = live(core_);
  std::optional<SteadyClock::time_point> deadline;
  if (timeout) {
    deadline = SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(*timeout);
  }
  core->wait_until(deadline, [&] { return core->outstanding_locked() == 0; });
  std::lock_guard lock(core->mu);
  return core->outstanding_locked() == 0;
}

const std::filesystem::path& Client::connection_file() const {
  return live(core_)->connection_file();
}

const std::string& Client::session_id() const {
  return live(core_)->session_id();
}

void Client::close() {
  if (core_) core_->close();
}

}  // namespace ipcpp
