// The kernel: the engine's main loop. It owns the shell socket (mux, task and broadcast
// requests arrive there), the iopub socket and its end of the inproc pipe from the control
// thread, and runs requests one at a time: execute_request code in the command language, and
// apply_request calls of registered functions with the ipcpp payload.
//
// For each request it publishes status busy, the request's output (stream, execute_result,
// error), sends the reply with the request's routing prefix, then publishes status idle — the
// order ipyparallel's client relies on.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>

#include <spdlog/logger.h>
#include <zmq.hpp>

#include "ipcpp/engine.hpp"

#include "engine/aborted_ids.hpp"
#include "engine/output_capture.hpp"
#include "engine/registry.hpp"
#include "engine/running_task.hpp"
#include "proto/session.hpp"
#include "proto/zmtp_socket.hpp"

namespace ipcpp::engine {

// Commands on the inproc pipe from the control thread to the kernel (first frame), and the
// kernel's answers.
namespace kernel_command {
inline constexpr std::string_view kAbort = "abort";               // then msg_ids
inline constexpr std::string_view kAbortQueued = "abort-queued";  // queued execute_requests
inline constexpr std::string_view kClear = "clear";               // then a token
inline constexpr std::string_view kCleared = "cleared";           // kernel -> control, token
inline constexpr std::string_view kStop = "stop";
inline constexpr std::string_view kStopped = "stopped";  // kernel -> control
}  // namespace kernel_command

// shell and iopub carry every request, reply and output: they speak ZMTP themselves
// (proto/zmtp_socket.hpp), so the kernel reads and writes its TCP connections directly,
// without a ZeroMQ I/O thread in between.
struct KernelSockets {
  proto::ZmtpSocket shell;  // ROUTER, identity = uuid, connected to mux, task, broadcast
  proto::ZmtpSocket iopub;  // PUB
  zmq::socket_t control;    // PAIR to the control thread
};

// How many aborted msg_ids an engine remembers (abort_request ids not yet arrived).
inline constexpr std::size_t kAbortedIdsKept = 100000;

class Kernel {
 public:
  Kernel(KernelSockets sockets, proto::SessionOptions session, std::int64_t engine_id,
         const FunctionRegistry& functions, RunningTask& running,
         std::shared_ptr<spdlog::logger> log, FdOutputCapture* output_capture = nullptr);
  ~Kernel();
  Kernel(const Kernel&) = delete;
  Kernel& operator=(const Kernel&) = delete;

  // Runs requests until the control thread sends kStop, or the context is shut down.
  void run();

 private:
  struct Request;
  class Context;

  void handle(proto::Message&& request);
  void run_execute(Request& r);
  void run_apply(Request& r);
  Value call(const std::string& name, const Args& args, Context& ctx);
  Value call_map(const Args& args, Context& ctx);

  void reply(Request& r, nlohmann::json content, const std::string& status,
             std::vector<zmq::message_t> buffers = {});
  // Publishes an error on iopub and sends it as the reply; `extra` fields join the reply
  // content (execute replies also carry execution_count, user_expressions and payload).
  void reply_error(Request& r, std::string_view method, const std::string& ename,
                   const std::string& evalue, std::vector<std::string> traceback,
                   const nlohmann::json& extra = nlohmann::json::object());
  void reply_aborted(proto::Message&& request);
  void publish(std::string_view kind, std::string_view msg_type, const nlohmann::json& content,
               zmq::message_t& parent);
  void publish_stream(zmq::message_t& parent, std::string_view name, std::string_view text);
  // busy or idle, with the texts written once (two per request).
  void publish_status(bool busy, zmq::message_t& parent);
  // The reply of a request that ran well: with plain metadata, written as text directly.
  void reply_ok(Request& r, std::vector<zmq::message_t> buffers);

  bool process_commands();  // false once told to stop
  void receive_queued();    // moves what waits on the shell socket into queue_
  void abort_queued_executes();

  KernelSockets sockets_;
  proto::Session session_;
  std::string uuid_;
  std::int64_t engine_id_;
  std::string topic_prefix_;     // "engine.<id>."
  std::string status_topic_;     // "engine.<id>.status"
  std::string engine_metadata_;  // {"engine":"<uuid>"}, the metadata of everything published
  std::string engine_field_;     // "engine":"<uuid>", JSON-escaped
  const FunctionRegistry& functions_;
  RunningTask& running_;
  std::shared_ptr<spdlog::logger> log_;
  FdOutputCapture* output_capture_;  // none when the engine leaves fds 1 and 2 alone
  Namespace namespace_;
  std::int64_t execution_count_ = 0;
  std::size_t published_ = 0;            // iopub messages of the current request, statuses aside
  std::deque<proto::Message> queue_;     // received, not yet run
  AbortedIds aborted_{kAbortedIdsKept};  // msg_ids to answer as aborted
  bool stopping_ = false;
};

// The error a task's exception stands for: ename and evalue ("TypeError", "minus(): ...").
struct TaskFailure {
  std::string ename;
  std::string evalue;
};
// Converts the exception being handled (call inside a catch block). TaskCancelled is not
// handled here.
TaskFailure current_failure();

}  // namespace ipcpp::engine
