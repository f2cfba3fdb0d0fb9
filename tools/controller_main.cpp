// ipcpp-controller: the controller of an ipcpp (or ipyparallel) cluster, a drop-in for
// ipcontroller. Parses options (command line > profile config file > defaults), then runs
// the controller library until SIGINT, SIGTERM or a client's shutdown request.
//
// Exit codes: 0 after a clean stop, 1 when the controller cannot start, 2 for a wrong
// command line.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "controller/controller.hpp"
#include "controller/schemes.hpp"
#include "profiles/profile.hpp"
#include "profiles/program_options.hpp"

namespace {

namespace fs = std::filesystem;
using ipcpp::controller::Controller;
using ipcpp::controller::ControllerOptions;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  std::string profile = "default";
  std::string profile_dir;
  std::string ipython_dir;
  std::string cluster_id;
  std::string ip = "127.0.0.1";
  std::string location;
  std::string ports;
  std::string scheme = "leastload";
  int hwm = 1;
  std::string db = "memory";
  std::size_t record_limit = 1024;
  std::size_t size_limit = std::size_t{1} << 30;
  int heartbeat_period = 1000;
  int heartbeat_misses = 2;
  double registration_timeout = 0;
  bool reuse = false;
  std::string log_level = "info";
  bool log_to_file = false;
};

spdlog::level::level_enum parse_level(const std::string& text) {
  const auto level = ipcpp::profiles::log_level_from_text(text);
  if (!level) {
    throw CLI::ValidationError("--log-level", "unknown level '" + text +
                                                  "': use trace, debug, info, warning, error, "
                                                  "critical or 10-50");
  }
  return static_cast<spdlog::level::level_enum>(*level);
}

std::optional<std::pair<int, int>> parse_ports(const std::string& text) {
  if (text.empty()) return std::nullopt;
  int first = 0;
  int last = 0;
  char dash = 0;
  char extra = 0;
  const int n = std::sscanf(text.c_str(), "%d%c%d%c", &first, &dash, &last, &extra);
  if (n == 1) last = first;
  if (!((n == 3 && dash == '-') || n == 1) || first < 1 || last > 65535 || first > last) {
    throw CLI::ValidationError("--ports", "'" + text + "' is not a port range FIRST-LAST");
  }
  return std::make_pair(first, last);
}

void build_cli(CLI::App& app, Options& o) {
  app.option_defaults()->always_capture_default();
  app.add_option("--profile", o.profile, "Profile name: the directory profile_NAME")
      ->type_name("NAME");
  app.add_option("--profile-dir", o.profile_dir, "The profile directory itself")->type_name("DIR");
  app.add_option("--ipython-dir", o.ipython_dir,
                 "Directory holding the profiles (default $IPYTHONDIR, else ~/.ipython)")
      ->type_name("DIR");
  app.add_option("--cluster-id", o.cluster_id,
                 "Cluster id: names the files ipcontroller-ID-client.json / -engine.json")
      ->type_name("ID");
  app.add_option("--ip", o.ip, "Address to listen on (* for every interface)")->type_name("IP");
  app.add_option("--location", o.location,
                 "Host name peers use when --ip is * (default: this host's name)")
      ->type_name("HOST");
  app.add_option("--ports", o.ports,
                 "Port range FIRST-LAST to take ports from (default: chosen "
                 "by the OS)")
      ->type_name("RANGE");
  app.add_option("--scheme", o.scheme, "Task scheduling scheme")
      ->check(CLI::IsMember(ipcpp::controller::scheme_names()));
  app.add_option("--hwm", o.hwm, "Most tasks outstanding per engine; 0: no limit")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--db", o.db, "Task store: memory, sqlite (kept across restarts) or none")
      ->check(CLI::IsMember({"memory", "sqlite", "none"}));
  app.add_flag_callback(
      "--dictdb", [&o] { o.db = "memory"; }, "Same as --db memory");
  app.add_flag_callback(
      "--sqlitedb", [&o] { o.db = "sqlite"; }, "Same as --db sqlite");
  app.add_flag_callback(
      "--nodb", [&o] { o.db = "none"; }, "Same as --db none");
  app.add_option("--record-limit", o.record_limit, "Most records the memory store keeps")
      ->check(CLI::PositiveNumber);
  app.add_option("--size-limit", o.size_limit, "Most bytes of buffers the memory store keeps")
      ->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-period,--ping", o.heartbeat_period,
                 "Heartbeat period in milliseconds")
      ->check(CLI::Range(10, 3600000));
  app.add_option("--heartbeat-misses", o.heartbeat_misses,
                 "Heartbeats an engine may miss in a row before it is unregistered")
      ->check(CLI::Range(1, 1000));
  app.add_option("--registration-timeout", o.registration_timeout,
                 "Seconds a registering engine has to send its first heartbeat (default: "
                 "max(10, 10 periods))")
      ->check(CLI::NonNegativeNumber);
  app.add_flag("--reuse", o.reuse,
               "Reuse the ports and key of existing connection files and keep them at exit");
  app.add_option("--log-level", o.log_level,
                 "trace, debug, info, warning, error, critical, or 10-50 as ipcontroller");
  app.add_flag("--log-to-file", o.log_to_file,
               "Log to <profile>/log/ipcontroller-<cluster id>-<pid>.log instead of stderr");
  app.footer(
      "Options may also be set in <profile>/ipcpp_controller.toml (ipcpp-profile create writes "
      "it with every option commented); the command line overrides the file. Exit status: 0 "
      "after a clean stop, 1 if the controller cannot start, 2 for a wrong command line.");
}

int run(const Options& o, const ipcpp::profiles::Profile& profile) {
  std::shared_ptr<spdlog::logger> log;
  if (o.log_to_file) {
    const fs::path file = profile.log_dir() / ("ipcontroller-" + o.cluster_id + "-" +
                                               std::to_string(getpid()) + ".log");
    log = spdlog::basic_logger_mt("ipcpp-controller", file.string());
  } else {
    log = spdlog::stderr_color_mt("ipcpp-controller");
  }
  log->set_level(parse_level(o.log_level));
  log->flush_on(spdlog::level::info);

  ControllerOptions options;
  options.profile_dir = profile.dir();
  options.cluster_id = o.cluster_id;
  options.ip = o.ip;
  options.location = o.location;
  options.ports = parse_ports(o.ports);
  options.scheme = o.scheme;
  options.hwm = o.hwm;
  options.store.kind = o.db;
  options.store.record_limit = o.record_limit;
  options.store.size_limit = o.size_limit;
  options.heartbeat_period = std::chrono::milliseconds(o.heartbeat_period);
  options.heartbeat_misses = o.heartbeat_misses;
  options.registration_timeout =
      std::chrono::milliseconds(static_cast<long>(o.registration_timeout * 1000));
  options.reuse = o.reuse;
  options.log = log;

  Controller controller(options);
  try {
    controller.start();
  } catch (const std::exception& e) {
    log->critical("cannot start: {}", e.what());
    throw;
  }
  controller.wait_for_stop();
  controller.stop();
  return EXIT_SUCCESS;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "The controller of an ipcpp cluster: hub, schedulers and queues for engines and "
      "clients; a drop-in for ipyparallel's ipcontroller.",
      "ipcpp-controller");
  Options options;
  build_cli(app, options);
  // From the start, so that a SIGTERM during start-up is not lost: it stops the controller
  // as soon as it runs. Threads started later inherit the mask.
  Controller::block_stop_signals();
  try {
    const auto profile = ipcpp::profiles::scan_profile_options(argc, argv).resolve();
    app.set_config("--config", profile.config_file("controller").string(),
                   "Config file (default: the profile's ipcpp_controller.toml)");
    app.allow_config_extras(CLI::config_extras_mode::error);
    app.parse(argc, argv);
    parse_level(options.log_level);
    parse_ports(options.ports);
    return run(options, ipcpp::profiles::ProfileChoice{options.profile, options.profile_dir,
                                                       options.ipython_dir}
                            .resolve());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << "ipcpp-controller: " << e.what() << " (see ipcpp-controller --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "ipcpp-controller: " << e.what() << '\n';
    return kExitFailure;
  }
}
