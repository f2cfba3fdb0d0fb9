#include "support/cluster_profile.hpp"

#include <csignal>
#include <unistd.h>

#include <doctest/doctest.h>

#include "support/files.hpp"

namespace ipcpp::test {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

std::string cluster_tool() {
  return tool_path("ipcpp-cluster");
}

ProcessOptions isolated(const TempDir& tmp) {
  ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  return options;
}

std::string host_name() {
  char name[256] = {};
  REQUIRE(::gethostname(name, sizeof name - 1) == 0);
  return name;
}

bool runs(pid_t pid, const std::string& program) {
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  if (close == std::string::npos || close + 2 >= stat.size()) return false;
  if (stat[close + 2] == 'Z' || stat[close + 2] == 'X') return false;
  const std::string cmdline = read_text("/proc/" + std::to_string(pid) + "/cmdline");
  return cmdline.substr(0, cmdline.find('\0')) == program;
}

std::vector<Recorded> recorded_processes(const json& state) {
  std::vector<Recorded> processes;
  const json& controller = state.at("controller");
  processes.push_back(
      {controller.at("pid").get<pid_t>(), controller.at("command").at(0), "controller"});
  for (const auto& [id, set] : state.at("engine_sets").items()) {
    const std::string program = set.at("command").at(0);
    for (const json& engine : set.value("engines", json::array()))
      processes.push_back({engine.at("pid").get<pid_t>(), program, "engine"});
    for (const json& host : set.value("hosts", json::array())) {
      for (const json& engine : host.at("engines"))
        processes.push_back({engine.at("pid").get<pid_t>(), program, "engine"});
    }
  }
  return processes;
}

ClusterProfile::ClusterProfile()
    : options_(isolated(tmp_)), dir_(tmp_.path() / "profile_cluster") {}

ClusterProfile::~ClusterProfile() {
  remember();
  for (const Recorded& p : seen_) {
    if (runs(p.pid, p.program)) ::kill(p.pid, SIGKILL);
  }
}

RunResult ClusterProfile::run(const std::string& subcommand, std::vector<std::string> args) {
  std::vector<std::string> argv = {cluster_tool(), subcommand, "--profile-dir", dir_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto result = ipcpp::test::run(argv, options_, 120s);
  remember();
  return result;
}

Process ClusterProfile::spawn(const std::string& subcommand, std::vector<std::string> args) {
  std::vector<std::string> argv = {cluster_tool(), subcommand, "--profile-dir", dir_.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return Process(argv, options_);
}

json ClusterProfile::state(const std::string& cluster_id) {
  const fs::path file = cluster_id.empty()
                            ? state_file()
                            : dir_ / "security" / ("ipcpp-cluster-" + cluster_id + ".json");
  const std::string text = read_text(file);
  if (!json::accept(text)) return nullptr;
  json state = json::parse(text);
  for (const Recorded& p : recorded_processes(state))
    seen_.push_back(p);
  return state;
}

void ClusterProfile::remember() {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir_ / "security", ec)) {
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("ipcpp-cluster")) continue;
    const std::string text = read_text(entry.path());
    if (!json::accept(text)) continue;
    for (const Recorded& p : recorded_processes(json::parse(text)))
      seen_.push_back(p);
  }
}

bool all_running(const std::vector<Recorded>& processes) {
  for (const Recorded& p : processes) {
    if (!runs(p.pid, p.program)) return false;
  }
  return true;
}

bool none_running(const std::vector<Recorded>& processes) {
  for (const Recorded& p : processes) {
    if (runs(p.pid, p.program)) return false;
  }
  return true;
}

std::vector<fs::path> files_in(const fs::path& dir, const std::string& prefix) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().starts_with(prefix)) files.push_back(entry.path());
  }
  return files;
}

}  // namespace ipcpp::test
