// Cluster::status and the text of a status report.
#include <algorithm>
#include <fstream>
#include <unistd.h>

#include <spdlog/fmt/fmt.h>

#include "cluster/cluster.hpp"
#include "profiles/profile.hpp"

namespace ipcpp::cluster {
namespace {

namespace fs = std::filesystem;

// "1235 1236".
std::string pid_list(const std::vector<pid_t>& pids) {
  return fmt::format("{}", fmt::join(pids, " "));
}

// Asks every engine for hostname() and counts the engines per host; "?" for an engine that
// cannot answer it (a Python ipengine, an engine that died meanwhile).
std::map<std::string, std::size_t> engines_per_host(const Client& client,
                                                    const std::vector<std::int64_t>& ids,
                                                    Seconds timeout) {
  std::vector<AsyncResult> answers;
  answers.reserve(ids.size());
  for (const std::int64_t id : ids) {
    try {
      answers.push_back(client[id].apply_async("hostname"));
    } catch (const std::exception&) {
      answers.emplace_back();
    }
  }
  std::map<std::string, std::size_t> hosts;
  for (const AsyncResult& answer : answers) {
    std::string host = "?";
    try {
      if (answer) {
        const Value value = answer.get(timeout);
        if (value.json().is_string()) host = value.json().get<std::string>();
      }
    } catch (const std::exception&) {
    }
    ++hosts[host];
  }
  return hosts;
}

// Which of a host's engines still run, asked over ssh.
EngineSetStatus::Host remote_status(const EngineSetRecord& set, const HostRecord& host,
                                    Seconds timeout) {
  EngineSetStatus::Host h;
  h.destination = host.destination;
  std::vector<long> pids;
  for (const EngineRecord& e : host.engines)
    pids.push_back(static_cast<long>(e.pid));
  std::vector<std::string> command = set.ssh;
  if (host.port > 0) command.insert(command.end(), {"-p", std::to_string(host.port)});
  command.insert(command.end(), {"--", host.destination, "sh", "-s"});
  try {
    const std::string program = set.command.empty() ? std::string() : set.command.front();
    const CommandResult r =
        run_command(command, remote_status_script(program, pids), timeout + Seconds(10));
    if (r.status != 0) {
      h.error = fmt::format("ssh failed ({}): {}", describe_exit(r.status), r.err);
      while (!h.error.empty() && (h.error.back() == '\n' || h.error.back() == '\r'))
        h.error.pop_back();
      return h;
    }
    for (const auto& [pid, word] : parse_pid_report(r.out))
      (word == "alive" ? h.alive : h.gone).push_back(static_cast<pid_t>(pid));
  } catch (const std::exception& e) {
    h.error = e.what();
  }
  return h;
}

}  // namespace

StatusReport Cluster::status(Seconds timeout) {
  StatusReport report;
  report.profile_dir = options_.profile_dir;
  report.cluster_id = options_.cluster_id;
  report.state_file = state_file_;
  report.connection_file =
      profiles::Profile::at(options_.profile_dir).client_connection_file(options_.cluster_id);
  std::error_code ec;
  report.connection_file_exists = fs::exists(report.connection_file, ec);
  try {
    report.state = read_state(state_file_);
  } catch (const std::exception& e) {
    throw ClusterError(kExitFailure, e.what());
  }

  if (report.state) {
    const ClusterState& state = *report.state;
    report.controller_alive = controller_running(state.controller);
    report.watcher_alive =
        !state.watcher.command.empty() &&
        runs_program(static_cast<pid_t>(state.watcher.pid), state.watcher.command.front());
    for (const std::string& id : state.set_ids()) {
      const EngineSetRecord& set = state.engine_sets.at(id);
      EngineSetStatus s;
      s.id = id;
      s.launcher = set.launcher;
      s.n = set.n;
      s.job_id = set.job_id;
      for (const EngineRecord& e : set.engines) {
        const auto pid = static_cast<pid_t>(e.pid);
        const bool alive = !set.command.empty() && runs_program(pid, set.command.front());
        (alive ? s.alive : s.gone).push_back(pid);
      }
      for (const HostRecord& host : set.hosts) {
        s.hosts.push_back(remote_status(set, host, timeout));
      }
      if (!set.job_id.empty()) {
        const auto job = job_state(set);
        s.job_state = !job ? "see qstat" : job->empty() ? "ended" : *job;
      }
      report.sets.push_back(std::move(s));
    }
    if (!report.controller_alive) {
      report.no_answer =
          fmt::format("the controller (pid {}) is not running", state.controller.pid);
      return report;
    }
  }
  if (!report.connection_file_exists) {
    report.no_answer = "no connection file " + report.connection_file.string();
    return report;
  }
  if (!report.state) {
    // A controller started by other means: ipcpp-controller's pid file tells a stale
    // connection file (its controller was killed) without waiting for an answer.
    const fs::path pid_file = controller_pid_file(options_.profile_dir, options_.cluster_id);
    std::ifstream in(pid_file);
    long pid = 0;
    if (in >> pid && pid > 0 && !process_alive(static_cast<pid_t>(pid))) {
      report.no_answer =
          fmt::format("the controller of {} (pid {}) is not running", pid_file.string(), pid);
      return report;
    }
  }

  try {
    ClientOptions client_options;
    client_options.connection_file = report.connection_file;
    client_options.timeout = timeout;
    const Client client(client_options);
    report.engine_ids = client.ids();
    report.hosts = engines_per_host(client, report.engine_ids, timeout);
    report.queues = client.queue_status();
    report.answered = true;
  } catch (const std::exception& e) {
    report.no_answer = std::string("the controller does not answer: ") + e.what();
  }
  return report;
}

std::string format_status(const StatusReport& status) {
  std::string text = "Profile: " + status.profile_dir.string();
  if (!status.cluster_id.empty()) text += fmt::format(" (cluster id {})", status.cluster_id);
  text += "\n";
  if (status.state) {
    const ClusterState& state = *status.state;
    text +=
        fmt::format("State file: {} (started {})\n", status.state_file.string(), state.start_time);
    const ProcessRecord& c = state.controller;
    const std::string running = status.controller_alive ? "running" : "not running";
    if (c.launcher == "local") {
      text += fmt::format("Controller: pid {}, {} (log {})\n", c.pid, running, c.log);
    } else if (c.launcher == "ssh") {
      text += fmt::format("Controller: on {} (ssh), pid {}, {} (log {} there)\n", c.destination,
                          c.pid, running, c.log);
    } else {
      text += fmt::format("Controller: {} job {}, {}\n", c.launcher, c.job_id, running);
    }
    for (const EngineSetStatus& set : status.sets) {
      if (set.launcher == "local") {
        text += fmt::format("Engine set {}: {} of {} running", set.id, set.alive.size(),
                            set.alive.size() + set.gone.size());
        if (!set.alive.empty()) text += " (pids " + pid_list(set.alive) + ")";
        if (!set.gone.empty()) text += "; gone: " + pid_list(set.gone);
        text += "\n";
      } else if (set.launcher == "mpi") {
        text += fmt::format("Engine set {} (mpi): {} engines under mpiexec {}, {}\n", set.id, set.n,
                            pid_list(set.alive.empty() ? set.gone : set.alive),
                            set.alive.empty() ? "not running" : "running");
      } else if (set.launcher == "ssh") {
        text += fmt::format("Engine set {} (ssh): {} engines on {} host{}\n", set.id, set.n,
                            set.hosts.size(), set.hosts.size() == 1 ? "" : "s");
        for (const EngineSetStatus::Host& h : set.hosts) {
          if (!h.error.empty()) {
            text += fmt::format("  {}: cannot tell: {}\n", h.destination, h.error);
            continue;
          }
          text += fmt::format("  {}: {} of {} running", h.destination, h.alive.size(),
                              h.alive.size() + h.gone.size());
          if (!h.alive.empty()) text += " (pids " + pid_list(h.alive) + ")";
          if (!h.gone.empty()) text += "; gone: " + pid_list(h.gone);
          text += "\n";
        }
      } else {
        text += fmt::format("Engine set {} ({}): job {} for {} engines: {}\n", set.id, set.launcher,
                            set.job_id, set.n, set.job_state);
      }
    }
    if (status.watcher_alive) {
      text +=
          fmt::format("Watched by a foreground ipcpp-cluster start (pid {})\n", state.watcher.pid);
    }
  } else {
    text += "No state file " + status.state_file.string() + ": ";
    text += status.connection_file_exists ? "this cluster was not started by ipcpp-cluster\n"
                                          : "no cluster was started here by ipcpp-cluster\n";
  }
  if (!status.answered) {
    text += "Controller: " + status.no_answer + "\n";
    return text;
  }
  const std::size_t n = status.engine_ids.size();
  text += fmt::format("Controller answers ({}): {} engine{} registered\n",
                      status.connection_file.string(), n, n == 1 ? "" : "s");
  if (!status.hosts.empty()) {
    text += "Engines per host:\n";
    for (const auto& [host, count] : status.hosts)
      text += fmt::format("  {}: {} engine{}\n", host, count, count == 1 ? "" : "s");
  }
  text += "Queues:\n";
  for (const auto& [id, q] : status.queues.engines) {
    text += fmt::format("  engine {}: queue {}, tasks {}, completed {}\n", id, q.queue, q.tasks,
                        q.completed);
  }
  text += fmt::format("  unassigned: {}\n", status.queues.unassigned);
  return text;
}

}  // namespace ipcpp::cluster
