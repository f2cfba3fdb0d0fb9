// ipcpp-cluster as a library: start, stop, grow and inspect a cluster of one ipcpp-controller
// on this machine and its ipcpp-engines, as ipyparallel's ipcluster does. Engines run on this
// machine (the local launcher), on other hosts over ssh, under mpiexec, or as a Slurm, PBS or
// SGE batch job (cluster/launchers.hpp; EngineOptions::launcher).
//
//   Cluster cluster({.profile_dir = dir, .log = log});
//   ClusterState state = cluster.start({.engines = {.n = 4}});  // returns once 4 registered
//   cluster.add_engines({.n = 2});                               // a second engine set
//   StatusReport status = cluster.status();                      // what runs, engines per host
//   StopReport report = cluster.stop();                          // engines, then the controller
//
// What it writes, in the profile (see docs/cluster.md):
//   security/ipcpp-cluster[-<id>].json   the state file (cluster/state.hpp), mode 0600
//   log/ipcontroller-<id>-<pid>.log      the controller's stdout and stderr
//   log/ipengine-<id>-<pid>.log          each engine's stdout and stderr
//
// Processes are started with posix_spawn in their own session, stdin from /dev/null, so that
// neither a terminal's Ctrl-C nor the end of the starting program ends them. They are stopped
// by pid from the state file, and only while /proc/<pid>/cmdline still names the program
// recorded there: a pid that was reused by another program is never signalled. The same holds
// on ssh hosts, where a shell script run over ssh does the checking. An mpiexec is stopped
// with SIGTERM (it ends its engines); a batch job is cancelled (scancel, qdel).
//
// Errors: every failure throws ClusterError, whose exit_code() is the program's exit status
// (kExit* below) and whose what() is one message for the user (several lines when it quotes
// a log). A failed start() or add_engines() has stopped what it started.
//
// Thread-safety: a LocalCluster is used from one thread. Several programs may work on the same
// profile at once: changes to the state file are serialised by a lock (flock on security/).
// The library installs no signal handler and keeps no global state; the program that uses it
// blocks its stop signals and passes a signalfd as ClusterOptions::interrupt_fd.
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <sys/types.h>
#include <vector>

#include <spdlog/spdlog.h>

#include "ipcpp/client.hpp"

#include "cluster/launchers.hpp"
#include "cluster/processes.hpp"
#include "cluster/state.hpp"

namespace ipcpp::cluster {

// Exit statuses of ipcpp-cluster; 10, 11 and 12 are ipcluster's.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;          // a runtime failure
inline constexpr int kExitUsage = 2;            // a wrong command line (CLI11)
inline constexpr int kExitAlreadyRunning = 10;  // start: the cluster already runs
inline constexpr int kExitNoClusterFile = 11;   // stop, engines: no state file
inline constexpr int kExitNoCluster = 12;       // status (and engines): nothing runs

// A failure, with the exit status it gives the program.
class ClusterError : public std::runtime_error {
 public:
  ClusterError(int exit_code, const std::string& what)
      : std::runtime_error(what), exit_code_(exit_code) {}
  int exit_code() const { return exit_code_; }

 private:
  int exit_code_;
};

using Seconds = std::chrono::duration<double>;

// Which cluster, and how to work with it. Shared by every command.
struct ClusterOptions {
  // The profile directory, made absolute. Required. start() creates it when missing.
  std::filesystem::path profile_dir;
  // The cluster id: it names ipcontroller-<id>-client.json and the state file
  // ipcpp-cluster-<id>.json, and is passed to the controller and engines. Default: "".
  std::string cluster_id;
  // Where programs given by name (ipcpp-controller, ipcpp-engine) are looked for before
  // $PATH. Default (empty): the directory of this process's executable (/proc/self/exe).
  std::filesystem::path program_dir;
  // How long stopping waits after SIGTERM before it sends SIGKILL (to the engines, then
  // again to the controller). Default: 5 s, as ipcluster's stop_seconds_until_kill.
  Seconds stop_timeout{5};
  // A file descriptor that becomes readable when the user asks to stop: the program's
  // signalfd for SIGINT and SIGTERM. Only polled, never read. start() and add_engines() give
  // up (stopping what they started) and watch() returns when it is readable. Default: none.
  int interrupt_fd = -1;
  // Progress and notes for the user at info ("3/4 engines registered"), the commands run and
  // the signals sent at debug. Default (null): nothing is logged.
  std::shared_ptr<spdlog::logger> log;
};

// How to reach ssh hosts and what to run there.
struct SshLaunch {
  // The hosts and their engine counts; hosts without a count share EngineOptions::n (one each
  // when it is 0). Required.
  std::vector<SshHost> hosts;
  std::string program = "ssh";
  // More ssh options, verbatim, before ipcpp's own (ssh keeps the first value of an option,
  // so these win). Default: none.
  std::vector<std::string> args;
  std::string identity;           // -i FILE; "" for ssh's default keys and agent
  std::string known_hosts;        // -o UserKnownHostsFile=FILE; "" for ssh's default
  std::string host_key_checking;  // -o StrictHostKeyChecking=yes|accept-new|no; "" default
  int port = 0;                   // for hosts that give none; 0: ssh's default
  // The engine program on the hosts: a name looked up on their PATH, or a path there.
  std::string remote_engine_program = "ipcpp-engine";
  // The profile directory on the hosts; "" for this profile's path relative to the home
  // directory (~/.ipython/profile_default), or its absolute path when it is outside home.
  std::string remote_profile_dir;
  Seconds timeout{30};  // for each ssh command (ssh's ConnectTimeout is 10 s)
};

// How to run mpiexec.
struct MpiLaunch {
  std::string mpiexec = "mpiexec";  // a name looked up on PATH, or a path
  // More mpiexec arguments, before the engine command (e.g. --hostfile FILE). Default: none.
  // As root, Open MPI's OMPI_ALLOW_RUN_AS_ROOT variables are set; more engines than cores are
  // allowed (OMPI_MCA_rmaps_base_oversubscribe=1) unless that variable is set already.
  std::vector<std::string> args;
};

// How to submit a batch job.
struct BatchLaunch {
  std::string queue;                     // Slurm partition, PBS or SGE queue; "" default
  std::vector<std::string> submit_args;  // more sbatch / qsub arguments
  // The job script's template (placeholders: launchers.hpp's default_engine_template). ""
  // for <profile>/<system>_engines.template when that exists, else the built-in one.
  std::filesystem::path template_file;
  std::string job_name;  // "" for ipcpp-engines[-<cluster id>]
};

// A set of engines to start.
struct EngineOptions {
  // Where the engines run. Default: this machine.
  Launcher launcher = Launcher::kLocal;
  SshLaunch ssh;      // for Launcher::kSsh
  MpiLaunch mpi;      // for Launcher::kMpi
  BatchLaunch batch;  // for Launcher::kSlurm, kPbs, kSge
  // How many. Default (0): one per CPU of this machine (ssh: one per host without a count).
  std::size_t n = 0;
  // The engine program: a name looked up as ClusterOptions::program_dir says, or a path. A
  // custom engine built with ipcpp::engine_main takes the same options. Default: ipcpp-engine.
  std::string program = "ipcpp-engine";
  // Task libraries, passed as --load <absolute path> each. They must exist. Default: none.
  std::vector<std::string> load;
  // More arguments for every engine, passed verbatim after the others. Default: none.
  std::vector<std::string> args;
  // How long to wait for the engines to register with the controller. Default: 60 s.
  Seconds timeout{60};
};

struct StartOptions {
  EngineOptions engines;
  // Where the controller runs: local (this machine), ssh (on controller_host), or as a slurm,
  // pbs or sge job (the profile directory must then be shared with the node that runs it,
  // where the controller writes its connection files). ssh uses engines.ssh's options (but
  // not its hosts), batch systems engines.batch's. A controller that is not local listens on
  // every interface (--ip=*) unless controller_args give --ip.
  Launcher controller_launcher = Launcher::kLocal;
  SshHost controller_host;
  // The controller program on controller_host: a name on its PATH, or a path there.
  std::string remote_controller_program = "ipcpp-controller";
  // The controller program. Default: ipcpp-controller.
  std::string controller_program = "ipcpp-controller";
  // More arguments for the controller, verbatim (e.g. "--ping=500"). Default: none.
  std::vector<std::string> controller_args;
  // Seconds between the controller being ready and starting the engines. Default: 0 (the
  // controller is ready once it has written its connection files; ipcluster waits 1 s).
  Seconds delay{0};
  // Record this process in the state file as the cluster's watcher (a foreground start that
  // will call watch() and stop()), so that `stop` from elsewhere asks it to stop the cluster.
  // Default: false (a daemonized start: nothing watches).
  bool watched = false;
};

// What stopping did to one process of the state file.
struct StoppedProcess {
  enum class Outcome {
    kStopped,   // ended after SIGTERM
    kKilled,    // still running after stop_timeout: SIGKILLed
    kGone,      // was not running any more
    kNotOurs,   // its pid now runs another program: left alone
    kSurvived,  // could not be ended (e.g. no permission to signal it)
  };
  std::string role;    // "engine", "mpiexec", "job" or "controller"
  std::string set_id;  // the engine's set; "" for the controller
  pid_t pid = 0;       // 0 for a job
  std::string host;    // an ssh engine's host; "" on this machine
  std::string job_id;  // a batch job (role "job"): kStopped means cancelled
  std::string launcher = "local";
  std::string detail;  // why, for kSurvived (e.g. ssh's error)
  Outcome outcome = Outcome::kGone;
};

struct StopReport {
  std::filesystem::path state_file;
  std::vector<StoppedProcess> processes;  // engines first, then the controller
  // The pid of the foreground `ipcpp-cluster start` that was asked to stop the cluster, if any.
  pid_t watcher = 0;
  // True if every process is gone now.
  bool complete() const;
  // The state file was kept, because something could not be stopped.
  bool kept = false;
};

// Why watch() returned.
struct WatchEnd {
  enum class Reason { kInterrupted, kControllerExited };
  Reason reason = Reason::kInterrupted;
  int controller_status = 0;  // for kControllerExited, as processes.hpp's reap()
  // For kControllerExited: "the controller (pid P) exited (...); the end of its log ...".
  std::string message;
};

// One engine set as status() sees it.
struct EngineSetStatus {
  std::string id;
  std::string launcher = "local";
  std::size_t n = 0;
  std::vector<pid_t> alive;  // local: engines; mpi: mpiexec
  std::vector<pid_t> gone;
  struct Host {
    std::string destination;
    std::vector<pid_t> alive;
    std::vector<pid_t> gone;
    std::string error;  // when the host could not be asked
  };
  std::vector<Host> hosts;  // ssh
  std::string job_id;       // batch
  std::string job_state;    // batch: "RUNNING 4" (Slurm), or what could be learned
};

struct StatusReport {
  std::filesystem::path profile_dir;
  std::string cluster_id;
  std::filesystem::path state_file;
  std::optional<ClusterState> state;  // when the state file exists
  bool controller_alive = false;      // the recorded controller runs (state files only)
  bool watcher_alive = false;         // a foreground ipcpp-cluster watches the cluster
  std::vector<EngineSetStatus> sets;  // in start order
  std::filesystem::path connection_file;
  bool connection_file_exists = false;
  // The controller answered a client: then the engines it knows, per host and their queues.
  bool answered = false;
  std::string no_answer;  // why not, when !answered
  std::vector<std::int64_t> engine_ids;
  std::map<std::string, std::size_t> hosts;  // host name -> engines ("?" when unknown)
  QueueStatus queues;
};

// The state file of a cluster: <profile>/security/ipcpp-cluster.json, or
// ipcpp-cluster-<id>.json for a non-empty id.
std::filesystem::path state_file_path(const std::filesystem::path& profile_dir,
                                      const std::string& cluster_id);

// The pid file ipcpp-controller writes: <profile>/pid/ipcontroller.pid, or
// ipcontroller-<id>.pid for a non-empty id.
std::filesystem::path controller_pid_file(const std::filesystem::path& profile_dir,
                                          const std::string& cluster_id);

class Cluster {
 public:
  // Throws ClusterError if options.profile_dir is empty.
  explicit Cluster(ClusterOptions options);
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  const std::filesystem::path& state_file() const { return state_file_; }

  // Starts the cluster: creates the profile if missing; refuses (kExitAlreadyRunning) when
  // the state file's controller runs, or when the profile's controller pid file names a live
  // ipcpp-controller; removes a stale state file (stopping any process of it still alive)
  // with a note; starts the controller and waits until its pid file holds its pid and its
  // engine connection file exists; writes the state file; waits `delay`; starts the engines,
  // updating the state file after each; waits until they have registered, logging progress.
  // Returns the state written.
  // Throws ClusterError(kExitFailure) — after stopping everything it started and removing the
  // state file — when a program cannot be found or started, a task library does not exist,
  // the controller exits before it is ready (the message quotes the end of its log), an
  // engine exits before the engines have registered (the message names it, its log, and
  // quotes the end of the log), the engines have not registered within the timeout, or the
  // interrupt fd became readable.
  ClusterState start(const StartOptions& options);

  // For a foreground start, after start(): waits until the interrupt fd is readable or the
  // controller exits; logs engines that exit meanwhile. Reaps this process's children.
  WatchEnd watch();

  // Adds a set of engines to the running cluster and waits until they have registered.
  // Returns the new set's id.
  // Throws ClusterError(kExitNoClusterFile) when there is no state file,
  // ClusterError(kExitNoCluster) when its controller is not running, and
  // ClusterError(kExitFailure) as start() does for engines (after stopping this set's engines
  // and removing the set from the state file).
  std::string add_engines(const EngineOptions& options);

  // Stops the cluster of the state file: when a foreground `ipcpp-cluster start` watches it,
  // first asks that one to stop it (SIGTERM) and waits for it; then SIGTERM to each engine
  // still running, up to stop_timeout for them to end, SIGKILL to those left; the same for
  // the controller; then removes the state file, or keeps it (StopReport::kept) when something
  // could not be stopped, so that a second stop tries again. Only pids whose /proc/<pid>/cmdline
  // names the recorded program are signalled. Returns what happened to each process. Throws
  // ClusterError(kExitNoClusterFile) when there is no state file.
  StopReport stop();

  // What runs: the state file's processes, and what the controller says when it answers
  // within `timeout` (a client's connection: the engines, their host names — the engines'
  // hostname() function — and the queue status). Works without a state file when the
  // connection file exists (a cluster started by other means). Never throws for a cluster
  // that does not run: see StatusReport::answered.
  StatusReport status(Seconds timeout = Seconds(5));

 private:
  // The state file's cluster. Throws ClusterError: kExitNoClusterFile when there is none,
  // kExitFailure when it cannot be read.
  std::optional<ClusterState> recorded_state() const;
  void say(const std::string& message) const;
  void debug(const std::string& message) const;
  bool interrupted() const;
  std::filesystem::path program(const std::string& name) const;
  std::vector<std::string> engine_command(const std::filesystem::path& program,
                                          const EngineOptions& options) const;
  std::size_t engine_count(const EngineOptions& options) const;
  void wait_for_controller(const Launched& controller, Seconds timeout);
  void warn(const std::string& message) const;
  // Starts a set with its launcher, recording it in the state file. Throws ClusterError.
  void start_engine_set(ClusterState& state, const std::string& set_id,
                        const EngineOptions& options);
  void start_engines(ClusterState& state, const std::string& set_id, std::size_t n,
                     const std::vector<std::string>& command);
  void start_mpi_set(ClusterState& state, const std::string& set_id, const EngineOptions& options);
  void start_ssh_set(ClusterState& state, const std::string& set_id, const EngineOptions& options);
  void start_batch_set(ClusterState& state, const std::string& set_id,
                       const EngineOptions& options);
  std::vector<std::string> engine_args(const EngineOptions& options, bool check_libraries) const;
  // Throws when the programs a set needs here cannot be found, or a task library is missing.
  void check_engine_options(const EngineOptions& options) const;
  // Writes a job script into <profile>/jobs/<stem>.sh and submits it. Returns the job id and
  // the script's path. Throws ClusterError naming what the submit command said.
  std::pair<std::string, std::string> submit_job(const BatchJob& job,
                                                 const std::string& script_text,
                                                 const std::string& stem,
                                                 const std::vector<std::string>& submit_args) const;
  // Cancels a batch job, recording the outcome in `p`.
  void cancel_job(Launcher system, const std::string& job_id, StoppedProcess& p) const;
  // Ends the ssh sets' engines and cancels the batch jobs of `state`, adding to `report`.
  void stop_remote_sets(const ClusterState& state, StopReport& report);
  // A batch job's state ("RUNNING 2, PENDING 2"); "" when it is known to have ended; nullopt
  // when it cannot be learned (PBS, SGE: not asked).
  std::optional<std::string> job_state(const EngineSetRecord& set) const;
  std::optional<std::string> job_state(const std::string& launcher,
                                       const std::string& job_id) const;
  // Starts a controller that is not local, recording it in state.controller; waits until its
  // connection files are in this profile (fetched over ssh, or written by the batch job).
  void start_remote_controller(ClusterState& state, const StartOptions& options);
  void wait_for_remote_controller(const ClusterState& state, Seconds timeout,
                                  std::filesystem::file_time_type submitted);
  // Whether the state file's controller runs (a batch job that cannot be asked counts).
  bool controller_running(const ProcessRecord& controller) const;
  // Stops a controller that is not local, as a StoppedProcess.
  StoppedProcess stop_remote_controller(const ProcessRecord& controller);
  void wait_for_registration(const Client& client, const ClusterState& state,
                             const std::string& set_id, std::size_t base, Seconds timeout);
  std::optional<int> exited(pid_t pid);
  StopReport terminate(const ClusterState& state);
  void abandon(const ClusterState& state, bool locked);

  ClusterOptions options_;
  std::filesystem::path state_file_;
  std::filesystem::path program_dir_;
  pid_t controller_pid_ = 0;                        // the controller start() started
  std::optional<ProcessRecord> remote_controller_;  // ... when it is not local
  std::vector<Launched> children_;                  // started by this object and not yet reaped
};

// The text ipcpp-cluster prints for a report, one line per item, each ending in '\n'.
std::string format_stop_report(const StopReport& report);
std::string format_status(const StatusReport& status);

}  // namespace ipcpp::cluster
