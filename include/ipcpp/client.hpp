// ipcpp/client.hpp — the C++ client: drive a controller's engines from C++.
//
//   ipcpp::Client rc;                       // the default profile's ipcontroller-client.json
//   rc.wait_for_engines(4, std::chrono::seconds(30));
//   auto all = rc.all();                    // a DirectView on every engine
//   ipcpp::Value v = all.apply_sync("minus", 5, 6);        // [-1, -1, -1, -1]
//   auto lb = rc.load_balanced_view();
//   ipcpp::AsyncResult r = lb.map_async("minus", std::vector{11, 10, 9, 8},
//                                       std::vector{5, 6, 7, 8});
//   std::vector<int> d = r.get().as<std::vector<int>>();   // 6 4 2 0
//
// Functions are called by name: the engines' built-ins (sum, getpid, sleep, ...) and the
// functions of their task libraries (ipcpp/engine.hpp). Arguments and results are Values
// (ipcpp/value.hpp): JSON documents, with std::vectors of numbers travelling as raw frames,
// never as JSON text. `execute` sends code in the engine's command language (docs/engine.md);
// to a Python ipengine it sends Python code.
//
// What mirrors ipyparallel: Client, DirectView (client[i], client[{i, j}], client.all()),
// LoadBalancedView, AsyncResult, the `block` flag, scatter/gather partitions, RemoteError and
// CompositeError. docs/client.md describes the differences.
//
// Threads: one I/O thread per Client owns every socket. Every member function of Client,
// DirectView, LoadBalancedView and AsyncResult may be called from several threads at once;
// views and results are cheap handles that share the client's connection, and may be copied
// to other threads. A view or result used after its Client was closed or destroyed throws
// ipcpp::Error("the client is closed").
//
// Errors: setup failures (no connection file, no answer from the controller) throw
// ipcpp::Error from the Client constructor. A request that fails on an engine makes get()
// throw RemoteError (one request) or CompositeError (several); an engine that dies with the
// request throws EngineError; a wait that runs out throws TimeoutError. None of them breaks
// the client: it stays usable.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/value.hpp"

namespace ipcpp {

using Seconds = std::chrono::duration<double>;
using TimePoint = std::chrono::system_clock::time_point;

// ---- Errors ------------------------------------------------------------------------------

// The base of every error the client throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// A wait ran out before the result was ready. The request goes on; waiting again may succeed.
class TimeoutError : public Error {
 public:
  explicit TimeoutError(const std::string& what) : Error(what) {}
};

// A request failed on an engine (or in the controller): the remote exception's name, value
// and traceback. what() is "[engine N] Ename: evalue".
class RemoteError : public Error {
 public:
  RemoteError(std::string ename, std::string evalue, std::vector<std::string> traceback,
              std::int64_t engine_id, std::string engine_uuid = {}, std::string msg_id = {});

  const std::string& ename() const { return ename_; }
  const std::string& evalue() const { return evalue_; }
  // The traceback lines, as the engine sent them.
  const std::vector<std::string>& traceback() const { return traceback_; }
  // The engine's id, or -1 when the failure did not come from an engine (a scheduler's error).
  std::int64_t engine_id() const { return engine_id_; }
  const std::string& engine_uuid() const { return engine_uuid_; }
  // The request that failed.
  const std::string& msg_id() const { return msg_id_; }

 protected:
  RemoteError(const std::string& what, std::string ename, std::string evalue,
              std::vector<std::string> traceback, std::int64_t engine_id, std::string engine_uuid,
              std::string msg_id);

 private:
  std::string ename_;
  std::string evalue_;
  std::vector<std::string> traceback_;
  std::int64_t engine_id_;
  std::string engine_uuid_;
  std::string msg_id_;
};

// The engine died (or was shut down) before it answered; ename() is "EngineError".
class EngineError : public RemoteError {
 public:
  using RemoteError::RemoteError;
};

// Several requests of one result failed. errors() has each one's RemoteError, in request
// order; ename/evalue/engine_id() are the first one's. what() lists them, one per line.
class CompositeError : public RemoteError {
 public:
  explicit CompositeError(std::vector<RemoteError> errors);
  const std::vector<RemoteError>& errors() const { return errors_; }

 private:
  std::vector<RemoteError> errors_;
};

// ---- Results -----------------------------------------------------------------------------

// What is known about one request (ipyparallel's AsyncResult.metadata). Times are unset
// until known: submitted when sent, started and completed from the engine's reply, received
// when the reply arrived here.
struct ResultMetadata {
  std::string msg_id;
  std::int64_t engine_id = -1;  // -1 until an engine is known (load-balanced, not yet run)
  std::string engine_uuid;
  std::optional<TimePoint> submitted;
  std::optional<TimePoint> started;
  std::optional<TimePoint> completed;
  std::optional<TimePoint> received;
  std::string status;  // "" while pending, then "ok", "error" or "aborted"
  std::string stdout_text;
  std::string stderr_text;
  nlohmann::json execute_result;  // an execute's result data (mime type -> value), or null
  bool outputs_complete = false;  // the engine said it is idle after this request
};

namespace detail {
class ClientCore;
struct ResultSet;
}  // namespace detail

// The result of one call: one or more requests (one per engine, or one per chunk of a map).
// A cheap handle: copies share the same requests.
class DirectView;
class LoadBalancedView;
class Client;

class AsyncResult {
 public:
  AsyncResult() = default;

  // True once every request has been answered (or failed).
  bool ready() const;
  // Waits until ready() or `timeout` has passed (forever when not given). Returns ready().
  bool wait(std::optional<Seconds> timeout = std::nullopt) const;
  // The value: waits like wait(), then returns it or throws.
  //  - one request: its value (a DirectView on one engine, a load-balanced apply);
  //  - several: the list of their values, in request order (a DirectView on several engines);
  //  - map and gather: the values concatenated, in order;
  //  - push, scatter and other calls without a value: null.
  // The value of an execute is its result's application/json data, else its text/plain, else
  // null. Throws TimeoutError when not ready in time; RemoteError / EngineError when the one
  // request failed; CompositeError when several requests were made and any failed.
  Value get(std::optional<Seconds> timeout = std::nullopt) const;
  // get().as<T>().
  template <class T>
  T get_as(std::optional<Seconds> timeout = std::nullopt) const {
    return get(timeout).template as<T>();
  }
  // True when ready and nothing failed. Throws Error when not ready.
  bool successful() const;

  // Requests answered so far, and in all.
  std::size_t progress() const;
  std::size_t size() const;
  const std::vector<std::string>& msg_ids() const;
  // One entry per request, in request order.
  std::vector<ResultMetadata> metadata() const;
  // Request i's entry (0 for a single request). Throws std::out_of_range.
  ResultMetadata metadata(std::size_t i) const;
  // The stdout / stderr each request produced so far, in request order.
  std::vector<std::string> stdout_texts() const;
  std::vector<std::string> stderr_texts() const;

  // From the first submission to now, or to the last reply once ready.
  Seconds elapsed() const;
  // Sum of each request's completed - started (the engines' busy time).
  Seconds serial_time() const;

  // Waits until each engine has said it is idle after its request, so that all of the
  // output has arrived (the reply can overtake output: they travel on different sockets).
  // Returns false if `timeout` passed first.
  bool wait_for_output(std::optional<Seconds> timeout = std::nullopt) const;

  // Results one at a time as their requests are answered: the values of a map's elements
  // (a chunk's elements together), or one value per request otherwise. In request order
  // when the call was ordered (the default), else as they complete. `fn` runs on the
  // calling thread. Throws like get() for a failed request when it is reached, and
  // TimeoutError when `timeout` passes (counted from the call).
  void for_each(const std::function<void(const Value&)>& fn,
                std::optional<Seconds> timeout = std::nullopt) const;

  // Asks the engines to abort the requests not yet answered (those queued or running end
  // with RemoteError "TaskAborted"). Returns at once.
  void abort() const;

  explicit operator bool() const { return set_ != nullptr; }

 private:
  friend class DirectView;
  friend class LoadBalancedView;
  friend class Client;
  friend bool wait_all(std::span<const AsyncResult>, std::optional<Seconds>);
  friend std::optional<std::size_t> wait_any(std::span<const AsyncResult>, std::optional<Seconds>);
  explicit AsyncResult(std::shared_ptr<detail::ResultSet> set) : set_(std::move(set)) {}
  std::shared_ptr<detail::ResultSet> set_;
};

// Waits until every result is ready; false if `timeout` passed first.
bool wait_all(std::span<const AsyncResult> results, std::optional<Seconds> timeout = std::nullopt);
// Waits until at least one result is ready; its index, or nullopt if `timeout` passed first.
std::optional<std::size_t> wait_any(std::span<const AsyncResult> results,
                                    std::optional<Seconds> timeout = std::nullopt);

// ---- Calls -------------------------------------------------------------------------------

// Keyword arguments of a call, and the names and values of push().
using Kwargs = std::vector<std::pair<std::string, Value>>;

namespace detail {
// A function call as the views send it: the name, positional values and keyword values.
struct Call {
  std::string function;
  std::vector<Value> args;
  Kwargs kwargs;
};
inline void add_argument(Call& call, Kwargs kwargs) {
  for (auto& kv : kwargs)
    call.kwargs.push_back(std::move(kv));
}
template <class T>
void add_argument(Call& call, T&& arg) {
  call.args.emplace_back(std::forward<T>(arg));
}
template <class... A>
Call make_call(std::string_view function, A&&... args) {
  Call call{std::string(function), {}, {}};
  call.args.reserve(sizeof...(A));
  (add_argument(call, std::forward<A>(args)), ...);
  return call;
}
}  // namespace detail

// ---- Views -------------------------------------------------------------------------------

// Requests to chosen engines: client[0], client[{0, 2}], client.all().
//
// Every call returns an AsyncResult at once; when the view's `block` flag is set (default:
// false, as ipyparallel), the call first waits for it and throws what get() would throw.
// The *_sync forms always wait and return the value.
class DirectView {
 public:
  // The engines this view sends to now (for all(): the engines registered at this moment).
  std::vector<std::int64_t> targets() const;

  bool block() const { return block_; }
  DirectView& set_block(bool block) {
    block_ = block;
    return *this;
  }

  // Calls `function(args...)` on each engine. Arguments convert to Value (numbers,
  // strings, nlohmann::json, std::vector of numbers, Value); a Kwargs argument gives
  // keyword arguments. A view on one engine (client[i]) has one value, others a list.
  template <class... A>
  AsyncResult apply(std::string_view function, A&&... args) const {
    return finish(apply_call(detail::make_call(function, std::forward<A>(args)...)));
  }
  template <class... A>
  AsyncResult apply_async(std::string_view function, A&&... args) const {
    return apply_call(detail::make_call(function, std::forward<A>(args)...));
  }
  template <class... A>
  Value apply_sync(std::string_view function, A&&... args) const {
    return apply_call(detail::make_call(function, std::forward<A>(args)...)).get();
  }

  // map(function, seq1, seq2, ...): function(seq1[i], seq2[i], ...) for every i. Each
  // sequence (a JSON list, or a std::vector of numbers travelling as an array) is cut into
  // one contiguous piece per engine, like scatter; each engine maps its piece with its
  // built-in map(). A Kwargs argument gives keyword arguments passed to every call
  // (map("count_words", paths_as_list, Kwargs{...}) ). The value is the list of results in
  // order. Throws std::invalid_argument when the sequences differ in length or are not
  // sequences.
  template <class... S>
  AsyncResult map(std::string_view function, S&&... seqs) const {
    return finish(map_call(detail::make_call(function, std::forward<S>(seqs)...)));
  }
  template <class... S>
  AsyncResult map_async(std::string_view function, S&&... seqs) const {
    return map_call(detail::make_call(function, std::forward<S>(seqs)...));
  }
  template <class... S>
  Value map_sync(std::string_view function, S&&... seqs) const {
    return map_call(detail::make_call(function, std::forward<S>(seqs)...)).get();
  }

  // Runs `code` on each engine (an ipcpp engine's command language, or Python on ipengine).
  // The value is the result of the code's last expression (see AsyncResult::get); a
  // blocking execute also waits for the output.
  AsyncResult execute(const std::string& code) const;
  Value execute_sync(const std::string& code) const;

  // Assigns names in each engine's namespace.
  AsyncResult push(Kwargs names) const;
  // The value of `name` in each engine's namespace.
  AsyncResult pull(const std::string& name) const;
  Value pull_sync(const std::string& name) const;

  // Partitions `seq` (a JSON list or a numeric array; an array is cut along its first
  // dimension) into contiguous pieces, one per engine in target order — with n items on q
  // engines, the first n % q engines get n / q + 1 items, the others n / q — and pushes piece
  // p as `name` on engine p. Arrays are cut without copying and travel as raw frames.
  AsyncResult scatter(const std::string& name, Value seq) const;
  // Pulls `name` from each engine and concatenates the pieces in target order: arrays of
  // one dtype into one array, lists into one list.
  AsyncResult gather(const std::string& name) const;
  Value gather_sync(const std::string& name) const;

  // Dict-style access: view["x"] = value pushes (and waits); Value v = view["x"] pulls.
  class Item {
   public:
    Item& operator=(Value value);
    operator Value() const;  // NOLINT(google-explicit-constructor)
    Value get() const;

   private:
    friend class DirectView;
    Item(const DirectView& view, std::string name) : view_(view), name_(std::move(name)) {}
    const DirectView& view_;
    std::string name_;
  };
  Item operator[](std::string name) const { return Item(*this, std::move(name)); }

  // Asks these engines to abort their queued and running requests (all of them when
  // msg_ids is empty). Waits for the engines' answers.
  void abort(const std::vector<std::string>& msg_ids = {}) const;
  // Empties these engines' namespaces.
  void clear() const;

 private:
  friend class Client;
  enum class Kind { kOne, kList, kAll };
  DirectView(std::shared_ptr<detail::ClientCore> core, Kind kind, std::vector<std::int64_t> ids)
      : core_(std::move(core)), kind_(kind), ids_(std::move(ids)) {}

  AsyncResult apply_call(detail::Call call) const;
  AsyncResult map_call(detail::Call call) const;
  AsyncResult finish(AsyncResult result) const;
  std::vector<std::string> target_uuids(std::vector<std::int64_t>* ids) const;

  std::shared_ptr<detail::ClientCore> core_;
  Kind kind_ = Kind::kAll;
  std::vector<std::int64_t> ids_;
  bool block_ = false;
};

// Options of load-balanced calls (ipyparallel's LoadBalancedView flags).
struct TaskOptions {
  // Run only on these engines (ids). Default: any engine.
  std::vector<std::int64_t> targets;
  // Run only after these requests have finished (successfully, unless `after_failure`).
  std::vector<std::string> after;
  // Run only on the engine(s) where these requests ran.
  std::vector<std::string> follow;
  // Fail the task with a TimeoutError from the scheduler if its dependencies are not met
  // within this time. Default: none.
  std::optional<Seconds> timeout;
  // Times a failed task is resubmitted (to another engine when possible). Default: 0.
  int retries = 0;
  // map(): elements per task, and whether for_each() yields them in order. Defaults: 1, true.
  std::size_t chunksize = 1;
  bool ordered = true;
};

// Requests to whichever engine is free, through the controller's task scheduler.
class LoadBalancedView {
 public:
  bool block() const { return block_; }
  LoadBalancedView& set_block(bool block) {
    block_ = block;
    return *this;
  }
  const TaskOptions& options() const { return options_; }
  LoadBalancedView& set_options(TaskOptions options) {
    options_ = std::move(options);
    return *this;
  }

  // One task: function(args...) on one engine. The value is its result.
  template <class... A>
  AsyncResult apply(std::string_view function, A&&... args) const {
    return finish(apply_call(detail::make_call(function, std::forward<A>(args)...)));
  }
  template <class... A>
  AsyncResult apply_async(std::string_view function, A&&... args) const {
    return apply_call(detail::make_call(function, std::forward<A>(args)...));
  }
  template <class... A>
  Value apply_sync(std::string_view function, A&&... args) const {
    return apply_call(detail::make_call(function, std::forward<A>(args)...)).get();
  }

  // One task per `chunksize` elements of the sequences (see DirectView::map). The value is
  // the list of results in order; AsyncResult::for_each yields them as options().ordered says.
  template <class... S>
  AsyncResult map(std::string_view function, S&&... seqs) const {
    return finish(map_call(detail::make_call(function, std::forward<S>(seqs)...)));
  }
  template <class... S>
  AsyncResult map_async(std::string_view function, S&&... seqs) const {
    return map_call(detail::make_call(function, std::forward<S>(seqs)...));
  }
  template <class... S>
  Value map_sync(std::string_view function, S&&... seqs) const {
    return map_call(detail::make_call(function, std::forward<S>(seqs)...)).get();
  }

  // Runs `code` on one engine.
  AsyncResult execute(const std::string& code) const;

 private:
  friend class Client;
  LoadBalancedView(std::shared_ptr<detail::ClientCore> core, TaskOptions options)
      : core_(std::move(core)), options_(std::move(options)) {}

  AsyncResult apply_call(detail::Call call) const;
  AsyncResult map_call(detail::Call call) const;
  AsyncResult finish(AsyncResult result) const;

  std::shared_ptr<detail::ClientCore> core_;
  TaskOptions options_;
  bool block_ = false;
};

// ---- Client ------------------------------------------------------------------------------

struct ClientOptions {
  // The client connection file (ipcontroller-client.json). Default: the profile's.
  std::filesystem::path connection_file;
  // The profile, when connection_file is empty: profile_dir if set, else profile_<profile>
  // under ipython_dir ($IPYTHONDIR, else ~/.ipython). Default: "default".
  std::string profile = "default";
  std::filesystem::path profile_dir;
  std::filesystem::path ipython_dir;
  // The controller's cluster id: ipcontroller-<id>-client.json. Default: "".
  std::string cluster_id;
  // How long to wait for the connection file to appear and for the controller's answer.
  // Default: 10 s.
  Seconds timeout{10};
};

// One engine's queues (queue_status()).
struct EngineQueue {
  std::int64_t queue = 0;      // direct requests waiting or running
  std::int64_t tasks = 0;      // load-balanced tasks assigned and not finished
  std::int64_t completed = 0;  // requests finished
};
struct QueueStatus {
  std::map<std::int64_t, EngineQueue> engines;
  std::int64_t unassigned = 0;  // load-balanced tasks not yet given to an engine
};

class Client {
 public:
  // Reads the connection file (waiting up to options.timeout for it to appear), connects and
  // asks the controller for its engines. Throws Error naming the file and the reason when the
  // file is missing or malformed, or when the controller does not answer within the timeout.
  explicit Client(ClientOptions options = {});
  // Closes: see close().
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  Client(Client&&) noexcept;
  Client& operator=(Client&&) noexcept;

  // The ids of the registered engines, sorted. Kept current by the controller's
  // notifications as engines come and go.
  std::vector<std::int64_t> ids() const;
  // Waits until at least n engines are registered; `progress` (if given) is called with the
  // count whenever it changes. While waiting it asks the hub for the engines once a second,
  // in case a notification was missed. Throws TimeoutError ("2 of 4 engines registered after
  // 30 s").
  void wait_for_engines(std::size_t n, Seconds timeout,
                        const std::function<void(std::size_t)>& progress = {}) const;

  // Direct views. operator[](id) is a view on one engine (its results are single values);
  // the others give lists. Throws Error when an id is not registered.
  DirectView operator[](std::int64_t id) const;
  DirectView operator[](std::vector<std::int64_t> ids) const;
  DirectView operator[](std::initializer_list<std::int64_t> ids) const {
    return (*this)[std::vector<std::int64_t>(ids)];
  }
  // Every engine, re-evaluated at each call.
  DirectView all() const;
  LoadBalancedView load_balanced_view(TaskOptions options = {}) const;

  // The controller's queue counts per engine (registered engines only, unless `targets`).
  QueueStatus queue_status() const;
  // Forgets finished results in the controller's task store: `msg_ids` (all of them when
  // empty and `targets` is empty), or every finished result of `targets`.
  void purge_results(const std::vector<std::string>& msg_ids,
                     const std::vector<std::int64_t>& targets = {}) const;
  void purge_everything() const;
  // Aborts requests on `targets` (every engine when empty): those in `msg_ids`, or every
  // queued and running one when msg_ids is empty. Waits for the engines' answers.
  void abort(const std::vector<std::string>& msg_ids = {},
             const std::vector<std::int64_t>& targets = {}) const;
  // Empties the namespaces of `targets` (every engine when empty).
  void clear(const std::vector<std::int64_t>& targets = {}) const;
  // Stops `targets` (every engine when empty); with `hub`, the controller too. Waits for the
  // engines' answers.
  void shutdown(const std::vector<std::int64_t>& targets = {}, bool hub = false) const;

  // The controller's task records that match a Mongo-style query ({"engine_uuid": "..."},
  // {"completed": {"$ne": null}}, ...), with the fields `keys` (all when empty).
  nlohmann::json db_query(const nlohmann::json& query,
                          const std::vector<std::string>& keys = {}) const;
  // The msg_ids the controller has seen, oldest first.
  std::vector<std::string> hub_history() const;
  // The result of any request the controller knows, by msg_id (this client's or another's),
  // from the controller's task store: waiting on it polls the store until it is done.
  // Throws RemoteError("KeyError") for an msg_id the controller does not know.
  AsyncResult get_result(const std::string& msg_id) const;

  // Waits until every request this client sent so far is answered. False on timeout.
  bool wait(std::optional<Seconds> timeout = std::nullopt) const;

  // The file this client read, and its session id (header.session of every request).
  const std::filesystem::path& connection_file() const;
  const std::string& session_id() const;

  // Stops the I/O thread and closes the sockets. Results not yet answered fail with
  // Error("the client is closed"). Idempotent; the destructor calls it.
  void close();

 private:
  std::shared_ptr<detail::ClientCore> core_;
};

}  // namespace ipcpp
