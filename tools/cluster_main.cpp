// ipcpp-cluster: start, stop, grow and inspect a cluster of one ipcpp-controller and its
// ipcpp-engines on this machine, like ipyparallel's ipcluster with its local launchers.
// Parses options (command line > the profile's ipcpp_cluster.toml > defaults), then calls the
// cluster library (cluster/cluster.hpp).
//
// Exit codes (cluster::kExit*): 0 ok, 1 a runtime failure, 2 a wrong command line,
// 10 already running, 11 no cluster file, 12 no cluster.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <sys/signalfd.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/spdlog.h>

#include "cluster/cluster.hpp"
#include "profiles/profile.hpp"
#include "profiles/program_cli.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ipcpp::cluster;

struct Options {
  ipcpp::profiles::CommonOptions common;  // profile, cluster id, logging
  std::size_t n = 0;
  std::string engine_launcher = "local";
  std::string controller_launcher = "local";
  double delay = 0;
  bool daemonize = false;
  double timeout = 60;
  double stop_timeout = 5;
  double status_timeout = 5;
  std::string engine_program = "ipcpp-engine";
  std::vector<std::string> load;
  std::vector<std::string> engine_args;
  std::vector<std::string> controller_args;
  std::vector<std::string> controller_rest;  // after --
  std::string controller_host;
  std::string remote_controller_program = "ipcpp-controller";
  // ssh
  std::string hosts;
  std::string hosts_file;
  std::string ssh_program = "ssh";
  std::vector<std::string> ssh_args;
  std::string ssh_identity;
  std::string ssh_known_hosts;
  std::string ssh_host_key_checking;
  int ssh_port = 0;
  std::string remote_engine_program = "ipcpp-engine";
  std::string remote_profile_dir;
  // mpi
  std::string mpiexec = "mpiexec";
  std::vector<std::string> mpi_args;
  // slurm, pbs, sge
  std::string queue;
  std::vector<std::string> batch_args;
  std::string batch_template;
  std::string job_name;
};

// The options of the launchers, configurable in ipcpp_cluster.toml like the others.
const std::vector<std::string> kLauncherOptions = {"--hosts",
                                                   "--hosts-file",
                                                   "--ssh",
                                                   "--ssh-arg",
                                                   "--ssh-identity",
                                                   "--ssh-known-hosts",
                                                   "--ssh-host-key-checking",
                                                   "--ssh-port",
                                                   "--remote-engine-program",
                                                   "--remote-profile-dir",
                                                   "--mpiexec",
                                                   "--mpi-arg",
                                                   "--queue",
                                                   "--batch-arg",
                                                   "--batch-template",
                                                   "--job-name"};

// CLI11 reads a config file into the options of the app itself, while ours belong to the
// subcommands. So each configurable option gets a hidden twin on the app, which the file
// sets; after the parse, a twin's value goes to the chosen subcommand's option when the
// command line did not set it, through that option's own checks and conversion.
class ConfigTwins {
 public:
  explicit ConfigTwins(CLI::App& app) : app_(app) {}

  // Makes `option` of `sub` configurable under its long name.
  void add(CLI::App* sub, CLI::Option* option) {
    const std::string name = option->get_name();
    auto [it, fresh] = twins_.try_emplace(name);
    if (fresh) {
      it->second.twin = option->get_expected_min() == 0
                            ? app_.add_flag(name)
                            : app_.add_option(name)->expected(option->get_expected_min(),
                                                              option->get_expected_max());
      it->second.twin->group("");
    }
    it->second.options.emplace_back(sub, option);
  }
  void add(CLI::App* sub, const std::vector<std::string>& names) {
    for (const std::string& name : names)
      add(sub, sub->get_option(name));
  }

  // Gives the chosen subcommand the file's values of the options the command line left out.
  void apply(const CLI::App* sub) const {
    for (const auto& [name, twin] : twins_) {
      if (twin.twin->count() == 0) continue;
      for (const auto& [owner, option] : twin.options) {
        if (owner != sub || option->count() > 0) continue;
        option->add_result(twin.twin->results());
        option->run_callback();
      }
    }
  }

 private:
  struct Twin {
    CLI::Option* twin = nullptr;
    std::vector<std::pair<const CLI::App*, CLI::Option*>> options;
  };
  CLI::App& app_;
  std::map<std::string, Twin> twins_;
};

struct Commands {
  CLI::App* start = nullptr;
  CLI::App* stop = nullptr;
  CLI::App* engines = nullptr;
  CLI::App* status = nullptr;
};

void add_common(CLI::App* sub, Options& o) {
  ipcpp::profiles::add_profile_options(
      *sub, o.common,
      "Cluster id: names the controller's files ipcontroller-ID-*.json and the state file "
      "ipcpp-cluster-ID.json");
  ipcpp::profiles::add_log_options(*sub, o.common, "ipcluster");
}

void add_engine_options(CLI::App* sub, Options& o) {
  sub->add_option("-n,--n", o.n, "Engines to start; 0: one per CPU of this machine")
      ->type_name("N");
  sub->add_option("--load", o.load,
                  "Task library (.so) every engine loads (--load, made absolute); repeatable")
      ->type_name("LIB")
      ->take_all();
  sub->add_option("--engine-arg", o.engine_args,
                  "Argument for every engine, verbatim; repeatable (--engine-arg=--timeout=10)")
      ->type_name("ARG")
      ->take_all()
      ->allow_extra_args(false);
  sub->add_option("--engine-program", o.engine_program,
                  "Engine program: a name (looked up next to ipcpp-cluster, then on PATH) or a "
                  "path; a custom engine built with ipcpp::engine_main")
      ->type_name("PATH");
  sub->add_option("--timeout", o.timeout,
                  "Seconds to wait for the controller to be ready and the engines to register")
      ->check(CLI::PositiveNumber);
  sub->add_option("--engines", o.engine_launcher,
                  "Where engines run: local (this machine), ssh (--hosts), mpi (mpiexec), or a "
                  "batch job: slurm, pbs, sge")
      ->check(CLI::IsMember({"local", "ssh", "mpi", "slurm", "pbs", "sge"}));
  const std::string ssh = "ssh launcher";
  sub->add_option("--hosts", o.hosts,
                  "ssh hosts and their engine counts: host1:4,user@host2:8 (hosts without a "
                  "count share -n)")
      ->type_name("LIST")
      ->group(ssh);
  sub->add_option("--hosts-file", o.hosts_file,
                  "File of ssh hosts, one '[user@]host[:port] [n]' a line; # comments")
      ->type_name("FILE")
      ->group(ssh);
  sub->add_option("--ssh", o.ssh_program, "The ssh program")->type_name("PATH")->group(ssh);
  sub->add_option("--ssh-arg", o.ssh_args,
                  "Option for ssh, verbatim; repeatable (--ssh-arg=-oProxyJump=gate)")
      ->type_name("ARG")
      ->take_all()
      ->allow_extra_args(false)
      ->group(ssh);
  sub->add_option("--ssh-identity", o.ssh_identity, "ssh's identity file (-i)")
      ->type_name("FILE")
      ->group(ssh);
  sub->add_option("--ssh-known-hosts", o.ssh_known_hosts,
                  "Known-hosts file that holds the hosts' keys (UserKnownHostsFile)")
      ->type_name("FILE")
      ->group(ssh);
  sub->add_option("--ssh-host-key-checking", o.ssh_host_key_checking,
                  "StrictHostKeyChecking: yes, accept-new or no (default: ssh's setting)")
      ->check(CLI::IsMember({"yes", "accept-new", "no"}))
      ->group(ssh);
  sub->add_option("--ssh-port", o.ssh_port, "ssh port for hosts that give none")
      ->check(CLI::Range(1, 65535))
      ->group(ssh);
  sub->add_option("--remote-engine-program", o.remote_engine_program,
                  "The engine program on the hosts: a name on their PATH, or a path there")
      ->type_name("PATH")
      ->group(ssh);
  sub->add_option("--remote-profile-dir", o.remote_profile_dir,
                  "Profile directory on the hosts, where the connection file is copied (default: "
                  "this profile's path relative to home, e.g. ~/.ipython/profile_default)")
      ->type_name("DIR")
      ->group(ssh);
  const std::string mpi = "mpi launcher";
  sub->add_option("--mpiexec", o.mpiexec, "The mpiexec program")->type_name("PATH")->group(mpi);
  sub->add_option("--mpi-arg", o.mpi_args,
                  "Argument for mpiexec, before the engine command; repeatable "
                  "(--mpi-arg=--hostfile --mpi-arg=hosts)")
      ->type_name("ARG")
      ->take_all()
      ->allow_extra_args(false)
      ->group(mpi);
  const std::string batch = "slurm, pbs and sge launchers";
  sub->add_option("--queue", o.queue, "Slurm partition, or PBS / SGE queue")
      ->type_name("NAME")
      ->group(batch);
  sub->add_option("--batch-arg", o.batch_args,
                  "Argument for sbatch / qsub; repeatable (--batch-arg=--time=2:00:00)")
      ->type_name("ARG")
      ->take_all()
      ->allow_extra_args(false)
      ->group(batch);
  sub->add_option("--batch-template", o.batch_template,
                  "Job script template (default: <profile>/<system>_engines.template if it "
                  "exists, else the built-in one; see docs/cluster.md)")
      ->type_name("FILE")
      ->group(batch);
  sub->add_option("--job-name", o.job_name, "Batch job name (default: ipcpp-engines[-ID])")
      ->type_name("NAME")
      ->group(batch);
}

Commands build_cli(CLI::App& app, Options& o, ConfigTwins& twins) {
  app.option_defaults()->always_capture_default();
  app.require_subcommand(1);
  Commands c;

  c.start = app.add_subcommand(
      "start", "Start a controller and N engines, and wait until the engines have registered");
  add_engine_options(c.start, o);
  c.start
      ->add_option("--controller", o.controller_launcher,
                   "Where the controller runs: local, ssh (on --controller-host), or as a "
                   "slurm, pbs or sge job (the profile directory must be shared with its node)")
      ->check(CLI::IsMember({"local", "ssh", "slurm", "pbs", "sge"}));
  c.start
      ->add_option("--controller-host", o.controller_host,
                   "The controller's ssh host: [user@]host[:port]; the ssh options are the "
                   "engines' (--ssh-identity, ...)")
      ->type_name("HOST");
  c.start
      ->add_option("--remote-controller-program", o.remote_controller_program,
                   "The controller program on --controller-host: a name on its PATH, or a path")
      ->type_name("PATH");
  c.start
      ->add_option("--controller-arg", o.controller_args,
                   "Argument for the controller, verbatim; repeatable "
                   "(--controller-arg=--ping=500); also anything after --")
      ->type_name("ARG")
      ->take_all()
      ->allow_extra_args(false);
  c.start
      ->add_option("--delay", o.delay,
                   "Seconds between the controller being ready and starting the engines")
      ->check(CLI::NonNegativeNumber);
  c.start->add_flag("--daemonize", o.daemonize,
                    "Leave the cluster running and return once the engines have registered "
                    "(default: stay in the foreground until Ctrl-C)");
  c.start
      ->add_option("--stop-timeout", o.stop_timeout,
                   "Seconds stopping waits after SIGTERM before SIGKILL")
      ->check(CLI::NonNegativeNumber);
  c.start->add_option("CONTROLLER_ARGS", o.controller_rest,
                      "After --: arguments for the controller, as ipcluster passes them");
  add_common(c.start, o);
  twins.add(c.start, {"-n", "--load", "--engine-arg", "--engine-program", "--timeout", "--engines",
                      "--controller", "--controller-arg", "--delay", "--daemonize",
                      "--stop-timeout", "--cluster-id", "--log-level", "--log-to-file",
                      "--controller-host", "--remote-controller-program"});
  twins.add(c.start, kLauncherOptions);

  c.stop = app.add_subcommand("stop", "Stop the cluster: its engines, then its controller");
  c.stop
      ->add_option("--stop-timeout", o.stop_timeout, "Seconds to wait after SIGTERM before SIGKILL")
      ->check(CLI::NonNegativeNumber);
  add_common(c.stop, o);
  twins.add(c.stop, {"--stop-timeout", "--cluster-id", "--log-level", "--log-to-file"});

  c.engines = app.add_subcommand(
      "engines", "Add N engines to the running cluster and wait until they have registered");
  add_engine_options(c.engines, o);
  add_common(c.engines, o);
  twins.add(c.engines, {"-n", "--load", "--engine-arg", "--engine-program", "--timeout",
                        "--engines", "--cluster-id", "--log-level", "--log-to-file"});
  twins.add(c.engines, kLauncherOptions);

  c.status = app.add_subcommand(
      "status", "What runs: the cluster's processes, its engines per host, their queues");
  c.status
      ->add_option("--timeout", o.status_timeout, "Seconds to wait for the controller to answer")
      ->check(CLI::PositiveNumber);
  add_common(c.status, o);
  twins.add(c.status, {"--cluster-id", "--log-level", "--log-to-file"});

  app.footer(
      "Options may also be set in <profile>/ipcpp_cluster.toml (ipcpp-profile create writes it "
      "with every option commented); the command line overrides the file. Exit status: 0 ok, "
      "1 a runtime failure, 2 a wrong command line, 10 a cluster is already running, 11 no "
      "cluster file (nothing to stop), 12 no cluster is running.");
  return c;
}

// Blocks the signals that stop a foreground cluster and returns a signalfd for them.
int block_stop_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  if (::pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
    throw std::runtime_error("cannot block SIGINT and SIGTERM");
  }
  const int fd = ::signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (fd < 0) throw std::system_error(errno, std::system_category(), "signalfd");
  return fd;
}

// The name of the signal waiting on `fd`, or "a signal".
std::string received_signal(int fd) {
  signalfd_siginfo info{};
  if (::read(fd, &info, sizeof info) != static_cast<ssize_t>(sizeof info)) return "a signal";
  const char* name = ::sigabbrev_np(static_cast<int>(info.ssi_signo));
  return name != nullptr ? std::string("SIG") + name : "a signal";
}

Seconds seconds(double s) {
  return Seconds(s);
}

// Throws std::invalid_argument for a wrong host list (a usage error).
EngineOptions engine_options(const Options& o) {
  EngineOptions e;
  e.launcher = parse_launcher(o.engine_launcher);
  if (e.launcher == Launcher::kSsh) {
    if (!o.hosts.empty()) e.ssh.hosts = parse_hosts_option(o.hosts);
    if (!o.hosts_file.empty()) {
      const auto more = parse_hosts_file(o.hosts_file);
      e.ssh.hosts.insert(e.ssh.hosts.end(), more.begin(), more.end());
    }
    if (e.ssh.hosts.empty()) {
      throw std::invalid_argument("--engines ssh needs --hosts or --hosts-file");
    }
  }
  e.ssh.program = o.ssh_program;
  e.ssh.args = o.ssh_args;
  e.ssh.identity = o.ssh_identity;
  e.ssh.known_hosts = o.ssh_known_hosts;
  e.ssh.host_key_checking = o.ssh_host_key_checking;
  e.ssh.port = o.ssh_port;
  e.ssh.remote_engine_program = o.remote_engine_program;
  e.ssh.remote_profile_dir = o.remote_profile_dir;
  e.mpi.mpiexec = o.mpiexec;
  e.mpi.args = o.mpi_args;
  e.batch.queue = o.queue;
  e.batch.submit_args = o.batch_args;
  e.batch.template_file = o.batch_template;
  e.batch.job_name = o.job_name;
  e.n = o.n;
  e.program = o.engine_program;
  e.load = o.load;
  e.args = o.engine_args;
  e.timeout = seconds(o.timeout);
  return e;
}

int run_start(const Options& o, const EngineOptions& engines, Cluster& cluster, int signal_fd,
              const std::shared_ptr<spdlog::logger>& log) {
  StartOptions options;
  options.engines = engines;
  options.controller_args = o.controller_args;
  options.controller_args.insert(options.controller_args.end(), o.controller_rest.begin(),
                                 o.controller_rest.end());
  options.delay = seconds(o.delay);
  options.watched = !o.daemonize;
  options.controller_launcher = parse_launcher(o.controller_launcher);
  options.remote_controller_program = o.remote_controller_program;
  if (options.controller_launcher == Launcher::kSsh) {
    if (o.controller_host.empty()) {
      std::cerr << "ipcpp-cluster: --controller ssh needs --controller-host (see ipcpp-cluster "
                   "--help)\n";
      return kExitUsage;
    }
    // [user@]host[:port]: the port after the colon, as in a hosts file.
    SshHost host;
    const auto colon = o.controller_host.rfind(':');
    host.destination = o.controller_host.substr(0, colon);
    if (colon != std::string::npos) {
      try {
        const std::string port = o.controller_host.substr(colon + 1);
        std::size_t used = 0;
        host.port = std::stoi(port, &used);
        if (used != port.size() || host.port < 1 || host.port > 65535) {
          throw std::invalid_argument(port);
        }
      } catch (const std::exception&) {
        std::cerr << "ipcpp-cluster: --controller-host " << o.controller_host
                  << ": the ssh port after ':' must be a number (see ipcpp-cluster --help)\n";
        return kExitUsage;
      }
    }
    options.controller_host = host;
  }
  const ClusterState state = cluster.start(options);
  if (o.daemonize) {
    std::cout << "Leaving cluster running: " << cluster.state_file().string() << std::endl;
    return kExitOk;
  }
  const std::size_t n = state.engine_count();
  log->info("cluster running: {} engine{} (Ctrl-C to stop)", n, n == 1 ? "" : "s");
  const WatchEnd end = cluster.watch();
  int code = kExitOk;
  if (end.reason == WatchEnd::Reason::kInterrupted) {
    log->info("{}: stopping the cluster", received_signal(signal_fd));
  } else {
    std::cerr << "ipcpp-cluster: " << end.message << "\nipcpp-cluster: stopping the cluster"
              << std::endl;
    code = kExitFailure;
  }
  try {
    std::cout << format_stop_report(cluster.stop()) << std::flush;
  } catch (const ClusterError& e) {
    if (e.exit_code() != kExitNoClusterFile) throw;
    log->info("the cluster was stopped by someone else ({} is gone)",
              cluster.state_file().string());
  }
  return code;
}

int run(const Options& o, const Commands& c, CLI::App* chosen) {
  std::optional<EngineOptions> engines;
  if (chosen == c.start || chosen == c.engines) {
    try {
      engines = engine_options(o);
    } catch (const std::invalid_argument& e) {
      std::cerr << "ipcpp-cluster: " << e.what() << " (see ipcpp-cluster --help)\n";
      return kExitUsage;
    }
  }
  const auto log = ipcpp::profiles::make_program_logger("ipcpp-cluster", o.common, "ipcluster");
  if (!o.common.log_to_file) log->set_pattern("%n: %v");

  const int signal_fd = chosen == c.start || chosen == c.engines ? block_stop_signals() : -1;
  ClusterOptions options;
  options.profile_dir = o.common.profile.resolve().dir();
  options.cluster_id = o.common.cluster_id;
  options.stop_timeout = seconds(o.stop_timeout);
  options.interrupt_fd = signal_fd;
  options.log = log;
  Cluster cluster(options);

  if (chosen == c.start) return run_start(o, *engines, cluster, signal_fd, log);
  if (chosen == c.engines) {
    const std::string set = cluster.add_engines(*engines);
    std::cout << "Added engine set " << set << " to the cluster: " << cluster.state_file().string()
              << std::endl;
    return kExitOk;
  }
  if (chosen == c.stop) {
    const StopReport report = cluster.stop();
    std::cout << format_stop_report(report) << std::flush;
    return report.complete() ? kExitOk : kExitFailure;
  }
  const StatusReport status = cluster.status(seconds(o.status_timeout));
  std::cout << format_status(status) << std::flush;
  if (status.answered) return kExitOk;
  if (status.state && status.controller_alive) return kExitFailure;  // runs, does not answer
  std::cerr << "ipcpp-cluster: no cluster is running in " << options.profile_dir.string()
            << std::endl;
  return kExitNoCluster;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "Start, stop, grow and inspect a cluster of one ipcpp-controller and ipcpp-engines on "
      "this machine, like ipyparallel's ipcluster.",
      "ipcpp-cluster");
  Options options;
  ConfigTwins twins(app);
  const Commands commands = build_cli(app, options, twins);
  try {
    ipcpp::profiles::use_profile_config(app, argc, argv, "cluster");
    app.parse(argc, argv);
    CLI::App* chosen = app.get_subcommands().front();
    twins.apply(chosen);
    ipcpp::profiles::log_level_option(options.common.log_level);
    return run(options, commands, chosen);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::string what = e.what();
    const std::vector<std::string> rest = app.remaining();
    if (app.get_subcommands().empty() && !rest.empty() && !rest.front().starts_with("-")) {
      what = "unknown subcommand '" + rest.front() + "': use start, stop, engines or status";
    }
    std::cerr << "ipcpp-cluster: " << what << " (see ipcpp-cluster --help)\n";
    return kExitUsage;
  } catch (const ClusterError& e) {
    std::cerr << "ipcpp-cluster: " << e.what() << '\n';
    return e.exit_code();
  } catch (const std::exception& e) {
    std::cerr << "ipcpp-cluster: " << e.what() << '\n';
    return kExitFailure;
  }
}
