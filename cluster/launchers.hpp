// Launchers: where ipcpp-cluster starts engines besides this machine — on other hosts over ssh,
// under mpiexec, and through the batch systems Slurm, PBS and SGE. This file holds what can be
// decided without running anything: launcher names, host lists, the shell scripts run on ssh
// hosts and what they print, batch job scripts, and the job ids that submission prints. The
// cluster library (cluster.cpp) runs the programs.
//
// Errors: parsing functions throw std::invalid_argument with one line that names the bad input.
// Nothing here keeps state; everything is safe to call from several threads.
#pragma once

#include <cstddef>
#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ipcpp::cluster {

enum class Launcher { kLocal, kSsh, kMpi, kSlurm, kPbs, kSge };

// "local", "ssh", "mpi", "slurm", "pbs", "sge".
std::string_view launcher_name(Launcher launcher);
// The launcher of that name. Throws std::invalid_argument "unknown launcher 'NAME': use local,
// ssh, mpi, slurm, pbs or sge".
Launcher parse_launcher(std::string_view name);
// Slurm, PBS and SGE: engines run as a batch job.
bool is_batch(Launcher launcher);

// ---- ssh -------------------------------------------------------------------------------------

// One host of an ssh engine set.
struct SshHost {
  std::string destination;  // [user@]host, as ssh takes it
  int port = 0;             // 0: ssh's own default (22, or ~/.ssh/config's)
  std::size_t n = 0;        // engines to start there; 0: not given
  bool operator==(const SshHost&) const = default;
};

// --hosts: "host1:4,user@host2:8,host3", a count after the colon. Throws std::invalid_argument
// naming the entry for an empty host or a count that is not a positive number.
std::vector<SshHost> parse_hosts_option(std::string_view text);

// A hosts file: one "[user@]host[:port] [n]" a line (the port after the colon here, the count
// after a space); '#' starts a comment; blank lines are skipped. Throws std::invalid_argument
// "FILE:LINE: REASON", or "cannot read the hosts file FILE: REASON".
std::vector<SshHost> parse_hosts_file(const std::filesystem::path& path);

// Gives every host without a count its share of `total` (spread evenly, the first hosts taking
// the remainder; 1 each when `total` is 0). Hosts with a count keep it; `total` then counts
// only the engines of hosts without one. Throws std::invalid_argument when `hosts` is empty.
void assign_engine_counts(std::vector<SshHost>& hosts, std::size_t total);

// POSIX shell quoting: the word as one argument ("it's" -> 'it'\''s'); words of only safe
// characters stay as they are.
std::string shell_quote(std::string_view word);
// The words quoted and joined by spaces.
std::string shell_join(const std::vector<std::string>& words);

// The engine profile directory to use on ssh hosts for a local one: the same path relative to
// the home directory ("~/.ipython/profile_default") when `local_dir` is under `home`, else the
// same absolute path.
std::string remote_profile_dir_for(const std::filesystem::path& local_dir,
                                   const std::filesystem::path& home);

// What to start on one ssh host.
struct RemoteStart {
  std::string profile_dir;               // on the host; a leading "~/" is the remote home
  std::string connection_file_name;      // ipcontroller[-ID]-engine.json
  std::string connection_text;           // its content, written with mode 0600
  std::string program = "ipcpp-engine";  // looked up on the host's PATH unless it has a '/'
  std::vector<std::string> args;         // after --profile-dir DIR (e.g. --cluster-id ID, --load L)
  std::string log_prefix;                // logs: DIR/log/<log_prefix>-<pid>.log
  std::size_t n = 1;
};

// Exit statuses of the start script besides 0, and what they mean.
inline constexpr int kRemoteCannotWrite = 3;  // the profile or connection file
inline constexpr int kRemoteNoProgram = 127;  // the engine program is not there

// A POSIX sh script, run with `ssh HOST sh -s` (the script on stdin): writes the connection
// file (if any) into DIR/security/ (mode 0600), checks that the program exists, and starts n
// copies detached (nohup, stdin from /dev/null, output to their logs), printing one line
// "started PID LOG" for each.
std::string remote_start_script(const RemoteStart& start);

// A process started by that script.
struct RemoteProcess {
  long pid = 0;
  std::string log;
  bool operator==(const RemoteProcess&) const = default;
};
// The "started PID LOG" lines of the start script's output; other lines are ignored.
std::vector<RemoteProcess> parse_started(std::string_view output);

// Exit statuses of the controller-fetch script besides 0.
inline constexpr int kRemoteExited = 4;    // the controller is not running (its log on stderr)
inline constexpr int kRemoteNotReady = 5;  // no connection files from this controller yet

// A script that, once the controller `pid` (running `program`) has written its pid file and
// both connection files into DIR, prints "--- client", the client file, "--- engine", the
// engine file. `cluster_id` names the files.
std::string remote_fetch_script(const std::string& profile_dir, const std::string& cluster_id,
                                const std::string& program, long pid, const std::string& log);
// The two files of that script's output: {client, engine}. Throws std::invalid_argument when
// the output does not hold both.
std::pair<std::string, std::string> parse_fetched(std::string_view output);

// A script that stops the given engines: SIGTERM to each pid whose /proc/PID/cmdline still
// starts with `program`, up to `timeout_seconds` for them to end, then SIGKILL. Prints one line
// per pid: "stopped PID", "killed PID", "gone PID" (not running), "notours PID" (the pid runs
// another program) or "survived PID".
std::string remote_stop_script(const std::string& program, const std::vector<long>& pids,
                               double timeout_seconds);
// A script that prints "alive PID" or "gone PID" for each pid (alive: it runs `program`).
std::string remote_status_script(const std::string& program, const std::vector<long>& pids);
// The "WORD PID" lines of those scripts' output, as pid -> word.
std::map<long, std::string> parse_pid_report(std::string_view output);

// ---- batch systems ---------------------------------------------------------------------------

// What a batch job script is made from: an engine array job, or a controller job.
struct BatchJob {
  Launcher system = Launcher::kSlurm;
  std::size_t n = 1;                 // engines: one array task each
  std::vector<std::string> command;  // an engine's argv
  std::string job_name = "ipcpp-engines";
  std::string log_dir;     // the job's output goes there
  std::string log_prefix;  // its file names start so (Slurm)
  std::string queue;       // partition (Slurm) or queue (PBS, SGE); "" for none
  std::string profile_dir;
  std::string cluster_id;
};

// The default template of an engine job for a batch system. Placeholders, replaced by
// render_template: {n}, {job_name}, {log_dir}, {log_prefix}, {queue}, {profile_dir},
// {cluster_id}, {engine_command} (the engine's argv, shell-quoted; also {command}). Lines with
// {queue} are dropped when there is no queue.
std::string default_engine_template(Launcher system);

// The placeholders of `job` as render_template takes them.
std::map<std::string, std::string> template_values(const BatchJob& job);

// `text` with every {name} replaced by values[name]; "{{" and "}}" stand for "{" and "}".
// A line that holds a placeholder whose value is "" is dropped when it is a directive line
// ("#SBATCH", "#PBS", "#$"). Throws std::invalid_argument "unknown placeholder {NAME} in the
// job template; known: ..." or "unclosed { in the job template".
std::string render_template(std::string_view text,
                            const std::map<std::string, std::string>& values);

// The job script for `job`: `template_text` ("" for the default template) rendered.
std::string engine_job_script(const BatchJob& job, std::string_view template_text = {});

// The default template of a controller job: one task, {command} the controller's argv.
std::string default_controller_template(Launcher system);
std::string controller_job_script(const BatchJob& job, std::string_view template_text = {});

// The command that submits `script`: sbatch --parsable / qsub, then `extra`, then the script.
std::vector<std::string> submit_command(Launcher system, const std::string& script,
                                        const std::vector<std::string>& extra);
// The job id in what the submit command printed: Slurm's "4711" or "4711;cluster", PBS's
// "4711.server" (kept whole: qdel wants it so), SGE's "Your job-array 4711.1-4:1 (...) has
// been submitted". Throws std::invalid_argument quoting the output when there is none.
std::string parse_job_id(Launcher system, std::string_view output);
// scancel ID / qdel ID.
std::vector<std::string> cancel_command(Launcher system, const std::string& job_id);

}  // namespace ipcpp::cluster
