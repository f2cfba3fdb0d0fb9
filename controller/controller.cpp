#include "controller/controller.hpp"

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdexcept>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "controller/broadcast_scheduler.hpp"
#include "controller/heartbeat.hpp"
#include "controller/hub.hpp"
#include "controller/relay.hpp"
#include "controller/schemes.hpp"
#include "controller/task_scheduler.hpp"
#include "profiles/profile.hpp"
#include "profiles/secure_file.hpp"

namespace ipcpp::controller {
namespace {

namespace fs = std::filesystem;

// Ports for the sockets, in the reference's order: taken from the range while it lasts,
// then chosen by the OS (0).
class PortPool {
 public:
  explicit PortPool(std::optional<std::pair<int, int>> range) {
    if (range) {
      next_ = range->first;
      last_ = range->second;
    }
  }
  int take() { return next_ != 0 && next_ <= last_ ? next_++ : 0; }

 private:
  int next_ = 0;
  int last_ = -1;
};

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "localhost";
  return name;
}

}  // namespace

Controller::Controller(ControllerOptions options) : options_(std::move(options)) {
  if (!options_.log) throw std::invalid_argument("ControllerOptions.log is required");
}

Controller::~Controller() {
  stop();
}

void Controller::block_stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void Controller::start() {
  auto& log = options_.log;
  const auto profile = profiles::Profile::at(options_.profile_dir);
  profile.create();
  client_path_ = profile.client_connection_file(options_.cluster_id);
  engine_path_ = profile.engine_connection_file(options_.cluster_id);
  pid_path_ = profile.pid_dir() / (options_.cluster_id.empty()
                                       ? std::string("ipcontroller.pid")
                                       : "ipcontroller-" + options_.cluster_id + ".pid");

  engines_path_ =
      profile.security_dir() / (options_.cluster_id.empty()
                                    ? std::string("ipcontroller-engines.json")
                                    : "ipcontroller-" + options_.cluster_id + "-engines.json");

  // Key and ports: reused from the files, or new.
  std::optional<proto::ClientConnectionFile> old_client;
  std::optional<proto::EngineConnectionFile> old_engine;
  if (options_.reuse && fs::exists(client_path_) && fs::exists(engine_path_)) {
    auto c = proto::read_client_connection_file(client_path_);
    if (!c) throw std::runtime_error("--reuse: " + c.error().reason);
    auto e = proto::read_engine_connection_file(engine_path_);
    if (!e) throw std::runtime_error("--reuse: " + e.error().reason);
    if (e->broadcast.size() != 2) {
      throw std::runtime_error("--reuse: " + engine_path_.string() +
                               ": field 'broadcast' must list 2 ports (a tree of depth 1)");
    }
    old_client = std::move(c.value());
    old_engine = std::move(e.value());
    log->info("reusing the ports and key of {} and {}", client_path_.string(),
              engine_path_.string());
  }
  std::string key;
  if (old_client) {
    key = old_client->key;
  } else if (const char* env = std::getenv("IPP_SESSION_KEY"); env != nullptr) {
    key = env;
  } else {
    key = proto::new_connection_key();
  }
  proto::SessionOptions session;
  session.key = key;
  session.signature_scheme = old_client ? old_client->signature_scheme : "hmac-sha256";

  if (options_.store.kind == "sqlite" && options_.store.sqlite_path.empty()) {
    options_.store.sqlite_path =
        profile.dir() / (options_.cluster_id.empty() ? std::string("tasks.db")
                                                     : "tasks-" + options_.cluster_id + ".db");
  }
  auto store = make_task_store(options_.store);
  auto scheme_check = make_scheme(options_.scheme);  // throws for an unknown name

  // Two ZeroMQ I/O threads: a large message is received whole from one peer while another is
  // sent on, and with one thread those copies took turns (scatter/gather of 10^7 doubles:
  // 0.60-0.65 GB/s with one, 0.79-0.92 with two; the direct round trip did not get slower).
  context_ = std::make_unique<zmq::context_t>(2);
  auto& ctx = *context_;
  using zmq::socket_type;
  const std::string& ip = options_.ip;
  PortPool pool(options_.ports);
  auto port_for = [&](std::optional<int> reused) { return reused ? *reused : pool.take(); };

  // The hub's in-process endpoints first, so that every other socket can connect to them.
  HubSockets hub{make_socket(ctx, socket_type::router, {}, 500),
                 make_socket(ctx, socket_type::pub, {}, 500), make_socket(ctx, socket_type::sub),
                 make_socket(ctx, socket_type::dealer)};
  hub.monitor.set(zmq::sockopt::subscribe, "");
  hub.monitor.bind(kMonitorEndpoint);
  hub.notification.bind(kNotificationEndpoint);

  auto sub_to_notifications = [&] {
    auto s = make_socket(ctx, socket_type::sub);
    s.set(zmq::sockopt::subscribe, "");
    s.connect(kNotificationEndpoint);
    return s;
  };
  auto pub_to_monitor = [&] {
    auto s = make_socket(ctx, socket_type::pub);
    s.connect(kMonitorEndpoint);
    return s;
  };

  const int registration =
      bind_tcp(hub.registration, ip,
               port_for(old_client ? std::optional(old_client->registration) : std::nullopt));

  auto zmtp_router = [&log](const std::string& name, const std::string& identity) {
    return make_zmtp_socket(proto::ZmtpSocketType::kRouter, log, name, identity);
  };
  QueueSockets control{zmtp_router("control, client side", "control_in"),
                       zmtp_router("control, engine side", "control_out"), sub_to_notifications(),
                       pub_to_monitor()};
  QueueSockets mux{zmtp_router("mux, client side", "mux_in"),
                   zmtp_router("mux, engine side", "mux_out"), sub_to_notifications(),
                   pub_to_monitor()};
  TaskSockets task{
      zmtp_router("task, client side", "task_in"), zmtp_router("task, engine side", "task_out"),
      make_socket(ctx, socket_type::router, "task_in"), sub_to_notifications(), pub_to_monitor()};
  IopubSockets iopub{make_zmtp_socket(proto::ZmtpSocketType::kSub, log, "iopub, engine side"),
                     make_zmtp_socket(proto::ZmtpSocketType::kPub, log, "iopub, client side"),
                     pub_to_monitor()};
  iopub.engine.subscribe("");
  HeartbeatSockets heart{make_socket(ctx, socket_type::pub), make_socket(ctx, socket_type::router),
                         pub_to_monitor(), sub_to_notifications(), zmq::socket_t()};
  heart.pong_events = monitor_disconnections(ctx, heart.pong);
  BroadcastSockets broadcast{make_socket(ctx, socket_type::router, "sub_scheduler_0"),
                             {make_socket(ctx, socket_type::router, "sub_scheduler_00"),
                              make_socket(ctx, socket_type::router, "sub_scheduler_01")},
                             sub_to_notifications()};
  for (auto* s : {&broadcast.leaves[0], &broadcast.leaves[1]}) {
    // Fail fast (EHOSTUNREACH) rather than drop when an engine is gone; callers handle it.
    s->set(zmq::sockopt::router_mandatory, false);
  }

  auto reuse_e = [&](int proto::EngineConnectionFile::*field) {
    return old_engine ? std::optional((*old_engine).*field) : std::nullopt;
  };
  auto reuse_c = [&](int proto::ClientConnectionFile::*field) {
    return old_client ? std::optional((*old_client).*field) : std::nullopt;
  };
  using EF = proto::EngineConnectionFile;
  using CF = proto::ClientConnectionFile;
  // Engine side, then client side, in the reference's order.
  engine_file_.control = bind_tcp(control.engine, ip, port_for(reuse_e(&EF::control)));
  engine_file_.mux = bind_tcp(mux.engine, ip, port_for(reuse_e(&EF::mux)));
  engine_file_.task = bind_tcp(task.engine, ip, port_for(reuse_e(&EF::task)));
  engine_file_.iopub = bind_tcp(iopub.engine, ip, port_for(reuse_e(&EF::iopub)));
  engine_file_.hb_ping = bind_tcp(heart.ping, ip, port_for(reuse_e(&EF::hb_ping)));
  engine_file_.hb_pong = bind_tcp(heart.pong, ip, port_for(reuse_e(&EF::hb_pong)));
  for (std::size_t i = 0; i < 2; ++i) {
    engine_file_.broadcast.push_back(
        bind_tcp(broadcast.leaves[i], ip,
                 port_for(old_engine ? std::optional(old_engine->broadcast[i]) : std::nullopt)));
  }
  client_file_.control = bind_tcp(control.client, ip, port_for(reuse_c(&CF::control)));
  client_file_.mux = bind_tcp(mux.client, ip, port_for(reuse_c(&CF::mux)));
  client_file_.task = bind_tcp(task.client, ip, port_for(reuse_c(&CF::task)));
  client_file_.iopub = bind_tcp(iopub.client, ip, port_for(reuse_c(&CF::iopub)));
  client_file_.notification = bind_tcp(hub.notification, ip, port_for(reuse_c(&CF::notification)));
  client_file_.broadcast = bind_tcp(broadcast.client, ip, port_for(reuse_c(&CF::broadcast)));
  task.resubmit.bind(kTaskEndpoint);
  hub.resubmit.set(zmq::sockopt::routing_id, kResubmitId);
  hub.resubmit.connect(kTaskEndpoint);

  const std::string interface = "tcp://" + ip;
  const std::string location = options_.location.empty() ? host_name() : options_.location;
  for (auto* f : {&client_file_.interface, &engine_file_.interface})
    *f = interface;
  client_file_.registration = engine_file_.registration = registration;
  client_file_.key = engine_file_.key = key;
  client_file_.location = engine_file_.location = location;
  client_file_.task_scheme = options_.scheme;
  client_file_.signature_scheme = engine_file_.signature_scheme = session.signature_scheme;
  if (old_client) client_file_.ssh = old_client->ssh;
  if (old_engine) engine_file_.ssh = old_engine->ssh;

  profiles::write_private_file(client_path_, proto::to_json_text(client_file_));
  profiles::write_private_file(engine_path_, proto::to_json_text(engine_file_));
  profiles::write_private_file(pid_path_, std::to_string(getpid()) + "\n");

  shutdown_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (shutdown_fd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));

  HubOptions hub_options;
  hub_options.engine_info = {interface,
                             registration,
                             engine_file_.control,
                             engine_file_.mux,
                             engine_file_.task,
                             engine_file_.iopub,
                             engine_file_.hb_ping,
                             engine_file_.hb_pong,
                             engine_file_.broadcast};
  hub_options.heartbeat_period = options_.heartbeat_period;
  hub_options.engines_file = engines_path_;
  hub_options.restore_engines = old_client.has_value();
  hub_options.registration_timeout =
      options_.registration_timeout.count() > 0
          ? options_.registration_timeout
          : std::max(std::chrono::milliseconds(10000), 10 * options_.heartbeat_period);
  const int fd = shutdown_fd_;
  hub_options.on_shutdown = [fd] {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto n = write(fd, &one, sizeof one);
  };

  HeartbeatOptions heart_options{options_.heartbeat_period, options_.heartbeat_misses};
  TaskSchedulerOptions task_options{options_.scheme, options_.hwm, options_.dependency_history};

  // The monitor SUB is bound and every thread's PUB connects to it: the SUB takes those
  // connections on, and sends them its subscription, only when it next processes its
  // commands. Until then a PUB drops what it sends (nobody has subscribed). Do it now, before
  // any thread runs: the heartbeat thread reports the hearts of engines registered before a
  // --reuse restart at once, and a lost report left such an engine unregistered.
  (void)hub.monitor.get(zmq::sockopt::events);

  // Each thread is named (ps -L, top -H, perf, gdb): "ipcpp-" and its part.
  auto spawn = [this](const char* name, auto&&... args) {
    auto& t = threads_.emplace_back(std::forward<decltype(args)>(args)...);
    pthread_setname_np(t.native_handle(), name);
  };
  spawn("ipcpp-hub", run_hub, std::move(hub), std::move(hub_options), std::move(store), session,
        log);
  spawn("ipcpp-heartbeat", run_heartbeat, std::move(heart), heart_options, session, log);
  spawn("ipcpp-mux", run_queue, std::move(mux), QueueNames{"mux", "in", "out"}, session, log);
  spawn("ipcpp-control", run_queue, std::move(control),
        QueueNames{"control", "incontrol", "outcontrol"}, session, log);
  spawn("ipcpp-iopub", run_iopub, std::move(iopub), session, log);
  spawn("ipcpp-task", run_task_scheduler, std::move(task), task_options, session, log);
  spawn("ipcpp-broadcast", run_broadcast_scheduler, std::move(broadcast), session, log);
  running_ = true;
  log->info("controller listening on {} (registration port {}), scheme {}, hwm {}, store {}",
            interface, registration, options_.scheme, options_.hwm, options_.store.kind);
  log->info("connection files: {} and {}", client_path_.string(), engine_path_.string());
}

int Controller::wait_for_stop() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  const int sfd = signalfd(-1, &set, SFD_CLOEXEC);
  if (sfd < 0) throw std::runtime_error(std::string("signalfd: ") + std::strerror(errno));
  pollfd fds[2] = {{sfd, POLLIN, 0}, {shutdown_fd_, POLLIN, 0}};
  int result = 0;
  while (true) {
    const int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) continue;
    if ((fds[0].revents & POLLIN) != 0) {
      signalfd_siginfo info{};
      if (read(sfd, &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
        result = static_cast<int>(info.ssi_signo);
        options_.log->info("received {}: stopping", result == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
    }
    if ((fds[1].revents & POLLIN) != 0) {
      options_.log->info("a client asked the hub to shut down: stopping");
      break;
    }
  }
  close(sfd);
  return result;
}

void Controller::stop() {
  if (!running_) return;
  running_ = false;
  context_->shutdown();
  for (auto& t : threads_)
    t.join();
  threads_.clear();
  context_->close();
  context_.reset();
  if (shutdown_fd_ >= 0) close(shutdown_fd_);
  shutdown_fd_ = -1;
  std::error_code ec;
  fs::remove(pid_path_, ec);
  if (!options_.reuse) {
    fs::remove(client_path_, ec);
    fs::remove(engine_path_, ec);
    fs::remove(engines_path_, ec);
  }
  options_.log->info("controller stopped");
}

}  // namespace ipcpp::controller
