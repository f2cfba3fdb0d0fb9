// A single-node Slurm cluster on this machine for end-to-end tests of launchers that use
// sbatch, squeue and scancel: slurmctld and slurmd in the foreground, on free ports, with their
// own slurm.conf, state, spool and logs in a temporary directory, authenticated by a munged of
// its own (its key and socket in that directory) when munge is installed, else by nothing
// (auth/none, cred/none). The node is this host (named as slurmd finds it: the short host name) at
// 127.0.0.1, with 8 CPUs whatever the machine has, so that several one-CPU jobs run at once.
// Slurm's commands reach this cluster only with env() (SLURM_CONF) in their environment.
//
// The destructor cancels every job of the current user in this cluster, waits up to 10 s for
// them to go, then stops slurmd, slurmctld and munged (SIGTERM to each one's process group).
//
// Thread-safety: a SlurmCluster is used from one thread at a time; its accessors are const.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace ipcpp::test {

class SlurmCluster {
 public:
  // Writes the configuration, starts slurmctld and then slurmd, and waits up to 30 s for the
  // node to be idle. Picks other ports and tries again (up to 3 times in all) when a daemon
  // could not bind its port. Throws std::runtime_error with the daemons' output and log tails
  // if the cluster does not come up.
  SlurmCluster();
  ~SlurmCluster();
  SlurmCluster(const SlurmCluster&) = delete;
  SlurmCluster& operator=(const SlurmCluster&) = delete;

  // nullopt if slurmctld, slurmd, sbatch, squeue, scancel and sinfo are on PATH (or in
  // /usr/sbin); otherwise what is missing, e.g. "slurmd is not on PATH or in /usr/sbin (...)".
  static std::optional<std::string> unavailable();

  // The path of slurm.conf.
  const std::filesystem::path& conf() const { return conf_; }
  // {{"SLURM_CONF", conf()}}: the environment for ProcessOptions::env of Slurm commands.
  std::map<std::string, std::string> env() const;
  // The temporary directory (mode 0755) holding slurm.conf, state/, spool/ and log/.
  const std::filesystem::path& dir() const { return dir_.path(); }
  // Whether the daemons authenticate with munge (else auth/none).
  bool uses_munge() const { return !munge_socket_.empty(); }
  // The node's name (the short host name).
  const std::string& node_name() const { return node_name_; }

  // Returns what `squeue -h -o "%i %T"` prints: one "JOBID STATE" line per job still pending,
  // running or completing (an array task's id is "ARRAYJOBID_TASKID"), "" when none is left.
  // Throws std::runtime_error with its stderr if squeue fails.
  std::string squeue() const;

 private:
  // Picks ports, writes slurm.conf, starts both daemons and waits for the node. Returns ""
  // on success; otherwise stops them and returns what went wrong, with their output and logs.
  std::string start();

  // Starts munged with a new key and its socket under the temporary directory, once; returns
  // "" when it is ready, else what went wrong.
  std::string start_munge();

  TempDir dir_;  // first: removed after the daemons have stopped
  std::filesystem::path conf_;
  std::string node_name_;
  std::string cluster_name_;
  std::filesystem::path munge_socket_;  // empty: no munge (auth/none)
  std::unique_ptr<Process> munged_;
  std::unique_ptr<Process> slurmctld_;
  std::unique_ptr<Process> slurmd_;
};

}  // namespace ipcpp::test
