#include "profiles/config_templates.hpp"

#include <array>
#include <stdexcept>
#include <string>

namespace ipcpp::profiles {
namespace {

// Each template: a header, then for every option a description line and a commented-out
// `# name = default` line. Descriptions start with a capital letter, so that no description
// reads as an option line.

constexpr std::string_view kControllerTemplate =
    R"(# ipcpp_controller.toml: configuration of ipcpp-controller for this profile.
#
# ipcpp-controller reads this file when it starts with this profile (--profile NAME or
# --profile-dir DIR); options given on the command line override the values set here.
# Every option is listed below, commented out, with its default value: uncomment a line
# to change it. Names are the long command-line options without their leading dashes.

# Address to listen on: an IP address of this machine, or "*" for every interface.
# ip = "127.0.0.1"

# Host name that engines and clients use when ip is "*"; empty: this machine's host name.
# location = ""

# Port range for the controller's sockets, as "FIRST-LAST"; empty: ports chosen by the OS.
# ports = ""

# Task scheduling scheme: lru, plainrandom, twobin, leastload or weighted.
# scheme = "leastload"

# Most tasks outstanding on one engine at a time (high-water mark); 0: no limit.
# hwm = 1

# Most finished tasks the task scheduler remembers for after/follow dependencies; a task that
# depends on an older one is refused (InvalidDependency).
# dependency-history = 100000

# Task store: memory, sqlite (a file in this profile, kept across restarts) or none.
# db = "memory"

# Most task records kept by the memory store; the oldest completed ones are culled first.
# record-limit = 1024

# Most bytes of buffers kept by the memory store (1 GiB).
# size-limit = 1073741824

# Heartbeat period, in milliseconds.
# heartbeat-period = 1000

# Heartbeats an engine may miss in a row before it is unregistered (3 s with the defaults).
# heartbeat-misses = 2

# Seconds a registering engine has to send its first heartbeat; 0: max(10, 10 periods).
# registration-timeout = 0

# Reuse the ports and key of existing connection files, so that engines and clients reconnect.
# reuse = false

# Cluster id: a non-empty id names the files ipcontroller-<ID>-client.json and -engine.json.
# cluster-id = ""

# Log level: trace, debug, info, warning, error or critical (or 10 to 50, as ipcontroller).
# log-level = "info"

# Write the log to a file under this profile's log/ directory instead of standard error.
# log-to-file = false
)";

constexpr std::string_view kEngineTemplate =
    R"(# ipcpp_engine.toml: configuration of ipcpp-engine for this profile.
#
# ipcpp-engine reads this file when it starts with this profile (--profile NAME or
# --profile-dir DIR); options given on the command line override the values set here.
# Every option is listed below, commented out, with its default value: uncomment a line
# to change it. Names are the long command-line options without their leading dashes.

# Engine connection file to use (a copy of ipcontroller-engine.json); empty: this profile's.
# file = ""

# Cluster id: use this profile's ipcontroller-<ID>-engine.json.
# cluster-id = ""

# Task libraries (.so) to load at start-up. Default: none. For example:
#   load = ["/opt/lab/libtasks.so", "/opt/lab/libimages.so"]

# Seconds to wait for the connection file, and for the controller to answer the registration.
# timeout = 5

# Seconds without a heartbeat from the controller after which the engine exits; 0: never.
# controller-timeout = 60

# Host to reach the controller at when its connection file says ip "*"; empty: its location.
# location = ""

# Send what tasks write to file descriptors 1 and 2 (printf, child processes) to their
# clients, as std::cout and std::cerr output is; false: it goes to the engine's own output.
# capture-fd-output = true

# Log level: trace, debug, info, warning, error or critical.
# log-level = "info"

# Write the log to a file under this profile's log/ directory instead of standard error.
# log-to-file = false
)";

constexpr std::string_view kClusterTemplate =
    R"(# ipcpp_cluster.toml: configuration of ipcpp-cluster for this profile.
#
# ipcpp-cluster reads this file when it starts with this profile (--profile NAME or
# --profile-dir DIR); options given on the command line override the values set here.
# Every option is listed below, commented out, with its default value: uncomment a line
# to change it. Names are the long command-line options without their leading dashes.
# Each option applies to the subcommands that take it (start, stop, engines, status).

# Engines to start (start -n, engines -n); 0: one per CPU of this machine.
# n = 0

# Where engines run: local (this machine), ssh (on --hosts), mpi (under mpiexec), or as a
# batch job: slurm, pbs or sge.
# engines = "local"

# Where the controller runs: local (this machine), ssh (on controller-host), or as a slurm,
# pbs or sge job (the profile directory must then be shared with the node that runs it).
# controller = "local"

# The controller's ssh host, [user@]host[:port], for controller = "ssh". For example:
#   controller-host = "head.lab.example"
# The controller program on that host (a name on its PATH, or a path there).
# remote-controller-program = "ipcpp-controller"

# ssh launcher. Hosts and their engine counts, or a file of hosts ("[user@]host[:port] [n]"
# a line). Default: none. For example:
#   hosts = "node1:4,alice@node2:8"
#   hosts-file = "/home/alice/lab-hosts"
# The ssh program, more options for it, and how it authenticates. For example:
#   ssh-arg = ["-oProxyJump=gateway"]
#   ssh-identity = "/home/alice/.ssh/lab_ed25519"
#   ssh-known-hosts = "/home/alice/.ssh/lab_known_hosts"
#   ssh-host-key-checking = "accept-new"
#   ssh-port = 2222
# ssh = "ssh"
# The engine program on the hosts (a name on their PATH, or a path there).
# remote-engine-program = "ipcpp-engine"
# The profile directory on the hosts; empty: this profile's path relative to home.
# remote-profile-dir = ""

# mpi launcher: the mpiexec program, and more arguments for it. For example:
#   mpi-arg = ["--hostfile", "/home/alice/mpi-hosts"]
# mpiexec = "mpiexec"

# slurm, pbs and sge launchers: more sbatch/qsub arguments, and the job script template
# (default: <profile>/<system>_engines.template if it exists, else the built-in one). For
# example:
#   batch-arg = ["--time=2:00:00", "--account=lab"]
#   batch-template = "/home/alice/slurm_engines.template"
# The Slurm partition, or the PBS or SGE queue; empty: the system's default.
# queue = ""
# The batch job's name; empty: ipcpp-engines[-<cluster id>].
# job-name = ""

# Seconds between the controller being ready and starting the engines.
# delay = 0

# Leave the cluster running in the background once the engines have registered.
# daemonize = false

# Seconds to wait for the controller to be ready and for the engines to register.
# timeout = 60

# Seconds stopping waits after SIGTERM before it sends SIGKILL.
# stop-timeout = 5

# Engine program: a name (looked up next to ipcpp-cluster, then on PATH) or a path.
# engine-program = "ipcpp-engine"

# Task libraries (.so) that every engine loads. Default: none. For example:
#   load = ["/opt/lab/libtasks.so", "/opt/lab/libimages.so"]

# More arguments for every engine, passed verbatim. Default: none. For example:
#   engine-arg = ["--controller-timeout=120"]

# More arguments for the controller, passed verbatim. Default: none. For example:
#   controller-arg = ["--ping=500", "--scheme=lru"]

# Cluster id: a non-empty id names ipcontroller-<ID>-*.json and the state file
# ipcpp-cluster-<ID>.json.
# cluster-id = ""

# Log level of ipcpp-cluster's own messages: trace, debug, info, warning, error or critical.
# log-level = "info"

# Write ipcpp-cluster's messages to a file under this profile's log/ directory instead of
# standard error.
# log-to-file = false
)";

constexpr std::string_view kPxTemplate =
    R"(# ipcpp_px.toml: configuration of ipcpp-px for this profile.
#
# ipcpp-px reads this file when it starts with this profile (--profile NAME or
# --profile-dir DIR); options given on the command line override the values set here.
# Every option is listed below, commented out, with its default value: uncomment a line
# to change it. Names are the long command-line options without their leading dashes.

# Engines to run on: "all", or engine ids separated by commas, such as "0,2".
# targets = "all"
)";

constexpr std::array<std::string_view, 4> kPrograms = {"controller", "engine", "cluster", "px"};
constexpr std::array<std::string_view, 4> kTemplates = {kControllerTemplate, kEngineTemplate,
                                                        kClusterTemplate, kPxTemplate};

}  // namespace

std::span<const std::string_view> config_programs() {
  return kPrograms;
}

std::string_view config_template(std::string_view program) {
  for (std::size_t i = 0; i < kPrograms.size(); ++i) {
    if (kPrograms[i] == program) return kTemplates[i];
  }
  throw std::invalid_argument("no config template for program \"" + std::string(program) + "\"");
}

}  // namespace ipcpp::profiles
