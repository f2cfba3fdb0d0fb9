// ipcpp-cluster in end-to-end tests: a temporary profile in which tests run the real program,
// and the cleanup that never leaves the cluster's processes behind.
//
// Thread-safety: a ClusterProfile is used from one thread.
#pragma once

#include <filesystem>
#include <string>
#include <sys/types.h>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace ipcpp::test {

// Engines register within a heartbeat period or two.
inline const std::string kFastController = "--controller-arg=--ping=200";

// The path of the built ipcpp-cluster.
std::string cluster_tool();

// Options that keep a program's IPYTHONDIR and HOME inside `tmp`.
ProcessOptions isolated(const TempDir& tmp);

// This machine's host name.
std::string host_name();

// True if `pid` runs (a zombie has ended) and its argv[0] is `program`.
bool runs(pid_t pid, const std::string& program);

struct Recorded {
  pid_t pid;
  std::string program;
  std::string role;
};

// Every process a state file records on this machine: the controller, each local engine, each
// mpiexec, and each ssh engine (the tests' ssh hosts are this machine).
std::vector<Recorded> recorded_processes(const nlohmann::json& state);

// A profile for one test, and the cluster processes started in it: whatever the test does,
// the destructor SIGKILLs every process it has seen in the state file that still runs its
// recorded program (never another process that got the pid later).
class ClusterProfile {
 public:
  ClusterProfile();
  ~ClusterProfile();
  ClusterProfile(const ClusterProfile&) = delete;
  ClusterProfile& operator=(const ClusterProfile&) = delete;

  const std::filesystem::path& dir() const { return dir_; }
  const TempDir& tmp() const { return tmp_; }
  const ProcessOptions& options() const { return options_; }
  // Adds variables to the environment of the programs it runs.
  void set_env(const std::string& name, const std::string& value) { options_.env[name] = value; }
  std::filesystem::path state_file() const { return dir_ / "security" / "ipcpp-cluster.json"; }

  // Runs ipcpp-cluster SUBCOMMAND --profile-dir DIR ARGS... to completion.
  RunResult run(const std::string& subcommand, std::vector<std::string> args = {});

  // Starts ipcpp-cluster SUBCOMMAND --profile-dir DIR ARGS... and returns at once.
  Process spawn(const std::string& subcommand, std::vector<std::string> args = {});

  // The state file's JSON (null when there is none), remembering its processes.
  nlohmann::json state(const std::string& cluster_id = "");
  // Remembers the processes of every state file of the profile.
  void remember();

 private:
  TempDir tmp_;
  ProcessOptions options_;
  std::filesystem::path dir_;
  std::vector<Recorded> seen_;
};

bool all_running(const std::vector<Recorded>& processes);
bool none_running(const std::vector<Recorded>& processes);

// The files of `dir` whose names start with `prefix`.
std::vector<std::filesystem::path> files_in(const std::filesystem::path& dir,
                                            const std::string& prefix);

}  // namespace ipcpp::test
