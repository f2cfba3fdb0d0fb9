#include "engine/kernel.hpp"

#include <cstdlib>
#include <cxxabi.h>
#include <iostream>
#include <optional>
#include <typeinfo>
#include <variant>

#include "engine/command_language.hpp"
#include "engine/output_stream.hpp"
#include "engine/shell_command.hpp"
#include "proto/clock.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"
#include "proto/peek.hpp"
#include "proto/poller.hpp"
#include "proto/wire.hpp"

namespace ipcpp::engine {
namespace {

using nlohmann::json;
namespace mt = proto::msg_type;

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> out(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                             std::free);
  return status == 0 && out ? std::string(out.get()) : std::string(name);
}

std::string frame_text(const zmq::message_t& m) {
  return std::string(static_cast<const char*>(m.data()), m.size());
}

// Sets std::cout and std::cerr to a task's streams while it runs.
class RedirectStandardStreams {
 public:
  RedirectStandardStreams(std::streambuf* out, std::streambuf* err)
      : out_(std::cout.rdbuf(out)), err_(std::cerr.rdbuf(err)) {}
  ~RedirectStandardStreams() {
    std::cout.rdbuf(out_);
    std::cerr.rdbuf(err_);
  }
  RedirectStandardStreams(const RedirectStandardStreams&) = delete;
  RedirectStandardStreams& operator=(const RedirectStandardStreams&) = delete;

 private:
  std::streambuf* out_;
  std::streambuf* err_;
};

// "apply_request" -> "apply_reply" (the engine answers only *_request types).
std::string reply_type_of(const std::string& request_type) {
  return request_type.substr(0, request_type.size() - std::string_view("request").size()) + "reply";
}

std::string_view frame_view(const zmq::message_t& m) {
  return {static_cast<const char*>(m.data()), m.size()};
}

// True when `text` is shaped like a JSON object, '{' ... '}' (spaces aside): the parse that a
// peek replaces would reject anything else.
bool object_shaped(std::string_view text) {
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  return first != std::string_view::npos && text[first] == '{' && text[last] == '}';
}

// An apply_request read by peeking instead of parsing, when it is the plain kind nearly every
// task is: the engine needs its msg_id and msg_type, and three metadata keys only broadcasts
// carry; its content is {} (the call travels in the buffers). nullopt, with `wire` untouched,
// for anything else: the caller parses it.
std::optional<proto::Message> plain_apply_request(proto::WireMessage& wire) {
  const auto type = proto::peek_string(frame_view(wire.header), "msg_type");
  if (!type.found() || type.value != mt::kApplyRequest) return std::nullopt;
  const auto msg_id = proto::peek_string(frame_view(wire.header), "msg_id");
  const std::string_view metadata = frame_view(wire.metadata);
  if (!msg_id.found() || msg_id.value.empty() || frame_view(wire.content) != "{}" ||
      !object_shaped(frame_view(wire.header)) || !object_shaped(frame_view(wire.parent_header)) ||
      !object_shaped(metadata)) {
    return std::nullopt;
  }
  for (const std::string_view broadcast_key :
       {"is_broadcast", "is_coalescing", "original_msg_id"}) {
    if (metadata.find(broadcast_key) != std::string_view::npos) return std::nullopt;
  }
  const auto quiet = proto::peek_raw(metadata, proto::kQuietStatusKey);
  if (quiet.status == proto::Peeked::Status::kUnknown) return std::nullopt;
  proto::Message m;
  if (quiet.found() && quiet.value == "true") m.metadata = json{{proto::kQuietStatusKey, true}};
  m.header.msg_id = msg_id.value;
  m.header.msg_type = type.value;
  m.identities = std::move(wire.identities);
  m.raw_header = std::move(wire.header);
  m.buffers = std::move(wire.buffers);
  return m;
}

}  // namespace

TaskFailure current_failure() {
  try {
    throw;
  } catch (const TaskError& e) {
    return {e.ename(), e.what()};
  } catch (const std::exception& e) {
    return {demangle(typeid(e).name()), e.what()};
  } catch (...) {
    return {"UnknownException", "the task threw something that is not a std::exception"};
  }
}

// A request being run: the message, and what its reply needs.
struct Kernel::Request {
  proto::Message message;
  zmq::message_t parent;  // the request's header frame, the parent of everything it causes
  std::string started;
  // The client asked for statuses only around output (proto::kQuietStatusKey): no busy, and
  // idle only after something else was published.
  bool quiet_status = false;
};

namespace {

bool asks_quiet_status(const json& metadata) {
  if (!metadata.is_object()) return false;
  const auto it = metadata.find(proto::kQuietStatusKey);
  return it != metadata.end() && it->is_boolean() && it->get<bool>();
}

}  // namespace

// What a running task sees: the kernel's namespace, the cancellation flag, and streams that
// publish on iopub with this request as the parent.
class Kernel::Context : public TaskContext {
 public:
  Context(Kernel& kernel, zmq::message_t& parent)
      : kernel_(kernel),
        parent_(parent),
        out_buf_(
            [this](std::string_view text) { kernel_.publish_stream(parent_, "stdout", text); }),
        err_buf_(
            [this](std::string_view text) { kernel_.publish_stream(parent_, "stderr", text); }) {
    if (kernel_.output_capture_ != nullptr) kernel_.output_capture_->begin();
  }
  ~Context() override {
    if (kernel_.output_capture_ != nullptr) kernel_.output_capture_->end();
  }
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;

  std::int64_t engine_id() const override { return kernel_.engine_id_; }
  const std::string& engine_uuid() const override { return kernel_.uuid_; }
  Namespace& ns() override { return kernel_.namespace_; }
  bool cancelled() const override { return kernel_.running_.cancelled(); }
  bool sleep_for(std::chrono::nanoseconds duration) override {
    return kernel_.running_.sleep_for(duration);
  }
  // The streams are made on first use: most tasks write nothing.
  std::ostream& out() override {
    if (!out_) out_.emplace(&out_buf_);
    return *out_;
  }
  std::ostream& err() override {
    if (!err_) err_.emplace(&err_buf_);
    return *err_;
  }

  // Publishes what the task wrote and has not been published yet: its C++ streams' last
  // pieces, then what it wrote to file descriptors 1 and 2 (printf, child processes).
  void flush() {
    if (out_) out_->flush();
    if (err_) err_->flush();
    out_buf_.pubsync();
    err_buf_.pubsync();
    if (kernel_.output_capture_ != nullptr) {
      const auto written = kernel_.output_capture_->take();
      if (!written.out.empty()) kernel_.publish_stream(parent_, "stdout", written.out);
      if (!written.err.empty()) kernel_.publish_stream(parent_, "stderr", written.err);
    }
  }
  std::streambuf* out_buf() { return &out_buf_; }
  std::streambuf* err_buf() { return &err_buf_; }

 private:
  Kernel& kernel_;
  zmq::message_t& parent_;
  LineStreamBuf out_buf_;
  LineStreamBuf err_buf_;
  std::optional<std::ostream> out_;
  std::optional<std::ostream> err_;
};

Kernel::Kernel(KernelSockets sockets, proto::SessionOptions session, std::int64_t engine_id,
               const FunctionRegistry& functions, RunningTask& running,
               std::shared_ptr<spdlog::logger> log, FdOutputCapture* output_capture)
    : sockets_(std::move(sockets)),
      session_(std::move(session)),
      uuid_(session_.id()),
      engine_id_(engine_id),
      topic_prefix_("engine." + std::to_string(engine_id) + "."),
      status_topic_(topic_prefix_ + "status"),
      engine_metadata_(json{{"engine", uuid_}}.dump()),
      engine_field_(engine_metadata_.substr(1, engine_metadata_.size() - 2)),
      functions_(functions),
      running_(running),
      log_(std::move(log)),
      output_capture_(output_capture) {}

Kernel::~Kernel() = default;

void Kernel::run() {
  // One poll(2) per wait (proto/poller.hpp) over the control thread's inproc socket and the
  // shell's and iopub's descriptors, which are readable when their connections need
  // attention: a request arrived, queued output can be written, a connection is to be made
  // again.
  proto::Poller poller;
  const std::size_t control = poller.add(sockets_.control);
  const std::size_t shell = poller.add(sockets_.shell.fd());
  const std::size_t iopub = poller.add(sockets_.iopub.fd());
  try {
    for (;;) {
      // The next request runs once the last one's reply and output are written: a long task
      // must not hold back a big reply that the kernel took only in part.
      const bool written = !sockets_.shell.has_unsent() && !sockets_.iopub.has_unsent();
      const bool runnable = !queue_.empty() && written;
      // Before each request, a look at control without sleeping: an abort sent while the
      // last one ran applies to the queued ones.
      poller.wait(std::chrono::milliseconds(runnable ? 0 : -1));
      if (poller.readable(control)) {
        const bool go_on = process_commands();
        poller.emptied(control);  // process_commands reads until nothing is left
        if (!go_on) break;
      }
      if (poller.readable(shell)) receive_queued();
      if (poller.readable(iopub)) sockets_.iopub.process();
      if (!queue_.empty() && !sockets_.shell.has_unsent() && !sockets_.iopub.has_unsent()) {
        proto::Message next = std::move(queue_.front());
        queue_.pop_front();
        handle(std::move(next));
      }
    }
    // The control thread need not force the exit any more.
    std::vector<zmq::message_t> stopped;
    stopped.emplace_back(kernel_command::kStopped.data(), kernel_command::kStopped.size());
    proto::send_frames(sockets_.control, std::move(stopped), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    if (e.num() != ETERM) throw;
  }
}

void Kernel::receive_queued() {
  for (;;) {
    auto frames = proto::recv_frames(sockets_.shell, zmq::recv_flags::dontwait);
    if (frames.empty()) return;
    auto wire = session_.authenticate(std::move(frames));
    if (!wire) {
      log_->warn("dropped a message on the shell socket: {}", wire.error().reason);
      continue;
    }
    if (auto plain = plain_apply_request(*wire)) {
      queue_.push_back(std::move(*plain));
      continue;
    }
    auto message = proto::Session::parse(std::move(wire).value());
    if (!message) {
      log_->warn("dropped a message on the shell socket: {}", message.error().reason);
      continue;
    }
    queue_.push_back(std::move(message).value());
  }
}

bool Kernel::process_commands() {
  for (;;) {
    auto frames = proto::recv_frames(sockets_.control, zmq::recv_flags::dontwait);
    if (frames.empty()) return !stopping_;
    const std::string command = frame_text(frames[0]);
    if (command == kernel_command::kAbort) {
      for (std::size_t i = 1; i < frames.size(); ++i)
        aborted_.insert(frame_text(frames[i]));
    } else if (command == kernel_command::kAbortQueued) {
      abort_queued_executes();
    } else if (command == kernel_command::kClear) {
      namespace_.clear();
      std::vector<zmq::message_t> answer;
      answer.emplace_back(kernel_command::kCleared.data(), kernel_command::kCleared.size());
      if (frames.size() > 1) answer.push_back(std::move(frames[1]));
      proto::send_frames(sockets_.control, std::move(answer));
    } else if (command == kernel_command::kStop) {
      stopping_ = true;
    }
  }
}

void Kernel::abort_queued_executes() {
  receive_queued();
  std::deque<proto::Message> keep;
  for (auto& m : queue_) {
    if (m.msg_type() == mt::kExecuteRequest) {
      reply_aborted(std::move(m));
    } else {
      keep.push_back(std::move(m));
    }
  }
  queue_.swap(keep);
}

void Kernel::publish(std::string_view kind, std::string_view msg_type, const json& content,
                     zmq::message_t& parent) {
  std::vector<zmq::message_t> topic;
  std::string t = topic_prefix_;
  t.append(kind);
  topic.emplace_back(t.data(), t.size());
  proto::send_frames(sockets_.iopub, session_.build(std::move(topic), msg_type, content, parent,
                                                    json{{"engine", uuid_}}));
  ++published_;
}

void Kernel::publish_status(bool busy, zmq::message_t& parent) {
  static constexpr std::string_view kBusy = R"({"execution_state":"busy"})";
  static constexpr std::string_view kIdle = R"({"execution_state":"idle"})";
  std::vector<zmq::message_t> topic;
  topic.emplace_back(status_topic_.data(), status_topic_.size());
  proto::send_frames(sockets_.iopub,
                     session_.build_text(std::move(topic), mt::kStatus, busy ? kBusy : kIdle,
                                         parent, engine_metadata_));
}

void Kernel::publish_stream(zmq::message_t& parent, std::string_view name, std::string_view text) {
  publish(name, mt::kStream, json{{"name", name}, {"text", text}}, parent);
}

void Kernel::reply(Request& r, json content, const std::string& status,
                   std::vector<zmq::message_t> buffers) {
  const proto::Message& m = r.message;
  proto::ReplyMetadata md;
  md.started = r.started;
  md.engine = uuid_;
  md.status = status;
  md.is_broadcast = m.metadata.value("is_broadcast", false);
  md.is_coalescing = m.metadata.value("is_coalescing", false);
  md.original_msg_id = m.metadata.value("original_msg_id", std::string());
  if (status == "error") md.engine_info = json{{"engine_uuid", uuid_}, {"engine_id", engine_id_}};
  if (r.quiet_status) md.idle_follows = published_ > 0;
  const std::string type = reply_type_of(m.msg_type());
  proto::send_frames(sockets_.shell, session_.build(std::move(r.message.identities), type, content,
                                                    r.parent, json(md), std::move(buffers)));
}

void Kernel::reply_ok(Request& r, std::vector<zmq::message_t> buffers) {
  const json& request_md = r.message.metadata;
  const bool plain = !request_md.is_object() || (!request_md.contains("is_broadcast") &&
                                                 !request_md.contains("is_coalescing") &&
                                                 !request_md.contains("original_msg_id"));
  if (!plain) {
    reply(r, json{{"status", "ok"}}, "ok", std::move(buffers));
    return;
  }
  // What reply() writes through nlohmann (keys sorted as its objects sort them), directly.
  std::string md;
  md.reserve(160 + engine_field_.size());
  md.append(R"({"dependencies_met":true,)");
  md.append(engine_field_);
  if (r.quiet_status) {
    md.append(published_ > 0 ? R"(,"ipcpp_idle_follows":true)" : R"(,"ipcpp_idle_follows":false)");
  }
  md.append(R"(,"is_broadcast":false,"is_coalescing":false,"original_msg_id":"","started":")");
  md.append(r.started);
  md.append(R"(","status":"ok"})");
  const std::string type = reply_type_of(r.message.msg_type());
  proto::send_frames(sockets_.shell,
                     session_.build_text(std::move(r.message.identities), type,
                                         R"({"status":"ok"})", r.parent, md, std::move(buffers)));
}

void Kernel::reply_error(Request& r, std::string_view method, const std::string& ename,
                         const std::string& evalue, std::vector<std::string> traceback,
                         const json& extra) {
  json error{
      {"ename", ename},
      {"evalue", evalue},
      {"traceback", std::move(traceback)},
      {"engine_info", json{{"engine_uuid", uuid_}, {"engine_id", engine_id_}, {"method", method}}}};
  publish("error", mt::kError, error, r.parent);
  error["status"] = "error";
  for (const auto& item : extra.items())
    error[item.key()] = item.value();
  reply(r, std::move(error), "error");
}

void Kernel::reply_aborted(proto::Message&& request) {
  Request r{std::move(request), zmq::message_t(), proto::format_timestamp(proto::now())};
  r.parent = std::move(r.message.raw_header);
  r.quiet_status = asks_quiet_status(r.message.metadata);
  published_ = 0;
  if (!r.quiet_status) publish_status(true, r.parent);
  reply(r, json{{"status", "aborted"}}, "aborted");
  if (!r.quiet_status) publish_status(false, r.parent);
}

void Kernel::handle(proto::Message&& message) {
  const std::string& type = message.msg_type();
  if (type != mt::kExecuteRequest && type != mt::kApplyRequest) {
    log_->warn(
        "ignored a {} on the shell socket: this engine runs execute_request and "
        "apply_request",
        type);
    return;
  }
  if (aborted_.take(message.header.msg_id)) {
    reply_aborted(std::move(message));
    return;
  }
  Request r{std::move(message), zmq::message_t(), proto::format_timestamp(proto::now())};
  r.parent = std::move(r.message.raw_header);
  r.quiet_status = asks_quiet_status(r.message.metadata);
  published_ = 0;
  if (!r.quiet_status) publish_status(true, r.parent);
  running_.begin(r.message.header.msg_id);
  log_->debug("running {} {}", r.message.msg_type(), r.message.header.msg_id);
  if (r.message.msg_type() == mt::kExecuteRequest) {
    run_execute(r);
  } else {
    run_apply(r);
  }
  running_.end();
  // A quiet request's reply said whether this follows (reply(), reply_ok()).
  if (!r.quiet_status || published_ > 0) publish_status(false, r.parent);
}

Value Kernel::call(const std::string& name, const Args& args, Context& ctx) {
  if (name == "functions") {
    args.expect(0, 0);
    json names = json::array();
    for (const Function* f : functions_.all())
      names.push_back(f->name);
    names.push_back("functions");
    names.push_back("help");
    names.push_back("map");
    return names;
  }
  if (name == "help") {
    args.expect(0, 1);
    if (args.size() == 0) {
      json docs = json::object();
      for (const Function* f : functions_.all())
        docs[f->name] = f->doc;
      docs["map"] = "map(f, seq, ...): [f(seq[0], ...), f(seq[1], ...), ...]";
      return docs;
    }
    const std::string which = args.get<std::string>(0);
    if (which == "map") {
      return std::string("map(f, seq, ...): [f(seq[0], ...), f(seq[1], ...), ...] [built-in]");
    }
    const Function* f = functions_.find(which);
    if (f == nullptr) throw TaskError("NameError", "unknown function '" + which + "'");
    return f->doc + " [" + f->origin + "]";
  }
  if (name == "map") return call_map(args, ctx);
  const Function* f = functions_.find(name);
  if (f == nullptr) {
    throw TaskError("NameError", "unknown function '" + name +
                                     "': not a built-in and not in a loaded task library "
                                     "(functions() lists them)");
  }
  try {
    return f->function(args, ctx);
  } catch (const TaskError& e) {
    // Argument errors name the function they concern.
    const std::string prefix = name + "(): ";
    if (e.ename() == "TypeError" && std::string_view(e.what()).find("(): ") == std::string::npos) {
      throw TaskError(e.ename(), prefix + e.what());
    }
    throw;
  }
}

// map(f, seq1, seq2, ...): the list of f(seq1[i], seq2[i], ...), keyword arguments passed to
// every call. The clients' map() sends one of these per engine or per chunk.
Value Kernel::call_map(const Args& args, Context& ctx) {
  if (args.size() < 2) {
    throw TaskError("TypeError", "map(): takes a function name and at least one sequence (" +
                                     std::to_string(args.size()) + " given)");
  }
  const std::string function = args.get<std::string>(0);
  if (function == "map") throw TaskError("ValueError", "map(): cannot map map");
  std::size_t n = 0;
  for (std::size_t s = 1; s < args.size(); ++s) {
    const std::size_t len = sequence_length(args[s]);
    if (s == 1) {
      n = len;
    } else if (len != n) {
      throw TaskError("ValueError", "map(): the sequences differ in length: " + std::to_string(n) +
                                        " and " + std::to_string(len));
    }
  }
  std::vector<Value> results;
  results.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    ctx.check_cancelled();
    std::vector<Value> items;
    items.reserve(args.size() - 1);
    for (std::size_t s = 1; s < args.size(); ++s)
      items.push_back(sequence_item(args[s], i));
    results.push_back(call(function, Args(std::move(items), args.keywords()), ctx));
  }
  return Value::list(std::move(results));
}

void Kernel::run_execute(Request& r) {
  auto content =
      proto::decode_content<proto::ExecuteRequest>(r.message.content, "execute_request content");
  if (!content) {
    reply(r, json(proto::ErrorContent{"error", "ValueError", content.error().reason, {}, json{}}),
          "error");
    return;
  }
  const bool silent = content->silent;
  const auto& raw = r.message.content;
  const bool store_history = raw.contains("store_history") && raw["store_history"].is_boolean()
                                 ? raw["store_history"].get<bool>()
                                 : !silent;
  if (store_history) ++execution_count_;
  if (!silent) {
    publish("execute_input", mt::kExecuteInput,
            json{{"code", content->code}, {"execution_count", execution_count_}}, r.parent);
  }

  auto fail = [&](const std::string& ename, const std::string& evalue,
                  std::vector<std::string> traceback) {
    reply_error(r, "execute", ename, evalue, std::move(traceback),
                json{{"execution_count", execution_count_},
                     {"user_expressions", json::object()},
                     {"payload", json::array()}});
    if (!silent && content->stop_on_error) abort_queued_executes();
  };

  auto parsed = parse_program(content->code);
  if (std::holds_alternative<SyntaxError>(parsed)) {
    const auto& e = std::get<SyntaxError>(parsed);
    fail("SyntaxError", e.describe(), e.traceback());
    return;
  }
  const auto& program = std::get<std::vector<Statement>>(parsed);

  Context ctx(*this, r.parent);
  std::optional<Value> result;
  const Statement* current = nullptr;
  try {
    RedirectStandardStreams redirect(ctx.out_buf(), ctx.err_buf());
    const Caller caller = [&](const std::string& name, const Args& args) {
      return call(name, args, ctx);
    };
    for (const Statement& s : program) {
      current = &s;
      result.reset();
      ctx.check_cancelled();
      switch (s.kind) {
        case Statement::Kind::kShell: {
          ctx.flush();
          const auto done = run_shell_command(
              s.shell_command,
              [&](StreamName stream, std::string_view text) {
                publish_stream(r.parent, stream == StreamName::kStdout ? "stdout" : "stderr", text);
              },
              [this] { return running_.cancelled(); });
          if (done.cancelled) throw TaskCancelled();
          if (done.status != 0) {
            throw TaskError("CalledProcessError", "Command '" + s.shell_command +
                                                      "' returned non-zero exit status " +
                                                      std::to_string(done.status) + ".");
          }
          break;
        }
        case Statement::Kind::kAssign:
          namespace_.set(s.target, evaluate(*s.expression, namespace_, caller));
          break;
        case Statement::Kind::kExpression:
          result = evaluate(*s.expression, namespace_, caller);
          break;
      }
    }
    ctx.flush();
  } catch (const TaskCancelled&) {
    ctx.flush();
    reply(r, json{{"status", "aborted"}}, "aborted");
    return;
  } catch (...) {
    ctx.flush();
    const TaskFailure failure = current_failure();
    std::vector<std::string> traceback;
    traceback.push_back("ipcpp engine " + std::to_string(engine_id_) + ", execute:\n");
    if (current != nullptr) {
      traceback.push_back("  line " + std::to_string(current->line) + ": " + current->text + "\n");
    }
    traceback.push_back(failure.ename + ": " + failure.evalue + "\n");
    fail(failure.ename, failure.evalue, std::move(traceback));
    return;
  }
  if (result && !(result->json().is_null() && result->arrays().empty())) {
    publish("execute_result", mt::kExecuteResult,
            json{{"data", json{{"text/plain", to_text_plain(*result)},
                               {"application/json", to_application_json(*result)}}},
                 {"metadata", json::object()},
                 {"execution_count", execution_count_}},
            r.parent);
  }
  reply(r,
        json{{"status", "ok"},
             {"execution_count", execution_count_},
             {"user_expressions", json::object()},
             {"payload", json::array()}},
        "ok");
}

void Kernel::run_apply(Request& r) {
  auto fail = [&](const std::string& ename, const std::string& evalue,
                  std::vector<std::string> traceback) {
    reply_error(r, "apply", ename, evalue, std::move(traceback));
  };

  if (r.message.buffers.empty()) {
    fail("ValueError", "apply_request without a payload: the function travels in its buffers", {});
    return;
  }
  auto decoded = proto::decode_apply(std::move(r.message.buffers));
  if (!decoded) {
    const bool pickle = decoded.error().code == proto::Errc::kUnsupported;
    fail(pickle ? "NotImplementedError" : "ValueError", decoded.error().reason,
         {"ipcpp engine " + std::to_string(engine_id_) + ", apply:\n",
          std::string(pickle ? "NotImplementedError: " : "ValueError: ") + decoded.error().reason +
              "\n"});
    return;
  }
  proto::ApplyCall& call_spec = decoded.value();

  Context ctx(*this, r.parent);
  std::vector<zmq::message_t> buffers;
  try {
    std::vector<Value> positional;
    positional.reserve(call_spec.args.size());
    for (std::size_t i = 0; i < call_spec.args.size(); ++i)
      positional.push_back(call_spec.args[i]);
    std::vector<std::pair<std::string, Value>> keywords;
    if (call_spec.kwargs.json().is_object()) {
      for (const auto& item : call_spec.kwargs.json().items())
        keywords.emplace_back(item.key(), call_spec.kwargs.at(item.key()));
    }
    const Args args(std::move(positional), std::move(keywords));
    Value result;
    {
      RedirectStandardStreams redirect(ctx.out_buf(), ctx.err_buf());
      result = call(call_spec.function, args, ctx);
    }
    ctx.flush();
    buffers = proto::encode_value(result);
  } catch (const TaskCancelled&) {
    ctx.flush();
    reply(r, json{{"status", "aborted"}}, "aborted");
    return;
  } catch (...) {
    ctx.flush();
    const TaskFailure failure = current_failure();
    fail(failure.ename, failure.evalue,
         {"ipcpp engine " + std::to_string(engine_id_) + ", apply " + call_spec.function + ":\n",
          failure.ename + ": " + failure.evalue + "\n"});
    return;
  }
  reply_ok(r, std::move(buffers));
}

}  // namespace ipcpp::engine
