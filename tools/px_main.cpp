// ipcpp-px: run a shell command (or a call) on a cluster's engines and print each engine's
// output prefixed "[engine N]". The work is in client/px.hpp.
//
//   ipcpp-px 'uptime'                    every engine, as a shell command
//   ipcpp-px --targets 0,2 'hostname'    engines 0 and 2
//   ipcpp-px --code 'getpid()'           a call in the engine's language
//
// Exit codes: 0 when every engine succeeded, 1 when one failed or the cluster cannot be
// reached, 2 for a wrong command line.
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "client/px.hpp"
#include "profiles/program_cli.hpp"

int main(int argc, char** argv) {
  CLI::App app("Run a command on a cluster's engines and print each engine's output.", "ipcpp-px");
  ipcpp::profiles::CommonOptions common;
  std::string targets = "all";
  std::vector<std::string> words;
  bool code = false;
  double timeout = 0;
  double connect_timeout = 10;
  ipcpp::profiles::add_profile_options(app, common,
                                       "The controller's cluster id (ipcontroller-ID-client.json)");
  std::string file;
  app.add_option("--file,-f", file, "The controller's client connection file")->type_name("PATH");
  app.add_option("--targets,-t", targets, "Engines: all, or ids such as 0,2")
      ->capture_default_str();
  app.add_flag("--code,-c", code,
               "Send COMMAND as code in the engine's language (a call such as 'getpid()'), "
               "not as a shell command");
  app.add_option("--timeout", timeout, "Seconds to wait for the engines; 0: no limit")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--connect-timeout", connect_timeout,
                 "Seconds to wait for the connection file and the controller")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("command", words, "The command (its words are joined with spaces)")->required();
  app.footer(
      "Options may also be set in <profile>/ipcpp_px.toml; the command line overrides the "
      "file. Exit status: 0 when every engine succeeded, 1 when one failed or the cluster "
      "cannot be reached, 2 for a wrong command line.");
  try {
    ipcpp::profiles::use_profile_config(app, argc, argv, "px");
    app.parse(argc, argv);
    ipcpp::px::PxOptions o;
    o.client.profile = common.profile.profile;
    o.client.profile_dir = common.profile.profile_dir;
    o.client.ipython_dir = common.profile.ipython_dir;
    o.client.cluster_id = common.cluster_id;
    o.client.connection_file = file;
    o.client.timeout = ipcpp::Seconds(connect_timeout);
    o.code = code;
    for (const auto& w : words)
      o.command += (o.command.empty() ? "" : " ") + w;
    if (timeout > 0) o.timeout = ipcpp::Seconds(timeout);
    try {
      o.targets = ipcpp::px::parse_targets(targets);
    } catch (const std::invalid_argument& e) {
      throw CLI::ValidationError("--targets", e.what());
    }
    return ipcpp::px::run_px(o, std::cout, std::cerr);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << "ipcpp-px: " << e.what() << " (see ipcpp-px --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "ipcpp-px: " << e.what() << '\n';
    return 1;
  }
}
