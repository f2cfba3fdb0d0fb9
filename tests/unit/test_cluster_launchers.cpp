// ipcpp-cluster's launchers beyond this machine's processes: ssh hosts (a real sshd on
// 127.0.0.1 with throwaway keys), mpiexec (Debian's Open MPI), a real single-node Slurm, and
// the job scripts of PBS and SGE against known-good ones; how each one fails.
#include <algorithm>
#include <fstream>
#include <optional>
#include <set>
#include <string>
#include <unistd.h>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "ipcpp/client.hpp"

#include "cluster/launchers.hpp"
#include "support/cluster_profile.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/slurm.hpp"
#include "support/sshd.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ipcpp::cluster;
using namespace ipcpp::test;
using nlohmann::json;
using namespace std::chrono_literals;

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// The process id of every registered engine, asked of each engine with a task.
std::set<pid_t> engine_pids(const ClusterProfile& profile, std::size_t expected) {
  ipcpp::ClientOptions options;
  options.profile_dir = profile.dir();
  const ipcpp::Client client(options);
  client.wait_for_engines(expected, ipcpp::Seconds(60));
  std::set<pid_t> pids;
  for (const std::int64_t id : client.ids()) {
    const ipcpp::Value pid = client[id].apply("getpid").get(ipcpp::Seconds(30));
    pids.insert(pid.json().get<pid_t>());
  }
  return pids;
}

// The pids of the engines a state file records for set 1 (local, or on the ssh hosts).
std::set<pid_t> recorded_engines(const json& state) {
  std::set<pid_t> pids;
  for (const Recorded& p : recorded_processes(state)) {
    if (p.role == "engine") pids.insert(p.pid);
  }
  return pids;
}

bool ipcpp_engine_runs(pid_t pid) {
  const std::string cmdline = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] == 'Z') {
    return false;
  }
  return fs::path(cmdline.substr(0, cmdline.find('\0'))).filename() == "ipcpp-engine";
}

bool none_of_them_run(const std::set<pid_t>& pids) {
  return std::none_of(pids.begin(), pids.end(), ipcpp_engine_runs);
}

// ssh options for ipcpp-cluster that reach `server` with its keys, and run the built engine.
std::vector<std::string> ssh_args(const SshServer& server, const fs::path& key = {},
                                  const std::string& engine = tool_path("ipcpp-engine")) {
  return {"--engines",
          "ssh",
          "--ssh-identity",
          key.empty() ? server.user_key().string() : key.string(),
          "--ssh-known-hosts",
          server.known_hosts().string(),
          "--ssh-host-key-checking",
          "yes",
          "--remote-engine-program",
          engine};
}

std::vector<std::string> joined(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

TEST_CASE("launchers: --hosts and hosts files read as ipcluster users write them") {
  CHECK(parse_hosts_option("node1:4,alice@node2:8,node3") ==
        std::vector<SshHost>{{"node1", 0, 4}, {"alice@node2", 0, 8}, {"node3", 0, 0}});
  CHECK_THROWS_WITH(parse_hosts_option("node1:4,,node3"), doctest::Contains("an empty host"));
  CHECK_THROWS_WITH(parse_hosts_option("node1:x"),
                    doctest::Contains("'node1:x': the engine count after ':' must be a positive"));
  CHECK_THROWS_WITH(parse_hosts_option("alice@:3"), doctest::Contains("has no host name"));
  // ssh would read a "host" that starts with '-' as one of its options.
  CHECK_THROWS_WITH(parse_hosts_option("-oProxyCommand=x"),
                    doctest::Contains("is not a host name"));

  TempDir tmp;
  const fs::path file = tmp.path() / "hosts";
  std::ofstream(file) << "# lab machines\n"
                         "node1 4\n"
                         "\n"
                         "alice@node2:2222 2   # a second sshd\n"
                         "node3\n";
  CHECK(parse_hosts_file(file) ==
        std::vector<SshHost>{{"node1", 0, 4}, {"alice@node2", 2222, 2}, {"node3", 0, 0}});
  std::ofstream(file) << "node1 4\nnode2:ssh 2\n";
  CHECK_THROWS_WITH(parse_hosts_file(file),
                    doctest::Contains((file.string() + ":2: 'node2:ssh': the ssh port").c_str()));
  std::ofstream(file) << "node1 four\n";
  CHECK_THROWS_WITH(parse_hosts_file(file), doctest::Contains(":1: 'four': the engine count"));
  std::ofstream(file) << "# nothing\n";
  CHECK_THROWS_WITH(parse_hosts_file(file), doctest::Contains("names no host"));
  CHECK_THROWS_WITH(parse_hosts_file(tmp.path() / "missing"),
                    doctest::Contains("cannot read the hosts file"));

  // Hosts without a count share -n, the first ones taking the remainder; one each without -n.
  std::vector<SshHost> hosts = {{"a", 0, 0}, {"b", 0, 3}, {"c", 0, 0}, {"d", 0, 0}};
  assign_engine_counts(hosts, 5);
  CHECK(hosts == std::vector<SshHost>{{"a", 0, 2}, {"b", 0, 3}, {"c", 0, 2}, {"d", 0, 1}});
  hosts = {{"a", 0, 0}, {"b", 0, 0}};
  assign_engine_counts(hosts, 0);
  CHECK(hosts == std::vector<SshHost>{{"a", 0, 1}, {"b", 0, 1}});
  hosts = {{"a", 0, 0}, {"b", 0, 0}, {"c", 0, 0}};
  assign_engine_counts(hosts, 2);
  CHECK(hosts == std::vector<SshHost>{{"a", 0, 1}, {"b", 0, 1}});
}

TEST_CASE("launchers: shell quoting and the profile directory on ssh hosts") {
  CHECK(shell_quote("/opt/ipcpp/bin/ipcpp-engine") == "/opt/ipcpp/bin/ipcpp-engine");
  CHECK(shell_quote("it's a dir") == "'it'\\''s a dir'");
  CHECK(shell_quote("") == "''");
  CHECK(shell_quote("$HOME") == "'$HOME'");
  CHECK(shell_join({"a b", "c"}) == "'a b' c");
  CHECK(remote_profile_dir_for("/home/u/.ipython/profile_default", "/home/u") ==
        "~/.ipython/profile_default");
  CHECK(remote_profile_dir_for("/scratch/profile_x", "/home/u") == "/scratch/profile_x");
  CHECK(remote_profile_dir_for("/home/u", "/home/u") == "~");
  CHECK(remote_profile_dir_for("/home/user2/p", "/home/u") == "/home/user2/p");
}

TEST_CASE("launchers: engine job scripts for Slurm, PBS and SGE match known-good scripts") {
  BatchJob job;
  job.n = 4;
  job.command = {"/opt/ipcpp/bin/ipcpp-engine", "--profile-dir", "/home/u/.ipython/profile_lab",
                 "--cluster-id", "run 1"};
  job.job_name = "ipcpp-engines-run";
  job.log_dir = "/home/u/.ipython/profile_lab/log";
  job.log_prefix = "ipengine-run";
  job.queue = "short";
  const std::string engine =
      "exec /opt/ipcpp/bin/ipcpp-engine --profile-dir /home/u/.ipython/profile_lab "
      "--cluster-id 'run 1'\n";

  job.system = Launcher::kSlurm;
  CHECK(engine_job_script(job) ==
        "#!/bin/sh\n"
        "#SBATCH --job-name=ipcpp-engines-run\n"
        "#SBATCH --array=1-4\n"
        "#SBATCH --ntasks=1\n"
        "#SBATCH --output=/home/u/.ipython/profile_lab/log/ipengine-run-%A_%a.log\n"
        "#SBATCH --partition=short\n" +
            engine);

  // OpenPBS / PBS Pro: an array with -J, the output joined into one file in the log directory.
  job.system = Launcher::kPbs;
  CHECK(engine_job_script(job) ==
        "#!/bin/sh\n"
        "#PBS -N ipcpp-engines-run\n"
        "#PBS -J 1-4\n"
        "#PBS -V\n"
        "#PBS -j oe\n"
        "#PBS -o /home/u/.ipython/profile_lab/log/\n"
        "#PBS -q short\n" +
            engine);
  // PBS refuses an array of one: one engine is a plain job. No queue: no -q line.
  job.n = 1;
  job.queue.clear();
  CHECK(engine_job_script(job) ==
        "#!/bin/sh\n"
        "#PBS -N ipcpp-engines-run\n"
        "#PBS -V\n"
        "#PBS -j oe\n"
        "#PBS -o /home/u/.ipython/profile_lab/log/\n" +
            engine);

  job.system = Launcher::kSge;
  job.n = 8;
  job.queue = "all.q";
  CHECK(engine_job_script(job) ==
        "#!/bin/sh\n"
        "#$ -S /bin/sh\n"
        "#$ -N ipcpp-engines-run\n"
        "#$ -t 1-8\n"
        "#$ -V\n"
        "#$ -j y\n"
        "#$ -o /home/u/.ipython/profile_lab/log\n"
        "#$ -q all.q\n" +
            engine);

  // A user's template: placeholders, braces written twice, a directive without a value
  // dropped, and a placeholder that does not exist named.
  CHECK(engine_job_script(job,
                          "#!/bin/bash\n#$ -pe smp {n}\n#SBATCH --x={profile_dir}\n"
                          "echo {{done}} {job_name}\n") ==
        "#!/bin/bash\n#$ -pe smp 8\necho {done} ipcpp-engines-run\n");
  CHECK_THROWS_WITH(engine_job_script(job, "#$ -l h_rt={walltime}\n"),
                    doctest::Contains("unknown placeholder {walltime} in the job template; known: "
                                      "{cluster_id}, {command}, {engine_command}"));
  CHECK_THROWS_WITH(engine_job_script(job, "#$ -N {job_name\n"), doctest::Contains("unclosed {"));
  job.job_name = "two\nlines";
  CHECK_THROWS_WITH(engine_job_script(job),
                    doctest::Contains("{job_name} for the job script must be one line"));
}

TEST_CASE("launchers: controller job scripts for Slurm, PBS and SGE match known-good scripts") {
  BatchJob job;
  job.command = {"/opt/ipcpp/bin/ipcpp-controller", "--profile-dir", "/home/u/p", "--ip=*"};
  job.job_name = "ipcpp-controller";
  job.log_dir = "/home/u/p/log";
  job.log_prefix = "ipcontroller-";
  const std::string controller =
      "exec /opt/ipcpp/bin/ipcpp-controller --profile-dir /home/u/p "
      "'--ip=*'\n";
  job.system = Launcher::kSlurm;
  CHECK(controller_job_script(job) ==
        "#!/bin/sh\n#SBATCH --job-name=ipcpp-controller\n#SBATCH --ntasks=1\n"
        "#SBATCH --output=/home/u/p/log/ipcontroller--%j.log\n" +
            controller);
  job.system = Launcher::kPbs;
  job.queue = "long";
  CHECK(controller_job_script(job) ==
        "#!/bin/sh\n#PBS -N ipcpp-controller\n#PBS -V\n#PBS -j oe\n#PBS -o /home/u/p/log/\n"
        "#PBS -q long\n" +
            controller);
  job.system = Launcher::kSge;
  CHECK(controller_job_script(job) ==
        "#!/bin/sh\n#$ -S /bin/sh\n#$ -N ipcpp-controller\n#$ -V\n#$ -j y\n"
        "#$ -o /home/u/p/log\n#$ -q long\n" +
            controller);
}

TEST_CASE("launchers: job ids in what sbatch and qsub print, and the commands that use them") {
  CHECK(parse_job_id(Launcher::kSlurm, "4711\n") == "4711");
  CHECK(parse_job_id(Launcher::kSlurm, "4711;cluster2\n") == "4711");
  CHECK(parse_job_id(Launcher::kSlurm, "sbatch: warning: something\n4711\n") == "4711");
  CHECK_THROWS_WITH(parse_job_id(Launcher::kSlurm, "Submitted nothing\n"),
                    doctest::Contains("no job id in what sbatch printed: 'Submitted nothing'"));
  CHECK(parse_job_id(Launcher::kPbs, "4711.pbs-server\n") == "4711.pbs-server");
  CHECK(parse_job_id(Launcher::kPbs, "4711[].pbs-server\n") == "4711[].pbs-server");
  CHECK_THROWS(parse_job_id(Launcher::kPbs, "qsub: Unknown queue\n"));
  CHECK(parse_job_id(Launcher::kSge,
                     "Your job-array 4711.1-4:1 (\"ipcpp-engines\") has been submitted\n") ==
        "4711");
  CHECK(parse_job_id(Launcher::kSge, "Your job 4712 (\"ipcpp-engines\") has been submitted\n") ==
        "4712");
  CHECK(parse_job_id(Launcher::kSge, "4713.1-4:1\n") == "4713");
  CHECK(submit_command(Launcher::kSlurm, "/p/jobs/s.sh", {"--time=5"}) ==
        std::vector<std::string>{"sbatch", "--parsable", "--time=5", "/p/jobs/s.sh"});
  CHECK(submit_command(Launcher::kSge, "/p/jobs/s.sh", {}) ==
        std::vector<std::string>{"qsub", "/p/jobs/s.sh"});
  CHECK(cancel_command(Launcher::kSlurm, "4711") == std::vector<std::string>{"scancel", "4711"});
  CHECK(cancel_command(Launcher::kPbs, "4711.s") == std::vector<std::string>{"qdel", "4711.s"});
  CHECK_THROWS_WITH(parse_launcher("lsf"), doctest::Contains("unknown launcher 'lsf'"));
}

TEST_CASE(
    "ipcpp-cluster --engines ssh copies the connection file, starts engines per host, "
    "and stop ends exactly them") {
  if (const auto why = SshServer::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  SshServer server;
  ClusterProfile profile;
  const fs::path remote = profile.tmp().path() / "remote profile";
  const fs::path hosts = profile.tmp().path() / "hosts";
  const std::string port = std::to_string(server.port());
  std::ofstream(hosts) << "# two entries for the same sshd: two \"hosts\"\n"
                       << "127.0.0.1:" << port << " 2\n"
                       << server.destination() << ":" << port << " 1\n";

  const auto started =
      profile.run("start", joined({"--daemonize", kFastController, "--hosts-file", hosts.string(),
                                   "--remote-profile-dir", remote.string()},
                                  ssh_args(server)));
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CHECK(contains(started.err, "ipcpp-cluster: 127.0.0.1: 2 engines started\n"));
  CHECK(contains(started.err, "ipcpp-cluster: " + server.destination() + ": 1 engine started\n"));
  CHECK(contains(started.err, "ipcpp-cluster: 3/3 engines registered\n"));

  // The engine connection file, copied with mode 0600; the engines' logs on the "host".
  const fs::path copied = remote / "security" / "ipcontroller-engine.json";
  CHECK(json::parse(read_text(copied)) ==
        json::parse(read_text(profile.dir() / "security" / "ipcontroller-engine.json")));
  CHECK(mode_of(copied) == 0600);
  const json state = profile.state();
  REQUIRE(state.at("engine_sets").at("1").at("launcher") == "ssh");
  REQUIRE(state.at("engine_sets").at("1").at("hosts").size() == 2);
  const std::set<pid_t> pids = recorded_engines(state);
  REQUIRE(pids.size() == 3);
  CHECK(files_in(remote / "log", "ipengine-").size() == 3);

  // A task runs on each engine: exactly the engines the launcher started.
  CHECK(engine_pids(profile, 3) == pids);

  const auto status = profile.run("status");
  INFO(status.out);
  CHECK(status.exit_code == 0);
  CHECK(contains(status.out, "Engine set 1 (ssh): 3 engines on 2 hosts\n"));
  CHECK(contains(status.out, "  127.0.0.1: 2 of 2 running (pids "));
  CHECK(contains(status.out, "  " + server.destination() + ": 1 of 1 running (pids "));

  const auto stopped = profile.run("stop");
  INFO(stopped.out);
  CHECK(stopped.exit_code == 0);
  for (const pid_t pid : pids)
    CHECK(contains(stopped.out, "Stopped engine " + std::to_string(pid) + " on "));
  CHECK(wait_until([&] { return none_of_them_run(pids); }, 10s));
}

TEST_CASE("ipcpp-cluster --engines ssh names each host that fails, in one line, and goes on") {
  if (const auto why = SshServer::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  SshServer server;
  ClusterProfile profile;
  const fs::path remote = profile.tmp().path() / "remote";
  const std::string port = std::to_string(server.port());
  const std::vector<std::string> common = {kFastController,        "--ssh-port",    port,
                                           "--remote-profile-dir", remote.string(), "--hosts"};

  // 127.0.0.2 has no sshd: that host fails, the other one's engines run.
  const auto partly = profile.run(
      "start",
      joined(joined(common, {"127.0.0.1:2,127.0.0.2:1", "--daemonize"}), ssh_args(server)));
  INFO(partly.err);
  REQUIRE(partly.exit_code == 0);
  CHECK(contains(partly.err,
                 "ipcpp-cluster: host 127.0.0.2: ssh failed: ssh: connect to host "
                 "127.0.0.2 port " +
                     port + ": Connection refused\n"));
  CHECK(contains(partly.err, "ipcpp-cluster: 2/2 engines registered\n"));
  CHECK(engine_pids(profile, 2) == recorded_engines(profile.state()));
  const std::set<pid_t> first = recorded_engines(profile.state());
  CHECK(profile.run("stop").exit_code == 0);
  CHECK(wait_until([&] { return none_of_them_run(first); }, 10s));

  // A key the host does not accept.
  TempDir keys;
  const fs::path wrong_key = keys.path() / "wrong";
  REQUIRE(
      run({"ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrong_key.string()}).exit_code ==
      0);
  const auto refused =
      profile.run("start", joined(joined(common, {"127.0.0.1:1"}), ssh_args(server, wrong_key)));
  CHECK(refused.exit_code == 1);
  CHECK(contains(refused.err, "ipcpp-cluster: host 127.0.0.1: ssh failed: "));
  CHECK(contains(refused.err, "@127.0.0.1: Permission denied (publickey).\n"));
  CHECK(contains(refused.err, "no engine started on any host"));
  CHECK_FALSE(fs::exists(profile.state_file()));

  // No engine program on the host.
  const auto missing = profile.run("start", joined(joined(common, {"127.0.0.1:1"}),
                                                   ssh_args(server, {}, "/no/such/ipcpp-engine")));
  CHECK(missing.exit_code == 1);
  CHECK(contains(missing.err,
                 "ipcpp-cluster: host 127.0.0.1: no engine program there: "
                 "/no/such/ipcpp-engine: no such executable on " +
                     host_name() + "\n"));
  CHECK_FALSE(fs::exists(profile.state_file()));
  profile.remember();
}

TEST_CASE(
    "ipcpp-cluster stop names the engines of a host it cannot reach, and keeps them "
    "recorded") {
  if (const auto why = SshServer::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  std::optional<SshServer> server(std::in_place);
  ClusterProfile profile;
  const std::string port = std::to_string(server->port());
  const auto started = profile.run(
      "start", joined({kFastController, "--daemonize", "--hosts", "127.0.0.1:1", "--ssh-port", port,
                       "--remote-profile-dir", (profile.tmp().path() / "remote").string()},
                      ssh_args(*server)));
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  const std::set<pid_t> pids = recorded_engines(profile.state());
  REQUIRE(pids.size() == 1);
  const pid_t engine = *pids.begin();

  server.reset();  // the host is unreachable from now on; its engine still runs
  const auto stopped = profile.run("stop");
  INFO(stopped.out);
  CHECK(stopped.exit_code == 1);
  CHECK(contains(stopped.out, "Could not stop engine " + std::to_string(engine) +
                                  " on 127.0.0.1 (set 1): ssh failed: ssh: connect to host "
                                  "127.0.0.1 port " +
                                  port + ": Connection refused\n"));
  CHECK(contains(stopped.out, "Stopped controller "));
  CHECK(contains(stopped.out, "Kept " + profile.state_file().string()));
  CHECK(ipcpp_engine_runs(engine));
  // Still recorded: a later stop (or this test's cleanup) finds it.
  CHECK(recorded_engines(profile.state()) == pids);
}

TEST_CASE(
    "ipcpp-cluster --engines mpi starts N engines under Open MPI's and MPICH's mpiexec, "
    "and stop ends them") {
  bool tried = false;
  for (const std::string mpiexec : {"mpiexec.openmpi", "mpiexec.mpich"}) {
    if (run({"sh", "-c", "command -v " + mpiexec}).exit_code != 0) {
      MESSAGE("not tried: no " << mpiexec << " (openmpi-bin, mpich)");
      continue;
    }
    tried = true;
    CAPTURE(mpiexec);
    ClusterProfile profile;
    const auto started = profile.run("start", {"-n", "4", "--engines", "mpi", "--mpiexec", mpiexec,
                                               "--daemonize", kFastController});
    INFO(started.err);
    REQUIRE(started.exit_code == 0);
    CHECK(contains(started.err, "ipcpp-cluster: mpiexec started (pid "));
    CHECK(contains(started.err, "ipcpp-cluster: 4/4 engines registered\n"));
    const json state = profile.state();
    CHECK(state.at("engine_sets").at("1").at("launcher") == "mpi");
    CHECK(state.at("engine_sets").at("1").at("n") == 4);

    const std::set<pid_t> pids = engine_pids(profile, 4);
    CHECK(pids.size() == 4);
    for (const pid_t pid : pids)
      CHECK(ipcpp_engine_runs(pid));

    const auto status = profile.run("status");
    CHECK(contains(status.out, "Engine set 1 (mpi): 4 engines under mpiexec "));
    CHECK(contains(status.out, ", running\n"));

    const auto stopped = profile.run("stop");
    INFO(stopped.out);
    CHECK(stopped.exit_code == 0);
    CHECK(contains(stopped.out, "Stopped mpiexec "));
    CHECK(wait_until([&] { return none_of_them_run(pids); }, 10s));
  }
  if (!tried) MESSAGE("skipped: no mpiexec");
}

TEST_CASE(
    "ipcpp-cluster --engines slurm submits an array job whose engines register, and stop "
    "cancels it") {
  if (const auto why = SlurmCluster::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  SlurmCluster slurm;
  ClusterProfile profile;
  profile.set_env("SLURM_CONF", slurm.conf().string());

  const auto started = profile.run("start", {"-n", "4", "--engines", "slurm", "--daemonize",
                                             kFastController, "--batch-arg=--time=10"});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CHECK(contains(started.err, "ipcpp-cluster: 4/4 engines registered\n"));
  const json state = profile.state();
  const json& set = state.at("engine_sets").at("1");
  CHECK(set.at("launcher") == "slurm");
  const std::string job_id = set.at("job_id");
  CHECK(contains(started.err, "ipcpp-cluster: slurm job " + job_id + " submitted for 4 engines"));
  const std::string script = set.at("script");
  CHECK(contains(read_text(script), "#SBATCH --array=1-4\n"));

  // Slurm accepts the script as it is.
  ProcessOptions slurm_env;
  slurm_env.env = slurm.env();
  const auto test_only = run({"sbatch", "--test-only", script}, slurm_env);
  INFO(test_only.err);
  CHECK(test_only.exit_code == 0);
  CHECK(contains(test_only.err, "to start at"));

  // Four array tasks run, one engine each, and each runs a task.
  const std::string queue = slurm.squeue();
  INFO(queue);
  for (int task = 1; task <= 4; ++task)
    CHECK(contains(queue, job_id + "_" + std::to_string(task) + " RUNNING"));
  const std::set<pid_t> pids = engine_pids(profile, 4);
  CHECK(pids.size() == 4);

  const auto status = profile.run("status");
  INFO(status.out);
  CHECK(
      contains(status.out, "Engine set 1 (slurm): job " + job_id + " for 4 engines: RUNNING 4\n"));

  // A submission that fails is named in one line; the running cluster is not touched.
  const auto refused =
      profile.run("engines", {"-n", "1", "--engines", "slurm", "--queue", "nosuchpartition"});
  INFO(refused.err);
  CHECK(refused.exit_code == 1);
  CHECK(contains(refused.err,
                 "ipcpp-cluster: slurm job not submitted: sbatch exited (exit status "
                 "1): sbatch: error: invalid partition specified: nosuchpartition; sbatch: "
                 "error: Batch job submission failed: Invalid partition name specified (script "));
  CHECK(profile.state().at("engine_sets").size() == 1);
  CHECK(engine_pids(profile, 4) == pids);

  const auto stopped = profile.run("stop");
  INFO(stopped.out);
  CHECK(stopped.exit_code == 0);
  CHECK(contains(stopped.out, "Cancelled slurm job " + job_id + " (set 1)\n"));
  CHECK(wait_until([&] { return slurm.squeue().empty(); }, 30s));
  CHECK(wait_until([&] { return none_of_them_run(pids); }, 10s));
}

TEST_CASE("ipcpp-cluster --engines pbs and sge say clearly when their tools are missing") {
  if (run({"sh", "-c", "command -v qsub"}).exit_code == 0) {
    MESSAGE("skipped: qsub is installed here");
    return;
  }
  ClusterProfile profile;
  for (const std::string system : {"pbs", "sge"}) {
    const auto r = profile.run("start", {"-n", "2", "--engines", system, kFastController});
    CHECK(r.exit_code == 1);
    CHECK(contains(r.err, "ipcpp-cluster: cannot start qsub: not found"));
    CHECK_FALSE(fs::exists(profile.state_file()));
  }
}

TEST_CASE(
    "ipcpp-cluster --controller ssh starts the controller on a host, fetches its "
    "connection files, and stop ends it") {
  if (const auto why = SshServer::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  SshServer server;
  ClusterProfile profile;
  const fs::path remote = profile.tmp().path() / "remote";
  const std::vector<std::string> common = {"--controller",
                                           "ssh",
                                           "--ssh-port",
                                           std::to_string(server.port()),
                                           "--ssh-identity",
                                           server.user_key().string(),
                                           "--ssh-known-hosts",
                                           server.known_hosts().string(),
                                           "--remote-controller-program",
                                           tool_path("ipcpp-controller"),
                                           "--remote-profile-dir",
                                           remote.string(),
                                           "--controller-arg=--ip=127.0.0.1",
                                           kFastController};

  // A host that cannot be reached: one line, nothing left behind.
  const auto unreachable =
      profile.run("start", joined({"-n", "1", "--controller-host", "127.0.0.2"}, common));
  CHECK(unreachable.exit_code == 1);
  CHECK(contains(unreachable.err,
                 "ipcpp-cluster: controller host 127.0.0.2: ssh failed: ssh: "
                 "connect to host 127.0.0.2 port " +
                     std::to_string(server.port()) + ": Connection refused\n"));
  CHECK_FALSE(fs::exists(profile.state_file()));

  const auto started = profile.run(
      "start", joined({"-n", "2", "--daemonize", "--controller-host", "127.0.0.1"}, common));
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CHECK(contains(started.err, "ipcpp-cluster: controller started on 127.0.0.1 (pid "));
  CHECK(contains(started.err, "ipcpp-cluster: 2/2 engines registered\n"));
  const json state = profile.state();
  const json& controller = state.at("controller");
  CHECK(controller.at("launcher") == "ssh");
  const auto controller_pid = controller.at("pid").get<pid_t>();
  CHECK(runs(controller_pid, tool_path("ipcpp-controller")));
  // The controller wrote its files on its host; this profile has copies, mode 0600.
  const fs::path client_file = profile.dir() / "security" / "ipcontroller-client.json";
  CHECK(json::parse(read_text(client_file)) ==
        json::parse(read_text(remote / "security" / "ipcontroller-client.json")));
  CHECK(mode_of(client_file) == 0600);
  CHECK(engine_pids(profile, 2) == recorded_engines(state));

  const auto status = profile.run("status");
  INFO(status.out);
  CHECK(contains(status.out, "Controller: on 127.0.0.1 (ssh), pid " +
                                 std::to_string(controller_pid) + ", running"));

  const auto stopped = profile.run("stop");
  INFO(stopped.out);
  CHECK(stopped.exit_code == 0);
  CHECK(contains(stopped.out,
                 "Stopped controller " + std::to_string(controller_pid) + " on 127.0.0.1\n"));
  CHECK(wait_until([&] { return !runs(controller_pid, tool_path("ipcpp-controller")); }, 10s));
  CHECK_FALSE(fs::exists(client_file));
}

TEST_CASE(
    "ipcpp-cluster --controller slurm --engines slurm: both are jobs, and stop cancels "
    "them") {
  if (const auto why = SlurmCluster::unavailable()) {
    MESSAGE("skipped: " << *why);
    return;
  }
  SlurmCluster slurm;
  ClusterProfile profile;
  profile.set_env("SLURM_CONF", slurm.conf().string());
  const auto started =
      profile.run("start", {"-n", "2", "--controller", "slurm", "--engines", "slurm", "--daemonize",
                            kFastController, "--controller-arg=--ip=127.0.0.1"});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  const json state = profile.state();
  const std::string controller_job = state.at("controller").at("job_id");
  const std::string engine_job = state.at("engine_sets").at("1").at("job_id");
  CHECK(contains(started.err,
                 "ipcpp-cluster: slurm job " + controller_job + " submitted for the controller"));
  CHECK(contains(started.err, "ipcpp-cluster: 2/2 engines registered\n"));
  const std::string queue = slurm.squeue();
  INFO(queue);
  CHECK(contains(queue, controller_job + " RUNNING"));
  const std::set<pid_t> pids = engine_pids(profile, 2);
  CHECK(pids.size() == 2);

  const auto status = profile.run("status");
  INFO(status.out);
  CHECK(contains(status.out, "Controller: slurm job " + controller_job + ", running\n"));

  const auto stopped = profile.run("stop");
  INFO(stopped.out);
  CHECK(stopped.exit_code == 0);
  CHECK(contains(stopped.out, "Cancelled slurm job " + engine_job + " (set 1)\n"));
  CHECK(contains(stopped.out, "Cancelled slurm job " + controller_job + " (the controller)\n"));
  CHECK(wait_until([&] { return slurm.squeue().empty(); }, 30s));
  CHECK(wait_until([&] { return none_of_them_run(pids); }, 10s));
}
