#include "cluster/state.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <fcntl.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/file.h>
#include <system_error>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "profiles/secure_file.hpp"

namespace ipcpp::cluster {

NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(ProcessRecord, pid, log, command, launcher,
                                                destination, port, profile_dir, ssh, job_id, script)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(EngineRecord, pid, log)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(HostRecord, destination, port, profile_dir, engines)
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE_WITH_DEFAULT(EngineSetRecord, launcher, n, start_time, command,
                                                engines, hosts, ssh, job_id, script)

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// The numeric value of a set id; ids that are not numbers sort first.
long set_number(const std::string& id) {
  long value = 0;
  const auto [end, ec] = std::from_chars(id.data(), id.data() + id.size(), value);
  return ec == std::errc() && end == id.data() + id.size() ? value : -1;
}

}  // namespace

std::vector<std::string> ClusterState::set_ids() const {
  std::vector<std::string> ids;
  for (const auto& [id, set] : engine_sets)
    ids.push_back(id);
  std::stable_sort(ids.begin(), ids.end(), [](const std::string& a, const std::string& b) {
    return set_number(a) < set_number(b);
  });
  return ids;
}

std::string ClusterState::next_set_id() const {
  long largest = 0;
  for (const auto& [id, set] : engine_sets)
    largest = std::max(largest, set_number(id));
  return std::to_string(largest + 1);
}

std::size_t ClusterState::engine_count() const {
  std::size_t count = 0;
  for (const auto& [id, set] : engine_sets)
    count += set.n;
  return count;
}

std::string to_json_text(const ClusterState& state) {
  json j = {{"profile_dir", state.profile_dir},
            {"cluster_id", state.cluster_id},
            {"start_time", state.start_time}};
  if (state.watcher.pid > 0)
    j["watcher"] = {{"pid", state.watcher.pid}, {"command", state.watcher.command}};
  j["controller"] = state.controller;
  j["engine_sets"] = state.engine_sets;
  return j.dump(2) + "\n";
}

ClusterState state_from_json_text(const std::string& text) {
  try {
    const json j = json::parse(text);
    if (!j.is_object() || !j.contains("controller") || !j.contains("profile_dir")) {
      throw std::runtime_error("not an ipcpp-cluster state file");
    }
    ClusterState state;
    state.profile_dir = j.at("profile_dir").get<std::string>();
    state.cluster_id = j.value("cluster_id", std::string());
    state.start_time = j.value("start_time", std::string());
    if (j.contains("watcher")) state.watcher = j.at("watcher").get<ProcessRecord>();
    state.controller = j.at("controller").get<ProcessRecord>();
    if (j.contains("engine_sets")) {
      state.engine_sets = j.at("engine_sets").get<std::map<std::string, EngineSetRecord>>();
    }
    return state;
  } catch (const json::exception& e) {
    throw std::runtime_error(e.what());
  }
}

std::optional<ClusterState> read_state(const fs::path& path) {
  std::ifstream in(path);
  if (!in) {
    const int err = errno;
    std::error_code ec;
    if (!fs::exists(path, ec) && !ec) return std::nullopt;
    throw std::runtime_error("cannot read the state file " + path.string() + ": " +
                             std::system_category().message(err));
  }
  std::stringstream text;
  text << in.rdbuf();
  try {
    return state_from_json_text(text.str());
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read the state file " + path.string() + ": " + e.what());
  }
}

void write_state(const fs::path& path, const ClusterState& state) {
  profiles::write_private_file(path, to_json_text(state));
}

StateLock::StateLock(const fs::path& state_file) {
  const fs::path dir = state_file.parent_path();
  fd_ = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) {
    throw std::system_error(errno, std::system_category(), "cannot lock " + dir.string());
  }
  while (::flock(fd_, LOCK_EX) != 0) {
    if (errno != EINTR) {
      const int err = errno;
      ::close(fd_);
      throw std::system_error(err, std::system_category(), "cannot lock " + dir.string());
    }
  }
}

StateLock::~StateLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace ipcpp::cluster
