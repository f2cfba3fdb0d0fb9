// The state file of a cluster started by ipcpp-cluster: security/ipcpp-cluster[-<id>].json
// in the profile (mode 0600, replaced atomically), ipcluster's cluster-<id>.json for ipcpp.
//
//   {
//     "profile_dir": "/home/u/.ipython/profile_default",
//     "cluster_id": "",
//     "start_time": "2026-11-21T08:26:12.742857Z",
//     "watcher": {"pid": 4100, "command": ["/usr/bin/ipcpp-cluster", "start", "-n", "2"]},
//     "controller": {"pid": 4101, "log": ".../log/ipcontroller--4101.log",
//                    "command": ["/usr/bin/ipcpp-controller", "--profile-dir", "..."]},
//     "engine_sets": {
//       "1": {"launcher": "local", "n": 2, "start_time": "...",
//             "command": ["/usr/bin/ipcpp-engine", "..."],
//             "engines": [{"pid": 4102, "log": "..."}, {"pid": 4103, "log": "..."}]},
//       "2": {"launcher": "ssh", "n": 2, "command": ["ipcpp-engine", "..."],
//             "ssh": ["ssh", "-i", "/home/u/.ssh/lab"],
//             "hosts": [{"destination": "u@node1", "port": 0, "profile_dir": "...",
//                        "engines": [{"pid": 977, "log": "..."}, {"pid": 978, "log": "..."}]}]},
//       "3": {"launcher": "slurm", "n": 8, "job_id": "4711", "script": ".../slurm-engines-3.sh"}
//     }
//   }
//
// "watcher" is there only while a foreground `ipcpp-cluster start` watches the cluster.
// Engine set ids are "1", "2", ... in the order the sets were started.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ipcpp::cluster {

struct ProcessRecord {
  std::int64_t pid = 0;  // 0: none
  std::string log;
  std::vector<std::string> command;  // argv; command[0] is the program's absolute path
  // The controller's launcher: local, ssh (pid and log on `destination`), slurm, pbs or sge
  // (a batch job; pid 0). The fields below are the controller's only.
  std::string launcher = "local";
  std::string destination;       // ssh: [user@]host
  int port = 0;                  // ssh: its port; 0: ssh's default
  std::string profile_dir;       // ssh: the profile directory on that host
  std::vector<std::string> ssh;  // ssh: the ssh program and options
  std::string job_id;            // batch: the job
  std::string script;            // batch: the job script submitted
};

struct EngineRecord {
  std::int64_t pid = 0;
  std::string log;
};

// An ssh engine set's engines on one host.
struct HostRecord {
  std::string destination;            // [user@]host, as ssh takes it
  int port = 0;                       // ssh's port; 0: ssh's default
  std::string profile_dir;            // the profile directory on that host
  std::vector<EngineRecord> engines;  // pids and log files on that host
};

struct EngineSetRecord {
  // How the set was started: local, ssh, mpi, slurm, pbs or sge. Files written before there
  // were launchers have none: local.
  std::string launcher = "local";
  std::size_t n = 0;                 // engines asked for
  std::string start_time;            // UTC ISO 8601
  std::vector<std::string> command;  // argv of every engine of the set (ssh: on each host)
  // local: one entry per engine; mpi: mpiexec itself (it ends its engines when it ends).
  std::vector<EngineRecord> engines;
  std::vector<HostRecord> hosts;  // ssh: per host
  std::vector<std::string> ssh;   // ssh: the ssh program and options, without host and port
  std::string job_id;             // slurm, pbs, sge: the batch job
  std::string script;             // slurm, pbs, sge: the job script submitted
};

struct ClusterState {
  std::string profile_dir;
  std::string cluster_id;
  std::string start_time;  // UTC ISO 8601
  ProcessRecord watcher;   // pid 0 when no foreground ipcpp-cluster watches the cluster
  ProcessRecord controller;
  std::map<std::string, EngineSetRecord> engine_sets;

  // The set ids in the order they were started ("2" before "10").
  std::vector<std::string> set_ids() const;
  // The id for a new set: one more than the largest so far ("1" for the first).
  std::string next_set_id() const;
  // The engines of every set (their n).
  std::size_t engine_count() const;
};

// Reads the state file. Returns nullopt if `path` does not exist.
// Throws std::runtime_error "cannot read the state file PATH: REASON" if it cannot be read or
// is not a state file.
std::optional<ClusterState> read_state(const std::filesystem::path& path);

// Writes `state` to `path` atomically, mode 0600.
// Throws std::system_error naming the path if it cannot be written.
void write_state(const std::filesystem::path& path, const ClusterState& state);

// The JSON text of a state file, and back (throws std::runtime_error with the reason).
std::string to_json_text(const ClusterState& state);
ClusterState state_from_json_text(const std::string& text);

// An exclusive lock on the state files of a profile (flock on the directory that holds the
// state file, security/), held from construction to destruction, so that commands run at the
// same time in one profile see each other's changes. Not re-entrant: a process must not take
// it twice at once (the second would wait forever).
class StateLock {
 public:
  // Blocks until the lock is held. Throws std::system_error naming the directory if it
  // cannot be opened.
  explicit StateLock(const std::filesystem::path& state_file);
  ~StateLock();
  StateLock(const StateLock&) = delete;
  StateLock& operator=(const StateLock&) = delete;

 private:
  int fd_ = -1;
};

}  // namespace ipcpp::cluster
