#include "support/slurm.hpp"

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <unistd.h>

#include "support/files.hpp"
#include "support/host.hpp"

namespace ipcpp::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kAttempts = 3;
constexpr std::chrono::milliseconds kPoll = 200ms;

// The host name up to its first '.', as slurmd looks itself up in slurm.conf.
std::string short_host_name() {
  std::array<char, 256> name{};
  if (::gethostname(name.data(), name.size() - 1) != 0) {
    throw std::system_error(errno, std::system_category(), "gethostname");
  }
  std::string host(name.data());
  return host.substr(0, host.find('.'));
}

// "ipcpptest" and 6 random lowercase letters.
std::string unique_cluster_name() {
  std::random_device seed;
  std::mt19937 generator(seed());
  std::uniform_int_distribution<int> letter('a', 'z');
  std::string name = "ipcpptest";
  for (int i = 0; i < 6; ++i)
    name += static_cast<char>(letter(generator));
  return name;
}

// The last `lines` lines of a text.
std::string tail_lines(const std::string& text, std::size_t lines = 30) {
  std::size_t begin = text.size();
  for (std::size_t n = 0; n < lines && begin > 0; ++n)
    begin = begin >= 2 ? text.rfind('\n', begin - 2) + 1 : 0;  // npos + 1 == 0
  return text.substr(begin);
}

// The last `lines` lines of a file, or a note that it is missing.
std::string tail(const fs::path& path, std::size_t lines = 30) {
  if (!fs::exists(path)) return path.string() + " does not exist\n";
  return tail_lines(read_text(path), lines);
}

// find_program, or an exception naming the program.
std::string program(const std::string& name) {
  std::string path = find_program(name);
  if (path.empty()) throw std::runtime_error(name + " is not on PATH or in /usr/sbin");
  return path;
}

}  // namespace

SlurmCluster::SlurmCluster()
    : conf_(dir_.path() / "slurm.conf"),
      node_name_(short_host_name()),
      cluster_name_(unique_cluster_name()) {
  // The daemons (and job steps) open files here; mkdtemp made it 0700.
  fs::permissions(dir_.path(), fs::perms(0755));
  std::string errors;
  for (int attempt = 1; attempt <= kAttempts; ++attempt) {
    const std::string error = start();
    if (error.empty()) return;
    errors += "attempt " + std::to_string(attempt) + ": " + error;
    if (error.find("Address already in use") == std::string::npos) break;
  }
  throw std::runtime_error("the Slurm cluster did not come up:\n" + errors);
}

std::string SlurmCluster::start() {
  const fs::path& dir = dir_.path();
  const fs::path log_dir = dir / "log";
  // A fresh start each time: no state or logs of an attempt that failed.
  for (const char* sub : {"state", "spool", "log"}) {
    fs::remove_all(dir / sub);
  }
  fs::create_directories(dir / "state");
  fs::create_directories(dir / "spool" / ("slurmd." + node_name_));
  fs::create_directories(log_dir);

  if (munge_socket_.empty() && !find_program("munged").empty() &&
      !find_program("mungekey").empty()) {
    if (std::string error = start_munge(); !error.empty()) return error;
  }
  const std::vector<int> ports = free_ports(2);
  const std::string user = current_user();
  const std::string state_dir = (dir / "state").string();
  const std::string spool = (dir / "spool").string();
  const std::vector<std::string> conf_lines = {
      "ClusterName=" + cluster_name_,
      "SlurmctldHost=" + node_name_ + "(127.0.0.1)",
      "SlurmctldPort=" + std::to_string(ports[0]),
      "SlurmdPort=" + std::to_string(ports[1]),
      "SlurmUser=" + user,
      "SlurmdUser=" + user,
      munge_socket_.empty() ? "AuthType=auth/none" : "AuthType=auth/munge",
      munge_socket_.empty() ? "CredType=cred/none" : "CredType=cred/munge",
      munge_socket_.empty() ? "" : "AuthInfo=socket=" + munge_socket_.string(),
      "StateSaveLocation=" + state_dir,
      "SlurmdSpoolDir=" + spool + "/slurmd.%n",
      "SlurmctldPidFile=" + dir.string() + "/slurmctld.pid",
      "SlurmdPidFile=" + dir.string() + "/slurmd.%n.pid",
      "SlurmctldLogFile=" + log_dir.string() + "/slurmctld.log",
      "SlurmdLogFile=" + log_dir.string() + "/slurmd.%n.log",
      "ProctrackType=proctrack/linuxproc",
      "TaskPlugin=task/none",
      "JobAcctGatherType=jobacct_gather/none",
      "AccountingStorageType=accounting_storage/none",
      "JobCompType=jobcomp/none",
      "MpiDefault=none",
      "SwitchType=switch/none",
      "SchedulerType=sched/backfill",
      "SelectType=select/cons_tres",
      "SelectTypeParameters=CR_Core",
      "ReturnToService=2",
      "SlurmctldTimeout=30",
      "SlurmdTimeout=30",
      "InactiveLimit=0",
      "KillWait=5",
      "MinJobAge=60",
      "MailProg=/bin/true",
      // Lets the node claim more CPUs than the machine has.
      "SlurmdParameters=config_overrides",
      "NodeName=" + node_name_ + " NodeAddr=127.0.0.1 CPUs=8 RealMemory=1000 State=UNKNOWN",
      "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP "
      "OverSubscribe=NO",
  };
  write_lines(conf_, conf_lines);

  ProcessOptions options;
  options.env = env();
  options.cwd = dir;
  RunResult last_sinfo{0, "", ""};
  const auto sinfo_says = [&](const std::string& state) {
    last_sinfo = run({"sinfo", "-h", "-o", "%t"}, options, 30s);
    return last_sinfo.exit_code == 0 && (state.empty() || last_sinfo.out == state + "\n");
  };
  const auto wait_for = [&](const std::function<bool()>& ready) {
    return wait_until(
        [&] {
          if (ready()) return true;
          std::this_thread::sleep_for(kPoll);
          return false;
        },
        30s);
  };
  // Stops both daemons and describes what went wrong, with the end of each one's log (which
  // -D also writes to stderr).
  const auto failure = [&](const std::string& what) {
    std::string text = what + "\n";
    const auto report = [&](std::unique_ptr<Process>& daemon, const std::string& name,
                            const fs::path& log) {
      if (!daemon) return;
      const bool exited = !daemon->running();
      daemon->stop();
      if (exited) text += name + " exited with status " + std::to_string(daemon->wait()) + "\n";
      const std::string output = daemon->stderr_text() + daemon->stdout_text();
      text +=
          "the end of " + name + "'s log:\n" + (output.empty() ? tail(log) : tail_lines(output));
      daemon.reset();
    };
    report(slurmd_, "slurmd", log_dir / ("slurmd." + node_name_ + ".log"));
    report(slurmctld_, "slurmctld", log_dir / "slurmctld.log");
    return text;
  };

  // slurmd registers with slurmctld as it starts: start it once slurmctld answers.
  slurmctld_ =
      std::make_unique<Process>(std::vector<std::string>{program("slurmctld"), "-D"}, options);
  wait_for([&] { return !slurmctld_->running() || sinfo_says(""); });
  if (!slurmctld_->running()) return failure("slurmctld exited");
  if (last_sinfo.exit_code != 0) {
    return failure("slurmctld did not answer within 30 s; sinfo said: " + last_sinfo.err);
  }
  slurmd_ = std::make_unique<Process>(std::vector<std::string>{program("slurmd"), "-D"}, options);
  wait_for([&] { return !slurmctld_->running() || !slurmd_->running() || sinfo_says("idle"); });
  if (!slurmctld_->running() || !slurmd_->running()) return failure("a daemon exited");
  if (last_sinfo.out != "idle\n") {
    return failure("the node was not idle within 30 s; sinfo -h -o %t said: " + last_sinfo.out +
                   last_sinfo.err);
  }
  return "";
}

std::string SlurmCluster::start_munge() {
  // munged insists that everyone may reach its socket's directory.
  const fs::path dir = dir_.path() / "munge";
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms(0755));
  const fs::path key = dir / "munge.key";
  const RunResult created =
      run({program("mungekey"), "--create", "--keyfile=" + key.string(), "--bits=1024"}, {}, 30s);
  if (created.exit_code != 0) return "mungekey failed: " + created.err;
  const fs::path socket = dir / "munge.socket";
  munged_ = std::make_unique<Process>(std::vector<std::string>{
      program("munged"), "--foreground", "--socket=" + socket.string(),
      "--key-file=" + key.string(), "--pid-file=" + (dir / "munged.pid").string(),
      "--log-file=" + (dir / "munged.log").string(),
      "--seed-file=" + (dir / "munged.seed").string()});
  if (!wait_until([&] { return !munged_->running() || fs::exists(socket); }, 10s) ||
      !munged_->running()) {
    const std::string error =
        "munged did not start: " + munged_->stderr_text() + tail(dir / "munged.log");
    munged_.reset();
    return error;
  }
  munge_socket_ = socket;
  return "";
}

SlurmCluster::~SlurmCluster() {
  try {
    ProcessOptions options;
    options.env = env();
    options.cwd = dir_.path();
    run({"scancel", "-u", current_user()}, options, 15s);
    wait_until(
        [&] {
          const RunResult result = run({"squeue", "-h"}, options, 15s);
          if (result.exit_code != 0 || result.out.empty()) return true;
          std::this_thread::sleep_for(kPoll);
          return false;
        },
        10s);
  } catch (...) {  // stop the daemons whatever happened
  }
  if (slurmd_) slurmd_->stop();
  if (slurmctld_) slurmctld_->stop();
  if (munged_) munged_->stop();
}

std::optional<std::string> SlurmCluster::unavailable() {
  for (const char* tool : {"slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo"}) {
    if (find_program(tool).empty()) {
      return std::string(tool) + " is not on PATH or in /usr/sbin (this test needs slurm-wlm)";
    }
  }
  return std::nullopt;
}

std::map<std::string, std::string> SlurmCluster::env() const {
  return {{"SLURM_CONF", conf_.string()}};
}

std::string SlurmCluster::squeue() const {
  ProcessOptions options;
  options.env = env();
  const RunResult result = run({"squeue", "-h", "-o", "%i %T"}, options, 30s);
  if (result.exit_code != 0) {
    throw std::runtime_error("squeue failed (exit code " + std::to_string(result.exit_code) +
                             "): " + result.err);
  }
  return result.out;
}

}  // namespace ipcpp::test
