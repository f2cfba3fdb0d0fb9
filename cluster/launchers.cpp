#include "cluster/launchers.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>

#include <spdlog/fmt/fmt.h>

namespace ipcpp::cluster {
namespace {

namespace fs = std::filesystem;

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

// A positive number, or nothing.
std::optional<long> positive(std::string_view text) {
  long value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) return std::nullopt;
  return value;
}

std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  while (!text.empty()) {
    const auto end = text.find('\n');
    lines.push_back(text.substr(0, end));
    if (end == std::string_view::npos) break;
    text.remove_prefix(end + 1);
  }
  return lines;
}

// A profile directory as a shell word: "~/x" becomes "$HOME"/x so the remote home is used.
std::string shell_dir(const std::string& dir) {
  if (dir == "~") return "\"$HOME\"";
  if (dir.starts_with("~/")) return "\"$HOME\"/" + shell_quote(dir.substr(2));
  return shell_quote(dir);
}

std::string pid_words(const std::vector<long>& pids) {
  return fmt::format("{}", fmt::join(pids, " "));
}

// The shell function both pid scripts use: does PID still run PROGRAM?
constexpr std::string_view kOursFunction =
    "ours() { [ \"$(tr '\\0' '\\n' < /proc/\"$1\"/cmdline 2>/dev/null | head -n 1)\" = \"$p\" "
    "]; }\n";

}  // namespace

std::string_view launcher_name(Launcher launcher) {
  switch (launcher) {
    case Launcher::kLocal:
      return "local";
    case Launcher::kSsh:
      return "ssh";
    case Launcher::kMpi:
      return "mpi";
    case Launcher::kSlurm:
      return "slurm";
    case Launcher::kPbs:
      return "pbs";
    case Launcher::kSge:
      return "sge";
  }
  return "local";
}

Launcher parse_launcher(std::string_view name) {
  for (const Launcher l : {Launcher::kLocal, Launcher::kSsh, Launcher::kMpi, Launcher::kSlurm,
                           Launcher::kPbs, Launcher::kSge}) {
    if (launcher_name(l) == name) return l;
  }
  throw std::invalid_argument(
      fmt::format("unknown launcher '{}': use local, ssh, mpi, slurm, pbs or sge", name));
}

bool is_batch(Launcher launcher) {
  return launcher == Launcher::kSlurm || launcher == Launcher::kPbs || launcher == Launcher::kSge;
}

std::vector<SshHost> parse_hosts_option(std::string_view text) {
  std::vector<SshHost> hosts;
  while (true) {
    const auto comma = text.find(',');
    const std::string_view entry = trim(text.substr(0, comma));
    if (entry.empty()) {
      throw std::invalid_argument(fmt::format("--hosts: an empty host in '{}'", text));
    }
    SshHost host;
    const auto colon = entry.rfind(':');
    host.destination = std::string(entry.substr(0, colon));
    if (colon != std::string_view::npos) {
      const auto n = positive(entry.substr(colon + 1));
      if (!n) {
        throw std::invalid_argument(fmt::format(
            "--hosts: '{}': the engine count after ':' must be a positive number", entry));
      }
      host.n = static_cast<std::size_t>(*n);
    }
    if (host.destination.empty() || host.destination.ends_with('@')) {
      throw std::invalid_argument(fmt::format("--hosts: '{}' has no host name", entry));
    }
    if (host.destination.starts_with('-')) {
      throw std::invalid_argument(fmt::format("--hosts: '{}' is not a host name", entry));
    }
    hosts.push_back(std::move(host));
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return hosts;
}

std::vector<SshHost> parse_hosts_file(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    throw std::invalid_argument(fmt::format("cannot read the hosts file {}: {}", path.string(),
                                            std::system_category().message(errno)));
  }
  std::vector<SshHost> hosts;
  std::size_t number = 0;
  for (std::string line; std::getline(in, line);) {
    ++number;
    std::string_view text = line;
    text = trim(text.substr(0, text.find('#')));
    if (text.empty()) continue;
    const auto fail = [&](const std::string& why) {
      return std::invalid_argument(fmt::format("{}:{}: {}", path.string(), number, why));
    };
    std::istringstream words{std::string(text)};
    std::string address;
    std::string count;
    std::string extra;
    words >> address >> count >> extra;
    if (!extra.empty()) throw fail(fmt::format("'{}': expected '[user@]host[:port] [n]'", text));
    SshHost host;
    const auto colon = address.rfind(':');
    host.destination = address.substr(0, colon);
    if (colon != std::string::npos) {
      const auto port = positive(std::string_view(address).substr(colon + 1));
      if (!port || *port > 65535) {
        throw fail(
            fmt::format("'{}': the ssh port after ':' must be a number from 1 to 65535", address));
      }
      host.port = static_cast<int>(*port);
    }
    if (host.destination.empty() || host.destination.ends_with('@')) {
      throw fail(fmt::format("'{}' has no host name", address));
    }
    if (host.destination.starts_with('-'))
      throw fail(fmt::format("'{}' is not a host name", address));
    if (!count.empty()) {
      const auto n = positive(count);
      if (!n) throw fail(fmt::format("'{}': the engine count must be a positive number", count));
      host.n = static_cast<std::size_t>(*n);
    }
    hosts.push_back(std::move(host));
  }
  if (hosts.empty()) {
    throw std::invalid_argument(fmt::format("the hosts file {} names no host", path.string()));
  }
  return hosts;
}

void assign_engine_counts(std::vector<SshHost>& hosts, std::size_t total) {
  if (hosts.empty()) throw std::invalid_argument("no ssh host: give --hosts or --hosts-file");
  std::vector<SshHost*> open;
  for (SshHost& h : hosts) {
    if (h.n == 0) open.push_back(&h);
  }
  if (open.empty()) return;
  if (total == 0) total = open.size();
  for (std::size_t i = 0; i < open.size(); ++i)
    open[i]->n = total / open.size() + (i < total % open.size() ? 1 : 0);
  // A host whose share is 0 (more hosts than engines) starts none.
  std::erase_if(hosts, [](const SshHost& h) { return h.n == 0; });
}

std::string shell_quote(std::string_view word) {
  const bool safe = !word.empty() && std::all_of(word.begin(), word.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("@%+=:,./-_").find(c) != std::string_view::npos;
  });
  if (safe) return std::string(word);
  std::string quoted = "'";
  for (const char c : word) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

std::string shell_join(const std::vector<std::string>& words) {
  std::string text;
  for (const std::string& w : words) {
    if (!text.empty()) text += ' ';
    text += shell_quote(w);
  }
  return text;
}

std::string remote_profile_dir_for(const fs::path& local_dir, const fs::path& home) {
  const fs::path dir = local_dir.lexically_normal();
  if (!home.empty()) {
    const fs::path relative = dir.lexically_relative(home.lexically_normal());
    if (!relative.empty() && *relative.begin() != "..") {
      return relative == "." ? std::string("~") : "~/" + relative.string();
    }
  }
  return dir.string();
}

std::string remote_start_script(const RemoteStart& start) {
  // The connection file travels in a here-document whose end marker it cannot contain: it is
  // JSON, and JSON text has no line of only this word.
  constexpr std::string_view kEnd = "IPCPP_CONNECTION_FILE_END";
  std::string args;
  for (const std::string& a : start.args) {
    args += ' ';
    args += shell_quote(a);
  }
  std::string script;
  script += "umask 077\n";
  script += "d=" + shell_dir(start.profile_dir) + "\n";
  script += fmt::format(
      "mkdir -p \"$d/security\" \"$d/log\" || {{ echo \"cannot create $d/security and $d/log\" "
      ">&2; exit {}; }}\n",
      kRemoteCannotWrite);
  if (!start.connection_file_name.empty()) {
    script += "f=\"$d/security/\"" + shell_quote(start.connection_file_name) + "\n";
    script += fmt::format("cat > \"$f.$$.part\" <<'{}'\n", kEnd);
    script += start.connection_text;
    if (!start.connection_text.ends_with('\n')) script += '\n';
    script += std::string(kEnd) + "\n";
    script += fmt::format(
        "[ $? -eq 0 ] && chmod 600 \"$f.$$.part\" && mv -f \"$f.$$.part\" \"$f\" || {{ echo "
        "\"cannot write $f\" >&2; exit {}; }}\n",
        kRemoteCannotWrite);
  }
  script += "p=" + shell_quote(start.program) + "\n";
  script += fmt::format(
      "case $p in\n"
      "  */*) [ -f \"$p\" ] && [ -x \"$p\" ] || {{ echo \"$p: no such executable on $(hostname)\" "
      ">&2; exit {0}; }} ;;\n"
      "  *) command -v \"$p\" >/dev/null 2>&1 || {{ echo \"$p: not found on the PATH of "
      "$(hostname) ($PATH)\" >&2; exit {0}; }} ;;\n"
      "esac\n",
      kRemoteNoProgram);
  script += "l=\"$d/log/\"" + shell_quote(start.log_prefix) + "\n";
  script += fmt::format("i=0\nwhile [ \"$i\" -lt {} ]; do\n", start.n);
  // nohup -> sh -> the program, each exec'ing the next: $! is the program's pid, and $$ in the
  // inner sh names its log.
  script += "  nohup sh -c 'exec \"$@\" > \"$0-$$.log\" 2>&1' \"$l\" \"$p\" --profile-dir \"$d\"" +
            args + " < /dev/null > /dev/null 2>&1 &\n";
  script += "  printf 'started %s %s\\n' \"$!\" \"$l-$!.log\"\n";
  script += "  i=$((i + 1))\ndone\n";
  return script;
}

std::vector<RemoteProcess> parse_started(std::string_view output) {
  std::vector<RemoteProcess> started;
  for (const std::string_view line : split_lines(output)) {
    if (!line.starts_with("started ")) continue;
    const std::string_view rest = line.substr(8);
    const auto space = rest.find(' ');
    const auto pid = positive(rest.substr(0, space));
    if (!pid) continue;
    started.push_back(RemoteProcess{*pid, space == std::string_view::npos
                                              ? std::string()
                                              : std::string(rest.substr(space + 1))});
  }
  return started;
}

std::string remote_fetch_script(const std::string& profile_dir, const std::string& cluster_id,
                                const std::string& program, long pid, const std::string& log) {
  const std::string suffix = cluster_id.empty() ? std::string() : "-" + cluster_id;
  std::string script = "d=" + shell_dir(profile_dir) + "\n";
  script += "p=" + shell_quote(program) + "\n";
  script += kOursFunction;
  script += fmt::format(
      "if ! kill -0 {0} 2>/dev/null || ! ours {0}; then tail -n 10 {1} >&2; exit {2}; fi\n", pid,
      shell_quote(log), kRemoteExited);
  script += "c=\"$d/security/\"" + shell_quote("ipcontroller" + suffix + "-client.json") + "\n";
  script += "e=\"$d/security/\"" + shell_quote("ipcontroller" + suffix + "-engine.json") + "\n";
  script += "f=\"$d/pid/\"" + shell_quote("ipcontroller" + suffix + ".pid") + "\n";
  script += fmt::format(
      "[ -f \"$c\" ] && [ -f \"$e\" ] && [ \"$(cat \"$f\" 2>/dev/null)\" = {} ] || exit {}\n", pid,
      kRemoteNotReady);
  script += "echo '--- client'\ncat \"$c\"\necho\necho '--- engine'\ncat \"$e\"\n";
  return script;
}

std::pair<std::string, std::string> parse_fetched(std::string_view output) {
  const auto client = output.find("--- client\n");
  const auto engine = output.find("\n--- engine\n");
  if (client == std::string_view::npos || engine == std::string_view::npos || engine < client) {
    throw std::invalid_argument("the controller's connection files did not come back whole");
  }
  std::string client_text(output.substr(client + 11, engine - client - 11));
  std::string engine_text(output.substr(engine + 12));
  return {std::move(client_text), std::move(engine_text)};
}

std::string remote_stop_script(const std::string& program, const std::vector<long>& pids,
                               double timeout_seconds) {
  const long tenths = std::max(1L, static_cast<long>(timeout_seconds * 10));
  std::string script = "p=" + shell_quote(program) + "\n";
  script += kOursFunction;
  script += "left=\n";
  script += "for x in " + pid_words(pids) + "; do\n";
  script +=
      "  if ! kill -0 \"$x\" 2>/dev/null; then echo \"gone $x\"\n"
      "  elif ! ours \"$x\"; then echo \"notours $x\"\n"
      "  elif kill -TERM \"$x\" 2>/dev/null; then left=\"$left $x\"\n"
      "  else echo \"survived $x\"; fi\n"
      "done\n";
  script += fmt::format("t=0\nwhile [ -n \"$left\" ] && [ \"$t\" -lt {} ]; do\n", tenths);
  script +=
      "  still=\n"
      "  for x in $left; do\n"
      "    if kill -0 \"$x\" 2>/dev/null && ours \"$x\"; then still=\"$still $x\"; "
      "else echo \"stopped $x\"; fi\n"
      "  done\n"
      "  left=$still\n"
      "  [ -n \"$left\" ] && sleep 0.1\n"
      "  t=$((t + 1))\n"
      "done\n";
  script +=
      "for x in $left; do kill -KILL \"$x\" 2>/dev/null; done\n"
      "[ -n \"$left\" ] && sleep 0.5\n"
      "for x in $left; do\n"
      "  if kill -0 \"$x\" 2>/dev/null && ours \"$x\"; then echo \"survived $x\"; "
      "else echo \"killed $x\"; fi\n"
      "done\n"
      "exit 0\n";
  return script;
}

std::string remote_status_script(const std::string& program, const std::vector<long>& pids) {
  std::string script = "p=" + shell_quote(program) + "\n";
  script += kOursFunction;
  script += "for x in " + pid_words(pids) + "; do\n";
  script +=
      "  if kill -0 \"$x\" 2>/dev/null && ours \"$x\"; then echo \"alive $x\"; "
      "else echo \"gone $x\"; fi\n"
      "done\n"
      "exit 0\n";
  return script;
}

std::map<long, std::string> parse_pid_report(std::string_view output) {
  std::map<long, std::string> report;
  for (const std::string_view line : split_lines(output)) {
    const auto space = line.find(' ');
    if (space == std::string_view::npos) continue;
    const auto pid = positive(trim(line.substr(space + 1)));
    if (pid) report[*pid] = std::string(line.substr(0, space));
  }
  return report;
}

std::string default_engine_template(Launcher system) {
  switch (system) {
    case Launcher::kSlurm:
      return "#!/bin/sh\n"
             "#SBATCH --job-name={job_name}\n"
             "#SBATCH --array=1-{n}\n"
             "#SBATCH --ntasks=1\n"
             "#SBATCH --output={log_dir}/{log_prefix}-%A_%a.log\n"
             "#SBATCH --partition={queue}\n"
             "exec {engine_command}\n";
    case Launcher::kPbs:
      // OpenPBS / PBS Pro. -J needs at least two subjobs, so one engine is a plain job.
      return "#!/bin/sh\n"
             "#PBS -N {job_name}\n"
             "#PBS -J 1-{n}\n"
             "#PBS -V\n"
             "#PBS -j oe\n"
             "#PBS -o {log_dir}/\n"
             "#PBS -q {queue}\n"
             "exec {engine_command}\n";
    case Launcher::kSge:
      return "#!/bin/sh\n"
             "#$ -S /bin/sh\n"
             "#$ -N {job_name}\n"
             "#$ -t 1-{n}\n"
             "#$ -V\n"
             "#$ -j y\n"
             "#$ -o {log_dir}\n"
             "#$ -q {queue}\n"
             "exec {engine_command}\n";
    default:
      throw std::invalid_argument(
          fmt::format("{} is not a batch system: use slurm, pbs or sge", launcher_name(system)));
  }
}

std::string default_controller_template(Launcher system) {
  switch (system) {
    case Launcher::kSlurm:
      return "#!/bin/sh\n"
             "#SBATCH --job-name={job_name}\n"
             "#SBATCH --ntasks=1\n"
             "#SBATCH --output={log_dir}/{log_prefix}-%j.log\n"
             "#SBATCH --partition={queue}\n"
             "exec {command}\n";
    case Launcher::kPbs:
      return "#!/bin/sh\n"
             "#PBS -N {job_name}\n"
             "#PBS -V\n"
             "#PBS -j oe\n"
             "#PBS -o {log_dir}/\n"
             "#PBS -q {queue}\n"
             "exec {command}\n";
    case Launcher::kSge:
      return "#!/bin/sh\n"
             "#$ -S /bin/sh\n"
             "#$ -N {job_name}\n"
             "#$ -V\n"
             "#$ -j y\n"
             "#$ -o {log_dir}\n"
             "#$ -q {queue}\n"
             "exec {command}\n";
    default:
      throw std::invalid_argument(
          fmt::format("{} is not a batch system: use slurm, pbs or sge", launcher_name(system)));
  }
}

std::string controller_job_script(const BatchJob& job, std::string_view template_text) {
  return render_template(
      template_text.empty() ? default_controller_template(job.system) : std::string(template_text),
      template_values(job));
}

std::map<std::string, std::string> template_values(const BatchJob& job) {
  return {{"n", std::to_string(job.n)},
          {"job_name", job.job_name},
          {"log_dir", job.log_dir},
          {"log_prefix", job.log_prefix},
          {"queue", job.queue},
          {"profile_dir", job.profile_dir},
          {"cluster_id", job.cluster_id},
          {"engine_command", shell_join(job.command)},
          {"command", shell_join(job.command)}};
}

std::string render_template(std::string_view text,
                            const std::map<std::string, std::string>& values) {
  std::string out;
  for (std::string_view line : split_lines(text)) {
    std::string rendered;
    bool empty_value = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
      const char c = line[i];
      if (c == '{' && i + 1 < line.size() && line[i + 1] == '{') {
        rendered += '{';
        ++i;
      } else if (c == '}' && i + 1 < line.size() && line[i + 1] == '}') {
        rendered += '}';
        ++i;
      } else if (c == '{') {
        const auto close = line.find('}', i);
        if (close == std::string_view::npos) {
          throw std::invalid_argument("unclosed { in the job template: " + std::string(line));
        }
        const std::string name(line.substr(i + 1, close - i - 1));
        const auto it = values.find(name);
        if (it == values.end()) {
          std::string known;
          for (const auto& [key, value] : values)
            known += (known.empty() ? "{" : ", {") + key + "}";
          throw std::invalid_argument(fmt::format(
              "unknown placeholder {{{}}} in the job template; known: {}", name, known));
        }
        if (it->second.find_first_of("\r\n") != std::string::npos) {
          throw std::invalid_argument(
              fmt::format("{{{}}} for the job script must be one line: '{}'", name, it->second));
        }
        empty_value = empty_value || it->second.empty();
        rendered += it->second;
        i = close;
      } else {
        rendered += c;
      }
    }
    const bool directive =
        line.starts_with("#SBATCH") || line.starts_with("#PBS") || line.starts_with("#$");
    if (empty_value && directive) continue;
    out += rendered;
    out += '\n';
  }
  if (!text.ends_with('\n') && !out.empty()) out.pop_back();
  return out;
}

std::string engine_job_script(const BatchJob& job, std::string_view template_text) {
  std::string text =
      template_text.empty() ? default_engine_template(job.system) : std::string(template_text);
  if (template_text.empty() && job.system == Launcher::kPbs && job.n < 2) {
    // PBS refuses an array of one subjob: a plain job runs the one engine.
    const auto start = text.find("#PBS -J");
    text.erase(start, text.find('\n', start) + 1 - start);
  }
  return render_template(text, template_values(job));
}

std::vector<std::string> submit_command(Launcher system, const std::string& script,
                                        const std::vector<std::string>& extra) {
  std::vector<std::string> command;
  if (system == Launcher::kSlurm) {
    command = {"sbatch", "--parsable"};
  } else {
    command = {"qsub"};
  }
  command.insert(command.end(), extra.begin(), extra.end());
  command.push_back(script);
  return command;
}

std::string parse_job_id(Launcher system, std::string_view output) {
  const auto none = [&] {
    return std::invalid_argument(fmt::format("no job id in what {} printed: '{}'",
                                             system == Launcher::kSlurm ? "sbatch" : "qsub",
                                             trim(output)));
  };
  if (system == Launcher::kSge) {
    // "Your job 4711 (...)" or "Your job-array 4711.1-4:1 (...)"; with -terse "4711.1-4:1".
    std::string_view text = trim(output);
    if (const auto at = text.find("Your job"); at != std::string_view::npos) {
      text.remove_prefix(at + 8);
      if (text.starts_with("-array")) text.remove_prefix(6);
      text = trim(text);
    }
    std::size_t digits = 0;
    while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits])))
      ++digits;
    if (digits == 0) throw none();
    return std::string(text.substr(0, digits));
  }
  // Slurm: "4711" or "4711;cluster" (the last line: sbatch may warn first). PBS: "4711.server".
  std::string_view last;
  for (const std::string_view line : split_lines(output)) {
    if (!trim(line).empty()) last = trim(line);
  }
  if (system == Launcher::kSlurm) last = last.substr(0, last.find(';'));
  if (last.empty() || !std::isdigit(static_cast<unsigned char>(last.front())) ||
      last.find_first_of(" \t") != std::string_view::npos) {
    throw none();
  }
  if (system == Launcher::kSlurm && !positive(last)) throw none();
  return std::string(last);
}

std::vector<std::string> cancel_command(Launcher system, const std::string& job_id) {
  if (system == Launcher::kSlurm) return {"scancel", job_id};
  return {"qdel", job_id};
}

}  // namespace ipcpp::cluster
