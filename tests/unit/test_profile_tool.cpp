// End-to-end tests of the ipcpp-profile program: the real binary, run as a process, with
// IPYTHONDIR pointed at a temporary directory.
#include <filesystem>
#include <set>
#include <string>
#include <sys/stat.h>
#include <vector>

#include <doctest/doctest.h>

#include "support/files.hpp"
#include "support/process.hpp"
#include "support/temp_dir.hpp"

using ipcpp::test::mode_of;
using ipcpp::test::read_text;

namespace {

namespace fs = std::filesystem;
using ipcpp::test::ProcessOptions;
using ipcpp::test::RunResult;
using ipcpp::test::TempDir;

// Runs ipcpp-profile with `args` and IPYTHONDIR=`ipython_dir`.
RunResult ipcpp_profile(std::vector<std::string> args, const fs::path& ipython_dir) {
  args.insert(args.begin(), ipcpp::test::tool_path("ipcpp-profile"));
  ProcessOptions options;
  options.env["IPYTHONDIR"] = ipython_dir.string();
  return ipcpp::test::run(std::move(args), options);
}

const std::set<std::string> kConfigFiles{"ipcpp_cluster.toml", "ipcpp_controller.toml",
                                         "ipcpp_engine.toml", "ipcpp_px.toml"};

}  // namespace

TEST_CASE("ipcpp-profile create --profile-dir D makes D/security 0700 and every file 0600") {
  TempDir tmp;
  const fs::path dir = tmp.path() / "cluster";
  const RunResult result = ipcpp_profile({"create", "--profile-dir", dir.string()}, tmp.path());
  CHECK(result.err == "");
  CHECK(result.exit_code == 0);
  CHECK(result.out == dir.string() + "\n");
  CHECK(mode_of(dir / "security") == 0700);
  CHECK(mode_of(dir / "pid") == 0700);
  CHECK(mode_of(dir / "log") == 0755);
  std::set<std::string> config_files;
  int files = 0;
  for (const fs::directory_entry& entry : fs::recursive_directory_iterator(dir)) {
    if (entry.is_directory()) continue;
    ++files;
    CHECK_MESSAGE(mode_of(entry.path()) == 0600, entry.path().string());
    if (entry.path().parent_path() == dir) config_files.insert(entry.path().filename().string());
  }
  CHECK(config_files == kConfigFiles);
  CHECK(files == 4);
  // Nothing was created under IPYTHONDIR: --profile-dir names the profile directly.
  CHECK(fs::directory_iterator(tmp.path())->path() == dir);
}

TEST_CASE("ipcpp-profile create --profile NAME then locate prints the profile directory") {
  TempDir root;
  const std::string expected = (root.path() / "profile_x").string() + "\n";
  const RunResult created = ipcpp_profile({"create", "--profile", "x"}, root.path());
  CHECK(created.err == "");
  CHECK(created.exit_code == 0);
  CHECK(created.out == expected);
  const RunResult located = ipcpp_profile({"locate", "--profile", "x"}, root.path());
  CHECK(located.err == "");
  CHECK(located.exit_code == 0);
  CHECK(located.out == expected);
  const RunResult located_by_equals = ipcpp_profile({"locate", "--profile=x"}, root.path());
  CHECK(located_by_equals.exit_code == 0);
  CHECK(located_by_equals.out == expected);
  const RunResult located_by_dir = ipcpp_profile(
      {"locate", "--profile-dir=" + (root.path() / "profile_x").string()}, root.path());
  CHECK(located_by_dir.exit_code == 0);
  CHECK(located_by_dir.out == expected);
}

TEST_CASE("ipcpp-profile create is idempotent and keeps edited config files") {
  TempDir root;
  REQUIRE(ipcpp_profile({"create"}, root.path()).exit_code == 0);
  const fs::path config = root.path() / "profile_default" / "ipcpp_controller.toml";
  REQUIRE(fs::exists(config));
  fs::resize_file(config, 10);
  const RunResult again = ipcpp_profile({"create", "--profile", "default"}, root.path());
  CHECK(again.exit_code == 0);
  CHECK(again.out == (root.path() / "profile_default").string() + "\n");
  CHECK(fs::file_size(config) == 10);
}

TEST_CASE("ipcpp-profile locate of a missing profile fails and says how to create it") {
  TempDir root;
  const RunResult result = ipcpp_profile({"locate", "--profile", "nope"}, root.path());
  CHECK(result.exit_code == 1);
  CHECK(result.out == "");
  CHECK(result.err == "ipcpp-profile: no profile named \"nope\" in " + root.path().string() +
                          "; create it with: ipcpp-profile create --profile nope\n");
  const RunResult by_dir =
      ipcpp_profile({"locate", "--profile-dir", (root.path() / "gone").string()}, root.path());
  CHECK(by_dir.exit_code == 1);
  CHECK(by_dir.err == "ipcpp-profile: no profile directory " + (root.path() / "gone").string() +
                          "; create it with: ipcpp-profile create --profile-dir " +
                          (root.path() / "gone").string() + "\n");
}

TEST_CASE("ipcpp-profile list shows the profiles that were created") {
  TempDir root;
  const RunResult empty = ipcpp_profile({"list"}, root.path());
  CHECK(empty.exit_code == 0);
  CHECK(empty.out == "Available profiles in " + root.path().string() + ":\n");
  REQUIRE(ipcpp_profile({"create", "--profile", "beta"}, root.path()).exit_code == 0);
  REQUIRE(ipcpp_profile({"create", "--profile=alpha"}, root.path()).exit_code == 0);
  const RunResult listed = ipcpp_profile({"list"}, root.path());
  CHECK(listed.err == "");
  CHECK(listed.exit_code == 0);
  CHECK(listed.out == "Available profiles in " + root.path().string() + ":\n    alpha\n    beta\n");
}

TEST_CASE("ipcpp-profile --ipython-dir overrides IPYTHONDIR") {
  TempDir env_root;
  TempDir flag_root;
  const RunResult created = ipcpp_profile(
      {"create", "--profile", "y", "--ipython-dir", flag_root.path().string()}, env_root.path());
  CHECK(created.exit_code == 0);
  CHECK(created.out == (flag_root.path() / "profile_y").string() + "\n");
  CHECK(fs::is_empty(env_root.path()));
  const RunResult listed =
      ipcpp_profile({"list", "--ipython-dir=" + flag_root.path().string() + "/"}, env_root.path());
  CHECK(listed.out == "Available profiles in " + flag_root.path().string() + ":\n    y\n");
  const RunResult missing = ipcpp_profile(
      {"locate", "--profile", "z", "--ipython-dir", flag_root.path().string()}, env_root.path());
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "ipcpp-profile: no profile named \"z\" in " + flag_root.path().string() +
                           "; create it with: ipcpp-profile create --profile z --ipython-dir " +
                           flag_root.path().string() + "\n");
}

TEST_CASE("ipcpp-profile uses $HOME/.ipython when IPYTHONDIR is unset") {
  TempDir home;
  ProcessOptions options;
  options.env["HOME"] = home.path().string();
  options.unset_env = {"IPYTHONDIR"};
  const RunResult result =
      ipcpp::test::run({ipcpp::test::tool_path("ipcpp-profile"), "create"}, options);
  CHECK(result.exit_code == 0);
  CHECK(result.out == (home.path() / ".ipython" / "profile_default").string() + "\n");
  CHECK(fs::is_directory(home.path() / ".ipython" / "profile_default" / "security"));
}

TEST_CASE("ipcpp-profile refuses --profile together with --profile-dir") {
  TempDir root;
  const RunResult result = ipcpp_profile(
      {"create", "--profile", "x", "--profile-dir", (root.path() / "d").string()}, root.path());
  CHECK(result.exit_code == 2);
  CHECK(result.out == "");
  CHECK(result.err ==
        "ipcpp-profile: --profile excludes --profile-dir (see ipcpp-profile --help)\n");
  CHECK(fs::is_empty(root.path()));
}

TEST_CASE("ipcpp-profile without a subcommand or with an unknown one is a usage error") {
  TempDir root;
  const RunResult none = ipcpp_profile({}, root.path());
  CHECK(none.exit_code == 2);
  CHECK(none.err ==
        "ipcpp-profile: A command (create, locate or list) is required (see ipcpp-profile "
        "--help)\n");
  const RunResult unknown = ipcpp_profile({"delete"}, root.path());
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.err ==
        "ipcpp-profile: The following argument was not expected: delete (see ipcpp-profile "
        "--help)\n");
  const RunResult list_with_profile = ipcpp_profile({"list", "--profile", "x"}, root.path());
  CHECK(list_with_profile.exit_code == 2);
}

TEST_CASE("ipcpp-profile --help describes each subcommand") {
  TempDir root;
  const RunResult help = ipcpp_profile({"--help"}, root.path());
  CHECK(help.exit_code == 0);
  CHECK(help.err == "");
  for (const char* text :
       {"Usage: ", "create", "Create a profile directory", "locate",
        "Print the directory of an existing profile", "list", "List the profiles"}) {
    CHECK_MESSAGE(help.out.find(text) != std::string::npos, text);
  }
  const RunResult create_help = ipcpp_profile({"create", "--help"}, root.path());
  CHECK(create_help.exit_code == 0);
  for (const char* text : {"--profile", "--profile-dir", "--ipython-dir", "Excludes"}) {
    CHECK_MESSAGE(create_help.out.find(text) != std::string::npos, text);
  }
}
