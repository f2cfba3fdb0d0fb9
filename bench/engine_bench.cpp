// engine_bench: ipcpp-engine behind ipcpp-controller, driven by a C++ client written with
// proto/ alone. No Python anywhere.
//
//   build/bench/bin/engine_bench [--quick]
//
// It starts its own processes, from the directory of this binary: `ipcpp-controller
// --profile-dir <tmp> --ping 1000` and N `ipcpp-engine --profile-dir <tmp>` (posix_spawn,
// output to log files in the temporary directory), with a fresh cluster for each engine
// count. It stops exactly the processes it started (SIGTERM, then SIGKILL after 5 s), at the
// end, on an error and on SIGINT/SIGTERM/SIGHUP, and removes its /tmp directory.
//
// Measured, printed as one Markdown table:
//   1. raw ZeroMQ DEALER-ROUTER echo over tcp 127.0.0.1, in this process (the floor);
//   2. direct (mux) round trip of apply echo(1) on one engine;
//   3. load-balanced no-op throughput (task queue, echo(i)) with K in flight, N engines;
//   4. direct throughput on 4 engines, 100 in flight per engine, round robin;
//   5. push + pull of a 10^7-element double array through the mux to one engine.
// Every reply is authenticated and decoded, and every echo result checked. Never fails on
// speed: the exit status is non-zero only when something did not work. --quick divides the
// counts by 10 (to try the program, not to quote).
#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <signal.h>
#include <spawn.h>
#include <sstream>
#include <stdexcept>
#include <stdlib.h>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

#include "profiles/profile.hpp"
#include "proto/connection_file.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"
#include "proto/session.hpp"
#include "proto/wire.hpp"

extern char** environ;

namespace {

namespace fs = std::filesystem;
namespace proto = ipcpp::proto;
namespace mt = ipcpp::proto::msg_type;
using ipcpp::Value;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// ---- small helpers -------------------------------------------------------------------------

template <class... T>
std::string cat(const T&... parts) {
  std::ostringstream out;
  (out << ... << parts);
  return out.str();
}

__attribute__((format(printf, 1, 2))) std::string fmt(const char* format, ...) {
  std::array<char, 512> buf{};
  va_list ap;
  va_start(ap, format);
  std::vsnprintf(buf.data(), buf.size(), format, ap);
  va_end(ap);
  return std::string(buf.data());
}

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

double micros(Clock::time_point t0, Clock::time_point t1) {
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

struct Percentiles {
  double median = 0;
  double p99 = 0;
};

Percentiles percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[v.size() * 99 / 100]};
}

double median(std::vector<double> v) {
  return percentiles(std::move(v)).median;
}

std::string thousands(long n) {
  if (n % 1000 == 0) return cat(n / 1000, "k");
  return std::to_string(n);
}

// ---- signals and the processes we started ---------------------------------------------------

constexpr std::size_t kMaxChildren = 32;
std::array<std::atomic<pid_t>, kMaxChildren> g_children{};
volatile std::sig_atomic_t g_stop = 0;

// SIGINT/SIGTERM/SIGHUP: stop our children at once, and make the main loop give up (blocking
// ZeroMQ calls return EINTR, which cppzmq throws; loops also check g_stop).
extern "C" void on_signal(int) {
  g_stop = 1;
  for (auto& slot : g_children) {
    const pid_t pid = slot.load();
    if (pid > 0) ::kill(pid, SIGTERM);
  }
}

void check_stop() {
  if (g_stop != 0) throw std::runtime_error("interrupted by a signal");
}

void install_signal_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: blocking calls return EINTR
  for (int sig : {SIGINT, SIGTERM, SIGHUP})
    ::sigaction(sig, &sa, nullptr);
}

sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// One process started by us: its output goes to `log`.
class Child {
 public:
  Child(std::string name, const fs::path& exe, std::vector<std::string> args, fs::path log)
      : name_(std::move(name)), log_(std::move(log)) {
    std::vector<std::string> argv_s;
    argv_s.push_back(exe.string());
    for (auto& a : args)
      argv_s.push_back(std::move(a));
    std::vector<char*> argv;
    for (auto& s : argv_s)
      argv.push_back(s.data());
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    sigset_t defaults = stop_signals();
    sigaddset(&defaults, SIGPIPE);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    // Signals blocked while the pid is not yet recorded, so that none escapes the handler.
    const sigset_t blocked = stop_signals();
    sigset_t old;
    ::pthread_sigmask(SIG_BLOCK, &blocked, &old);
    const int rc = ::posix_spawn(&pid_, argv_s[0].c_str(), &actions, &attr, argv.data(), environ);
    if (rc == 0) {
      for (auto& slot : g_children) {
        pid_t empty = 0;
        if (slot.compare_exchange_strong(empty, pid_)) {
          slot_ = &slot;
          break;
        }
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      throw std::runtime_error(cat("cannot start ", argv_s[0], ": ", std::strerror(rc)));
    }
    if (slot_ == nullptr) {
      ::kill(pid_, SIGKILL);
      reap(true);
      throw std::runtime_error("too many child processes");
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  ~Child() { stop(); }

  const std::string& name() const { return name_; }
  pid_t pid() const { return pid_; }
  const fs::path& log() const { return log_; }

  // Throws when the process has exited (it should not have).
  void check_running() {
    if (reaped_) throw std::runtime_error(cat(name_, " (pid ", pid_, ") is gone"));
    if (reap(false)) {
      throw std::runtime_error(cat(name_, " (pid ", pid_, ") exited: ", describe(status_)));
    }
  }

  void terminate() {
    if (!reaped_) ::kill(pid_, SIGTERM);
  }

  // Waits until `deadline` for the process to end; then kills it (SIGKILL) and reaps it.
  void finish(Clock::time_point deadline) {
    while (!reaped_ && Clock::now() < deadline) {
      if (reap(false)) break;
      std::this_thread::sleep_for(milliseconds(10));
    }
    if (!reaped_) {
      std::cerr << "engine_bench: " << name_ << " (pid " << pid_
                << ") did not stop after SIGTERM: killing it\n";
      ::kill(pid_, SIGKILL);
      reap(true);
    }
  }

  void stop() {
    terminate();
    finish(Clock::now() + std::chrono::seconds(5));
  }

  // The last lines of the process's output.
  std::string log_tail(std::size_t lines = 15) const {
    std::ifstream in(log_);
    std::deque<std::string> last;
    for (std::string line; std::getline(in, line);) {
      last.push_back(line);
      if (last.size() > lines) last.pop_front();
    }
    std::string out;
    for (const auto& l : last)
      out.append("    ").append(l).append("\n");
    return out;
  }

 private:
  static std::string describe(int status) {
    if (WIFEXITED(status)) return cat("status ", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) return cat("signal ", WTERMSIG(status));
    return "unknown";
  }

  // True when the process has been reaped (now or before).
  bool reap(bool block) {
    if (reaped_) return true;
    for (;;) {
      const pid_t r = ::waitpid(pid_, &status_, block ? 0 : WNOHANG);
      if (r == pid_) break;
      if (r == 0) return false;
      if (errno == EINTR) continue;
      break;  // ECHILD: not ours any more; treat as gone
    }
    reaped_ = true;
    if (slot_ != nullptr) slot_->store(0);
    return true;
  }

  std::string name_;
  fs::path log_;
  pid_t pid_ = -1;
  std::atomic<pid_t>* slot_ = nullptr;
  bool reaped_ = false;
  int status_ = 0;
};

// A directory under /tmp, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/ipcpp-engine-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      throw std::runtime_error(cat("cannot create a directory under /tmp: ", std::strerror(errno)));
    }
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// ---- the client: proto/ only ----------------------------------------------------------------

class Client {
 public:
  explicit Client(const proto::ClientConnectionFile& file)
      : file_(file),
        session_(proto::SessionOptions{.key = file.key, .signature_scheme = file.signature_scheme}),
        query_(ctx_, zmq::socket_type::dealer),
        notification_(ctx_, zmq::socket_type::sub),
        mux_(ctx_, zmq::socket_type::dealer),
        task_(ctx_, zmq::socket_type::dealer) {
    for (auto* s : {&query_, &notification_, &mux_, &task_}) {
      s->set(zmq::sockopt::linger, 0);
      s->set(zmq::sockopt::rcvhwm, 0);
      s->set(zmq::sockopt::sndhwm, 0);
    }
    notification_.set(zmq::sockopt::subscribe, "");
    query_.connect(file.url(file.registration));
    notification_.connect(file.url(file.notification));
    mux_.connect(file.url(file.mux));
    task_.connect(file.url(file.task));
  }

  zmq::socket_t& mux() { return mux_; }
  zmq::socket_t& task() { return task_; }

  // Asks the hub (connection_request), and follows its notifications in between, until `n`
  // engines are registered. Returns their uuids in id order.
  std::vector<std::string> wait_for_engines(std::size_t n, const std::vector<Child*>& watch,
                                            milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::map<std::int64_t, std::string> engines;
    while (Clock::now() < deadline) {
      check_stop();
      for (Child* c : watch)
        c->check_running();
      proto::send_frames(query_, session_.build({}, mt::kConnectionRequest, json::object()));
      auto reply = receive(query_, milliseconds(2000));
      if (!reply) continue;
      if (reply->msg_type() != mt::kConnectionReply) continue;
      auto content = proto::decode_content<proto::ConnectionReply>(reply->content, "connection");
      if (!content) throw std::runtime_error(content.error().reason);
      engines.clear();
      for (const auto& [id, uuid] : content->engines)
        engines[std::stoll(id)] = uuid;
      if (engines.size() >= n) break;
      // Any notification (a registration) is a reason to ask again; else ask every 200 ms.
      zmq::pollitem_t item{notification_.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, milliseconds(200)) > 0) {
        while (!proto::recv_frames(notification_, zmq::recv_flags::dontwait).empty()) {
        }
      }
    }
    if (engines.size() < n) {
      throw std::runtime_error(cat("only ", engines.size(), " of ", n,
                                   " engines registered within ", timeout.count() / 1000, " s"));
    }
    std::vector<std::string> uuids;
    for (const auto& [id, uuid] : engines)
      uuids.push_back(uuid);
    return uuids;
  }

  // Sends an apply_request with these buffers: to the engine `uuid` through the mux, or, with
  // an empty uuid, through the task queue. Returns its msg_id.
  std::string apply(const std::string& uuid, std::vector<zmq::message_t> buffers) {
    proto::Message m;
    m.header = session_.make_header(mt::kApplyRequest);
    m.buffers = std::move(buffers);
    if (!uuid.empty()) {
      m.identities.emplace_back(uuid.data(), uuid.size());
    } else {
      m.metadata = task_metadata();
    }
    std::string msg_id = m.header.msg_id;
    proto::send_frames(uuid.empty() ? task_ : mux_, session_.serialize(std::move(m)));
    return msg_id;
  }

  // The next message on `socket`, authenticated and decoded; nullopt after `timeout`.
  std::optional<proto::Message> receive(zmq::socket_t& socket, milliseconds timeout) {
    auto frames = proto::recv_frames(socket, zmq::recv_flags::dontwait);
    if (frames.empty()) {
      zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
      if (zmq::poll(&item, 1, timeout) == 0) return std::nullopt;
      frames = proto::recv_frames(socket);
    }
    auto m = session_.decode(std::move(frames));
    if (!m) throw std::runtime_error(cat("a reply failed to decode: ", m.error().reason));
    return std::move(m).value();
  }

  // The next reply on `socket`; throws after 30 s.
  proto::Message reply(zmq::socket_t& socket) {
    auto m = receive(socket, milliseconds(30000));
    check_stop();
    if (!m) throw std::runtime_error("no reply within 30 s");
    return std::move(*m);
  }

  // The reply to `msg_id` on `socket` (other replies are an error here).
  proto::Message reply_to(zmq::socket_t& socket, const std::string& msg_id) {
    auto m = reply(socket);
    if (m.parent_msg_id() != msg_id) {
      throw std::runtime_error(
          cat("expected the reply to ", msg_id, ", got one to ", m.parent_msg_id()));
    }
    return m;
  }

 private:
  static const json& task_metadata() {
    static const json md = {{"targets", json::array()},
                            {"after", json::array()},
                            {"follow", json::array()},
                            {"timeout", nullptr},
                            {"retries", 0}};
    return md;
  }

  proto::ClientConnectionFile file_;
  proto::Session session_;
  zmq::context_t ctx_;
  zmq::socket_t query_, notification_, mux_, task_;
};

// Throws unless the reply says ok; returns its result value.
Value ok_result(proto::Message& m) {
  if (m.content.value("status", "") != "ok") {
    auto e = proto::decode_content<proto::ErrorContent>(m.content, "apply_reply");
    throw std::runtime_error(
        cat("apply failed: ", e ? e->ename + ": " + e->evalue : m.content.dump()));
  }
  auto v = proto::decode_value(std::move(m.buffers));
  if (!v) throw std::runtime_error(cat("bad result: ", v.error().reason));
  return std::move(v).value();
}

std::vector<zmq::message_t> echo_call(std::int64_t i) {
  return proto::encode_apply("echo", Value::list(std::vector<Value>{Value(i)}));
}

void check_echo(proto::Message& m, std::int64_t expected) {
  const Value v = ok_result(m);
  if (v.json() != json(expected)) {
    throw std::runtime_error(cat("echo(", expected, ") returned ", v.json().dump()));
  }
}

// ---- a cluster of our own -------------------------------------------------------------------

class Cluster {
 public:
  Cluster(const fs::path& bin, const fs::path& root, int engines) {
    const fs::path profile = root / cat("profile_", engines, "engines");
    controller_ = std::make_unique<Child>(
        "ipcpp-controller", bin / "ipcpp-controller",
        std::vector<std::string>{"--profile-dir", profile.string(), "--ping", "1000"},
        root / cat("controller-", engines, ".log"));
    try {
      start_engines(bin, profile, root, engines, wait_for_file(profile));
    } catch (...) {
      std::cerr << "engine_bench: the processes' last output:\n" << logs();
      throw;
    }
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  ~Cluster() { stop(); }

  Client& client() { return *client_; }
  const std::vector<std::string>& uuids() const { return uuids_; }

  // Stops the engines (they unregister), then the controller.
  void stop() {
    client_.reset();
    for (auto& e : engines_)
      e->terminate();
    const auto deadline = Clock::now() + std::chrono::seconds(5);
    for (auto& e : engines_)
      e->finish(deadline);
    if (controller_) controller_->stop();
  }

  // The last lines of our processes' output, for an error report.
  std::string logs() const {
    std::string out;
    auto add = [&](const Child& c) {
      out.append("  ").append(c.name()).append(" (pid ").append(std::to_string(c.pid()));
      out.append("), ").append(c.log().string()).append(":\n").append(c.log_tail());
    };
    if (controller_) add(*controller_);
    for (const auto& e : engines_)
      add(*e);
    return out;
  }

 private:
  proto::ClientConnectionFile wait_for_file(const fs::path& profile) {
    const fs::path path = ipcpp::profiles::Profile::at(profile).client_connection_file();
    const auto deadline = Clock::now() + std::chrono::seconds(15);
    for (;;) {
      check_stop();
      controller_->check_running();
      auto f = proto::read_client_connection_file(path);
      if (f) return std::move(f).value();
      if (Clock::now() > deadline) {
        throw std::runtime_error(
            cat("the controller wrote no ", path.string(), " within 15 s: ", f.error().reason));
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
  }

  void start_engines(const fs::path& bin, const fs::path& profile, const fs::path& root,
                     int engines, const proto::ClientConnectionFile& file) {
    for (int i = 0; i < engines; ++i) {
      engines_.push_back(
          std::make_unique<Child>(cat("ipcpp-engine #", i), bin / "ipcpp-engine",
                                  std::vector<std::string>{"--profile-dir", profile.string()},
                                  root / cat("engine-", engines, "-", i, ".log")));
    }
    client_ = std::make_unique<Client>(file);
    std::vector<Child*> watch{controller_.get()};
    for (auto& e : engines_)
      watch.push_back(e.get());
    const auto t0 = Clock::now();
    uuids_ =
        client_->wait_for_engines(static_cast<std::size_t>(engines), watch, milliseconds(30000));
    // The mux relay learns of engines from the hub's notification: wait until each answers.
    for (const auto& uuid : uuids_)
      ping(uuid);
    std::cerr << "engine_bench: " << engines << " engine(s) registered and answering in "
              << fmt("%.2f", seconds_since(t0)) << " s\n";
  }

  void ping(const std::string& uuid) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    for (;;) {
      const std::string id = client_->apply(uuid, echo_call(7));
      auto m = client_->reply_to(client_->mux(), id);
      if (m.content.value("status", "") == "ok" || Clock::now() > deadline) {
        check_echo(m, 7);
        return;
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
  }

  std::unique_ptr<Child> controller_;
  std::vector<std::unique_ptr<Child>> engines_;
  std::unique_ptr<Client> client_;
  std::vector<std::string> uuids_;
};

// ---- measurements ---------------------------------------------------------------------------

struct Row {
  std::string what;
  std::string figure;
};

class Table {
 public:
  void add(std::string what, std::string figure) {
    std::cerr << "engine_bench: " << what << ": " << figure << "\n";
    rows_.push_back({std::move(what), std::move(figure)});
  }
  void print() const {
    std::cout << "| measurement | figure |\n|---|---|\n";
    for (const auto& r : rows_)
      std::cout << "| " << r.what << " | " << r.figure << " |\n";
    std::cout.flush();
  }

 private:
  std::vector<Row> rows_;
};

struct Floor {
  Percentiles rtt;
  double per_second = 0;
};

std::vector<zmq::message_t> copy_frames(const std::vector<zmq::message_t>& frames) {
  std::vector<zmq::message_t> out;
  out.reserve(frames.size());
  for (const auto& f : frames)
    out.emplace_back(f.data(), f.size());
  return out;
}

// 1. Raw DEALER-ROUTER echo over tcp 127.0.0.1, of a message shaped like a task request
// (signed apply_request frames, copied each time, never decoded): the floor.
Floor raw_echo(int round_trips, int throughput_round_trips, int in_flight) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  std::atomic<bool> done{false};
  std::atomic<bool> failed{false};
  std::thread server([&] {
    try {
      while (!done.load()) {
        zmq::pollitem_t item{router.handle(), 0, ZMQ_POLLIN, 0};
        if (zmq::poll(&item, 1, milliseconds(100)) == 0) continue;
        auto frames = proto::recv_frames(router);
        proto::send_frames(router, std::move(frames));
      }
    } catch (const std::exception&) {
      failed = true;
    }
  });
  struct Join {
    std::atomic<bool>& done;
    std::thread& t;
    ~Join() {
      done = true;
      t.join();
    }
  } join{done, server};

  zmq::socket_t dealer(ctx, zmq::socket_type::dealer);
  dealer.set(zmq::sockopt::linger, 0);
  dealer.connect(endpoint);
  proto::Session session(proto::SessionOptions{.key = "59807942-e8a9f55b0320832d5149c3df"});
  const json md = {{"targets", json::array()},
                   {"after", json::array()},
                   {"follow", json::array()},
                   {"timeout", nullptr},
                   {"retries", 0}};
  const auto message =
      session.build({}, mt::kApplyRequest, json::object(), json::object(), md, echo_call(1));
  auto receive = [&] {
    zmq::pollitem_t item{dealer.handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, milliseconds(10000)) == 0 || failed.load()) {
      throw std::runtime_error("raw echo: no answer within 10 s");
    }
    (void)proto::recv_frames(dealer);
  };
  for (int i = 0; i < 1000; ++i) {  // warm-up, connection set up
    proto::send_frames(dealer, copy_frames(message));
    receive();
  }
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(round_trips));
  for (int i = 0; i < round_trips; ++i) {
    const auto t0 = Clock::now();
    proto::send_frames(dealer, copy_frames(message));
    receive();
    rtt.push_back(micros(t0, Clock::now()));
  }
  check_stop();
  Floor floor;
  floor.rtt = percentiles(std::move(rtt));
  const auto t0 = Clock::now();
  int sent = 0;
  for (; sent < in_flight; ++sent)
    proto::send_frames(dealer, copy_frames(message));
  for (int received = 0; received < throughput_round_trips; ++received) {
    receive();
    if (sent < throughput_round_trips) {
      proto::send_frames(dealer, copy_frames(message));
      ++sent;
    }
  }
  floor.per_second = throughput_round_trips / seconds_since(t0);
  check_stop();
  return floor;
}

// 2. Direct round trip of echo(1) on one engine, one request at a time.
Percentiles direct_round_trip(Cluster& cluster, int warm_up, int round_trips) {
  Client& c = cluster.client();
  const std::string& uuid = cluster.uuids().at(0);
  std::vector<double> rtt;
  rtt.reserve(static_cast<std::size_t>(round_trips));
  for (int i = 0; i < warm_up + round_trips; ++i) {
    const auto t0 = Clock::now();
    const std::string id = c.apply(uuid, echo_call(1));
    auto m = c.reply_to(c.mux(), id);
    check_echo(m, 1);
    if (i >= warm_up) rtt.push_back(micros(t0, Clock::now()));
  }
  return percentiles(std::move(rtt));
}

// Sends `total` echo(i) requests with at most `per_target` in flight per target and returns
// requests per second (first send to last reply). Targets are engine uuids (direct, round
// robin over the engines) or one "" (the task queue).
double throughput(Client& c, const std::vector<std::string>& targets, int per_target, int total) {
  zmq::socket_t& socket = targets.front().empty() ? c.task() : c.mux();
  struct Pending {
    std::int64_t value;
    std::size_t target;
  };
  std::unordered_map<std::string, Pending> pending;
  pending.reserve(static_cast<std::size_t>(per_target) * targets.size() * 2);
  std::vector<int> in_flight(targets.size(), 0);
  std::int64_t next = 0;
  auto send = [&](std::size_t t) {
    const std::string id = c.apply(targets[t], echo_call(next));
    pending.emplace(id, Pending{next, t});
    ++next;
    ++in_flight[t];
  };
  const auto t0 = Clock::now();
  // Fill the windows round robin.
  for (int k = 0; k < per_target; ++k) {
    for (std::size_t t = 0; t < targets.size() && next < total; ++t)
      send(t);
  }
  for (int done = 0; done < total; ++done) {
    auto m = c.reply(socket);
    auto it = pending.find(m.parent_msg_id());
    if (it == pending.end()) {
      throw std::runtime_error(cat("a reply to a request not sent: ", m.parent_msg_id()));
    }
    const Pending p = it->second;
    pending.erase(it);
    check_echo(m, p.value);
    --in_flight[p.target];
    if (next < total) send(p.target);
  }
  return total / seconds_since(t0);
}

struct PushPull {
  double push_ms = 0;
  double pull_ms = 0;
  double round_trip_ms = 0;
};

// 5. push(a=array) then pull("a") of 10^7 doubles through the mux: median of `runs` (after
// one warm-up).
PushPull push_pull(Cluster& cluster, int runs) {
  Client& c = cluster.client();
  const std::string& uuid = cluster.uuids().at(0);
  constexpr std::size_t kN = 10'000'000;
  std::vector<double> data(kN);
  for (std::size_t i = 0; i < kN; ++i)
    data[i] = static_cast<double>(i) * 0.5;
  const Value array(std::move(data));
  std::vector<double> push_ms, pull_ms, total_ms;
  for (int r = 0; r < runs + 1; ++r) {
    const auto t0 = Clock::now();
    const std::string push_id =
        c.apply(uuid, proto::encode_apply("push", Value::list(std::vector<Value>{}),
                                          Value::object({{"a", array}})));
    auto pushed = c.reply_to(c.mux(), push_id);
    (void)ok_result(pushed);
    const auto t1 = Clock::now();
    const std::string pull_id =
        c.apply(uuid, proto::encode_apply("pull", Value::list(std::vector<Value>{Value("a")})));
    auto pulled = c.reply_to(c.mux(), pull_id);
    const Value v = ok_result(pulled);
    const auto t2 = Clock::now();
    if (!v.is_array() || v.array().dtype() != ipcpp::DType::kFloat64 || v.array().size() != kN) {
      throw std::runtime_error("pull(\"a\") did not return the 10^7 doubles pushed");
    }
    for (std::size_t i : {std::size_t{0}, std::size_t{1}, kN / 3, kN - 1}) {
      double x = 0;
      std::memcpy(&x, v.array().bytes().data() + i * sizeof(double), sizeof x);
      if (x != static_cast<double>(i) * 0.5) {
        throw std::runtime_error(cat("pull(\"a\")[", i, "] is ", x));
      }
    }
    if (r == 0) continue;  // warm-up
    push_ms.push_back(micros(t0, t1) / 1000);
    pull_ms.push_back(micros(t1, t2) / 1000);
    total_ms.push_back(micros(t0, t2) / 1000);
  }
  return {median(push_ms), median(pull_ms), median(total_ms)};
}

fs::path bin_dir() {
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw std::runtime_error(cat("cannot read /proc/self/exe: ", ec.message()));
  return self.parent_path();
}

int run(bool quick) {
  const int scale = quick ? 10 : 1;
  const int echo_round_trips = 20000 / scale;
  const int echo_throughput = 200000 / scale;
  const int warm_up = 1000 / scale;
  const int direct_round_trips = 20000 / scale;
  const int tasks = 50000 / scale;
  const int pushes = quick ? 2 : 5;

  const fs::path bin = bin_dir();
  for (const char* exe : {"ipcpp-controller", "ipcpp-engine"}) {
    if (!fs::exists(bin / exe)) {
      throw std::runtime_error(cat((bin / exe).string(),
                                   " is missing: build it with the bench "
                                   "preset (cmake --build --preset bench)"));
    }
  }
  TempDir tmp;
  std::cerr << "engine_bench: binaries from " << bin.string() << ", profiles and logs in "
            << tmp.path().string() << "\n";
  const auto started = Clock::now();
  Table table;

  // 1. The floor.
  const Floor floor = raw_echo(echo_round_trips, echo_throughput, 100);
  table.add(cat("raw ZeroMQ DEALER-ROUTER echo, tcp 127.0.0.1, apply_request-shaped message, ",
                thousands(echo_round_trips), " round trips (the floor)"),
            fmt("median %.0f µs, p99 %.0f µs", floor.rtt.median, floor.rtt.p99));
  table.add(cat("raw echo, 100 in flight, ", thousands(echo_throughput), " round trips"),
            fmt("%.0f round trips/s", floor.per_second));

  const std::vector<std::string> task_queue{""};
  std::map<int, std::pair<double, double>> balanced;  // N -> (K=100, K=1000) tasks/s
  for (int n : {1, 2, 4}) {
    Cluster cluster(bin, tmp.path(), n);
    try {
      if (n == 1) {
        // 2. Direct round trip.
        const Percentiles direct = direct_round_trip(cluster, warm_up, direct_round_trips);
        table.add(
            cat("direct (mux) round trip of apply echo(1), 1 engine, ",
                thousands(direct_round_trips), " requests after ", thousands(warm_up), " warm-up"),
            fmt("median %.0f µs (%.2f× the raw echo), p99 %.0f µs", direct.median,
                direct.median / floor.rtt.median, direct.p99));
      }
      // 3. Load-balanced throughput.
      (void)throughput(cluster.client(), task_queue, 100, warm_up);
      for (int k : {100, 1000}) {
        const double per_s = throughput(cluster.client(), task_queue, k, tasks);
        (k == 100 ? balanced[n].first : balanced[n].second) = per_s;
        table.add(cat("load-balanced apply echo(i), task queue, ", n, " engine", n > 1 ? "s" : "",
                      ", ", thousands(tasks), " tasks, ", k, " in flight"),
                  fmt("%.0f tasks/s", per_s));
      }
      if (n == 1) {
        // 5. Push + pull of 10^7 doubles.
        const PushPull pp = push_pull(cluster, pushes);
        table.add(
            cat("push(a=10^7 doubles) + pull(\"a\") through the mux, 1 engine, median of ", pushes),
            fmt("%.0f ms round trip: %.0f MB/s (160 MB moved); push %.0f ms (%.0f MB/s), "
                "pull %.0f ms (%.0f MB/s)",
                pp.round_trip_ms, 160e3 / pp.round_trip_ms, pp.push_ms, 80e3 / pp.push_ms,
                pp.pull_ms, 80e3 / pp.pull_ms));
      }
      if (n == 4) {
        // 4. Direct throughput, round robin over 4 engines.
        (void)throughput(cluster.client(), cluster.uuids(), 100, warm_up);
        const double per_s = throughput(cluster.client(), cluster.uuids(), 100, tasks);
        table.add(cat("direct apply echo(i), 4 engines round robin, 100 in flight per engine, ",
                      thousands(tasks), " requests"),
                  fmt("%.0f requests/s", per_s));
      }
    } catch (...) {
      std::cerr << "engine_bench: the processes' last output:\n" << cluster.logs();
      throw;
    }
  }
  std::cerr << "engine_bench: done in " << fmt("%.0f", seconds_since(started)) << " s\n";
  table.print();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  bool quick = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--quick") {
      quick = true;
    } else {
      std::cerr << "usage: engine_bench [--quick]\n";
      return 2;
    }
  }
  install_signal_handlers();
  try {
    return run(quick);
  } catch (const std::exception& e) {
    std::cerr << "engine_bench: error: " << e.what() << "\n";
    return 1;
  }
}
