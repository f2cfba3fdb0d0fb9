#include "cluster/cluster.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <fstream>
#include <poll.h>
#include <set>
#include <thread>
#include <unistd.h>
#include <utility>

#include <spdlog/fmt/fmt.h>

#include "profiles/profile.hpp"
#include "proto/clock.hpp"

namespace ipcpp::cluster {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr milliseconds kPollInterval{50};
// The lines of a log quoted in an error message.
constexpr std::size_t kLogLines = 10;

Clock::time_point deadline_after(Seconds timeout) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(timeout);
}

// Waits up to `timeout` for `fd` to become readable; returns true if it did. With fd -1,
// sleeps `timeout` and returns false.
bool wait_readable(int fd, milliseconds timeout) {
  if (fd < 0) {
    std::this_thread::sleep_for(timeout);
    return false;
  }
  pollfd p{fd, POLLIN, 0};
  for (;;) {
    const int rc = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (rc >= 0) return rc > 0;
    if (errno != EINTR) return false;
  }
}

// The pid in a controller pid file; 0 when it cannot be read.
pid_t read_pid_file(const fs::path& path) {
  std::ifstream in(path);
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return 0;
  return static_cast<pid_t>(pid);
}

std::string seconds_text(Seconds s) {
  return fmt::format("{:g} s", s.count());
}

// What a process's exit looks like in a message, with the end of its log.
std::string exit_with_log(const std::string& what, pid_t pid, int status, const fs::path& log,
                          const std::string& when = "") {
  std::string text =
      fmt::format("{} (pid {}) exited ({}){}", what, pid, describe_exit(status), when);
  const std::string tail = last_lines(log, kLogLines);
  if (tail.empty()) return text + "; its log " + log.string() + " is empty";
  return text + "; the end of its log " + log.string() + ":\n" + tail.substr(0, tail.size() - 1);
}

}  // namespace

bool StopReport::complete() const {
  return std::none_of(processes.begin(), processes.end(), [](const StoppedProcess& p) {
    return p.outcome == StoppedProcess::Outcome::kSurvived;
  });
}

fs::path controller_pid_file(const fs::path& profile_dir, const std::string& cluster_id) {
  return profile_dir / "pid" /
         (cluster_id.empty() ? std::string("ipcontroller.pid")
                             : "ipcontroller-" + cluster_id + ".pid");
}

fs::path state_file_path(const fs::path& profile_dir, const std::string& cluster_id) {
  return profile_dir / "security" /
         (cluster_id.empty() ? std::string("ipcpp-cluster.json")
                             : "ipcpp-cluster-" + cluster_id + ".json");
}

Cluster::Cluster(ClusterOptions options) : options_(std::move(options)) {
  if (options_.profile_dir.empty()) throw ClusterError(kExitFailure, "no profile directory");
  options_.profile_dir = profiles::Profile::at(options_.profile_dir).dir();
  state_file_ = state_file_path(options_.profile_dir, options_.cluster_id);
}

void Cluster::say(const std::string& message) const {
  if (options_.log) options_.log->info("{}", message);
}

void Cluster::debug(const std::string& message) const {
  if (options_.log) options_.log->debug("{}", message);
}

bool Cluster::interrupted() const {
  return options_.interrupt_fd >= 0 && wait_readable(options_.interrupt_fd, milliseconds(0));
}

fs::path Cluster::program(const std::string& name) const {
  const fs::path first = options_.program_dir.empty() ? own_program_dir() : options_.program_dir;
  return find_program(name, first);
}

std::size_t Cluster::engine_count(const EngineOptions& options) const {
  if (options.n > 0) return options.n;
  return std::max(1U, std::thread::hardware_concurrency());
}

std::vector<std::string> Cluster::engine_command(const fs::path& program,
                                                 const EngineOptions& options) const {
  std::vector<std::string> command = {program.string(), "--profile-dir",
                                      options_.profile_dir.string()};
  const std::vector<std::string> args = engine_args(options, true);
  command.insert(command.end(), args.begin(), args.end());
  return command;
}

void Cluster::check_engine_options(const EngineOptions& options) const {
  switch (options.launcher) {
    case Launcher::kSsh:
      if (options.ssh.hosts.empty()) {
        throw ClusterError(kExitFailure, "no ssh host: give --hosts or --hosts-file");
      }
      return;
    case Launcher::kMpi:
      program(options.mpi.mpiexec);
      break;
    case Launcher::kSlurm:
      program("sbatch");
      break;
    case Launcher::kPbs:
    case Launcher::kSge:
      program("qsub");
      break;
    case Launcher::kLocal:
      break;
  }
  engine_command(program(options.program), options);
}

std::optional<int> Cluster::exited(pid_t pid) {
  const auto child = std::find_if(children_.begin(), children_.end(),
                                  [pid](const Launched& c) { return c.pid == pid; });
  if (child != children_.end()) {
    const std::optional<int> status = reap(pid);
    if (status) children_.erase(child);
    return status;
  }
  if (process_alive(pid)) return std::nullopt;
  return -1;
}

void Cluster::wait_for_controller(const Launched& controller, Seconds timeout) {
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  const fs::path pid_file = controller_pid_file(options_.profile_dir, options_.cluster_id);
  const fs::path engine_file = profile.engine_connection_file(options_.cluster_id);
  const auto deadline = deadline_after(timeout);
  for (;;) {
    if (const auto status = exited(controller.pid)) {
      throw ClusterError(kExitFailure,
                         exit_with_log("the controller", controller.pid, *status, controller.log));
    }
    std::error_code ec;
    if (read_pid_file(pid_file) == controller.pid && fs::exists(engine_file, ec)) return;
    if (Clock::now() >= deadline) {
      throw ClusterError(kExitFailure,
                         fmt::format("the controller (pid {}) was not ready after {}: no {} yet; "
                                     "see its log {}",
                                     controller.pid, seconds_text(timeout), engine_file.string(),
                                     controller.log.string()));
    }
    if (wait_readable(options_.interrupt_fd, kPollInterval)) {
      throw ClusterError(kExitFailure, "interrupted while the controller was starting");
    }
  }
}

void Cluster::start_engines(ClusterState& state, const std::string& set_id, std::size_t n,
                            const std::vector<std::string>& command) {
  const fs::path log_dir = profiles::Profile::at(options_.profile_dir).log_dir();
  EngineSetRecord& set = state.engine_sets[set_id];
  set.n = n;
  set.start_time = proto::format_timestamp(proto::now());
  set.command = command;
  debug(fmt::format("starting {} engine{}: {}", n, n == 1 ? "" : "s", fmt::join(command, " ")));
  for (std::size_t i = 0; i < n; ++i) {
    if (interrupted()) throw ClusterError(kExitFailure, "interrupted while starting the engines");
    Launched engine = launch(command, log_dir, "ipengine-" + options_.cluster_id);
    debug(fmt::format("engine {} started, log {}", engine.pid, engine.log.string()));
    set.engines.push_back(EngineRecord{engine.pid, engine.log.string()});
    children_.push_back(std::move(engine));
    write_state(state_file_, state);
  }
}

void Cluster::wait_for_registration(const Client& client, const ClusterState& state,
                                    const std::string& set_id, std::size_t base, Seconds timeout) {
  const EngineSetRecord& set = state.engine_sets.at(set_id);
  const std::size_t n = set.n;
  const std::size_t target = base + n;
  const bool batch = set.launcher == "slurm" || set.launcher == "pbs" || set.launcher == "sge";
  const std::string what = set.launcher == "mpi" ? "mpiexec" : "an engine";
  const fs::path log_dir = profiles::Profile::at(options_.profile_dir).log_dir();
  const auto deadline = deadline_after(timeout);
  auto next_job_check = Clock::now();
  std::atomic<std::size_t> seen{client.ids().size()};
  const auto progress = [&seen](std::size_t count) { seen = count; };
  std::optional<std::size_t> shown;
  for (;;) {
    if (set.launcher == "local" || set.launcher == "mpi") {
      for (const EngineRecord& engine : set.engines) {
        if (const auto status = exited(static_cast<pid_t>(engine.pid))) {
          throw ClusterError(
              kExitFailure, exit_with_log(what, static_cast<pid_t>(engine.pid), *status, engine.log,
                                          " before the engines had registered"));
        }
      }
    }
    if (batch && Clock::now() >= next_job_check) {
      next_job_check = Clock::now() + std::chrono::seconds(1);
      if (const auto job = job_state(set); job && job->empty()) {
        throw ClusterError(kExitFailure,
                           fmt::format("{} job {} ended before its engines had registered: see "
                                       "its output in {}",
                                       set.launcher, set.job_id, log_dir.string()));
      }
    }
    if (state.controller.launcher == "local") {
      if (const auto status = exited(static_cast<pid_t>(state.controller.pid))) {
        throw ClusterError(kExitFailure,
                           exit_with_log("the controller", static_cast<pid_t>(state.controller.pid),
                                         *status, state.controller.log));
      }
    }
    if (interrupted()) {
      throw ClusterError(kExitFailure, "interrupted while the engines were registering");
    }
    bool done = false;
    try {
      client.wait_for_engines(target, Seconds(0.1), progress);
      done = true;
    } catch (const TimeoutError&) {
    }
    const std::size_t count = std::max(seen.load(), client.ids().size());
    const std::size_t registered = std::min(n, count > base ? count - base : 0);
    if (registered != shown) {
      say(fmt::format("{}/{} engines registered", registered, n));
      shown = registered;
    }
    if (done) return;
    if (Clock::now() >= deadline) {
      if (batch) {
        const auto job = job_state(set);
        if (job && job->find("PENDING") != std::string::npos) {
          say(
              fmt::format("{} job {} is still waiting in the queue ({}): its engines register "
                          "when it runs; ipcpp-cluster status shows them",
                          set.launcher, set.job_id, *job));
          return;
        }
      }
      throw ClusterError(
          kExitFailure,
          fmt::format(
              "only {} of {} engines registered within {}: see their logs in {}{}", registered, n,
              seconds_text(timeout), set.launcher == "ssh" ? "the hosts' " : "",
              set.launcher == "ssh" ? set.hosts.front().profile_dir + "/log" : log_dir.string()));
    }
  }
}

StopReport Cluster::terminate(const ClusterState& state) {
  StopReport report;
  report.state_file = state_file_;
  using Outcome = StoppedProcess::Outcome;

  struct Target {
    std::size_t entry;  // index in report.processes
    std::string program;
  };
  // SIGTERM, up to stop_timeout, SIGKILL, a little more: for one group of processes.
  const auto stop_group = [&](const std::vector<Target>& group) {
    std::vector<Target> pending;
    for (const Target& t : group) {
      StoppedProcess& p = report.processes[t.entry];
      if (p.pid <= 0 || p.pid == ::getpid() || !process_alive(p.pid)) {
        p.outcome = Outcome::kGone;
      } else if (!runs_program(p.pid, t.program)) {
        p.outcome = Outcome::kNotOurs;
      } else if (::kill(p.pid, SIGTERM) != 0) {
        p.outcome = errno == ESRCH ? Outcome::kGone : Outcome::kSurvived;
      } else {
        debug(fmt::format("sent SIGTERM to {} {}", p.role, p.pid));
        p.outcome = Outcome::kStopped;
        pending.push_back(t);
      }
    }
    const auto all_gone = [&] {
      return std::none_of(pending.begin(), pending.end(), [&](const Target& t) {
        const pid_t pid = report.processes[t.entry].pid;
        return !exited(pid).has_value();
      });
    };
    const auto wait_until_gone = [&](Seconds timeout) {
      const auto deadline = deadline_after(timeout);
      while (!all_gone() && Clock::now() < deadline)
        std::this_thread::sleep_for(milliseconds(20));
    };
    wait_until_gone(options_.stop_timeout);
    bool killed = false;
    for (const Target& t : pending) {
      StoppedProcess& p = report.processes[t.entry];
      if (runs_program(p.pid, t.program) && ::kill(p.pid, SIGKILL) == 0) {
        debug(fmt::format("sent SIGKILL to {} {}", p.role, p.pid));
        p.outcome = Outcome::kKilled;
        killed = true;
      }
    }
    if (killed) wait_until_gone(Seconds(5));
    for (const Target& t : pending) {
      StoppedProcess& p = report.processes[t.entry];
      if (runs_program(p.pid, t.program)) p.outcome = Outcome::kSurvived;
    }
  };

  std::vector<Target> engines;
  for (const std::string& id : state.set_ids()) {
    const EngineSetRecord& set = state.engine_sets.at(id);
    if (set.launcher != "local" && set.launcher != "mpi") continue;
    const std::string program = set.command.empty() ? std::string() : set.command.front();
    for (const EngineRecord& e : set.engines) {
      engines.push_back(Target{report.processes.size(), program});
      StoppedProcess p;
      p.role = set.launcher == "mpi" ? "mpiexec" : "engine";
      p.set_id = id;
      p.pid = static_cast<pid_t>(e.pid);
      p.launcher = set.launcher;
      report.processes.push_back(std::move(p));
    }
  }
  stop_group(engines);
  stop_remote_sets(state, report);
  if (state.controller.launcher != "local") {
    if (state.controller.pid > 0 || !state.controller.job_id.empty()) {
      report.processes.push_back(stop_remote_controller(state.controller));
    }
    if (state.controller.launcher == "ssh" && report.complete()) {
      // The copies fetched at start: the controller on its host removes only its own.
      const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
      std::error_code ec;
      fs::remove(profile.client_connection_file(options_.cluster_id), ec);
      fs::remove(profile.engine_connection_file(options_.cluster_id), ec);
    }
  } else if (state.controller.pid > 0) {
    const Target controller{report.processes.size(), state.controller.command.empty()
                                                         ? std::string()
                                                         : state.controller.command.front()};
    StoppedProcess p;
    p.role = "controller";
    p.pid = static_cast<pid_t>(state.controller.pid);
    report.processes.push_back(std::move(p));
    stop_group({controller});
  }
  return report;
}

void Cluster::abandon(const ClusterState& state, bool locked) {
  say("stopping the processes it started");
  const auto finish = [&] {
    terminate(state);
    std::error_code ec;
    fs::remove(state_file_, ec);
  };
  if (locked) {
    finish();
  } else {
    StateLock lock(state_file_);
    finish();
  }
}

ClusterState Cluster::start(const StartOptions& options) {
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  fs::path controller_program;
  try {
    profile.create();
    if (options.controller_launcher == Launcher::kSsh) {
      if (options.controller_host.destination.empty()) {
        throw ClusterError(kExitFailure, "--controller ssh needs --controller-host");
      }
    } else {
      controller_program = program(options.controller_program);
    }
    if (options.controller_launcher == Launcher::kSlurm) program("sbatch");
    if (options.controller_launcher == Launcher::kPbs ||
        options.controller_launcher == Launcher::kSge) {
      program("qsub");
    }
    check_engine_options(options.engines);
  } catch (const ClusterError&) {
    throw;
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }

  ClusterState state;
  std::optional<StateLock> lock;
  try {
    lock.emplace(state_file_);
    if (const auto old = read_state(state_file_)) {
      if (controller_running(old->controller)) {
        throw ClusterError(
            kExitAlreadyRunning,
            fmt::format("a cluster is already running in {} (controller pid {}): stop it with "
                        "ipcpp-cluster stop",
                        options_.profile_dir.string(), old->controller.pid));
      }
      say(fmt::format("removing the stale state file {} (its controller, pid {}, is gone)",
                      state_file_.string(), old->controller.pid));
      terminate(*old);  // engines it left behind, if any
      fs::remove(state_file_);
    }
    const fs::path pid_file = controller_pid_file(options_.profile_dir, options_.cluster_id);
    if (const pid_t pid = read_pid_file(pid_file); pid > 0 && process_alive(pid)) {
      const auto argv = process_command(pid);
      if (argv && !argv->empty() &&
          fs::path(argv->front()).filename().string().find("ipcpp-controller") !=
              std::string::npos) {
        throw ClusterError(kExitAlreadyRunning,
                           fmt::format("a controller is already running in {} (pid {}, from {}), "
                                       "not started by ipcpp-cluster: stop it first",
                                       options_.profile_dir.string(), pid, pid_file.string()));
      }
    }
  } catch (const ClusterError&) {
    throw;
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }

  state.profile_dir = options_.profile_dir.string();
  state.cluster_id = options_.cluster_id;
  state.start_time = proto::format_timestamp(proto::now());
  if (options.watched) {
    state.watcher.pid = ::getpid();
    state.watcher.command = process_command(::getpid()).value_or(std::vector<std::string>{});
  }
  Launched controller;
  if (options.controller_launcher == Launcher::kLocal) {
    std::vector<std::string> controller_cmd = {controller_program.string(), "--profile-dir",
                                               options_.profile_dir.string()};
    if (!options_.cluster_id.empty()) {
      controller_cmd.insert(controller_cmd.end(), {"--cluster-id", options_.cluster_id});
    }
    controller_cmd.insert(controller_cmd.end(), options.controller_args.begin(),
                          options.controller_args.end());
    debug(fmt::format("starting the controller: {}", fmt::join(controller_cmd, " ")));
    try {
      controller = launch(controller_cmd, profile.log_dir(), "ipcontroller-" + options_.cluster_id);
    } catch (const std::exception& e) {
      throw ClusterError(kExitFailure, e.what());
    }
    controller_pid_ = controller.pid;
    children_.push_back(controller);
    say(fmt::format("controller started (pid {}), log {}", controller.pid,
                    controller.log.string()));
    state.controller = ProcessRecord{controller.pid, controller.log.string(), controller.command};
  }

  const auto fail = [&](bool locked) {
    try {
      abandon(state, locked);
    } catch (const std::exception& e) {
      say(std::string("while stopping: ") + e.what());
    }
  };
  try {
    if (options.controller_launcher == Launcher::kLocal) {
      wait_for_controller(controller, options.engines.timeout);
    } else {
      // Files written from now on are this controller's (a batch job writes them itself).
      const fs::path marker = profile.security_dir() / ".ipcpp-cluster-start";
      profiles::write_private_file(marker, "");
      const auto submitted = fs::last_write_time(marker);
      fs::remove(marker);
      start_remote_controller(state, options);
      remote_controller_ = state.controller;
      write_state(state_file_, state);
      wait_for_remote_controller(state, options.engines.timeout, submitted);
    }
    write_state(state_file_, state);
    if (options.delay.count() > 0) {
      if (wait_readable(options_.interrupt_fd,
                        std::chrono::duration_cast<milliseconds>(options.delay))) {
        throw ClusterError(kExitFailure, "interrupted before the engines were started");
      }
    }
    start_engine_set(state, "1", options.engines);
    lock.reset();

    ClientOptions client_options;
    client_options.profile_dir = options_.profile_dir;
    client_options.cluster_id = options_.cluster_id;
    client_options.timeout = options.engines.timeout;
    const Client client(client_options);
    wait_for_registration(client, state, "1", 0, options.engines.timeout);
  } catch (const ClusterError&) {
    fail(lock.has_value());
    throw;
  } catch (const std::exception& e) {
    fail(lock.has_value());
    throw ClusterError(kExitFailure, e.what());
  }
  return state;
}

WatchEnd Cluster::watch() {
  auto next_remote_check = Clock::now() + std::chrono::seconds(5);
  for (;;) {
    for (std::size_t i = 0; i < children_.size();) {
      const Launched child = children_[i];
      const std::optional<int> status = reap(child.pid);
      if (!status) {
        ++i;
        continue;
      }
      children_.erase(children_.begin() + static_cast<std::ptrdiff_t>(i));
      if (child.pid == controller_pid_) {
        return WatchEnd{WatchEnd::Reason::kControllerExited, *status,
                        exit_with_log("the controller", child.pid, *status, child.log)};
      }
      say(fmt::format("engine {} exited ({}); its log: {}", child.pid, describe_exit(*status),
                      child.log.string()));
    }
    if (remote_controller_ && Clock::now() >= next_remote_check) {
      next_remote_check = Clock::now() + std::chrono::seconds(5);
      if (!controller_running(*remote_controller_)) {
        const ProcessRecord& c = *remote_controller_;
        return WatchEnd{
            WatchEnd::Reason::kControllerExited, -1,
            c.launcher == "ssh"
                ? fmt::format("the controller on {} (pid {}) is gone; its log: {} there",
                              c.destination, c.pid, c.log)
                : fmt::format("the controller's {} job {} has ended", c.launcher, c.job_id)};
      }
    }
    if (controller_pid_ > 0 && !process_alive(controller_pid_)) {  // not our child
      return WatchEnd{WatchEnd::Reason::kControllerExited, -1,
                      fmt::format("the controller (pid {}) is gone", controller_pid_)};
    }
    if (wait_readable(options_.interrupt_fd, milliseconds(200))) return WatchEnd{};
  }
}

std::optional<ClusterState> Cluster::recorded_state() const {
  std::optional<ClusterState> state;
  try {
    state = read_state(state_file_);
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }
  if (!state) {
    throw ClusterError(kExitNoClusterFile,
                       fmt::format("no cluster is running in {} (no {})",
                                   options_.profile_dir.string(), state_file_.string()));
  }
  return state;
}

std::string Cluster::add_engines(const EngineOptions& options) {
  std::optional<ClusterState> state = recorded_state();
  if (!controller_running(state->controller)) {
    throw ClusterError(kExitNoCluster,
                       fmt::format("no cluster is running in {}: its controller (pid {}) is "
                                   "gone; start a new one with ipcpp-cluster start",
                                   options_.profile_dir.string(), state->controller.pid));
  }
  try {
    check_engine_options(options);
  } catch (const ClusterError&) {
    throw;
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }
  controller_pid_ = 0;  // not ours to watch

  std::optional<Client> client;
  try {
    ClientOptions client_options;
    client_options.profile_dir = options_.profile_dir;
    client_options.cluster_id = options_.cluster_id;
    client_options.timeout = options.timeout;
    client.emplace(client_options);
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, std::string("cannot reach the controller: ") + e.what());
  }
  const std::size_t base = client->ids().size();

  std::string set_id;
  ClusterState current;
  std::optional<StateLock> lock;
  // Stops the set's engines and removes the set from the state file.
  const auto remove_set = [&] {
    try {
      if (!lock) lock.emplace(state_file_);
      ClusterState partial;
      partial.engine_sets[set_id] = current.engine_sets[set_id];
      say("stopping the engines it started");
      terminate(partial);
      if (auto latest = read_state(state_file_)) {
        latest->engine_sets.erase(set_id);
        write_state(state_file_, *latest);
      }
    } catch (const std::exception& e) {
      say(std::string("while stopping: ") + e.what());
    }
  };
  try {
    lock.emplace(state_file_);
    auto latest = read_state(state_file_);
    if (!latest) {
      throw ClusterError(kExitNoClusterFile,
                         fmt::format("no cluster is running in {} (no {})",
                                     options_.profile_dir.string(), state_file_.string()));
    }
    current = std::move(*latest);
    set_id = current.next_set_id();
    start_engine_set(current, set_id, options);
    lock.reset();
    wait_for_registration(*client, current, set_id, base, options.timeout);
  } catch (const ClusterError&) {
    if (current.engine_sets.contains(set_id)) remove_set();
    throw;
  } catch (const std::exception& e) {
    if (current.engine_sets.contains(set_id)) remove_set();
    throw ClusterError(kExitFailure, e.what());
  }
  return set_id;
}

StopReport Cluster::stop() {
  std::optional<ClusterState> state = recorded_state();

  // What runs now, to tell "stopped" from "was not running" when a watcher stops them.
  std::set<pid_t> running;
  const auto note_running = [&](const ClusterState& s) {
    if (s.controller.launcher == "local" && !s.controller.command.empty() &&
        runs_program(static_cast<pid_t>(s.controller.pid), s.controller.command.front())) {
      running.insert(static_cast<pid_t>(s.controller.pid));
    }
    for (const auto& [id, set] : s.engine_sets) {
      for (const EngineRecord& e : set.engines) {
        if (!set.command.empty() && runs_program(static_cast<pid_t>(e.pid), set.command.front()))
          running.insert(static_cast<pid_t>(e.pid));
      }
    }
  };
  note_running(*state);

  pid_t watcher = 0;
  const auto w = static_cast<pid_t>(state->watcher.pid);
  if (w > 0 && w != ::getpid() && !state->watcher.command.empty() &&
      runs_program(w, state->watcher.command.front())) {
    debug(fmt::format("asking the foreground ipcpp-cluster (pid {}) to stop the cluster", w));
    if (::kill(w, SIGTERM) == 0) {
      watcher = w;
      const auto deadline = deadline_after(options_.stop_timeout * 2 + Seconds(5));
      while (process_alive(w) && Clock::now() < deadline)
        std::this_thread::sleep_for(milliseconds(20));
    }
  }

  StopReport report;
  try {
    StateLock lock(state_file_);
    // Engines may have been added since; the watcher may have removed the file already.
    std::optional<ClusterState> current = read_state(state_file_);
    if (current) note_running(*current);
    report = terminate(current ? *current : *state);
    std::error_code ec;
    // What could not be stopped stays recorded, so that a second stop tries again.
    if (report.complete()) {
      fs::remove(state_file_, ec);
    } else {
      report.kept = true;
      if (!current) write_state(state_file_, *state);
    }
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }
  for (StoppedProcess& p : report.processes) {
    if (p.outcome == StoppedProcess::Outcome::kGone && p.host.empty() && p.role != "job" &&
        running.contains(p.pid)) {
      p.outcome = StoppedProcess::Outcome::kStopped;
    }
  }
  report.watcher = watcher;
  // Reap what this process started itself (a foreground start stopping its own cluster).
  for (const Launched& child : children_)
    reap(child.pid);
  return report;
}

std::string format_stop_report(const StopReport& report) {
  std::string text;
  if (report.watcher > 0) {
    text += fmt::format("Asked the foreground ipcpp-cluster (pid {}) to stop the cluster\n",
                        report.watcher);
  }
  for (const StoppedProcess& p : report.processes) {
    std::string who;
    if (p.role == "job") {
      who = p.set_id == "controller"
                ? fmt::format("{} job {} (the controller)", p.launcher, p.job_id)
                : fmt::format("{} job {} (set {})", p.launcher, p.job_id, p.set_id);
    } else if (p.role == "controller") {
      who = fmt::format("controller {}{}", p.pid, p.host.empty() ? "" : " on " + p.host);
    } else {
      who = fmt::format("{} {}{} (set {})", p.role, p.pid, p.host.empty() ? "" : " on " + p.host,
                        p.set_id);
    }
    switch (p.outcome) {
      case StoppedProcess::Outcome::kStopped:
        text += (p.role == "job" ? "Cancelled " : "Stopped ") + who + "\n";
        break;
      case StoppedProcess::Outcome::kKilled:
        text += "Killed " + who + ": it was still running after SIGTERM\n";
        break;
      case StoppedProcess::Outcome::kGone:
        text += "Not running: " + who + (p.detail.empty() ? "" : " (" + p.detail + ")") + "\n";
        break;
      case StoppedProcess::Outcome::kNotOurs:
        text += "Left alone: " + who + ": its pid now runs another program\n";
        break;
      case StoppedProcess::Outcome::kSurvived:
        text += "Could not stop " + who + (p.detail.empty() ? "" : ": " + p.detail) + "\n";
        break;
    }
  }
  if (report.kept) {
    text += "Kept " + report.state_file.string() +
            ": what could not be stopped is still recorded there; ipcpp-cluster stop tries "
            "again\n";
  } else {
    text += "Removed " + report.state_file.string() + "\n";
  }
  return text;
}

}  // namespace ipcpp::cluster
