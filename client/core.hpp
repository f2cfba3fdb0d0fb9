// The inside of a Client: the I/O thread that owns the sockets, the requests it tracks, and
// the per-thread submitters through which user threads hand it messages.
//
// Threads and sockets:
//  - The I/O thread owns every socket to the controller (registration/query DEALER,
//    notification SUB, mux / task / control DEALERs, iopub SUB) and one inproc PULL.
//  - Each user thread that submits gets its own Submitter: an inproc PUSH connected to that
//    PULL, and a Session that builds and signs the thread's messages (same session id, its own
//    msg_id prefix). A submission is [command, state pointer, message frames...]: the I/O
//    thread registers the request under its msg_id and forwards the frames unchanged.
//  - Replies and outputs are applied to RequestStates under `mu`, and `cv` wakes the waiters.
//    The engine table is also guarded by `mu`.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <zmq.hpp>

#include "ipcpp/client.hpp"

#include "proto/connection_file.hpp"
#include "proto/message.hpp"
#include "proto/session.hpp"

namespace ipcpp::proto {
class ZmtpSocket;
}
namespace ipcpp::detail {

// Why a request failed, when it did.
struct Failure {
  enum class Kind { kRemote, kEngine, kClosed };
  Kind kind = Kind::kRemote;
  std::string ename;
  std::string evalue;
  std::vector<std::string> traceback;
  std::int64_t engine_id = -1;
  std::string engine_uuid;
};

// One request. The first block is set before submission and not changed after; the rest is
// written by the I/O thread and read by user threads, both under ClientCore::mu.
struct RequestState {
  std::string msg_id;
  std::string msg_type;       // apply_request, execute_request, a hub query, ...
  std::string target_uuid;    // a direct or control request's engine; "" otherwise
  bool wants_output = false;  // done only after the engine's idle status (execute)

  // GUARDED_BY(ClientCore::mu)
  bool replied = false;
  ResultMetadata meta;
  std::optional<Failure> failure;
  std::optional<Value> value;                 // an apply reply's value
  nlohmann::json reply_content;               // hub and control replies
  std::vector<zmq::message_t> reply_buffers;  // hub replies
  bool counted_ = false;                      // taken off ClientCore's outstanding count
  bool finish_counted_ = false;               // counted in ClientCore::finished_

  bool done() const { return replied && (!wants_output || meta.outputs_complete); }
};

// How the values of a result's requests become one value.
enum class Combine { kOne, kList, kConcat, kNone };

struct ResultSet {
  std::shared_ptr<ClientCore> core;
  std::vector<std::shared_ptr<RequestState>> requests;
  std::vector<std::string> msg_ids;
  Combine combine = Combine::kList;
  bool ordered = true;
  // For get_result() of a request this client did not send: poll the controller.
  bool from_hub = false;
};

struct Outcome;

class ClientCore : public std::enable_shared_from_this<ClientCore> {
 public:
  enum class Channel : std::uint8_t { kQuery, kMux, kTask, kControl };

  // Connects and asks for the engines. Throws Error as Client's constructor says.
  static std::shared_ptr<ClientCore> connect(const ClientOptions& options);
  ~ClientCore();

  // Builds, signs and hands a request to the I/O thread. `target_uuid` is the routing
  // identity of mux and control requests (and the engine a direct request waits on).
  // Throws Error("the client is closed").
  std::shared_ptr<RequestState> submit(Channel channel, const std::string& target_uuid,
                                       const char* msg_type, const nlohmann::json& content,
                                       const nlohmann::json& metadata = nlohmann::json::object(),
                                       std::vector<zmq::message_t> buffers = {},
                                       bool wants_output = false);

  // An apply_request (content {}) with its metadata given as compact JSON text: a map writes
  // it once for all of its requests, and the header is written directly (Session::build_text).
  std::shared_ptr<RequestState> submit_apply(Channel channel, const std::string& target_uuid,
                                             std::string_view metadata_text,
                                             std::vector<zmq::message_t> buffers);

  // Compact JSON text, as requests carry it (invalid UTF-8 replaced).
  static std::string compact(const nlohmann::json& j);

  // A hub query: submits and waits for the reply content (and buffers). Throws TimeoutError
  // when the controller does not answer within the client's timeout, RemoteError for an
  // error reply.
  nlohmann::json query(const char* msg_type, const nlohmann::json& content,
                       std::vector<zmq::message_t>* buffers = nullptr);
  // Requests whose caller stopped waiting for them (a query or control request that timed
  // out): they stop counting as outstanding, and the I/O thread forgets them.
  void give_up(const std::vector<std::shared_ptr<RequestState>>& states);
  // Sends one control request to each engine and waits for the replies (client timeout).
  void control(const char* msg_type, const nlohmann::json& content,
               const std::vector<std::string>& uuids);

  // Engines, under mu.
  std::vector<std::int64_t> ids() const;
  std::optional<std::string> uuid_of(std::int64_t id) const;
  std::map<std::int64_t, std::string> engines() const;

  // Waits on cv until pred() (called under mu) or the deadline; false on timeout. Returns
  // true at once when the I/O thread has stopped (callers check closed_ then).
  // Such a waiter is woken at the end of every turn of the I/O thread.
  template <class Pred>
  bool wait_until(std::optional<std::chrono::steady_clock::time_point> deadline, Pred pred) {
    std::unique_lock lock(mu);
    auto full = [&] { return pred() || io_stopped_; };
    ++plain_waiters_;
    bool met = true;
    if (!deadline) {
      cv.wait(lock, full);
    } else {
      met = cv.wait_until(lock, *deadline, full);
    }
    --plain_waiters_;
    return met;
  }

  // The same for a predicate that can only become true once requests finish: needed()
  // (under mu) says how many more must finish at least (a lower bound: 0 when it cannot
  // tell). The I/O thread wakes such a waiter only once that many have finished, not at
  // every turn: a thread waiting for a map of 20,000 tasks wakes a few times, not thousands.
  template <class Pred, class Needed>
  bool wait_until_finished(std::optional<std::chrono::steady_clock::time_point> deadline, Pred pred,
                           Needed needed) {
    std::unique_lock lock(mu);
    for (;;) {
      if (pred() || io_stopped_) return true;
      const std::uint64_t at = finished_ + std::max<std::uint64_t>(1, needed());
      const auto point = wake_points_.insert(at);
      bool timed_out = false;
      // Woken early (a plain waiter's turn, give_up, a spurious wake-up): sleep again without
      // asking pred() and needed(), which may walk a long list.
      while (!timed_out && finished_ < at && !io_stopped_) {
        if (!deadline) {
          cv.wait(lock);
        } else {
          timed_out = cv.wait_until(lock, *deadline) == std::cv_status::timeout;
        }
      }
      wake_points_.erase(point);
      if (timed_out) return pred() || io_stopped_;
    }
  }

  // Number of registered engines (under mu).
  std::size_t ids_locked_count() const { return engines_.size(); }

  // Asks the hub for its engines and adds those this client has not heard of, at most once
  // a second (later calls return at once). A registration notification can be missed: one
  // published before this client's subscription reached the controller is never delivered.
  // wait_for_engines calls it while it waits. Throws as query() does.
  void refresh_engines();
  // True once close() ran or the I/O thread stopped (under mu).
  bool io_stopped_locked() const { return io_stopped_; }
  // ": why" the I/O thread stopped, or "" (under mu).
  const std::string& stop_reason_locked() const { return stop_reason_; }
  // Number of requests sent and not yet done (under mu).
  std::size_t outstanding_locked() const { return outstanding_; }

  void close();

  const std::filesystem::path& connection_file() const { return file_path_; }
  const std::string& session_id() const { return session_id_; }
  Seconds timeout() const { return timeout_; }

  mutable std::mutex mu;
  std::condition_variable cv;

 private:
  struct Submitter;

  ClientCore() = default;
  Submitter& submitter();
  // Adds the engines of a connection_reply not known yet (nor known to have left).
  void add_engines_locked(const nlohmann::json& connection_reply);
  // The common end of submit and submit_apply: records the request and hands its signed
  // frames to the I/O thread. Called with submit_mu_ held (shared).
  std::shared_ptr<RequestState> enqueue(Submitter& s, Channel channel,
                                        const std::string& target_uuid, const char* msg_type,
                                        std::string msg_id, std::vector<zmq::message_t> message,
                                        bool wants_output);
  void start(const ClientOptions& options);
  void io_loop_start(std::promise<void>& ready);
  // I/O thread helpers.
  void on_submission(std::vector<zmq::message_t>&& frames, proto::ZmtpSocket* by_channel[]);
  void on_reply(std::vector<zmq::message_t>&& frames);
  // The reply to nearly every task, an apply_reply with status "ok" from an engine, read from
  // its frames without parsing them (the value travels in the buffers). Returns false when
  // the reply is anything else or not plain enough: on_reply parses it then.
  bool on_plain_apply_reply(proto::WireMessage& wire);
  // Stores a reply's outcome in its request's state (under mu). `content` is the reply's
  // content when it was parsed (an error's engine_info is read from it).
  void record_reply_locked(RequestState& s, Outcome&& outcome, const std::string& status,
                           const std::string& engine_uuid, std::optional<TimePoint> started,
                           std::optional<TimePoint> completed, const nlohmann::json* content);
  void on_iopub(std::vector<zmq::message_t>&& frames);
  void on_notification(std::vector<zmq::message_t>&& frames);
  // Authenticates and parses a received message; counts it in dropped_ and gives nullopt
  // when it is not well signed and well formed.
  std::optional<proto::Message> decode(std::vector<zmq::message_t>&& frames);
  void finish_locked(RequestState& state);
  void fail_engine_locked(const std::string& uuid, std::int64_t id);
  std::int64_t engine_id_locked(const std::string& uuid) const;

  // Set at start, then read-only.
  std::filesystem::path file_path_;
  proto::ClientConnectionFile file_;
  std::string session_id_;
  Seconds timeout_{10};
  std::uint64_t serial_ = 0;
  std::string inproc_endpoint_;
  zmq::context_t ctx_;
  std::thread io_;

  // Submitters: each used by its own thread under a shared lock; close() takes it exclusively.
  std::shared_mutex submit_mu_;
  bool closed_ = false;  // GUARDED_BY(submit_mu_)
  std::mutex submitters_list_mu_;
  std::vector<std::shared_ptr<Submitter>> submitters_;  // GUARDED_BY(submitters_list_mu_)
  std::atomic<int> next_submitter_{0};

  // GUARDED_BY(mu)
  std::map<std::int64_t, std::string> engines_;
  std::unordered_map<std::string, std::int64_t> engine_ids_;  // uuid -> id
  std::unordered_map<std::string, std::int64_t> departed_;    // engines that left: uuid -> id
  std::chrono::steady_clock::time_point last_refresh_{};      // refresh_engines(), under mu
  bool io_stopped_ = false;
  bool controller_gone_ = false;
  std::size_t outstanding_ = 0;
  std::string stop_reason_;
  // Waiters: those woken at every turn of the I/O thread, and for the others the value of
  // finished_ at which each wants waking (wait_until_finished).
  std::size_t plain_waiters_ = 0;
  std::multiset<std::uint64_t> wake_points_;
  // Requests that became done() (counted once each, in finish_locked).
  std::uint64_t finished_ = 0;

  // Owned by the I/O thread.
  // Looked up by a std::string_view into a received frame, without making a std::string.
  struct MsgIdHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view id) const { return std::hash<std::string_view>{}(id); }
  };
  std::unordered_map<std::string, std::shared_ptr<RequestState>, MsgIdHash, std::equal_to<>>
      pending_;  // by msg_id
  std::unique_ptr<proto::Session> io_session_;
  std::uint64_t dropped_ = 0;  // received messages that failed authentication or decoding
};

// What a reply's content (and, for apply_reply, its buffers) says: the value, or why the
// request failed (status "error", or `is_error` for a hub_error; "aborted" is TaskAborted).
struct Outcome {
  std::optional<Value> value;
  std::optional<Failure> failure;
};
Outcome read_outcome(const nlohmann::json& content, bool is_apply_reply,
                     std::vector<zmq::message_t>&& buffers, bool is_error);

// The failure of a request as a RemoteError (an EngineError sliced to its base: for lists).
RemoteError to_remote_error(const Failure& f, const std::string& msg_id);
// Throws the failure as get() does: EngineError, RemoteError, or Error for a closed client.
[[noreturn]] void throw_failure(const Failure& f, const std::string& msg_id,
                                const std::string& closed_reason);

}  // namespace ipcpp::detail
