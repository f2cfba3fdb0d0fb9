// hub_query: talk to a running controller with nothing but ipcpp's protocol library.
//
// Reads a profile's ipcontroller-client.json, asks the hub which engines are registered
// (waiting for --engines N of them), runs --execute CODE on every engine through the direct
// (mux) queue, prints each engine's output and result, and ends with the hub's queue status.
// It works against any controller that speaks ipyparallel 7's protocol.
//
//   hub_query --profile demo --engines 2 --execute 'import os; os.getpid()'
#include <chrono>
#include <iostream>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "profiles/profile.hpp"
#include "proto/connection_file.hpp"
#include "proto/messages.hpp"
#include "proto/session.hpp"

namespace {

using namespace ipcpp::proto;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Options {
  std::string profile = "default";
  std::string profile_dir;
  std::string ipython_dir;
  std::string file;
  int engines = 0;
  double timeout = 30;
  std::string execute;
};

class HubQuery {
 public:
  HubQuery(const ClientConnectionFile& file, Clock::time_point deadline)
      : file_(file),
        session_(SessionOptions{.key = file.key, .signature_scheme = file.signature_scheme}),
        deadline_(deadline),
        query_(ctx_, zmq::socket_type::dealer),
        notification_(ctx_, zmq::socket_type::sub),
        mux_(ctx_, zmq::socket_type::dealer),
        iopub_(ctx_, zmq::socket_type::sub) {
    for (auto* s : {&query_, &notification_, &mux_, &iopub_})
      s->set(zmq::sockopt::linger, 0);
    notification_.set(zmq::sockopt::subscribe, "");
    iopub_.set(zmq::sockopt::subscribe, "");
    query_.connect(file.url(file.registration));
    notification_.connect(file.url(file.notification));
    mux_.connect(file.url(file.mux));
    iopub_.connect(file.url(file.iopub));
  }

  // Asks the hub, then follows registration notifications until `want` engines are there.
  std::map<std::int64_t, std::string> wait_for_engines(int want) {
    send(query_, msg_type::kConnectionRequest, json::object());
    auto reply = expect(query_, msg_type::kConnectionReply);
    auto content = decode_content<ConnectionReply>(reply.content, "connection_reply");
    if (!content) throw std::runtime_error(content.error().reason);
    std::map<std::int64_t, std::string> engines;
    for (const auto& [id, uuid] : content->engines)
      engines[std::stoll(id)] = uuid;
    if (static_cast<int>(engines.size()) < want) {
      std::cout << "waiting for " << want << " engines (" << engines.size() << " registered)"
                << std::endl;
    }
    while (static_cast<int>(engines.size()) < want) {
      auto m = receive(notification_);
      if (m.msg_type() == msg_type::kRegistrationNotification) {
        auto n = decode_content<EngineNotification>(m.content, "registration_notification");
        if (n) {
          engines[n->id] = n->uuid;
          std::cout << "  engine " << n->id << " registered" << std::endl;
        }
      } else if (m.msg_type() == msg_type::kUnregistrationNotification) {
        if (auto n = decode_content<EngineNotification>(m.content, "unregistration")) {
          engines.erase(n->id);
        }
      }
    }
    return engines;
  }

  // Runs code on one engine through the mux queue; prints its stdout and result.
  void execute(std::int64_t id, const std::string& uuid, const std::string& code) {
    const std::string msg_id = send(mux_, msg_type::kExecuteRequest,
                                    json(ExecuteRequest{.code = code, .silent = false}), uuid);
    std::string out;
    std::optional<json> result;
    bool replied = false;
    bool idle = false;
    json reply_content;
    while (!replied || !idle) {
      zmq::pollitem_t items[] = {{mux_.handle(), 0, ZMQ_POLLIN, 0},
                                 {iopub_.handle(), 0, ZMQ_POLLIN, 0}};
      zmq::poll(items, 2, remaining());
      if (Clock::now() >= deadline_)
        throw std::runtime_error("timed out waiting for engine " + std::to_string(id));
      if (items[0].revents & ZMQ_POLLIN) {
        auto m = receive(mux_);
        if (m.parent_msg_id() == msg_id) {
          replied = true;
          reply_content = m.content;
        }
      }
      if (items[1].revents & ZMQ_POLLIN) {
        auto m = receive(iopub_);
        if (m.parent_msg_id() != msg_id) continue;
        if (m.msg_type() == msg_type::kStream) {
          if (auto s = decode_content<StreamContent>(m.content, "stream")) out += s->text;
        } else if (m.msg_type() == msg_type::kExecuteResult) {
          if (auto d = decode_content<DataContent>(m.content, "execute_result")) result = d->data;
        } else if (m.msg_type() == msg_type::kStatus) {
          idle = m.content.value("execution_state", "") == "idle";
        }
      }
    }
    std::cout << "[engine " << id << "] ";
    if (reply_content.value("status", "") != "ok") {
      auto e = decode_content<ErrorContent>(reply_content, "execute_reply");
      std::cout << "error: " << (e ? e->ename + ": " + e->evalue : reply_content.dump()) << "\n";
      failures_++;
      return;
    }
    if (!out.empty()) std::cout << out << (out.back() == '\n' ? "" : "\n");
    if (result) std::cout << "Out: " << result->value("text/plain", result->dump()) << "\n";
    if (out.empty() && !result) std::cout << "ok\n";
  }

  void print_queue_status() {
    send(query_, msg_type::kQueueRequest, json(QueueRequest{}));
    auto reply = expect(query_, msg_type::kQueueReply);
    auto q = decode_content<QueueReply>(reply.content, "queue_reply");
    if (!q) throw std::runtime_error(q.error().reason);
    std::cout << "queue status (pending direct, pending load-balanced, completed):\n";
    for (const auto& [id, s] : q->engines) {
      std::cout << "  engine " << id << ": " << s.queue.dump() << " direct, " << s.tasks.dump()
                << " load-balanced, " << s.completed.dump() << " completed\n";
    }
    std::cout << "  unassigned: " << q->unassigned.dump() << "\n";
  }

  int failures() const { return failures_; }

 private:
  std::chrono::milliseconds remaining() const {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now());
    return std::max(std::chrono::milliseconds(0), left);
  }

  std::string send(zmq::socket_t& socket, const char* type, const json& content,
                   const std::string& target = "") {
    Message m;
    if (!target.empty()) m.identities.emplace_back(target.data(), target.size());
    m.header = session_.make_header(type);
    m.content = content;
    std::string msg_id = m.header.msg_id;
    send_frames(socket, session_.serialize(std::move(m)));
    return msg_id;
  }

  // The next valid message on the socket; bad ones are reported and skipped.
  Message receive(zmq::socket_t& socket) {
    while (true) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, remaining()) == 0) {
        throw std::runtime_error("timed out waiting for the controller at " +
                                 file_.url(file_.registration));
      }
      auto m = session_.decode(recv_frames(socket));
      if (m) return std::move(m).value();
      std::cerr << "hub_query: dropped a message: " << m.error().reason << "\n";
    }
  }

  Message expect(zmq::socket_t& socket, const char* type) {
    auto m = receive(socket);
    if (m.msg_type() != type) {
      auto e = decode_content<ErrorContent>(m.content, m.msg_type());
      throw std::runtime_error("expected " + std::string(type) + ", got " + m.msg_type() +
                               (e ? ": " + e->ename + " " + e->evalue : ""));
    }
    return m;
  }

  ClientConnectionFile file_;
  Session session_;
  Clock::time_point deadline_;
  zmq::context_t ctx_;
  zmq::socket_t query_, notification_, mux_, iopub_;
  int failures_ = 0;
};

int run(const Options& o) {
  std::filesystem::path path = o.file;
  if (path.empty()) {
    const auto root = o.ipython_dir.empty() ? ipcpp::profiles::ipython_dir()
                                            : std::filesystem::path(o.ipython_dir);
    const auto profile = o.profile_dir.empty() ? ipcpp::profiles::Profile::named(o.profile, root)
                                               : ipcpp::profiles::Profile::at(o.profile_dir);
    path = profile.client_connection_file();
  }
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(static_cast<long>(o.timeout * 1000));
  // Like ipyparallel's Client, wait for a controller that is still starting to write the file.
  auto file = read_client_connection_file(path);
  if (!file && file.error().code == Errc::kIo) {
    std::cout << "waiting for connection file: " << path.string() << std::endl;
  }
  while (!file && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    file = read_client_connection_file(path);
  }
  if (!file) {
    std::cerr << "hub_query: " << file.error().reason << "\n";
    return 1;
  }
  std::cout << "controller: " << file->url(file->registration) << " (scheme " << file->task_scheme
            << ", " << (file->key.empty() ? "unsigned" : file->signature_scheme) << ")\n";
  HubQuery hub(*file, deadline);
  const auto engines = hub.wait_for_engines(o.engines);
  std::cout << "engines: " << engines.size() << " registered\n";
  for (const auto& [id, uuid] : engines)
    std::cout << "  engine " << id << "  " << uuid << "\n";
  if (!o.execute.empty()) {
    std::cout << "execute " << json(o.execute).dump() << " on every engine:\n";
    for (const auto& [id, uuid] : engines)
      hub.execute(id, uuid, o.execute);
  }
  hub.print_queue_status();
  return hub.failures() == 0 ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Query a running controller and run code on its engines, using ipcpp's protocol "
      "library only."};
  Options o;
  auto* profile = app.add_option("--profile", o.profile, "Profile name")->capture_default_str();
  auto* profile_dir = app.add_option("--profile-dir", o.profile_dir, "Profile directory");
  auto* file =
      app.add_option("--file", o.file, "A client connection file (ipcontroller-client.json)");
  profile->excludes(profile_dir)->excludes(file);
  profile_dir->excludes(file);
  app.add_option("--ipython-dir", o.ipython_dir,
                 "Root of the profiles (default $IPYTHONDIR, ~/.ipython)");
  app.add_option("--engines", o.engines, "Wait until this many engines are registered")
      ->capture_default_str();
  app.add_option("--timeout", o.timeout, "Give up after this many seconds")->capture_default_str();
  app.add_option("--execute", o.execute, "Code to run on every engine (Python for Python engines)");
  CLI11_PARSE(app, argc, argv);
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::cerr << "hub_query: " << e.what() << "\n";
    return 1;
  }
}
