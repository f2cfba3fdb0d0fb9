// Cluster's engine sets by launcher: local processes, mpiexec, ssh hosts and batch jobs;
// stopping the ssh and batch sets; a batch job's state.
#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <future>
#include <sstream>
#include <thread>
#include <unistd.h>

#include <spdlog/fmt/fmt.h>

#include "cluster/cluster.hpp"
#include "profiles/profile.hpp"
#include "profiles/secure_file.hpp"
#include "proto/clock.hpp"

namespace ipcpp::cluster {
namespace {

namespace fs = std::filesystem;

// The last non-empty line of `text`, or "".
std::string last_line(const std::string& text) {
  std::istringstream in(text);
  std::string last;
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
  }
  while (!last.empty() && (last.back() == '\r' || last.back() == ' '))
    last.pop_back();
  return last;
}

// The non-empty lines of `text` joined by "; " (a tool's errors in one line).
std::string one_line(const std::string& text) {
  std::istringstream in(text);
  std::string joined;
  for (std::string line; std::getline(in, line);) {
    while (!line.empty() && (line.back() == '\r' || line.back() == ' '))
      line.pop_back();
    if (line.empty()) continue;
    if (!joined.empty()) joined += "; ";
    joined += line;
  }
  return joined;
}

// The ssh command for `destination` (and `port`), running `sh -s` there.
std::vector<std::string> ssh_command(const std::vector<std::string>& base,
                                     const std::string& destination, int port) {
  std::vector<std::string> command = base;
  if (port > 0) command.insert(command.end(), {"-p", std::to_string(port)});
  command.insert(command.end(), {"--", destination, "sh", "-s"});
  return command;
}

// One line on why ssh to a host failed: ssh's own message when it printed one.
std::string ssh_failure(const CommandResult& r) {
  std::string why = last_line(r.err);
  if (why.empty()) why = last_line(r.out);
  if (why.empty()) why = describe_exit(r.status);
  return why;
}

// ssh and its options, without host and port: the user's first (ssh keeps the first value of
// an option), never a password prompt.
std::vector<std::string> ssh_base(const SshLaunch& ssh) {
  std::vector<std::string> base = {ssh.program};
  base.insert(base.end(), ssh.args.begin(), ssh.args.end());
  if (!ssh.identity.empty()) base.insert(base.end(), {"-i", fs::absolute(ssh.identity).string()});
  if (!ssh.known_hosts.empty()) {
    base.insert(base.end(), {"-o", "UserKnownHostsFile=" + fs::absolute(ssh.known_hosts).string()});
  }
  if (!ssh.host_key_checking.empty()) {
    base.insert(base.end(), {"-o", "StrictHostKeyChecking=" + ssh.host_key_checking});
  }
  base.insert(base.end(), {"-o", "BatchMode=yes", "-o", "ConnectTimeout=10"});
  return base;
}

std::string remote_dir_for(const SshLaunch& ssh, const fs::path& profile_dir) {
  if (!ssh.remote_profile_dir.empty()) return ssh.remote_profile_dir;
  const char* home = std::getenv("HOME");
  return remote_profile_dir_for(profile_dir, home != nullptr ? home : "");
}

// A job template: `given` when set (it must be readable), else `in_profile` when it exists.
// Returns its path ("" for none: the built-in template) and text.
std::pair<fs::path, std::string> read_job_template(const fs::path& given,
                                                   const fs::path& in_profile) {
  fs::path file = given;
  if (file.empty()) {
    std::error_code ec;
    if (!fs::exists(in_profile, ec)) return {};
    file = in_profile;
  }
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) throw ClusterError(kExitFailure, "cannot read the job template " + file.string());
  return {file, text.str()};
}

bool is_loopback(const std::string& destination) {
  const std::string host = destination.substr(destination.find('@') + 1);
  return host == "localhost" || host.starts_with("127.") || host == "::1";
}

}  // namespace

void Cluster::warn(const std::string& message) const {
  if (options_.log) options_.log->warn("{}", message);
}

std::vector<std::string> Cluster::engine_args(const EngineOptions& options,
                                              bool check_libraries) const {
  std::vector<std::string> args;
  if (!options_.cluster_id.empty()) args.insert(args.end(), {"--cluster-id", options_.cluster_id});
  for (const std::string& lib : options.load) {
    if (!check_libraries) {
      args.insert(args.end(), {"--load", lib});
      continue;
    }
    const fs::path path = fs::absolute(lib);
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) {
      throw ClusterError(kExitFailure, "cannot load the task library " + path.string() + ": " +
                                           (ec                     ? ec.message()
                                            : fs::exists(path, ec) ? "not a regular file"
                                                                   : "No such file or directory"));
    }
    args.insert(args.end(), {"--load", path.string()});
  }
  args.insert(args.end(), options.args.begin(), options.args.end());
  return args;
}

void Cluster::start_engine_set(ClusterState& state, const std::string& set_id,
                               const EngineOptions& options) {
  switch (options.launcher) {
    case Launcher::kLocal:
      start_engines(state, set_id, engine_count(options),
                    engine_command(program(options.program), options));
      return;
    case Launcher::kMpi:
      start_mpi_set(state, set_id, options);
      return;
    case Launcher::kSsh:
      start_ssh_set(state, set_id, options);
      return;
    case Launcher::kSlurm:
    case Launcher::kPbs:
    case Launcher::kSge:
      start_batch_set(state, set_id, options);
      return;
  }
}

void Cluster::start_mpi_set(ClusterState& state, const std::string& set_id,
                            const EngineOptions& options) {
  const std::size_t n = engine_count(options);
  std::vector<std::string> command = {program(options.mpi.mpiexec).string(), "-n",
                                      std::to_string(n)};
  command.insert(command.end(), options.mpi.args.begin(), options.mpi.args.end());
  const std::vector<std::string> engine = engine_command(program(options.program), options);
  command.insert(command.end(), engine.begin(), engine.end());

  Environment env;
  if (::geteuid() == 0) {
    // Open MPI refuses to run as root without these; MPICH ignores them.
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1";
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1";
  }
  // Engines mostly wait: like the local launcher, allow more of them than cores.
  if (std::getenv("OMPI_MCA_rmaps_base_oversubscribe") == nullptr) {
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1";
  }
  EngineSetRecord& set = state.engine_sets[set_id];
  set.launcher = "mpi";
  set.n = n;
  set.start_time = proto::format_timestamp(proto::now());
  set.command = command;
  debug(fmt::format("starting {} engines under mpiexec: {}", n, fmt::join(command, " ")));
  const fs::path log_dir = profiles::Profile::at(options_.profile_dir).log_dir();
  Launched mpiexec = launch(command, log_dir, "mpiexec-" + options_.cluster_id, env);
  say(fmt::format("mpiexec started (pid {}) for {} engines, log {}", mpiexec.pid, n,
                  mpiexec.log.string()));
  set.engines.push_back(EngineRecord{mpiexec.pid, mpiexec.log.string()});
  children_.push_back(std::move(mpiexec));
  write_state(state_file_, state);
}

void Cluster::start_ssh_set(ClusterState& state, const std::string& set_id,
                            const EngineOptions& options) {
  const SshLaunch& ssh = options.ssh;
  std::vector<SshHost> hosts = ssh.hosts;
  try {
    assign_engine_counts(hosts, options.n);
  } catch (const std::invalid_argument& e) {
    throw ClusterError(kExitFailure, e.what());
  }
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  const fs::path connection_file = profile.engine_connection_file(options_.cluster_id);
  std::string connection_text;
  {
    std::ifstream in(connection_file);
    std::stringstream text;
    text << in.rdbuf();
    connection_text = text.str();
    if (!in || connection_text.empty()) {
      throw ClusterError(kExitFailure,
                         "cannot read the engine connection file " + connection_file.string());
    }
  }
  if (connection_text.find("127.0.0.1") != std::string::npos) {
    for (const SshHost& h : hosts) {
      if (!is_loopback(h.destination)) {
        warn(fmt::format(
            "the controller listens on 127.0.0.1 only: engines on {} cannot reach it (start it "
            "with --controller-arg=--ip=*)",
            h.destination));
        break;
      }
    }
  }
  const std::string remote_dir = remote_dir_for(ssh, options_.profile_dir);
  const std::vector<std::string> base = ssh_base(ssh);

  RemoteStart start;
  start.profile_dir = remote_dir;
  start.connection_file_name = connection_file.filename().string();
  start.connection_text = connection_text;
  start.program = ssh.remote_engine_program;
  start.args = engine_args(options, false);
  start.log_prefix = "ipengine-" + options_.cluster_id;

  EngineSetRecord& set = state.engine_sets[set_id];
  set.launcher = "ssh";
  set.start_time = proto::format_timestamp(proto::now());
  set.command = {ssh.remote_engine_program, "--profile-dir", remote_dir};
  set.command.insert(set.command.end(), start.args.begin(), start.args.end());
  set.ssh = base;

  // Every host at once; each thread runs its own ssh.
  struct Outcome {
    std::vector<RemoteProcess> engines;
    std::string error;
  };
  std::vector<std::future<Outcome>> running;
  for (const SshHost& host : hosts) {
    RemoteStart job = start;
    job.n = host.n;
    const int port = host.port > 0 ? host.port : ssh.port;
    const std::vector<std::string> command = ssh_command(base, host.destination, port);
    debug(fmt::format("{}: starting {} engines: {}", host.destination, host.n,
                      fmt::join(command, " ")));
    running.push_back(std::async(std::launch::async, [job, command, timeout = ssh.timeout] {
      Outcome outcome;
      try {
        const CommandResult r = run_command(command, remote_start_script(job), timeout);
        // Whatever was started is recorded (and so stopped later), even when ssh failed after.
        outcome.engines = parse_started(r.out);
        if (r.status == 0) {
          if (outcome.engines.size() != job.n) {
            outcome.error = fmt::format("started {} of {} engines: {}", outcome.engines.size(),
                                        job.n, ssh_failure(r));
          }
        } else if (r.status == kRemoteNoProgram) {
          outcome.error = "no engine program there: " + ssh_failure(r);
        } else if (r.status == 255) {
          outcome.error = "ssh failed: " + ssh_failure(r);
        } else {
          outcome.error = ssh_failure(r);
        }
      } catch (const std::exception& e) {
        outcome.error = e.what();
      }
      return outcome;
    }));
  }
  std::vector<std::string> failures;
  for (std::size_t i = 0; i < hosts.size(); ++i) {
    Outcome outcome = running[i].get();
    const int port = hosts[i].port > 0 ? hosts[i].port : ssh.port;
    if (!outcome.engines.empty()) {
      HostRecord record{hosts[i].destination, port, remote_dir, {}};
      for (const RemoteProcess& e : outcome.engines)
        record.engines.push_back(EngineRecord{e.pid, e.log});
      set.n += record.engines.size();
      set.hosts.push_back(std::move(record));
      say(fmt::format("{}: {} engine{} started", hosts[i].destination, outcome.engines.size(),
                      outcome.engines.size() == 1 ? "" : "s"));
    }
    if (!outcome.error.empty()) {
      failures.push_back(fmt::format("host {}: {}", hosts[i].destination, outcome.error));
      warn(failures.back());
    }
  }
  write_state(state_file_, state);
  if (set.n == 0) {
    throw ClusterError(kExitFailure, fmt::format("no engine started on any host:\n  {}",
                                                 fmt::join(failures, "\n  ")));
  }
}

std::pair<std::string, std::string> Cluster::submit_job(
    const BatchJob& job, const std::string& script_text, const std::string& stem,
    const std::vector<std::string>& submit_args) const {
  const std::string system_name(launcher_name(job.system));
  const fs::path jobs_dir = options_.profile_dir / "jobs";
  fs::create_directories(jobs_dir);
  const fs::path script = jobs_dir / (stem + ".sh");
  profiles::write_private_file(script, script_text);
  fs::permissions(script, fs::perms::owner_exec, fs::perm_options::add);

  const std::vector<std::string> submit = submit_command(job.system, script.string(), submit_args);
  debug(fmt::format("submitting: {}", fmt::join(submit, " ")));
  CommandResult r;
  try {
    r = run_command(submit, "", Seconds(60));
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure,
                       fmt::format("{} job not submitted: {}", system_name, e.what()));
  }
  if (r.status != 0) {
    std::string why = one_line(r.err);
    if (why.empty()) why = one_line(r.out);
    throw ClusterError(
        kExitFailure,
        fmt::format("{} job not submitted: {} exited ({}): {} (script {})", system_name,
                    submit.front(), describe_exit(r.status), why, script.string()));
  }
  try {
    return {parse_job_id(job.system, r.out), script.string()};
  } catch (const std::invalid_argument& e) {
    throw ClusterError(kExitFailure, e.what());
  }
}

void Cluster::start_batch_set(ClusterState& state, const std::string& set_id,
                              const EngineOptions& options) {
  const Launcher system = options.launcher;
  const std::string system_name(launcher_name(system));
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  BatchJob job;
  job.system = system;
  job.n = engine_count(options);
  job.command = engine_command(program(options.program), options);
  job.job_name = !options.batch.job_name.empty() ? options.batch.job_name
                 : options_.cluster_id.empty()   ? std::string("ipcpp-engines")
                                                 : "ipcpp-engines-" + options_.cluster_id;
  job.log_dir = profile.log_dir().string();
  job.log_prefix = "ipengine-" + options_.cluster_id;
  job.queue = options.batch.queue;
  job.profile_dir = options_.profile_dir.string();
  job.cluster_id = options_.cluster_id;

  const auto [template_file, template_text] = read_job_template(
      options.batch.template_file, options_.profile_dir / (system_name + "_engines.template"));
  if (!template_file.empty()) debug("job template: " + template_file.string());
  std::string script_text;
  try {
    script_text = engine_job_script(job, template_text);
  } catch (const std::invalid_argument& e) {
    throw ClusterError(
        kExitFailure,
        (template_file.empty() ? std::string() : template_file.string() + ": ") + e.what());
  }
  const std::string stem = fmt::format(
      "{}-engines{}-{}", system_name,
      options_.cluster_id.empty() ? std::string() : std::string("-").append(options_.cluster_id),
      set_id);
  const auto [job_id, script] = submit_job(job, script_text, stem, options.batch.submit_args);
  EngineSetRecord& set = state.engine_sets[set_id];
  set.launcher = system_name;
  set.n = job.n;
  set.start_time = proto::format_timestamp(proto::now());
  set.command = job.command;
  set.job_id = job_id;
  set.script = script;
  write_state(state_file_, state);
  say(fmt::format("{} job {} submitted for {} engine{} (script {})", system_name, job_id, job.n,
                  job.n == 1 ? "" : "s", script));
}

std::optional<std::string> Cluster::job_state(const EngineSetRecord& set) const {
  return job_state(set.launcher, set.job_id);
}

std::optional<std::string> Cluster::job_state(const std::string& launcher,
                                              const std::string& job_id) const {
  if (launcher != "slurm") return std::nullopt;
  CommandResult r;
  try {
    r = run_command({"squeue", "-h", "-j", job_id, "-o", "%T"}, "", Seconds(20));
  } catch (const std::exception&) {
    return std::nullopt;
  }
  if (r.status != 0) {
    // A job Slurm has already forgotten is "Invalid job id".
    if (r.err.find("Invalid job id") != std::string::npos) return std::string();
    return std::nullopt;
  }
  std::map<std::string, std::size_t> counts;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) ++counts[line];
  }
  std::string text;
  for (const auto& [state, count] : counts) {
    if (state == "COMPLETED" || state == "FAILED" || state == "CANCELLED" || state == "TIMEOUT" ||
        state == "NODE_FAIL" || state == "OUT_OF_MEMORY" || state == "BOOT_FAIL" ||
        state == "DEADLINE" || state == "PREEMPTED") {
      continue;
    }
    text += fmt::format("{}{} {}", text.empty() ? "" : ", ", state, count);
  }
  return text;
}

void Cluster::start_remote_controller(ClusterState& state, const StartOptions& options) {
  const Launcher launcher = options.controller_launcher;
  ProcessRecord& c = state.controller;
  c.launcher = std::string(launcher_name(launcher));
  std::vector<std::string> args;
  if (!options_.cluster_id.empty()) args.insert(args.end(), {"--cluster-id", options_.cluster_id});
  const bool has_ip =
      std::any_of(options.controller_args.begin(), options.controller_args.end(),
                  [](const std::string& a) { return a == "--ip" || a.starts_with("--ip="); });
  // Engines and clients elsewhere must reach it.
  if (!has_ip) args.emplace_back("--ip=*");
  args.insert(args.end(), options.controller_args.begin(), options.controller_args.end());

  if (launcher == Launcher::kSsh) {
    const SshLaunch& ssh = options.engines.ssh;
    c.destination = options.controller_host.destination;
    c.port = options.controller_host.port > 0 ? options.controller_host.port : ssh.port;
    c.profile_dir = remote_dir_for(ssh, options_.profile_dir);
    c.ssh = ssh_base(ssh);
    RemoteStart start;
    start.profile_dir = c.profile_dir;
    start.program = options.remote_controller_program;
    start.args = args;
    start.log_prefix = "ipcontroller-" + options_.cluster_id;
    start.n = 1;
    c.command = {start.program, "--profile-dir", c.profile_dir};
    c.command.insert(c.command.end(), args.begin(), args.end());
    const auto command = ssh_command(c.ssh, c.destination, c.port);
    debug(fmt::format("{}: starting the controller: {}", c.destination, fmt::join(command, " ")));
    CommandResult r;
    try {
      r = run_command(command, remote_start_script(start), ssh.timeout);
    } catch (const std::exception& e) {
      throw ClusterError(kExitFailure,
                         fmt::format("controller host {}: {}", c.destination, e.what()));
    }
    const auto started = parse_started(r.out);
    if (started.size() == 1) {
      c.pid = started.front().pid;  // recorded first: a failure below still stops it
      c.log = started.front().log;
    }
    if (r.status != 0 || started.size() != 1) {
      const std::string what = r.status == 255                ? "ssh failed: "
                               : r.status == kRemoteNoProgram ? "no controller program there: "
                                                              : "";
      throw ClusterError(kExitFailure, fmt::format("controller host {}: {}{}", c.destination, what,
                                                   ssh_failure(r)));
    }
    c.pid = started.front().pid;
    c.log = started.front().log;
    say(fmt::format("controller started on {} (pid {}), log {} there", c.destination, c.pid,
                    c.log));
    return;
  }

  // A batch job: the controller writes its files into this profile, which the node shares.
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  BatchJob job;
  job.system = launcher;
  job.command = {program(options.controller_program).string(), "--profile-dir",
                 options_.profile_dir.string()};
  job.command.insert(job.command.end(), args.begin(), args.end());
  job.job_name = options_.cluster_id.empty() ? std::string("ipcpp-controller")
                                             : "ipcpp-controller-" + options_.cluster_id;
  job.log_dir = profile.log_dir().string();
  job.log_prefix = "ipcontroller-" + options_.cluster_id;
  job.queue = options.engines.batch.queue;
  job.profile_dir = options_.profile_dir.string();
  job.cluster_id = options_.cluster_id;
  const auto [template_file, template_text] =
      read_job_template({}, options_.profile_dir / (c.launcher + "_controller.template"));
  std::string script_text;
  try {
    script_text = controller_job_script(job, template_text);
  } catch (const std::invalid_argument& e) {
    throw ClusterError(
        kExitFailure,
        (template_file.empty() ? std::string() : template_file.string() + ": ") + e.what());
  }
  const std::string stem =
      c.launcher + "-controller" +
      (options_.cluster_id.empty() ? std::string() : std::string("-").append(options_.cluster_id));
  const auto [job_id, script] =
      submit_job(job, script_text, stem, options.engines.batch.submit_args);
  c.command = job.command;
  c.job_id = job_id;
  c.script = script;
  say(fmt::format("{} job {} submitted for the controller (script {})", c.launcher, job_id,
                  script));
}

void Cluster::wait_for_remote_controller(const ClusterState& state, Seconds timeout,
                                         fs::file_time_type submitted) {
  const ProcessRecord& c = state.controller;
  const profiles::Profile profile = profiles::Profile::at(options_.profile_dir);
  const fs::path client_file = profile.client_connection_file(options_.cluster_id);
  const fs::path engine_file = profile.engine_connection_file(options_.cluster_id);
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(timeout);
  const std::string program = c.command.empty() ? std::string() : c.command.front();
  for (;;) {
    if (c.launcher == "ssh") {
      const CommandResult r =
          run_command(ssh_command(c.ssh, c.destination, c.port),
                      remote_fetch_script(c.profile_dir, options_.cluster_id, program,
                                          static_cast<long>(c.pid), c.log),
                      Seconds(30));
      if (r.status == 0) {
        try {
          const auto [client, engine] = parse_fetched(r.out);
          profiles::write_private_file(client_file, client);
          profiles::write_private_file(engine_file, engine);
        } catch (const std::invalid_argument& e) {
          throw ClusterError(kExitFailure,
                             fmt::format("controller host {}: {}", c.destination, e.what()));
        }
        return;
      }
      if (r.status == kRemoteExited) {
        throw ClusterError(kExitFailure,
                           fmt::format("the controller on {} (pid {}) exited; the end of its log "
                                       "{} there: {}",
                                       c.destination, c.pid, c.log, one_line(r.err)));
      }
      if (r.status != kRemoteNotReady) {
        throw ClusterError(kExitFailure, fmt::format("controller host {}: ssh failed: {}",
                                                     c.destination, ssh_failure(r)));
      }
    } else {
      std::error_code e1;
      std::error_code e2;
      if (fs::exists(client_file, e1) && fs::exists(engine_file, e2) &&
          fs::last_write_time(engine_file, e1) >= submitted &&
          fs::last_write_time(client_file, e2) >= submitted && !e1 && !e2) {
        return;
      }
      if (const auto job = job_state(c.launcher, c.job_id); job && job->empty()) {
        throw ClusterError(kExitFailure,
                           fmt::format("{} job {} of the controller ended before the controller "
                                       "was ready: see its output in {}",
                                       c.launcher, c.job_id, profile.log_dir().string()));
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw ClusterError(
          kExitFailure,
          fmt::format("the controller ({}) was not ready after {:g} s: no {} yet",
                      c.launcher == "ssh" ? "on " + c.destination : c.launcher + " job " + c.job_id,
                      timeout.count(), engine_file.string()));
    }
    if (interrupted()) {
      throw ClusterError(kExitFailure, "interrupted while the controller was starting");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(c.launcher == "ssh" ? 200 : 500));
  }
}

bool Cluster::controller_running(const ProcessRecord& c) const {
  if (c.launcher == "local") {
    return !c.command.empty() && runs_program(static_cast<pid_t>(c.pid), c.command.front());
  }
  if (c.launcher == "ssh") {
    try {
      const CommandResult r =
          run_command(ssh_command(c.ssh, c.destination, c.port),
                      remote_status_script(c.command.empty() ? std::string() : c.command.front(),
                                           {static_cast<long>(c.pid)}),
                      Seconds(30));
      if (r.status != 0) return true;  // cannot tell: taken as running
      const auto report = parse_pid_report(r.out);
      const auto it = report.find(static_cast<long>(c.pid));
      return it != report.end() && it->second == "alive";
    } catch (const std::exception&) {
      return true;
    }
  }
  const auto job = job_state(c.launcher, c.job_id);
  return !job || !job->empty();
}

StoppedProcess Cluster::stop_remote_controller(const ProcessRecord& c) {
  using Outcome = StoppedProcess::Outcome;
  StoppedProcess p;
  p.role = "controller";
  p.launcher = c.launcher;
  p.pid = static_cast<pid_t>(c.pid);
  if (c.launcher != "ssh") {
    p.role = "job";
    p.job_id = c.job_id;
    p.set_id = "controller";
    cancel_job(parse_launcher(c.launcher), c.job_id, p);
    return p;
  }
  p.host = c.destination;
  try {
    const CommandResult r =
        run_command(ssh_command(c.ssh, c.destination, c.port),
                    remote_stop_script(c.command.empty() ? std::string() : c.command.front(),
                                       {static_cast<long>(c.pid)}, options_.stop_timeout.count()),
                    options_.stop_timeout + Seconds(30));
    const auto report = parse_pid_report(r.out);
    const auto it = report.find(static_cast<long>(c.pid));
    const std::string word = it == report.end() ? std::string() : it->second;
    p.outcome = word == "stopped"   ? Outcome::kStopped
                : word == "killed"  ? Outcome::kKilled
                : word == "gone"    ? Outcome::kGone
                : word == "notours" ? Outcome::kNotOurs
                                    : Outcome::kSurvived;
    if (p.outcome == Outcome::kSurvived) p.detail = "ssh failed: " + ssh_failure(r);
  } catch (const std::exception& e) {
    p.outcome = Outcome::kSurvived;
    p.detail = e.what();
  }
  return p;
}

void Cluster::cancel_job(Launcher system, const std::string& job_id, StoppedProcess& p) const {
  using Outcome = StoppedProcess::Outcome;
  p.launcher = std::string(launcher_name(system));
  const auto command = cancel_command(system, job_id);
  debug(fmt::format("cancelling: {}", fmt::join(command, " ")));
  try {
    const CommandResult r = run_command(command, "", Seconds(60));
    if (r.status == 0) {
      p.outcome = Outcome::kStopped;
      return;
    }
    std::string why = one_line(r.err);
    if (why.empty()) why = describe_exit(r.status);
    // A job that has ended already is not an error.
    const bool ended = why.find("Invalid job id") != std::string::npos ||
                       why.find("Unknown Job Id") != std::string::npos ||
                       why.find("does not exist") != std::string::npos ||
                       why.find("Job has finished") != std::string::npos ||
                       why.find("already completing or completed") != std::string::npos;
    p.outcome = ended ? Outcome::kGone : Outcome::kSurvived;
    p.detail = command.front() + ": " + why;
  } catch (const std::exception& e) {
    p.outcome = Outcome::kSurvived;
    p.detail = e.what();
  }
}

void Cluster::stop_remote_sets(const ClusterState& state, StopReport& report) {
  using Outcome = StoppedProcess::Outcome;
  struct Pending {
    std::string set_id;
    std::string destination;
    std::vector<long> pids;
    std::future<std::pair<std::map<long, std::string>, std::string>> answer;
  };
  std::vector<Pending> pending;
  const double timeout = options_.stop_timeout.count();
  for (const std::string& id : state.set_ids()) {
    const EngineSetRecord& set = state.engine_sets.at(id);
    if (set.launcher == "ssh") {
      const std::string program = set.command.empty() ? std::string() : set.command.front();
      for (const HostRecord& host : set.hosts) {
        std::vector<long> pids;
        for (const EngineRecord& e : host.engines)
          pids.push_back(static_cast<long>(e.pid));
        const auto command = ssh_command(set.ssh, host.destination, host.port);
        const std::string script = remote_stop_script(program, pids, timeout);
        debug(fmt::format("{}: stopping engines {}", host.destination, fmt::join(pids, " ")));
        pending.push_back(Pending{
            id, host.destination, pids, std::async(std::launch::async, [command, script, timeout] {
              std::pair<std::map<long, std::string>, std::string> answer;
              try {
                const CommandResult r = run_command(command, script, Seconds(timeout + 30));
                if (r.status == 0) {
                  answer.first = parse_pid_report(r.out);
                } else {
                  answer.second = "ssh failed: " + ssh_failure(r);
                }
              } catch (const std::exception& e) {
                answer.second = e.what();
              }
              return answer;
            })});
      }
    } else if (set.launcher == "slurm" || set.launcher == "pbs" || set.launcher == "sge") {
      StoppedProcess p;
      p.role = "job";
      p.set_id = id;
      p.job_id = set.job_id;
      p.launcher = set.launcher;
      cancel_job(parse_launcher(set.launcher), set.job_id, p);
      report.processes.push_back(std::move(p));
    }
  }
  for (Pending& p : pending) {
    const auto [outcomes, error] = p.answer.get();
    for (const long pid : p.pids) {
      StoppedProcess s;
      s.role = "engine";
      s.set_id = p.set_id;
      s.pid = static_cast<pid_t>(pid);
      s.host = p.destination;
      s.launcher = "ssh";
      const auto it = outcomes.find(pid);
      const std::string word = it == outcomes.end() ? std::string() : it->second;
      if (word == "stopped") {
        s.outcome = Outcome::kStopped;
      } else if (word == "killed") {
        s.outcome = Outcome::kKilled;
      } else if (word == "gone") {
        s.outcome = Outcome::kGone;
      } else if (word == "notours") {
        s.outcome = Outcome::kNotOurs;
      } else {
        s.outcome = Outcome::kSurvived;
        s.detail = error.empty() ? "no answer from the host" : error;
      }
      report.processes.push_back(std::move(s));
    }
  }
}

}  // namespace ipcpp::cluster
