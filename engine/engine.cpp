#include "engine/engine.hpp"

#include <signal.h>
#include <stdexcept>
#include <sys/signalfd.h>
#include <thread>
#include <unistd.h>

#include <spdlog/fmt/fmt.h>

#include "engine/control.hpp"
#include "engine/heartbeat.hpp"
#include "engine/kernel.hpp"
#include "proto/messages.hpp"
#include "proto/session.hpp"
#include "proto/wire.hpp"

namespace ipcpp::engine {
namespace {

using nlohmann::json;
namespace mt = proto::msg_type;

constexpr int kLingerMs = 1000;
constexpr const char* kKernelControlEndpoint = "inproc://ipcpp-engine-kernel-control";
constexpr const char* kHeartbeatControlEndpoint = "inproc://ipcpp-engine-heartbeat-control";

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  return set;
}

zmq::socket_t make_socket(zmq::context_t& ctx, zmq::socket_type type,
                          const std::string& identity = {}) {
  zmq::socket_t s(ctx, type);
  s.set(zmq::sockopt::linger, kLingerMs);
  s.set(zmq::sockopt::sndhwm, 0);
  s.set(zmq::sockopt::rcvhwm, 0);
  if (!identity.empty()) s.set(zmq::sockopt::routing_id, identity);
  return s;
}

std::string url(const std::string& interface, int port) {
  return interface + ":" + std::to_string(port);
}

// The registration exchange on `socket`. Returns the reply, or throws.
proto::RegistrationReply register_engine(zmq::socket_t& socket, proto::Session& session,
                                         const EngineOptions& o, const std::string& where) {
  proto::RegistrationRequest request{session.id(), o.requested_id};
  proto::send_frames(socket, session.build({}, mt::kRegistrationRequest, json(request)));
  const auto deadline = std::chrono::steady_clock::now() + o.registration_timeout;
  std::array<zmq::pollitem_t, 1> items{zmq::pollitem_t{socket.handle(), 0, ZMQ_POLLIN, 0}};
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      throw std::runtime_error(
          fmt::format("no answer from the controller at {} within {:g} s: is it running, and is "
                      "{} its current connection file (same ports and key)?",
                      where, static_cast<double>(o.registration_timeout.count()) / 1000.0,
                      o.connection_path.string()));
    }
    zmq::poll(items.data(), items.size(), left);
    if ((items[0].revents & ZMQ_POLLIN) == 0) continue;
    auto message = session.decode(proto::recv_frames(socket));
    if (!message) {
      o.log->warn("dropped a message on the registration socket: {}", message.error().reason);
      if (message.error().code == proto::Errc::kBadSignature) {
        throw std::runtime_error(
            "the controller at " + where + " signs with another key than the one in " +
            o.connection_path.string() + ": the file is out of date (copy it again)");
      }
      continue;
    }
    if (message->msg_type() != mt::kRegistrationReply) continue;
    const json& content = message->content;
    if (content.value("status", std::string()) != "ok") {
      auto err = proto::decode_content<proto::ErrorContent>(content, "registration_reply");
      throw std::runtime_error("the controller at " + where + " refused the registration: " +
                               (err ? err->ename + ": " + err->evalue : content.dump()));
    }
    auto reply = proto::decode_content<proto::RegistrationReply>(content, "registration_reply");
    if (!reply) throw std::runtime_error("bad registration reply: " + reply.error().reason);
    return std::move(reply).value();
  }
}

}  // namespace

std::string reachable_interface(const std::string& interface, const std::string& location) {
  const auto colon = interface.find("://");
  if (colon == std::string::npos) return interface;
  const std::string host = interface.substr(colon + 3);
  if (host != "*" && host != "0.0.0.0") return interface;
  return interface.substr(0, colon + 3) + (location.empty() ? "127.0.0.1" : location);
}

Engine::Engine(EngineOptions options, FunctionRegistry functions)
    : options_(std::move(options)), functions_(std::move(functions)) {}

void Engine::block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

int Engine::run() {
  const auto& file = options_.connection;
  auto& log = options_.log;
  const std::string interface = reachable_interface(file.interface, file.location);
  const std::string where = url(interface, file.registration);

  const std::string uuid = proto::new_session_id();
  proto::SessionOptions session_options;
  session_options.key = file.key;
  session_options.signature_scheme = file.signature_scheme;
  session_options.session_id = uuid;

  zmq::context_t ctx;
  proto::Session registration_session(session_options);
  zmq::socket_t registration = make_socket(ctx, zmq::socket_type::dealer, uuid);
  registration.set(zmq::sockopt::linger, 0);
  registration.connect(where);
  log->info("registering with the controller at {} (uuid {})", where, uuid);
  const proto::RegistrationReply reply =
      register_engine(registration, registration_session, options_, where);
  registration.close();
  const auto& info = reply.connection_info;
  auto port = [](int from_reply, int from_file) { return from_reply > 0 ? from_reply : from_file; };
  const std::vector<int>& broadcast = info.broadcast.empty() ? file.broadcast : info.broadcast;

  // Sockets, all with identity = uuid where the controller routes by it.
  zmq::socket_t kernel_pipe = make_socket(ctx, zmq::socket_type::pair);
  kernel_pipe.bind(kKernelControlEndpoint);
  zmq::socket_t heartbeat_pipe = make_socket(ctx, zmq::socket_type::pair);
  heartbeat_pipe.bind(kHeartbeatControlEndpoint);

  auto zmtp_socket = [&log](proto::ZmtpSocketType type, const std::string& identity,
                            std::string_view name) {
    proto::ZmtpSocketOptions o;
    o.type = type;
    o.identity = identity;
    o.linger = std::chrono::milliseconds(kLingerMs);
    o.on_problem = [log, name](std::string_view what) {
      log->warn("{} connection: {}", name, what);
    };
    return proto::ZmtpSocket(std::move(o));
  };
  KernelSockets kernel{zmtp_socket(proto::ZmtpSocketType::kRouter, uuid, "shell"),
                       zmtp_socket(proto::ZmtpSocketType::kPub, {}, "iopub"),
                       make_socket(ctx, zmq::socket_type::pair)};
  kernel.shell.connect(url(interface, port(info.mux, file.mux)));
  kernel.shell.connect(url(interface, port(info.task, file.task)));
  if (!broadcast.empty()) {
    const auto leaf = static_cast<std::size_t>(reply.id) % broadcast.size();
    kernel.shell.connect(url(interface, broadcast[leaf]));
  }
  kernel.iopub.connect(url(interface, port(info.iopub, file.iopub)));
  kernel.control.connect(kKernelControlEndpoint);

  ControlSockets control{make_socket(ctx, zmq::socket_type::router, uuid),
                         make_socket(ctx, zmq::socket_type::dealer), std::move(kernel_pipe),
                         std::move(heartbeat_pipe)};
  control.control.connect(url(interface, port(info.control, file.control)));
  control.registration.connect(where);

  HeartbeatSockets heartbeat{make_socket(ctx, zmq::socket_type::sub),
                             make_socket(ctx, zmq::socket_type::dealer, uuid),
                             make_socket(ctx, zmq::socket_type::pair)};
  heartbeat.ping.set(zmq::sockopt::subscribe, "");
  heartbeat.ping.connect(url(interface, port(info.hb_ping, file.hb_ping)));
  heartbeat.pong.connect(url(interface, port(info.hb_pong, file.hb_pong)));
  heartbeat.control.connect(kHeartbeatControlEndpoint);

  const sigset_t signals = stop_signals();
  const int signal_fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) log->warn("no signalfd: SIGTERM will not stop the engine cleanly");

  RunningTask running;
  StopState stop;
  ControlOptions control_options;
  control_options.engine_id = reply.id;
  control_options.signal_fd = signal_fd;
  control_options.controller_url = where;
  control_options.stop_grace = options_.stop_grace;
  proto::SessionOptions control_session = session_options;
  control_session.msg_id_prefix = uuid + "_control_" + std::to_string(::getpid()) + "_";

  log->info("registered as engine {} (heartbeat period {} ms); {} functions", reply.id,
            reply.hb_period, functions_.all().size());

  std::thread heartbeat_thread(run_heartbeat, std::move(heartbeat), options_.controller_timeout,
                               log);
  std::thread control_thread(run_control, std::move(control), control_session, control_options,
                             std::ref(running), std::ref(stop), log);
  {
    Kernel k(std::move(kernel), session_options, reply.id, functions_, running, log,
             options_.output_capture);
    k.run();
    // The control thread returns once it has told the controller that this engine leaves
    // (unregistration_request), before any socket closes: the controller then sees a clean
    // departure, not a heart that stopped.
    control_thread.join();
    ctx.shutdown();
    heartbeat_thread.join();
  }
  if (signal_fd >= 0) ::close(signal_fd);
  const int code = stop.exit_code.load();
  log->info("engine {} stopped", reply.id);
  return code;
}

}  // namespace ipcpp::engine
