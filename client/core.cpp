#include "client/core.hpp"

#include <algorithm>
#include <array>
#include <cstring>
#include <future>
#include <unistd.h>

#include "profiles/profile.hpp"
#include "proto/clock.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"
#include "proto/peek.hpp"
#include "proto/poller.hpp"
#include "proto/wire.hpp"
#include "proto/zmtp_socket.hpp"

namespace ipcpp::detail {
namespace {

using nlohmann::json;
using SteadyClock = std::chrono::steady_clock;
namespace mt = proto::msg_type;

// What a user thread asks of the I/O thread: send a request, forget requests given up (their
// ids follow), stop.
enum Command : std::uint8_t { kSubmit = 0, kStop = 1, kForget = 2 };

std::atomic<std::uint64_t> g_next_serial{1};

std::optional<TimePoint> parse_time(const json& j) {
  if (!j.is_string()) return std::nullopt;
  auto t = proto::parse_timestamp(j.get_ref<const std::string&>());
  if (!t) return std::nullopt;
  return TimePoint(std::chrono::duration_cast<TimePoint::duration>(t->time_since_epoch()));
}

std::string seconds_text(Seconds s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", s.count());
  return buf;
}

std::filesystem::path connection_file_of(const ClientOptions& o) {
  if (!o.connection_file.empty()) return std::filesystem::absolute(o.connection_file);
  const profiles::Profile profile =
      o.profile_dir.empty()
          ? profiles::Profile::named(o.profile, profiles::ipython_dir(o.ipython_dir))
          : profiles::Profile::at(o.profile_dir);
  return profile.client_connection_file(o.cluster_id);
}

std::string string_or(const json& j, const char* key, std::string fallback = {}) {
  if (j.is_object()) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) return it->get<std::string>();
  }
  return fallback;
}

}  // namespace

// A user thread's way in: its own inproc PUSH and its own Session (same session id, its own
// msg_id prefix). Used only by the thread that created it, under submit_mu_ (shared).
struct ClientCore::Submitter {
  Submitter(zmq::context_t& ctx, const std::string& endpoint, proto::SessionOptions options)
      : push(ctx, zmq::socket_type::push), session(std::move(options)) {
    push.set(zmq::sockopt::linger, 0);
    push.connect(endpoint);
  }
  zmq::socket_t push;
  proto::Session session;
};

namespace {
thread_local std::unordered_map<std::uint64_t, std::weak_ptr<void>> t_submitters;
}  // namespace

std::shared_ptr<ClientCore> ClientCore::connect(const ClientOptions& options) {
  std::shared_ptr<ClientCore> core(new ClientCore());
  core->start(options);
  return core;
}

void ClientCore::start(const ClientOptions& options) {
  timeout_ = options.timeout;
  file_path_ = connection_file_of(options);
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(options.timeout);
  std::error_code ec;
  while (!std::filesystem::exists(file_path_, ec) && SteadyClock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!std::filesystem::exists(file_path_, ec)) {
    throw Error("no connection file " + file_path_.string() + " after " +
                seconds_text(options.timeout) +
                " s: start a controller first (ipcpp-cluster start, or ipcpp-controller)");
  }
  auto file = proto::read_client_connection_file(file_path_);
  if (!file) throw Error(file.error().reason);
  file_ = std::move(file).value();
  session_id_ = proto::new_session_id();
  serial_ = g_next_serial++;
  inproc_endpoint_ = "inproc://ipcpp-client-" + std::to_string(serial_);

  std::promise<void> ready;
  auto started = ready.get_future();
  io_ = std::thread([this, &ready] {
    try {
      io_loop_start(ready);
    } catch (...) {
      // io_loop_start reports set-up errors through the promise; nothing else escapes.
    }
  });
  try {
    started.get();
  } catch (...) {
    io_.join();
    throw;
  }

  // Ask for the engines. Notifications keep the table current from here on.
  json reply;
  try {
    reply = query(mt::kConnectionRequest, json::object());
  } catch (const TimeoutError&) {
    close();
    throw Error("no answer from the controller at " + file_.url(file_.registration) + " within " +
                seconds_text(options.timeout) + " s: is it running, and is " + file_path_.string() +
                " its current connection file?");
  }
  if (auto content = proto::decode_content<proto::ConnectionReply>(reply, "connection_reply");
      !content) {
    close();
    throw Error("the controller's connection_reply is malformed: " + content.error().reason);
  }
  std::lock_guard lock(mu);
  add_engines_locked(reply);
  last_refresh_ = SteadyClock::now();
}

void ClientCore::add_engines_locked(const json& connection_reply) {
  auto content =
      proto::decode_content<proto::ConnectionReply>(connection_reply, "connection_reply");
  if (!content) return;
  for (const auto& [id, uuid] : content->engines) {
    try {
      const std::int64_t n = std::stoll(id);
      if (engines_.contains(n) || departed_.contains(uuid)) continue;
      engines_[n] = uuid;
      engine_ids_[uuid] = n;
    } catch (const std::exception&) {
      // An engine id that is not a number: not from a controller we understand; skip it.
    }
  }
}

void ClientCore::refresh_engines() {
  {
    std::lock_guard lock(mu);
    const auto now = SteadyClock::now();
    if (now - last_refresh_ < std::chrono::seconds(1)) return;
    last_refresh_ = now;
  }
  const json reply = query(mt::kConnectionRequest, json::object());
  bool added = false;
  {
    std::lock_guard lock(mu);
    const std::size_t before = engines_.size();
    add_engines_locked(reply);
    added = engines_.size() != before;
  }
  if (added) cv.notify_all();
}

ClientCore::~ClientCore() {
  close();
}

ClientCore::Submitter& ClientCore::submitter() {
  auto it = t_submitters.find(serial_);
  if (it != t_submitters.end()) {
    if (auto s = it->second.lock()) return *static_cast<Submitter*>(s.get());
  }
  for (auto i = t_submitters.begin(); i != t_submitters.end();) {
    i = i->second.expired() ? t_submitters.erase(i) : std::next(i);
  }
  const int k = next_submitter_++;
  proto::SessionOptions o;
  o.key = file_.key;
  o.signature_scheme = file_.signature_scheme;
  o.session_id = session_id_;
  o.msg_id_prefix = session_id_ + "_" + std::to_string(::getpid()) + "_" + std::to_string(k) + "_";
  o.digest_history_size = 0;  // it only sends
  auto s = std::make_shared<Submitter>(ctx_, inproc_endpoint_, std::move(o));
  {
    std::lock_guard lock(submitters_list_mu_);
    submitters_.push_back(s);
  }
  t_submitters[serial_] = s;
  return *s;
}

std::shared_ptr<RequestState> ClientCore::submit(Channel channel, const std::string& target_uuid,
                                                 const char* msg_type, const json& content,
                                                 const json& metadata,
                                                 std::vector<zmq::message_t> buffers,
                                                 bool wants_output) {
  std::shared_lock lock(submit_mu_);
  if (closed_) throw Error("the client is closed");
  Submitter& s = submitter();

  proto::Message m;
  m.header = s.session.make_header(msg_type);
  m.content = content;
  m.metadata = metadata;
  m.buffers = std::move(buffers);
  if (!target_uuid.empty()) m.identities.emplace_back(target_uuid.data(), target_uuid.size());
  std::string msg_id = m.header.msg_id;
  return enqueue(s, channel, target_uuid, msg_type, std::move(msg_id),
                 s.session.serialize(std::move(m)), wants_output);
}

std::shared_ptr<RequestState> ClientCore::submit_apply(Channel channel,
                                                       const std::string& target_uuid,
                                                       std::string_view metadata_text,
                                                       std::vector<zmq::message_t> buffers) {
  std::shared_lock lock(submit_mu_);
  if (closed_) throw Error("the client is closed");
  Submitter& s = submitter();

  std::vector<zmq::message_t> identities;
  if (!target_uuid.empty()) identities.emplace_back(target_uuid.data(), target_uuid.size());
  const std::size_t header_index = identities.size() + 2;  // after <IDS|MSG> and the signature
  zmq::message_t no_parent;
  auto message = s.session.build_text(std::move(identities), proto::msg_type::kApplyRequest, "{}",
                                      no_parent, metadata_text, std::move(buffers));
  // The header was just written by the session: its msg_id is a plain string.
  const auto msg_id = proto::peek_string(message[header_index].to_string_view(), "msg_id");
  if (!msg_id.found()) throw Error("internal: a new header without a plain msg_id");
  return enqueue(s, channel, target_uuid, proto::msg_type::kApplyRequest, std::string(msg_id.value),
                 std::move(message), false);
}

std::string ClientCore::compact(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::shared_ptr<RequestState> ClientCore::enqueue(Submitter& s, Channel channel,
                                                  const std::string& target_uuid,
                                                  const char* msg_type, std::string msg_id,
                                                  std::vector<zmq::message_t> message,
                                                  bool wants_output) {
  auto state = std::make_shared<RequestState>();
  state->msg_id = std::move(msg_id);
  state->msg_type = msg_type;
  state->target_uuid = target_uuid;
  state->wants_output = wants_output;
  state->meta.msg_id = state->msg_id;
  state->meta.submitted = std::chrono::system_clock::now();
  {
    std::lock_guard g(mu);
    if (io_stopped_) throw Error("the client is closed" + stop_reason_);
    ++outstanding_;
  }

  std::vector<zmq::message_t> frames;
  frames.reserve(message.size() + 2);
  const std::array<std::uint8_t, 2> command{kSubmit, static_cast<std::uint8_t>(channel)};
  frames.emplace_back(command.data(), command.size());
  auto* holder = new std::shared_ptr<RequestState>(state);
  frames.emplace_back(&holder, sizeof holder);
  for (auto& f : message)
    frames.push_back(std::move(f));
  try {
    proto::send_frames(s.push, std::move(frames));
  } catch (...) {
    delete holder;
    std::lock_guard g(mu);
    --outstanding_;
    throw;
  }
  return state;
}

json ClientCore::query(const char* msg_type, const json& content,
                       std::vector<zmq::message_t>* buffers) {
  auto state = submit(Channel::kQuery, "", msg_type, content);
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(timeout_);
  if (!wait_until(deadline, [&] { return state->replied; })) {
    give_up({state});
    throw TimeoutError("the controller did not answer " + std::string(msg_type) + " within " +
                       seconds_text(timeout_) + " s");
  }
  std::lock_guard lock(mu);
  if (!state->replied) throw Error("the client is closed" + stop_reason_);
  if (state->failure) throw_failure(*state->failure, state->msg_id, stop_reason_);
  if (buffers != nullptr) *buffers = std::move(state->reply_buffers);
  return std::move(state->reply_content);
}

void ClientCore::control(const char* msg_type, const json& content,
                         const std::vector<std::string>& uuids) {
  std::vector<std::shared_ptr<RequestState>> states;
  states.reserve(uuids.size());
  for (const auto& uuid : uuids)
    states.push_back(submit(Channel::kControl, uuid, msg_type, content));
  const auto deadline =
      SteadyClock::now() + std::chrono::duration_cast<SteadyClock::duration>(timeout_);
  const bool all = wait_until(deadline, [&] {
    for (const auto& s : states) {
      if (!s->replied) return false;
    }
    return true;
  });
  if (!all) give_up(states);
  std::lock_guard lock(mu);
  std::vector<RemoteError> errors;
  for (const auto& s : states) {
    if (!s->replied) {
      if (!all) {
        throw TimeoutError("engine " + s->target_uuid + " did not answer " + std::string(msg_type) +
                           " within " + seconds_text(timeout_) + " s");
      }
      throw Error("the client is closed" + stop_reason_);
    }
    // An engine that died or left while asked is not an error of the request.
    if (s->failure && s->failure->kind == Failure::Kind::kRemote) {
      errors.push_back(to_remote_error(*s->failure, s->msg_id));
    }
  }
  if (errors.size() == 1) throw errors.front();
  if (!errors.empty()) throw CompositeError(std::move(errors));
}

void ClientCore::give_up(const std::vector<std::shared_ptr<RequestState>>& states) {
  std::vector<zmq::message_t> frames;
  const std::array<std::uint8_t, 2> command{kForget, 0};
  frames.emplace_back(command.data(), command.size());
  {
    std::lock_guard lock(mu);
    for (const auto& s : states) {
      if (s->replied) continue;
      if (!s->counted_) {
        s->counted_ = true;
        if (outstanding_ > 0) --outstanding_;
      }
      frames.emplace_back(s->msg_id.data(), s->msg_id.size());
    }
  }
  cv.notify_all();
  if (frames.size() == 1) return;
  std::shared_lock lock(submit_mu_);
  if (closed_) return;
  proto::send_frames(submitter().push, std::move(frames));
}

std::vector<std::int64_t> ClientCore::ids() const {
  std::lock_guard lock(mu);
  std::vector<std::int64_t> out;
  out.reserve(engines_.size());
  for (const auto& [id, uuid] : engines_)
    out.push_back(id);
  return out;
}

std::optional<std::string> ClientCore::uuid_of(std::int64_t id) const {
  std::lock_guard lock(mu);
  auto it = engines_.find(id);
  if (it == engines_.end()) return std::nullopt;
  return it->second;
}

std::map<std::int64_t, std::string> ClientCore::engines() const {
  std::lock_guard lock(mu);
  return engines_;
}

std::int64_t ClientCore::engine_id_locked(const std::string& uuid) const {
  auto it = engine_ids_.find(uuid);
  if (it != engine_ids_.end()) return it->second;
  auto gone = departed_.find(uuid);
  return gone != departed_.end() ? gone->second : -1;
}

void ClientCore::close() {
  {
    std::unique_lock lock(submit_mu_);
    if (closed_) return;
    closed_ = true;
    std::lock_guard list(submitters_list_mu_);
    for (auto& s : submitters_)
      s->push.close();
    submitters_.clear();
  }
  if (io_.joinable()) {
    // A socket of this thread's own, used once, tells the I/O thread to stop.
    zmq::socket_t stop(ctx_, zmq::socket_type::push);
    stop.set(zmq::sockopt::linger, 0);
    stop.connect(inproc_endpoint_);
    const std::array<std::uint8_t, 2> command{kStop, 0};
    stop.send(zmq::buffer(command), zmq::send_flags::none);
    stop.close();
    io_.join();
  }
  ctx_.close();
}

// ---- The I/O thread --------------------------------------------------------------------------

void ClientCore::io_loop_start(std::promise<void>& ready) {
  // The sockets to the controller speak ZMTP themselves (proto/zmtp_socket.hpp): this thread
  // reads and writes their TCP connections directly, with no ZeroMQ I/O thread in between.
  struct Sockets {
    proto::ZmtpSocket query, notification, mux, task, control, iopub;
    zmq::socket_t pull;
  };
  auto zmtp = [](proto::ZmtpSocketType type) {
    proto::ZmtpSocketOptions o;
    o.type = type;
    o.linger = std::chrono::milliseconds(0);
    return proto::ZmtpSocket(std::move(o));
  };
  using proto::ZmtpSocketType;
  std::unique_ptr<Sockets> s;
  try {
    s = std::make_unique<Sockets>(Sockets{
        zmtp(ZmtpSocketType::kDealer), zmtp(ZmtpSocketType::kSub), zmtp(ZmtpSocketType::kDealer),
        zmtp(ZmtpSocketType::kDealer), zmtp(ZmtpSocketType::kDealer), zmtp(ZmtpSocketType::kSub),
        zmq::socket_t(ctx_, zmq::socket_type::pull)});
    s->notification.subscribe("");
    s->iopub.subscribe("");
    s->pull.set(zmq::sockopt::linger, 0);
    s->pull.bind(inproc_endpoint_);
    s->notification.connect(file_.url(file_.notification));
    s->iopub.connect(file_.url(file_.iopub));
    s->query.connect(file_.url(file_.registration));
    s->mux.connect(file_.url(file_.mux));
    s->task.connect(file_.url(file_.task));
    s->control.connect(file_.url(file_.control));
    proto::SessionOptions o;
    o.key = file_.key;
    o.signature_scheme = file_.signature_scheme;
    o.session_id = session_id_;
    o.msg_id_prefix = session_id_ + "_" + std::to_string(::getpid()) + "_io_";
    io_session_ = std::make_unique<proto::Session>(std::move(o));
  } catch (const std::exception& e) {
    ready.set_exception(std::make_exception_ptr(
        Error("cannot connect to the controller of " + file_path_.string() + ": " + e.what())));
    return;
  }
  ready.set_value();

  proto::ZmtpSocket* by_channel[] = {&s->query, &s->mux, &s->task, &s->control};
  proto::ZmtpSocket* readers[] = {&s->query,   &s->mux,   &s->task,
                                  &s->control, &s->iopub, &s->notification};
  // One poll(2) per wait over the submissions' inproc socket and the six connections
  // (proto/poller.hpp); entry 0 is the inproc socket, entry i > 0 is readers[i - 1].
  proto::Poller poller;
  poller.add(s->pull);
  for (proto::ZmtpSocket* r : readers)
    poller.add(r->fd());
  constexpr std::size_t kEntries = 1 + std::size(readers);
  constexpr int kBatch = 256;  // messages taken from one socket before looking at the others
  bool running = true;
  while (running)
    try {
      // Messages already read (a batch left them) must not wait for the next wake-up.
      const bool waiting = std::any_of(std::begin(readers), std::end(readers),
                                       [](const proto::ZmtpSocket* r) { return r->waiting() > 0; });
      poller.wait(std::chrono::milliseconds(waiting ? 0 : -1));
      // Requests submitted in a burst (a map) leave in one write per socket at the turn's end.
      const proto::WriteBatch batches[] = {proto::WriteBatch(s->mux), proto::WriteBatch(s->task),
                                           proto::WriteBatch(s->control)};
      for (std::size_t i = 0; i < kEntries && running; ++i) {
        if (!poller.readable(i) && (i == 0 || readers[i - 1]->waiting() == 0)) continue;
        for (int n = 0; n < kBatch; ++n) {
          auto frames = i == 0 ? proto::recv_frames(s->pull, zmq::recv_flags::dontwait)
                               : readers[i - 1]->receive();
          if (frames.empty()) {
            if (i == 0) poller.emptied(0);
            break;
          }
          if (i == 0) {
            const std::uint8_t command =
                frames[0].size() >= 1 ? frames[0].data<std::uint8_t>()[0] : std::uint8_t{kSubmit};
            if (command == kStop) {
              running = false;
              break;
            }
            if (command == kForget) {
              // Given up by their callers: a late answer finds nothing and is dropped.
              for (std::size_t k = 1; k < frames.size(); ++k)
                pending_.erase(frames[k].to_string());
              continue;
            }
            on_submission(std::move(frames), by_channel);
          } else if (i <= 4) {
            on_reply(std::move(frames));
          } else if (i == 5) {
            on_iopub(std::move(frames));
          } else {
            on_notification(std::move(frames));
            if (controller_gone_) running = false;
          }
        }
      }
      // Waiters whose wait can have ended by now: plain ones always, counting ones once
      // enough requests have finished.
      bool wake = false;
      {
        std::lock_guard lock(mu);
        wake = plain_waiters_ > 0 || (!wake_points_.empty() && *wake_points_.begin() <= finished_);
      }
      if (wake) cv.notify_all();
    } catch (const std::exception& e) {
      // Nothing a peer sends gets here; a socket error does. Stop and say why.
      std::lock_guard lock(mu);
      stop_reason_ = std::string(": its I/O thread failed: ") + e.what();
      running = false;
    }

  // Stopping: whatever was submitted and not answered fails.
  for (;;) {
    auto frames = proto::recv_frames(s->pull, zmq::recv_flags::dontwait);
    if (frames.empty()) break;
    if (frames.size() >= 2 && frames[0].data<std::uint8_t>()[0] == kSubmit &&
        frames[1].size() == sizeof(void*)) {
      std::shared_ptr<RequestState>* holder = nullptr;
      std::memcpy(&holder, frames[1].data(), sizeof holder);
      pending_.emplace((*holder)->msg_id, std::move(*holder));
      delete holder;
    }
  }
  {
    std::lock_guard lock(mu);
    io_stopped_ = true;
    for (auto& [id, state] : pending_) {
      if (state->replied) continue;
      state->failure = Failure{Failure::Kind::kClosed, "", "", {}, -1, {}};
      state->replied = true;
      state->meta.outputs_complete = true;
    }
    pending_.clear();
  }
  cv.notify_all();
  io_session_.reset();
  s.reset();
}

void ClientCore::on_submission(std::vector<zmq::message_t>&& frames,
                               proto::ZmtpSocket* by_channel[]) {
  if (frames.size() < 3 || frames[1].size() != sizeof(void*)) return;
  const auto channel = static_cast<Channel>(frames[0].data<std::uint8_t>()[1]);
  std::shared_ptr<RequestState>* holder = nullptr;
  std::memcpy(&holder, frames[1].data(), sizeof holder);
  std::shared_ptr<RequestState> state = std::move(*holder);
  delete holder;

  if (!state->target_uuid.empty()) {
    // A request to an engine that has left would be dropped by the controller: fail it here.
    std::lock_guard lock(mu);
    if (engine_ids_.count(state->target_uuid) == 0) {
      const std::int64_t id = engine_id_locked(state->target_uuid);
      state->failure = Failure{Failure::Kind::kEngine,
                               "EngineError",
                               "engine " + (id >= 0 ? std::to_string(id) : state->target_uuid) +
                                   " is not registered (it stopped or died) : " + state->msg_type +
                                   " " + state->msg_id + " was not sent",
                               {},
                               id,
                               state->target_uuid};
      state->replied = true;
      state->meta.outputs_complete = true;
      state->meta.status = "error";
      finish_locked(*state);
      return;
    }
  }
  pending_.emplace(state->msg_id, state);
  std::vector<zmq::message_t> out;
  out.reserve(frames.size() - 2);
  for (std::size_t i = 2; i < frames.size(); ++i)
    out.push_back(std::move(frames[i]));
  by_channel[static_cast<int>(channel)]->send(std::move(out));
}

std::optional<proto::Message> ClientCore::decode(std::vector<zmq::message_t>&& frames) {
  auto decoded = io_session_->decode(std::move(frames));
  if (!decoded) {
    ++dropped_;
    return std::nullopt;
  }
  return std::move(decoded).value();
}

void ClientCore::finish_locked(RequestState& state) {
  if (state.done() && !state.finish_counted_) {
    state.finish_counted_ = true;
    ++finished_;
  }
  if (state.done() && !state.counted_) {
    state.counted_ = true;
    if (outstanding_ > 0) --outstanding_;
  }
  if (state.replied && state.meta.outputs_complete) pending_.erase(state.msg_id);
}

void ClientCore::on_reply(std::vector<zmq::message_t>&& frames) {
  auto wire = io_session_->authenticate(std::move(frames));
  if (!wire) {
    ++dropped_;
    return;
  }
  if (on_plain_apply_reply(*wire)) return;
  auto decoded = proto::Session::parse(std::move(wire).value());
  if (!decoded) {
    ++dropped_;
    return;
  }
  proto::Message& m = *decoded;
  auto it = pending_.find(m.parent_msg_id());
  if (it == pending_.end()) return;
  std::shared_ptr<RequestState> state = it->second;

  const std::string status = string_or(m.content, "status", "ok");
  const bool is_hub_error = m.msg_type() == mt::kHubError;
  Outcome outcome =
      read_outcome(m.content, m.msg_type() == mt::kApplyReply, std::move(m.buffers), is_hub_error);
  const std::string engine_uuid = string_or(m.metadata, "engine");
  const auto started = parse_time(
      m.metadata.is_object() && m.metadata.contains("started") ? m.metadata["started"] : json());
  const auto completed = parse_time(json(m.header.date));

  std::lock_guard lock(mu);
  RequestState& s = *state;
  if (s.replied) return;  // already failed here (its engine left)
  record_reply_locked(s, std::move(outcome), is_hub_error ? "error" : status, engine_uuid, started,
                      completed, &m.content);
  // An ipcpp engine asked for quiet statuses says when no idle status follows the reply.
  if (const auto follows = m.metadata.find(proto::kIdleFollowsKey);  // end() for a non-object
      follows != m.metadata.end() && follows->is_boolean() && !follows->get<bool>()) {
    s.meta.outputs_complete = true;
  }
  if (s.msg_type != mt::kApplyRequest && s.msg_type != mt::kExecuteRequest) {
    s.reply_content = std::move(m.content);
    s.reply_buffers = std::move(m.buffers);
    s.meta.outputs_complete = true;
  }
  finish_locked(s);
}

bool ClientCore::on_plain_apply_reply(proto::WireMessage& wire) {
  auto text = [](const zmq::message_t& f) {
    return std::string_view(static_cast<const char*>(f.data()), f.size());
  };
  static constexpr std::string_view kHeaderKeys[] = {"msg_type", "date"};
  static constexpr std::string_view kMetadataKeys[] = {"engine", "started", proto::kIdleFollowsKey};
  std::array<proto::Peeked, 2> header;
  proto::peek_strings(text(wire.header), kHeaderKeys, header);  // one scan for both
  const proto::Peeked& type = header[0];
  const proto::Peeked& date = header[1];
  if (!type.found() || type.value != mt::kApplyReply) return false;
  const auto status = proto::peek_string(text(wire.content), "status");
  if (!status.found() || status.value != "ok") return false;
  const auto parent = proto::peek_string(text(wire.parent_header), "msg_id");
  std::array<proto::Peeked, 3> metadata;
  proto::peek_raw(text(wire.metadata), kMetadataKeys, metadata);
  const proto::Peeked engine = proto::as_string(metadata[0]);
  const proto::Peeked started = proto::as_string(metadata[1]);
  const proto::Peeked& idle_follows = metadata[2];
  if (!parent.found() || !engine.found() || engine.value.empty() || !date.found() ||
      started.status == proto::Peeked::Status::kUnknown ||
      idle_follows.status == proto::Peeked::Status::kUnknown) {
    return false;
  }
  auto it = pending_.find(parent.value);
  if (it == pending_.end()) return true;  // not ours, or already answered: as parse() would
  std::shared_ptr<RequestState> state = it->second;
  // msg_type is written before the request is submitted, and never again.
  if (state->msg_type != mt::kApplyRequest) return false;

  static const json kOk = {{"status", "ok"}};
  Outcome outcome = read_outcome(kOk, true, std::move(wire.buffers), false);
  const auto time_of = [](std::string_view iso) -> std::optional<TimePoint> {
    auto t = proto::parse_timestamp(iso);
    if (!t) return std::nullopt;
    return TimePoint(std::chrono::duration_cast<TimePoint::duration>(t->time_since_epoch()));
  };
  const std::string engine_uuid(engine.value);
  const auto started_at = started.found() ? time_of(started.value) : std::nullopt;
  const auto completed_at = time_of(date.value);

  std::lock_guard lock(mu);
  RequestState& s = *state;
  if (s.replied) return true;  // already failed here (its engine left)
  record_reply_locked(s, std::move(outcome), "ok", engine_uuid, started_at, completed_at, nullptr);
  if (idle_follows.found() && idle_follows.value == "false") s.meta.outputs_complete = true;
  finish_locked(s);
  return true;
}

void ClientCore::record_reply_locked(RequestState& s, Outcome&& outcome, const std::string& status,
                                     const std::string& engine_uuid,
                                     std::optional<TimePoint> started,
                                     std::optional<TimePoint> completed, const json* content) {
  std::optional<Failure>& failure = outcome.failure;
  s.replied = true;
  s.meta.received = std::chrono::system_clock::now();
  s.meta.status = failure && failure->ename == "TaskAborted" ? "aborted" : status;
  s.meta.started = started;
  s.meta.completed = completed;
  if (!engine_uuid.empty()) {
    s.meta.engine_uuid = engine_uuid;
    s.meta.engine_id = engine_id_locked(engine_uuid);
  } else if (!s.target_uuid.empty()) {
    s.meta.engine_uuid = s.target_uuid;
    s.meta.engine_id = engine_id_locked(s.target_uuid);
  }
  if (failure) {
    failure->engine_uuid = s.meta.engine_uuid;
    failure->engine_id = s.meta.engine_id;
    if (failure->engine_id < 0 && content != nullptr && content->is_object()) {
      const json& info = content->contains("engine_info") ? (*content)["engine_info"] : json();
      if (info.is_object() && info.contains("engine_id") && info["engine_id"].is_number_integer()) {
        failure->engine_id = info["engine_id"].get<std::int64_t>();
      }
    }
  }
  // No idle status follows a reply that did not come from running the request on an engine.
  if (engine_uuid.empty() || s.meta.status == "aborted" ||
      (failure && failure->kind == Failure::Kind::kEngine)) {
    s.meta.outputs_complete = true;
  }
  s.failure = std::move(failure);
  s.value = std::move(outcome.value);
}

void ClientCore::on_iopub(std::vector<zmq::message_t>&& frames) {
  auto wire = io_session_->authenticate(std::move(frames));
  if (!wire) {
    ++dropped_;
    return;
  }
  // Statuses come twice per request: read the three fields they need without parsing.
  auto frame_text = [](const zmq::message_t& f) {
    return std::string_view(static_cast<const char*>(f.data()), f.size());
  };
  if (const auto type = proto::peek_string(frame_text(wire->header), "msg_type");
      type.found() && type.value == mt::kStatus) {
    const auto parent = proto::peek_string(frame_text(wire->parent_header), "msg_id");
    const auto state = proto::peek_string(frame_text(wire->content), "execution_state");
    if (parent.found() && state.found()) {
      if (state.value != "idle") return;
      auto it = pending_.find(parent.value);
      if (it == pending_.end()) return;
      std::shared_ptr<RequestState> request = it->second;
      std::lock_guard lock(mu);
      request->meta.outputs_complete = true;
      finish_locked(*request);
      return;
    }
  }
  auto decoded = proto::Session::parse(std::move(wire.value()));
  if (!decoded) {
    ++dropped_;
    return;
  }
  proto::Message& m = *decoded;
  auto it = pending_.find(m.parent_msg_id());
  if (it == pending_.end()) return;
  std::shared_ptr<RequestState> state = it->second;
  const std::string& type = m.msg_type();
  std::lock_guard lock(mu);
  RequestState& s = *state;
  if (type == mt::kStream) {
    const std::string name = string_or(m.content, "name");
    const std::string text = string_or(m.content, "text");
    (name == "stderr" ? s.meta.stderr_text : s.meta.stdout_text) += text;
  } else if (type == mt::kExecuteResult) {
    if (m.content.is_object() && m.content.contains("data")) {
      s.meta.execute_result = std::move(m.content["data"]);
    }
  } else if (type == mt::kStatus) {
    if (string_or(m.content, "execution_state") == "idle") {
      s.meta.outputs_complete = true;
      finish_locked(s);
    }
  }
}

void ClientCore::on_notification(std::vector<zmq::message_t>&& frames) {
  auto decoded = decode(std::move(frames));
  if (!decoded) return;
  proto::Message& m = *decoded;
  const std::string& type = m.msg_type();
  if (type == mt::kShutdownNotification) {
    std::lock_guard lock(mu);
    stop_reason_ = ": the controller shut down";
    controller_gone_ = true;
    return;
  }
  auto n = proto::decode_content<proto::EngineNotification>(m.content, type);
  if (!n) {
    ++dropped_;
    return;
  }
  std::lock_guard lock(mu);
  if (type == mt::kRegistrationNotification) {
    engines_[n->id] = n->uuid;
    engine_ids_[n->uuid] = n->id;
  } else if (type == mt::kUnregistrationNotification) {
    engines_.erase(n->id);
    engine_ids_.erase(n->uuid);
    departed_[n->uuid] = n->id;
    fail_engine_locked(n->uuid, n->id);
  }
}

void ClientCore::fail_engine_locked(const std::string& uuid, std::int64_t id) {
  std::vector<std::shared_ptr<RequestState>> touched;
  for (auto& [msg_id, state] : pending_) {
    RequestState& s = *state;
    if (!s.replied && s.target_uuid == uuid) {
      s.failure =
          Failure{Failure::Kind::kEngine,
                  "EngineError",
                  "Engine " + std::to_string(id) + " died while running task '" + s.msg_id + "'",
                  {},
                  id,
                  uuid};
      s.replied = true;
      s.meta.status = "error";
      s.meta.engine_uuid = uuid;
      s.meta.engine_id = id;
      s.meta.outputs_complete = true;
      touched.push_back(state);
    } else if (s.replied && s.meta.engine_uuid == uuid && !s.meta.outputs_complete) {
      s.meta.outputs_complete = true;
      touched.push_back(state);
    }
  }
  for (auto& s : touched)
    finish_locked(*s);
}

Outcome read_outcome(const json& content, bool is_apply_reply,
                     std::vector<zmq::message_t>&& buffers, bool is_error) {
  Outcome out;
  const std::string status = string_or(content, "status", "ok");
  if (status == "error" || is_error) {
    Failure f;
    f.ename = string_or(content, "ename", "Error");
    f.evalue = string_or(content, "evalue");
    if (auto tb = content.find("traceback");
        content.is_object() && tb != content.end() && tb->is_array()) {
      for (const auto& line : *tb) {
        if (line.is_string()) f.traceback.push_back(line.get<std::string>());
      }
    }
    f.kind = f.ename == "EngineError" ? Failure::Kind::kEngine : Failure::Kind::kRemote;
    out.failure = std::move(f);
  } else if (status == "aborted") {
    out.failure = Failure{Failure::Kind::kRemote, "TaskAborted",
                          "the request was aborted before it finished"};
  } else if (is_apply_reply) {
    if (buffers.empty()) {
      out.value = Value();
    } else if (auto v = proto::decode_value(std::move(buffers)); v) {
      out.value = std::move(v).value();
    } else {
      out.failure = Failure{Failure::Kind::kRemote, "ValueError",
                            "the result cannot be read: " + v.error().reason};
    }
  }
  return out;
}

void throw_failure(const Failure& f, const std::string& msg_id, const std::string& closed_reason) {
  if (f.kind == Failure::Kind::kClosed) throw Error("the client is closed" + closed_reason);
  if (f.kind == Failure::Kind::kEngine) {
    throw EngineError(f.ename, f.evalue, f.traceback, f.engine_id, f.engine_uuid, msg_id);
  }
  throw RemoteError(f.ename, f.evalue, f.traceback, f.engine_id, f.engine_uuid, msg_id);
}

RemoteError to_remote_error(const Failure& f, const std::string& msg_id) {
  if (f.kind == Failure::Kind::kEngine) {
    return EngineError(f.ename, f.evalue, f.traceback, f.engine_id, f.engine_uuid, msg_id);
  }
  return RemoteError(f.ename, f.evalue, f.traceback, f.engine_id, f.engine_uuid, msg_id);
}

}  // namespace ipcpp::detail
