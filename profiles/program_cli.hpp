// The command-line options every ipcpp program shares, for CLI11: the profile (with its
// config file ipcpp_<program>.toml) and logging. Header-only, so that the profiles library
// itself needs neither CLI11 nor spdlog; the programs that include it link both.
#pragma once

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "profiles/program_options.hpp"

namespace ipcpp::profiles {

struct CommonOptions {
  ProfileChoice profile;
  std::string cluster_id;
  std::string log_level = "info";
  bool log_to_file = false;
};

// --profile, --profile-dir, --ipython-dir, --cluster-id (described by `cluster_id_help`).
inline void add_profile_options(CLI::App& app, CommonOptions& o,
                                const std::string& cluster_id_help) {
  app.add_option("--profile", o.profile.profile, "Profile name: the directory profile_NAME")
      ->type_name("NAME");
  app.add_option("--profile-dir", o.profile.profile_dir, "The profile directory itself")
      ->type_name("DIR");
  app.add_option("--ipython-dir", o.profile.ipython_dir,
                 "Directory holding the profiles (default $IPYTHONDIR, else ~/.ipython)")
      ->type_name("DIR");
  app.add_option("--cluster-id", o.cluster_id, cluster_id_help)->type_name("ID");
}

// --log-level and --log-to-file; the log file is <profile>/log/<log_name>-<cluster id>-<pid>.log.
inline void add_log_options(CLI::App& app, CommonOptions& o, const std::string& log_name) {
  app.add_option("--log-level", o.log_level,
                 "trace, debug, info, warning, error, critical, or 10-50 as ipyparallel");
  app.add_flag("--log-to-file", o.log_to_file,
               "Log to <profile>/log/" + log_name + "-<cluster id>-<pid>.log instead of stderr");
}

// Gives CLI11 the config file of the profile chosen on the command line (read before the real
// parse), <profile>/ipcpp_<program>.toml; an unknown key in it is an error that names it.
inline void use_profile_config(CLI::App& app, int argc, char** argv, std::string_view program) {
  const Profile profile = scan_profile_options(argc, argv).resolve();
  app.set_config("--config", profile.config_file(program).string(),
                 "Config file (default: the profile's ipcpp_" + std::string(program) + ".toml)");
  app.allow_config_extras(CLI::config_extras_mode::error);
}

// The spdlog level of a --log-level value. Throws CLI::ValidationError for anything else.
inline spdlog::level::level_enum log_level_option(const std::string& text) {
  const auto level = log_level_from_text(text);
  if (!level) {
    throw CLI::ValidationError("--log-level", "unknown level '" + text +
                                                  "': use trace, debug, info, warning, error, "
                                                  "critical or 10-50");
  }
  return static_cast<spdlog::level::level_enum>(*level);
}

// The program's logger: to `console` (standard error by default), or with --log-to-file to
// <profile>/log/<log_name>-<cluster id>-<pid>.log. Flushed at every info message.
inline std::shared_ptr<spdlog::logger> make_program_logger(const std::string& name,
                                                           const CommonOptions& o,
                                                           const std::string& log_name,
                                                           std::FILE* console = stderr) {
  std::shared_ptr<spdlog::logger> log;
  if (o.log_to_file) {
    const auto file = o.profile.resolve().log_dir() /
                      (log_name + "-" + o.cluster_id + "-" + std::to_string(::getpid()) + ".log");
    log = std::make_shared<spdlog::logger>(
        name, std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string()));
  } else {
    log = std::make_shared<spdlog::logger>(
        name, std::make_shared<spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>>(
                  console, spdlog::color_mode::automatic));
  }
  log->set_level(log_level_option(o.log_level));
  log->flush_on(spdlog::level::info);
  return log;
}

}  // namespace ipcpp::profiles
