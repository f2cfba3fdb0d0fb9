// ipcpp-profile: create, locate and list IPython-compatible profile directories.
//
//   ipcpp-profile create [--profile NAME | --profile-dir DIR] [--ipython-dir DIR]
//   ipcpp-profile locate [--profile NAME | --profile-dir DIR] [--ipython-dir DIR]
//   ipcpp-profile list [--ipython-dir DIR]
//
// Exit codes: 0 success, 1 the command failed, 2 the command line is wrong.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "profiles/profile.hpp"

namespace {

namespace fs = std::filesystem;
namespace profiles = ipcpp::profiles;

constexpr int kExitFailure = 1;
constexpr int kExitUsage = 2;

enum class Command { kCreate, kLocate, kList };

struct Options {
  Command command = Command::kList;
  std::string profile = "default";  // Default: "default"
  std::string profile_dir;          // Default: empty, the profile is found by name
  std::string ipython_dir;          // Default: empty, $IPYTHONDIR else ~/.ipython
};

// Adds --ipython-dir and, if `with_profile`, the mutually exclusive --profile / --profile-dir.
void add_location_options(CLI::App& command, Options& options, bool with_profile) {
  if (with_profile) {
    CLI::Option* profile =
        command
            .add_option("--profile", options.profile,
                        "Name of the profile: the directory profile_NAME in the IPython directory")
            ->type_name("NAME")
            ->capture_default_str();
    command
        .add_option("--profile-dir", options.profile_dir,
                    "The profile directory itself, in place of a profile name")
        ->type_name("DIR")
        ->excludes(profile);
  }
  command
      .add_option("--ipython-dir", options.ipython_dir,
                  "The IPython directory that holds the profiles (overrides $IPYTHONDIR; "
                  "default $IPYTHONDIR, else ~/.ipython)")
      ->type_name("DIR");
}

void build_cli(CLI::App& app, Options& options) {
  app.require_subcommand(0, 1);  // none is refused by parse_command_line, with a clearer message
  app.footer(
      "A profile NAME is the directory profile_NAME in the IPython directory, with security/ "
      "(mode 0700), pid/, log/ and the config files ipcpp_<program>.toml. Exit status: 0 on "
      "success, 1 if the command failed, 2 for a wrong command line.");
  CLI::App* create = app.add_subcommand(
      "create",
      "Create a profile directory, with a commented config file for each program, and print its "
      "path. Idempotent: existing config files are kept.");
  create->callback([&options] { options.command = Command::kCreate; });
  add_location_options(*create, options, true);
  CLI::App* locate = app.add_subcommand(
      "locate", "Print the directory of an existing profile; fail if there is none.");
  locate->callback([&options] { options.command = Command::kLocate; });
  add_location_options(*locate, options, true);
  CLI::App* list = app.add_subcommand(
      "list", "List the profiles in the IPython directory, like 'ipython profile list'.");
  list->callback([&options] { options.command = Command::kList; });
  add_location_options(*list, options, false);
}

// Parses the command line; the subcommands' callbacks fill in the options.
// Throws CLI::ParseError: CLI::CallForHelp for --help, others for a wrong command line.
void parse_command_line(CLI::App& app, int argc, char** argv) {
  app.parse(argc, argv);
  if (app.get_subcommands().empty()) throw CLI::RequiredError("A command (create, locate or list)");
}

fs::path ipython_dir(const Options& options) {
  return profiles::ipython_dir(options.ipython_dir);
}

profiles::Profile selected_profile(const Options& options) {
  if (!options.profile_dir.empty()) return profiles::Profile::at(options.profile_dir);
  return profiles::Profile::named(options.profile, ipython_dir(options));
}

// Returns the exit code. Throws on failure.
int run(const Options& options) {
  switch (options.command) {
    case Command::kCreate: {
      const profiles::Profile profile = selected_profile(options);
      profile.create();
      std::cout << profile.dir().string() << '\n';
      return EXIT_SUCCESS;
    }
    case Command::kLocate: {
      const profiles::Profile profile = selected_profile(options);
      if (profile.exists()) {
        std::cout << profile.dir().string() << '\n';
        return EXIT_SUCCESS;
      }
      if (!options.profile_dir.empty()) {
        throw std::runtime_error("no profile directory " + profile.dir().string() +
                                 "; create it with: ipcpp-profile create --profile-dir " +
                                 profile.dir().string());
      }
      std::string create_command = "ipcpp-profile create --profile " + options.profile;
      if (!options.ipython_dir.empty()) create_command += " --ipython-dir " + options.ipython_dir;
      throw std::runtime_error("no profile named \"" + options.profile + "\" in " +
                               ipython_dir(options).string() +
                               "; create it with: " + create_command);
    }
    case Command::kList: {
      const fs::path root = ipython_dir(options);
      const std::vector<std::string> names = profiles::list_profiles(root);
      std::cout << "Available profiles in " << root.string() << ":\n";
      for (const std::string& name : names)
        std::cout << "    " << name << '\n';
      return EXIT_SUCCESS;
    }
  }
  return kExitFailure;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("Create, locate and list IPython-compatible profile directories for ipcpp.",
               "ipcpp-profile");
  Options options;
  build_cli(app, options);
  try {
    parse_command_line(app, argc, argv);
    return run(options);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
    std::cerr << "ipcpp-profile: " << e.what() << " (see ipcpp-profile --help)\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << "ipcpp-profile: " << e.what() << '\n';
    return kExitFailure;
  }
}
