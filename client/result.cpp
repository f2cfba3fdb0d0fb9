// AsyncResult: waiting on requests and turning their replies into values or exceptions.
#include <algorithm>
#include <thread>

#include "client/core.hpp"
#include "client/partition.hpp"
#include "proto/clock.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"

namespace ipcpp {
namespace {

using detail::Combine;
using detail::Failure;
using detail::RequestState;
using detail::ResultSet;
using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
namespace mt = proto::msg_type;

std::optional<SteadyClock::time_point> deadline_of(std::optional<Seconds> timeout) {
  if (!timeout) return std::nullopt;
  return SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(*timeout);
}

std::string seconds_text(Seconds s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s.count());
  return buf;
}

const ResultSet& checked(const std::shared_ptr<ResultSet>& set) {
  if (!set) throw Error("an empty AsyncResult (default-constructed) has no requests");
  return *set;
}

bool all_done_locked(const ResultSet& s) {
  return std::all_of(s.requests.begin(), s.requests.end(), [](const auto& r) { return r->done(); });
}

// The same, resuming at `from`, the first request not yet seen done: a request once done stays
// done, so a wait on a long map looks at each request about once, not at every wake-up.
bool all_done_from_locked(const ResultSet& s, std::size_t& from) {
  while (from < s.requests.size() && s.requests[from]->done())
    ++from;
  return from == s.requests.size();
}

std::size_t done_count_locked(const ResultSet& s) {
  return static_cast<std::size_t>(
      std::count_if(s.requests.begin(), s.requests.end(), [](const auto& r) { return r->done(); }));
}

// The value of one answered request (under mu).
Value part_value_locked(const RequestState& r) {
  if (r.msg_type == mt::kExecuteRequest) {
    const json& data = r.meta.execute_result;
    if (data.is_object()) {
      if (auto it = data.find("application/json"); it != data.end()) return Value(*it);
      if (auto it = data.find("text/plain"); it != data.end()) return Value(*it);
    }
    return Value();
  }
  return r.value ? *r.value : Value();
}

std::optional<TimePoint> time_of(const json& j, const char* key) {
  if (!j.is_object() || !j.contains(key) || !j[key].is_string()) return std::nullopt;
  auto t = proto::parse_timestamp(j[key].get_ref<const std::string&>());
  if (!t) return std::nullopt;
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(t->time_since_epoch()));
}

// Asks the controller's task store about each request of a hub result not yet done, and
// fills in those it reports completed. Throws what ClientCore::query throws.
void poll_hub(const ResultSet& set) {
  for (const auto& r : set.requests) {
    {
      std::lock_guard lock(set.core->mu);
      if (r->done()) continue;
    }
    std::vector<zmq::message_t> buffers;
    const json reply = set.core->query(
        mt::kResultRequest, json{{"msg_ids", json::array({r->msg_id})}, {"status_only", false}},
        &buffers);
    if (!reply.contains(r->msg_id) || !reply[r->msg_id].is_object()) continue;
    const json& rec = reply[r->msg_id];
    const json content = rec.value("result_content", json::object());
    const json header = rec.value("result_header", json::object());
    const json metadata = rec.value("result_metadata", json::object());
    const json io = rec.value("io", json::object());
    const std::string status = content.is_object() ? content.value("status", "ok") : "ok";
    detail::Outcome outcome = detail::read_outcome(
        content, header.value("msg_type", "") == mt::kApplyReply, std::move(buffers), false);
    std::optional<Value>& value = outcome.value;
    std::optional<Failure>& failure = outcome.failure;
    std::lock_guard lock(set.core->mu);
    r->msg_type = rec.contains("header") && rec["header"].is_object()
                      ? rec["header"].value("msg_type", r->msg_type)
                      : r->msg_type;
    r->meta.status = status;
    r->meta.started = time_of(metadata, "started");
    r->meta.completed = time_of(header, "date");
    r->meta.received = std::chrono::system_clock::now();
    r->meta.engine_uuid = metadata.value("engine", "");
    if (io.is_object()) {
      if (io.contains("stdout") && io["stdout"].is_string()) r->meta.stdout_text = io["stdout"];
      if (io.contains("stderr") && io["stderr"].is_string()) r->meta.stderr_text = io["stderr"];
      if (io.contains("execute_result") && io["execute_result"].is_object()) {
        r->meta.execute_result = io["execute_result"].value("data", json());
      }
    }
    if (failure) failure->engine_uuid = r->meta.engine_uuid;
    r->failure = std::move(failure);
    r->value = std::move(value);
    r->meta.outputs_complete = true;
    r->replied = true;
  }
}

bool wait_set(const ResultSet& set, std::optional<SteadyClock::time_point> deadline) {
  if (set.from_hub) {
    for (;;) {
      poll_hub(set);
      {
        std::lock_guard lock(set.core->mu);
        if (all_done_locked(set)) return true;
      }
      if (deadline && SteadyClock::now() >= *deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  std::size_t from = 0;
  // Requests still unfinished: as many must finish, at least, before the set is done.
  auto unfinished = [&] {
    return static_cast<std::uint64_t>(
        std::count_if(set.requests.begin() + static_cast<std::ptrdiff_t>(from), set.requests.end(),
                      [](const auto& r) { return !r->done(); }));
  };
  set.core->wait_until_finished(
      deadline, [&] { return all_done_from_locked(set, from); }, unfinished);
  std::lock_guard lock(set.core->mu);
  return all_done_from_locked(set, from);
}

// Throws the failure of request i (under mu), if it failed or cannot finish.
void check_request_locked(const ResultSet& set, std::size_t i) {
  const RequestState& r = *set.requests[i];
  if (!r.done()) throw Error("the client is closed" + set.core->stop_reason_locked());
  if (r.failure) detail::throw_failure(*r.failure, r.msg_id, set.core->stop_reason_locked());
}

}  // namespace

bool AsyncResult::ready() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  return all_done_locked(s);
}

bool AsyncResult::wait(std::optional<Seconds> timeout) const {
  return wait_set(checked(set_), deadline_of(timeout));
}

Value AsyncResult::get(std::optional<Seconds> timeout) const {
  const ResultSet& s = checked(set_);
  if (!wait_set(s, deadline_of(timeout))) {
    std::lock_guard lock(s.core->mu);
    throw TimeoutError("the result is not ready after " + seconds_text(*timeout) + " s (" +
                       std::to_string(done_count_locked(s)) + " of " +
                       std::to_string(s.requests.size()) + " requests answered)");
  }
  std::lock_guard lock(s.core->mu);
  std::vector<RemoteError> errors;
  for (std::size_t i = 0; i < s.requests.size(); ++i) {
    const RequestState& r = *s.requests[i];
    if (!r.done() || (r.failure && r.failure->kind == Failure::Kind::kClosed)) {
      throw Error("the client is closed" + s.core->stop_reason_locked());
    }
    if (r.failure) errors.push_back(detail::to_remote_error(*r.failure, r.msg_id));
  }
  if (!errors.empty()) {
    if (s.requests.size() == 1) check_request_locked(s, 0);
    throw CompositeError(std::move(errors));
  }
  switch (s.combine) {
    case Combine::kOne:
      return s.requests.empty() ? Value() : part_value_locked(*s.requests.front());
    case Combine::kNone:
      return Value();
    case Combine::kList:
    case Combine::kConcat: {
      std::vector<Value> parts;
      parts.reserve(s.requests.size());
      for (const auto& r : s.requests)
        parts.push_back(part_value_locked(*r));
      if (s.combine == Combine::kList) return Value::list(std::move(parts));
      return detail::concatenate(parts);
    }
  }
  return Value();
}

bool AsyncResult::successful() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  if (!all_done_locked(s)) throw Error("the result is not ready");
  return std::none_of(s.requests.begin(), s.requests.end(),
                      [](const auto& r) { return r->failure.has_value(); });
}

std::size_t AsyncResult::progress() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  return done_count_locked(s);
}

std::size_t AsyncResult::size() const {
  return checked(set_).requests.size();
}

const std::vector<std::string>& AsyncResult::msg_ids() const {
  return checked(set_).msg_ids;
}

std::vector<ResultMetadata> AsyncResult::metadata() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  std::vector<ResultMetadata> out;
  out.reserve(s.requests.size());
  for (const auto& r : s.requests)
    out.push_back(r->meta);
  return out;
}

ResultMetadata AsyncResult::metadata(std::size_t i) const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  return s.requests.at(i)->meta;
}

std::vector<std::string> AsyncResult::stdout_texts() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  std::vector<std::string> out;
  for (const auto& r : s.requests)
    out.push_back(r->meta.stdout_text);
  return out;
}

std::vector<std::string> AsyncResult::stderr_texts() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  std::vector<std::string> out;
  for (const auto& r : s.requests)
    out.push_back(r->meta.stderr_text);
  return out;
}

Seconds AsyncResult::elapsed() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  std::optional<TimePoint> first;
  std::optional<TimePoint> last;
  for (const auto& r : s.requests) {
    if (r->meta.submitted && (!first || *r->meta.submitted < *first)) first = r->meta.submitted;
    if (r->meta.received && (!last || *r->meta.received > *last)) last = r->meta.received;
  }
  if (!first) return Seconds(0);
  const TimePoint end = all_done_locked(s) && last ? *last : std::chrono::system_clock::now();
  return std::chrono::duration_cast<Seconds>(end - *first);
}

Seconds AsyncResult::serial_time() const {
  const ResultSet& s = checked(set_);
  std::lock_guard lock(s.core->mu);
  Seconds total(0);
  for (const auto& r : s.requests) {
    if (r->meta.started && r->meta.completed) {
      total += std::chrono::duration_cast<Seconds>(*r->meta.completed - *r->meta.started);
    }
  }
  return total;
}

bool AsyncResult::wait_for_output(std::optional<Seconds> timeout) const {
  const ResultSet& s = checked(set_);
  if (!wait(timeout)) return false;
  auto complete = [&] {
    return std::all_of(s.requests.begin(), s.requests.end(),
                       [](const auto& r) { return r->replied && r->meta.outputs_complete; });
  };
  s.core->wait_until(deadline_of(timeout), complete);
  std::lock_guard lock(s.core->mu);
  return complete();
}

void AsyncResult::for_each(const std::function<void(const Value&)>& fn,
                           std::optional<Seconds> timeout) const {
  const ResultSet& s = checked(set_);
  const auto deadline = deadline_of(timeout);
  auto give = [&](std::size_t i) {
    Value part;
    {
      std::lock_guard lock(s.core->mu);
      check_request_locked(s, i);
      part = part_value_locked(*s.requests[i]);
    }
    if (s.combine == Combine::kConcat) {
      const Value items = detail::concatenate({part});
      if (items.is_array()) {
        fn(items);  // a chunk of array rows stays one array
      } else {
        for (std::size_t k = 0; k < items.size(); ++k)
          fn(items[k]);
      }
    } else {
      fn(part);
    }
  };
  auto timed_out = [&](std::size_t done) {
    return TimeoutError("for_each: " + std::to_string(done) + " of " +
                        std::to_string(s.requests.size()) + " requests answered after " +
                        seconds_text(*timeout) + " s");
  };
  if (s.from_hub) wait_set(s, deadline);
  if (s.ordered) {
    for (std::size_t i = 0; i < s.requests.size(); ++i) {
      const auto& r = s.requests[i];
      if (!s.core->wait_until(deadline, [&] { return r->done(); })) throw timed_out(i);
      give(i);
    }
    return;
  }
  std::vector<bool> given(s.requests.size(), false);
  std::size_t count = 0;
  while (count < s.requests.size()) {
    std::vector<std::size_t> ready;
    const bool ok = s.core->wait_until(deadline, [&] {
      for (std::size_t i = 0; i < s.requests.size(); ++i) {
        if (!given[i] && s.requests[i]->done()) return true;
      }
      return false;
    });
    {
      std::lock_guard lock(s.core->mu);
      for (std::size_t i = 0; i < s.requests.size(); ++i) {
        if (!given[i] && (s.requests[i]->done() || s.core->io_stopped_locked())) {
          ready.push_back(i);
        }
      }
    }
    if (!ok && ready.empty()) throw timed_out(count);
    for (std::size_t i : ready) {
      given[i] = true;
      ++count;
      give(i);
    }
  }
}

void AsyncResult::abort() const {
  const ResultSet& s = checked(set_);
  json ids = json::array();
  {
    std::lock_guard lock(s.core->mu);
    for (const auto& r : s.requests) {
      if (!r->done()) ids.push_back(r->msg_id);
    }
  }
  if (ids.empty()) return;
  for (const auto& [id, uuid] : s.core->engines()) {
    s.core->submit(detail::ClientCore::Channel::kControl, uuid, mt::kAbortRequest,
                   json{{"msg_ids", ids}});
  }
}

bool wait_all(std::span<const AsyncResult> results, std::optional<Seconds> timeout) {
  const auto deadline = deadline_of(timeout);
  for (const auto& r : results) {
    if (!wait_set(checked(r.set_), deadline)) return false;
  }
  return true;
}

std::optional<std::size_t> wait_any(std::span<const AsyncResult> results,
                                    std::optional<Seconds> timeout) {
  if (results.empty()) return std::nullopt;
  const auto deadline = deadline_of(timeout);
  const auto& core = checked(results.front().set_).core;
  bool one_client = true;
  for (const auto& r : results) {
    if (checked(r.set_).core != core || r.set_->from_hub) one_client = false;
  }
  auto first_ready = [&]() -> std::optional<std::size_t> {
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (all_done_locked(*results[i].set_)) return i;
    }
    return std::nullopt;
  };
  if (one_client) {
    core->wait_until(deadline, [&] { return first_ready().has_value(); });
    std::lock_guard lock(core->mu);
    return first_ready();
  }
  for (;;) {
    for (std::size_t i = 0; i < results.size(); ++i) {
      if (results[i].ready()) return i;
    }
    if (deadline && SteadyClock::now() >= *deadline) return std::nullopt;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

}  // namespace ipcpp
