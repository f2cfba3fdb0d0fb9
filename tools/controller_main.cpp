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
#include <spdlog/spdlog.h>
#ifdef IPCPP_WITH_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

#include "controller/controller.hpp"
#include "controller/schemes.hpp"
#include "profiles/profile.hpp"
#include "profiles/program_cli.hpp"
#include "proto/allocator.hpp"

namespace {

namespace fs = std::filesystem;
using ipcpp::controller::Controller;
using ipcpp::controller::ControllerOptions;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

struct Options {
  ipcpp::profiles::CommonOptions common;  // profile, cluster id, logging
  std::string ip = "127.0.0.1";
  std::string location;
  std::string ports;
  std::string scheme = "leastload";
  int hwm = 1;
  std::size_t dependency_history = 100000;
  std::string db = "memory";
  std::size_t record_limit = 1024;
  std::size_t size_limit = std::size_t{1} << 30;
  int heartbeat_period = 1000;
  int heartbeat_misses = 2;
  double registration_timeout = 0;
  bool reuse = false;
};

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
  ipcpp::profiles::add_profile_options(
      app, o.common, "Cluster id: names the files ipcontroller-ID-client.json / -engine.json");
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
  app.add_option("--dependency-history", o.dependency_history,
                 "Most finished tasks remembered for after/follow dependencies")
      ->check(CLI::PositiveNumber);
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
  ipcpp::profiles::add_log_options(app, o.common, "ipcontroller");
  app.footer(
      "Options may also be set in <profile>/ipcpp_controller.toml (ipcpp-profile create writes "
      "it with every option commented); the command line overrides the file. Exit status: 0 "
      "after a clean stop, 1 if the controller cannot start, 2 for a wrong command line.");
}

// The malloc this program runs on (tools/CMakeLists.txt: IPCPP_CONTROLLER_JEMALLOC).
std::string allocator_name() {
#ifdef IPCPP_WITH_JEMALLOC
  const char* version = nullptr;
  std::size_t size = sizeof version;
  if (mallctl("version", &version, &size, nullptr, 0) == 0 && version != nullptr)
    return std::string("jemalloc ") + version;
  return "jemalloc";
#else
  return "the C library's malloc";
#endif
}

int run(const Options& o, const ipcpp::profiles::Profile& profile) {
  const auto log =
      ipcpp::profiles::make_program_logger("ipcpp-controller", o.common, "ipcontroller");

  ControllerOptions options;
  options.profile_dir = profile.dir();
  options.cluster_id = o.common.cluster_id;
  options.ip = o.ip;
  options.location = o.location;
  options.ports = parse_ports(o.ports);
  options.scheme = o.scheme;
  options.hwm = o.hwm;
  options.dependency_history = o.dependency_history;
  options.store.kind = o.db;
  options.store.record_limit = o.record_limit;
  options.store.size_limit = o.size_limit;
  options.heartbeat_period = std::chrono::milliseconds(o.heartbeat_period);
  options.heartbeat_misses = o.heartbeat_misses;
  options.registration_timeout =
      std::chrono::milliseconds(static_cast<long>(o.registration_timeout * 1000));
  options.reuse = o.reuse;
  options.log = log;
  log->debug("memory allocator: {}", allocator_name());

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
#ifndef IPCPP_WITH_JEMALLOC
  ipcpp::proto::keep_freed_memory();  // jemalloc keeps freed memory for reuse by itself
#endif
  // From the start, so that a SIGTERM during start-up is not lost: it stops the controller
  // as soon as it runs. Threads started later inherit the mask.
  Controller::block_stop_signals();
  try {
    ipcpp::profiles::use_profile_config(app, argc, argv, "controller");
    app.parse(argc, argv);
    ipcpp::profiles::log_level_option(options.common.log_level);
    parse_ports(options.ports);
    return run(options, options.common.profile.resolve());
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << "ipcpp-controller: " << e.what() << " (see ipcpp-controller --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "ipcpp-controller: " << e.what() << '\n';
    return kExitFailure;
  }
}
