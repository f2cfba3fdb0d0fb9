// Tests of the daemon fixtures in tests/support: SshServer (a throwaway sshd on 127.0.0.1) and
// SlurmCluster (a single-node Slurm). Each skips with a message when its programs are missing.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>

#include "support/files.hpp"
#include "support/process.hpp"
#include "support/slurm.hpp"
#include "support/sshd.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using ipcpp::test::ProcessOptions;
using ipcpp::test::read_text;
using ipcpp::test::run;
using ipcpp::test::RunResult;
using ipcpp::test::SlurmCluster;
using ipcpp::test::SshServer;
using ipcpp::test::TempDir;
using ipcpp::test::wait_until;
using namespace std::chrono_literals;

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

// The number of lines of squeue's output whose job id is `id` or one of its array tasks ("ID_N"),
// with state `state` ("" for any state).
int count_jobs(const std::string& squeue_output, const std::string& id, const std::string& state) {
  std::istringstream lines(squeue_output);
  std::string job;
  std::string job_state;
  int n = 0;
  while (lines >> job >> job_state) {
    const bool ours = job == id || job.starts_with(id + "_");
    if (ours && (state.empty() || job_state == state)) ++n;
  }
  return n;
}

// Polls squeue every 200 ms until `pred` holds for its output, for up to `timeout`.
template <typename Pred>
bool squeue_until(const SlurmCluster& cluster, Pred pred, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        if (pred(cluster.squeue())) return true;
        std::this_thread::sleep_for(200ms);
        return false;
      },
      timeout);
}

std::string submit(const SlurmCluster& cluster, const std::vector<std::string>& args) {
  ProcessOptions options;
  options.env = cluster.env();
  options.cwd = cluster.dir();  // slurm-N.out goes there
  const RunResult result = run(concat({"sbatch", "--parsable"}, args), options);
  REQUIRE_MESSAGE(result.exit_code == 0, result.err);
  std::string id = result.out;
  while (!id.empty() && (id.back() == '\n' || id.back() == ' '))
    id.pop_back();
  REQUIRE_MESSAGE(!id.empty(), "sbatch printed no job id");
  REQUIRE(id.find_first_not_of("0123456789") == std::string::npos);
  return id;
}

}  // namespace

TEST_CASE("SshServer: a command runs over ssh and a file copies with scp") {
  if (const auto why = SshServer::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  const SshServer server;
  const std::string port = std::to_string(server.port());
  const std::vector<std::string> options = server.ssh_options();

  const RunResult echo =
      run(concat(concat({"ssh"}, options), {"-p", port, server.destination(), "echo", "hi"}));
  CHECK_MESSAGE(echo.exit_code == 0, echo.err);
  CHECK(echo.out == "hi\n");

  TempDir local;
  const fs::path original = local.path() / "original.txt";
  const std::string content = "some bytes\nand a second line\n";
  std::ofstream(original) << content;
  const fs::path copy = server.dir() / "copy";
  const RunResult scp =
      run(concat(concat({"scp"}, options),
                 {"-P", port, original.string(), server.destination() + ":" + copy.string()}));
  CHECK_MESSAGE(scp.exit_code == 0, scp.err);
  CHECK(fs::exists(copy));
  CHECK(read_text(copy) == content);

  // A key that is not in authorized_keys is refused.
  const fs::path wrong_key = local.path() / "wrong_key";
  REQUIRE(
      run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrong_key.string()}).exit_code ==
      0);
  REQUIRE(options.at(0) == "-i");
  std::vector<std::string> wrong_options = options;
  wrong_options.at(1) = wrong_key.string();
  const RunResult refused =
      run(concat(concat({"ssh"}, wrong_options), {"-p", port, server.destination(), "echo", "hi"}));
  CHECK(refused.exit_code == 255);
  CHECK(refused.out.empty());
}

TEST_CASE("SlurmCluster: a job runs, shows in squeue and is cancelled") {
  if (const auto why = SlurmCluster::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  const SlurmCluster cluster;
  // With munge installed, the daemons and commands authenticate through the cluster's own
  // munged, as a real installation does.
  if (ipcpp::test::run({"sh", "-c", "command -v munged || test -x /usr/sbin/munged"}).exit_code ==
      0) {
    CHECK(cluster.uses_munge());
    CHECK(ipcpp::test::read_text(cluster.conf()).find("AuthType=auth/munge\n") !=
          std::string::npos);
  }
  ProcessOptions options;
  options.env = cluster.env();

  const std::string id = submit(cluster, {"--wrap", "sleep 60"});
  CHECK_MESSAGE(
      squeue_until(
          cluster, [&](const std::string& q) { return count_jobs(q, id, "RUNNING") == 1; }, 30s),
      cluster.squeue());
  CHECK(run({"scancel", id}, options).exit_code == 0);
  CHECK_MESSAGE(squeue_until(
                    cluster,
                    [&](const std::string& q) {
                      return count_jobs(q, id, "RUNNING") + count_jobs(q, id, "PENDING") == 0;
                    },
                    30s),
                cluster.squeue());

  // Four one-CPU array tasks run at once (the node has 8 CPUs).
  const std::string array = submit(cluster, {"--array=1-4", "--wrap", "sleep 60"});
  CHECK_MESSAGE(
      squeue_until(
          cluster, [&](const std::string& q) { return count_jobs(q, array, "RUNNING") == 4; }, 30s),
      cluster.squeue());
  CHECK(run({"scancel", array}, options).exit_code == 0);

  // Nothing is left: not even a job still completing.
  CHECK_MESSAGE(squeue_until(
                    cluster, [](const std::string& q) { return q.empty(); }, 30s),
                cluster.squeue());
}
