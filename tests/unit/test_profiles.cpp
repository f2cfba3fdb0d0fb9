// Tests of profiles/: the IPython directory, profile paths, creation and modes, listing,
// private file writing, and the config templates (read back through CLI11).
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <optional>
#include <regex>
#include <set>
#include <signal.h>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <doctest/doctest.h>

#include "profiles/profile.hpp"
#include "support/files.hpp"
#include "support/small_disk.hpp"
#include "support/temp_dir.hpp"

using ipcpp::test::mode_of;
using ipcpp::test::read_text;

namespace {

namespace fs = std::filesystem;
using ipcpp::profiles::config_programs;
using ipcpp::profiles::config_template;
using ipcpp::profiles::list_profiles;
using ipcpp::profiles::Profile;
using ipcpp::profiles::write_private_file;
using ipcpp::profiles::write_private_file_if_absent;
using ipcpp::test::TempDir;

// Sets (or, given nullptr, unsets) an environment variable for the scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value != nullptr) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// Sets the umask for the scope.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

std::set<std::string> names_in(const fs::path& dir) {
  std::set<std::string> names;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir)) {
    names.insert(entry.path().filename().string());
  }
  return names;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The IPython directory

TEST_CASE("the IPython directory is $IPYTHONDIR when it is set") {
  ScopedEnv ipython_dir("IPYTHONDIR", "/srv/ipython");
  ScopedEnv home("HOME", "/home/someone");
  CHECK(ipcpp::profiles::ipython_dir() == fs::path("/srv/ipython"));
}

TEST_CASE("the IPython directory is $HOME/.ipython when IPYTHONDIR is unset or empty") {
  ScopedEnv home("HOME", "/home/someone");
  SUBCASE("unset") {
    ScopedEnv ipython_dir("IPYTHONDIR", nullptr);
    CHECK(ipcpp::profiles::ipython_dir() == fs::path("/home/someone/.ipython"));
  }
  SUBCASE("empty") {
    ScopedEnv ipython_dir("IPYTHONDIR", "");
    CHECK(ipcpp::profiles::ipython_dir() == fs::path("/home/someone/.ipython"));
  }
}

TEST_CASE("a relative IPYTHONDIR is taken from the current directory") {
  ScopedEnv ipython_dir("IPYTHONDIR", "some/where/../ipython/");
  CHECK(ipcpp::profiles::ipython_dir() == fs::current_path() / "some" / "ipython");
}

TEST_CASE("an explicit IPython directory overrides IPYTHONDIR") {
  ScopedEnv ipython_dir("IPYTHONDIR", "/srv/ipython");
  CHECK(ipcpp::profiles::ipython_dir("/data/ipython/") == fs::path("/data/ipython"));
  CHECK(ipcpp::profiles::ipython_dir("rel") == fs::current_path() / "rel");
  CHECK(ipcpp::profiles::ipython_dir("") == fs::path("/srv/ipython"));
}

TEST_CASE("the IPython directory is unknown when neither IPYTHONDIR nor HOME is set") {
  ScopedEnv ipython_dir("IPYTHONDIR", nullptr);
  ScopedEnv home("HOME", "");
  CHECK_THROWS_WITH_AS(ipcpp::profiles::ipython_dir(),
                       "cannot locate the IPython directory: neither IPYTHONDIR nor HOME is set",
                       std::runtime_error);
}

// ---------------------------------------------------------------------------------------------
// Paths

TEST_CASE("a named profile is the directory profile_<name> in the IPython directory") {
  const Profile profile = Profile::named("work", "/srv/ipython");
  CHECK(profile.dir() == fs::path("/srv/ipython/profile_work"));
  CHECK(profile.name() == "work");
  CHECK(profile.security_dir() == fs::path("/srv/ipython/profile_work/security"));
  CHECK(profile.pid_dir() == fs::path("/srv/ipython/profile_work/pid"));
  CHECK(profile.log_dir() == fs::path("/srv/ipython/profile_work/log"));
  CHECK(profile.config_file("controller") ==
        fs::path("/srv/ipython/profile_work/ipcpp_controller.toml"));
  CHECK(profile.config_file("px") == fs::path("/srv/ipython/profile_work/ipcpp_px.toml"));
  CHECK(Profile::named("default", "ipython").dir() ==
        fs::current_path() / "ipython" / "profile_default");
}

TEST_CASE("a profile name must be non-empty and free of '/'") {
  CHECK_THROWS_WITH_AS(
      Profile::named("", "/srv/ipython"),
      "invalid profile name \"\": a profile name must be non-empty and must not contain '/'",
      std::invalid_argument);
  CHECK_THROWS_WITH_AS(
      Profile::named("../x", "/srv/ipython"),
      "invalid profile name \"../x\": a profile name must be non-empty and must not contain '/'",
      std::invalid_argument);
}

TEST_CASE("a profile at a directory takes that directory, made absolute") {
  CHECK(Profile::at("/data/profile_big/").dir() == fs::path("/data/profile_big"));
  CHECK(Profile::at("/data/profile_big/").name() == "big");
  CHECK(Profile::at("/data/cluster").name() == "cluster");
  CHECK(Profile::at("/data/profile_").name() == "profile_");
  CHECK(Profile::at("here/./there").dir() == fs::current_path() / "here" / "there");
}

TEST_CASE("connection files are named as ipyparallel names them, with and without a cluster id") {
  const Profile profile = Profile::at("/p");
  CHECK(profile.client_connection_file() == fs::path("/p/security/ipcontroller-client.json"));
  CHECK(profile.engine_connection_file() == fs::path("/p/security/ipcontroller-engine.json"));
  CHECK(profile.client_connection_file("") == fs::path("/p/security/ipcontroller-client.json"));
  CHECK(profile.client_connection_file("abc") ==
        fs::path("/p/security/ipcontroller-abc-client.json"));
  CHECK(profile.engine_connection_file("abc") ==
        fs::path("/p/security/ipcontroller-abc-engine.json"));
}

// ---------------------------------------------------------------------------------------------
// Creating profiles

TEST_CASE("create makes security/ and pid/ 0700, log/ 0755 and every config file 0600") {
  TempDir root;
  ScopedUmask permissive(0);
  const Profile profile = Profile::named("fresh", root.path() / "ipython");
  CHECK_FALSE(profile.exists());
  profile.create();
  CHECK(profile.exists());
  CHECK(mode_of(profile.security_dir()) == 0700);
  CHECK(mode_of(profile.pid_dir()) == 0700);
  CHECK(mode_of(profile.log_dir()) == 0755);
  std::set<std::string> expected{"security", "pid", "log"};
  for (std::string_view program : config_programs()) {
    const fs::path file = profile.config_file(program);
    expected.insert(file.filename().string());
    CHECK_MESSAGE(mode_of(file) == 0600, file.string());
    CHECK(read_text(file) == config_template(program));
  }
  CHECK(names_in(profile.dir()) == expected);
}

TEST_CASE("create gives existing directories the right modes") {
  TempDir root;
  const Profile profile = Profile::at(root.path() / "existing");
  fs::create_directories(profile.security_dir());
  fs::create_directories(profile.pid_dir());
  fs::create_directories(profile.log_dir());
  fs::permissions(profile.security_dir(), fs::perms::all);
  fs::permissions(profile.pid_dir(), fs::perms::owner_all | fs::perms::group_read);
  fs::permissions(profile.log_dir(), fs::perms::owner_all);
  profile.create();
  CHECK(mode_of(profile.security_dir()) == 0700);
  CHECK(mode_of(profile.pid_dir()) == 0700);
  CHECK(mode_of(profile.log_dir()) == 0755);
}

TEST_CASE("create is idempotent and never touches an existing config file") {
  TempDir root;
  const Profile profile = Profile::named("edited", root.path());
  profile.create();
  const fs::path edited = profile.config_file("controller");
  write_private_file(edited, "hwm = 4\n");
  fs::permissions(edited, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
  fs::remove(profile.config_file("px"));
  profile.create();
  CHECK(read_text(edited) == "hwm = 4\n");
  CHECK(mode_of(edited) == 0640);
  CHECK(read_text(profile.config_file("px")) == config_template("px"));
  CHECK(read_text(profile.config_file("engine")) == config_template("engine"));
}

TEST_CASE("create fails naming the directory when the profile path is a file") {
  TempDir root;
  const Profile profile = Profile::at(root.path() / "profile_file");
  std::ofstream(profile.dir()) << "not a directory";
  CHECK_THROWS_WITH_AS(
      profile.create(),
      ("cannot create directory " + profile.dir().string() + ": Not a directory").c_str(),
      std::system_error);
  CHECK_FALSE(profile.exists());
}

TEST_CASE("create fails naming security/ when it is not a directory") {
  TempDir root;
  const Profile profile = Profile::at(root.path() / "profile_bad");
  fs::create_directories(profile.dir());
  std::ofstream(profile.security_dir()) << "not a directory";
  CHECK_THROWS_WITH_AS(
      profile.create(),
      ("cannot create directory " + profile.security_dir().string() + ": Not a directory").c_str(),
      std::system_error);
}

// ---------------------------------------------------------------------------------------------
// Listing profiles

TEST_CASE("list_profiles gives the sorted names of the profile_ directories") {
  TempDir root;
  Profile::named("zeta", root.path()).create();
  Profile::named("alpha", root.path()).create();
  fs::create_directory(root.path() / "profile_mid");
  fs::create_directory(root.path() / "profile_");
  fs::create_directory(root.path() / "extensions");
  std::ofstream(root.path() / "profile_file") << "not a directory";
  fs::create_directory_symlink(root.path() / "profile_zeta", root.path() / "profile_linked");
  CHECK(list_profiles(root.path()) == std::vector<std::string>{"alpha", "linked", "mid", "zeta"});
}

TEST_CASE("list_profiles of a missing IPython directory is empty") {
  TempDir root;
  CHECK(list_profiles(root.path() / "missing").empty());
  CHECK(list_profiles(root.path()).empty());
}

// ---------------------------------------------------------------------------------------------
// Private files

TEST_CASE("write_private_file makes a 0600 file even with umask 0") {
  TempDir dir;
  ScopedUmask permissive(0);
  const fs::path path = dir.path() / "ipcontroller-client.json";
  write_private_file(path, "{\"key\": \"secret\"}\n");
  CHECK(mode_of(path) == 0600);
  CHECK(read_text(path) == "{\"key\": \"secret\"}\n");
  CHECK(names_in(dir.path()) == std::set<std::string>{"ipcontroller-client.json"});
}

TEST_CASE("write_private_file replaces a file atomically, by rename, and makes it 0600") {
  TempDir dir;
  const fs::path path = dir.path() / "connection.json";
  std::ofstream(path) << "old";
  fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  // A reader that opened the old file keeps reading the whole old file: it was not rewritten
  // in place but replaced by another file.
  std::ifstream reader(path);
  write_private_file(path, "new content");
  std::string seen_by_reader;
  std::getline(reader, seen_by_reader);
  CHECK(seen_by_reader == "old");
  CHECK(read_text(path) == "new content");
  CHECK(mode_of(path) == 0600);
  CHECK(names_in(dir.path()) == std::set<std::string>{"connection.json"});
}

TEST_CASE("write_private_file replaces a symbolic link, not the file it points to") {
  TempDir dir;
  std::ofstream(dir.path() / "elsewhere") << "keep";
  fs::create_symlink(dir.path() / "elsewhere", dir.path() / "link");
  write_private_file(dir.path() / "link", "private");
  CHECK(read_text(dir.path() / "elsewhere") == "keep");
  CHECK_FALSE(fs::is_symlink(dir.path() / "link"));
  CHECK(read_text(dir.path() / "link") == "private");
}

TEST_CASE("write_private_file names the path and the reason when the directory is missing") {
  TempDir dir;
  const fs::path path = dir.path() / "missing" / "ipcontroller-engine.json";
  CHECK_THROWS_WITH_AS(write_private_file(path, "{}"),
                       ("cannot write " + path.string() + ": No such file or directory").c_str(),
                       std::system_error);
  CHECK(names_in(dir.path()).empty());
}

TEST_CASE("write_private_file on a full disk keeps the old file and leaves no temporary file") {
  // A real full file system: a 64 KiB tmpfs.
  ipcpp::test::SmallDisk small_disk("64k");
  if (!small_disk.mounted()) {
    MESSAGE("skipped: " << small_disk.why());
    return;
  }
  const fs::path& disk = small_disk.path();

  const fs::path security = disk / "security";
  fs::create_directory(security);
  const fs::path target = security / "ipcontroller-client.json";
  write_private_file(target, "old content");

  // Fill the file system.
  const fs::path filler = disk / "filler";
  const int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  REQUIRE(fd >= 0);
  const std::string block(4096, 'f');
  int write_errno = 0;
  for (;;) {
    if (::write(fd, block.data(), block.size()) < 0) {
      write_errno = errno;
      break;
    }
  }
  ::close(fd);
  REQUIRE(write_errno == ENOSPC);

  const std::string new_content(16 * 1024, 'n');
  CHECK_THROWS_WITH_AS(write_private_file(target, new_content),
                       ("cannot write " + target.string() + ": No space left on device").c_str(),
                       std::system_error);
  CHECK(read_text(target) == "old content");
  CHECK(mode_of(target) == 0600);
  CHECK(names_in(security) == std::set<std::string>{"ipcontroller-client.json"});

  // With room again, the same write succeeds: the disk was the only reason.
  fs::remove(filler);
  write_private_file(target, new_content);
  CHECK(read_text(target) == new_content);
  CHECK(names_in(security) == std::set<std::string>{"ipcontroller-client.json"});
}

TEST_CASE("write_private_file keeps the old file when a write fails part-way") {
  // A file size limit makes write() fail with EFBIG after 4 KiB: the failure path of a full
  // disk, without needing a mount.
  TempDir dir;
  const fs::path target = dir.path() / "ipcontroller-engine.json";
  write_private_file(target, "old content");
  std::optional<std::string> error;
  {
    struct rlimit old_limit {};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    struct Restore {
      struct rlimit limit;
      void (*handler)(int);
      ~Restore() {
        ::setrlimit(RLIMIT_FSIZE, &limit);
        ::signal(SIGXFSZ, handler);
      }
    } restore{old_limit, ::signal(SIGXFSZ, SIG_IGN)};
    struct rlimit small_limit = old_limit;
    small_limit.rlim_cur = 4096;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &small_limit) == 0);
    try {
      write_private_file(target, std::string(64 * 1024, 'n'));
    } catch (const std::system_error& e) {
      error = e.what();
    }
  }
  CHECK(error == "cannot write " + target.string() + ": File too large");
  CHECK(read_text(target) == "old content");
  CHECK(names_in(dir.path()) == std::set<std::string>{"ipcontroller-engine.json"});
}

TEST_CASE("write_private_file_if_absent writes a new file and never replaces anything") {
  TempDir dir;
  ScopedUmask permissive(0);
  const fs::path path = dir.path() / "ipcpp_engine.toml";
  CHECK(write_private_file_if_absent(path, "first"));
  CHECK(mode_of(path) == 0600);
  CHECK_FALSE(write_private_file_if_absent(path, "second"));
  CHECK(read_text(path) == "first");
  fs::create_symlink(dir.path() / "nowhere", dir.path() / "dangling");
  CHECK_FALSE(write_private_file_if_absent(dir.path() / "dangling", "third"));
  CHECK(fs::is_symlink(dir.path() / "dangling"));
  CHECK_FALSE(fs::exists(dir.path() / "nowhere"));
  CHECK(names_in(dir.path()) == std::set<std::string>{"dangling", "ipcpp_engine.toml"});
}

// ---------------------------------------------------------------------------------------------
// Config templates

namespace {

const std::regex kOptionLine(R"(# ([a-z][a-z0-9-]*) = (.+))");

// Returns the template with its `# name = value` lines uncommented and every other line dropped.
std::string uncommented_options(std::string_view text) {
  std::istringstream in{std::string(text)};
  std::string config;
  for (std::string line; std::getline(in, line);) {
    std::smatch match;
    if (std::regex_match(line, match, kOptionLine))
      config += match[1].str() + " = " + match[2].str() + "\n";
  }
  return config;
}

// Parses the uncommented options of `program`'s template as `app`'s config file, the way the
// program will: every key must name an option of `app` and every value must convert to it.
// Then checks that each option of `app` was set by the file exactly once.
void parse_template(CLI::App& app, std::string_view program) {
  TempDir dir;
  const fs::path file = dir.path() / ("ipcpp_" + std::string(program) + ".toml");
  std::ofstream(file) << uncommented_options(config_template(program));
  app.set_config("--config", file.string(), "Config file", true);
  app.allow_config_extras(CLI::config_extras_mode::error);
  REQUIRE_NOTHROW(app.parse(std::string(), false));
  for (const CLI::Option* option : app.get_options()) {
    if (option->get_name() == "--help" || option->get_name() == "--config") continue;
    CHECK_MESSAGE(option->count() == 1, option->get_name() << " is not set once by the template");
  }
}

const std::vector<std::string> kLogLevels{"trace", "debug", "info", "warning", "error", "critical"};

}  // namespace

TEST_CASE("there is a config template for each program and none for other names") {
  CHECK(std::vector<std::string_view>(config_programs().begin(), config_programs().end()) ==
        std::vector<std::string_view>{"controller", "engine", "cluster", "px"});
  CHECK_THROWS_WITH_AS(config_template("ipcontroller"),
                       "no config template for program \"ipcontroller\"", std::invalid_argument);
}

TEST_CASE("each config template says which program reads it and that the command line wins") {
  for (std::string_view program : config_programs()) {
    CAPTURE(program);
    const std::string text(config_template(program));
    const std::string first_line = text.substr(0, text.find('\n'));
    CHECK(first_line == "# ipcpp_" + std::string(program) + ".toml: configuration of ipcpp-" +
                            std::string(program) + " for this profile.");
    CHECK(text.find("options given on the command line override the values set here") !=
          std::string::npos);
  }
}

TEST_CASE("each config template is all comments, each option after a line describing it") {
  for (std::string_view program : config_programs()) {
    CAPTURE(program);
    std::istringstream in{std::string(config_template(program))};
    std::string previous;
    int options = 0;
    for (std::string line; std::getline(in, line); previous = line) {
      CAPTURE(line);
      CHECK((line.empty() || line == "#" || line.starts_with("# ")));
      if (std::regex_match(line, kOptionLine)) {
        ++options;
        CHECK(previous.starts_with("# "));
        CHECK_FALSE(std::regex_match(previous, kOptionLine));
      }
    }
    CHECK(options > 0);
  }
}

TEST_CASE("the controller template, uncommented, sets every controller option to its default") {
  CLI::App app;
  std::string ip, ports = "unset", scheme, db, cluster_id = "unset", log_level, location = "unset";
  int hwm = -1, heartbeat_period = 0, heartbeat_misses = 0;
  double registration_timeout = -1;
  std::size_t record_limit = 0, dependency_history = 0;
  std::uint64_t size_limit = 0;
  bool reuse = true, log_to_file = true;
  app.add_option("--ip", ip);
  app.add_option("--ports", ports);
  app.add_option("--location", location);
  app.add_option("--registration-timeout", registration_timeout);
  app.add_option("--scheme", scheme)
      ->check(CLI::IsMember({"lru", "plainrandom", "twobin", "leastload", "weighted"}));
  app.add_option("--hwm", hwm)->check(CLI::NonNegativeNumber);
  app.add_option("--dependency-history", dependency_history)->check(CLI::PositiveNumber);
  app.add_option("--db", db)->check(CLI::IsMember({"memory", "sqlite", "none"}));
  app.add_option("--record-limit", record_limit);
  app.add_option("--size-limit", size_limit);
  app.add_option("--heartbeat-period", heartbeat_period)->check(CLI::PositiveNumber);
  app.add_option("--heartbeat-misses", heartbeat_misses)->check(CLI::PositiveNumber);
  app.add_flag("--reuse", reuse);
  app.add_option("--cluster-id", cluster_id);
  app.add_option("--log-level", log_level)->check(CLI::IsMember(kLogLevels));
  app.add_flag("--log-to-file", log_to_file);
  parse_template(app, "controller");
  CHECK(ip == "127.0.0.1");
  CHECK(ports.empty());
  CHECK(scheme == "leastload");
  CHECK(hwm == 1);
  CHECK(dependency_history == 100000);
  CHECK(db == "memory");
  CHECK(record_limit == 1024);
  CHECK(size_limit == 1073741824);
  CHECK(heartbeat_period == 1000);
  CHECK(heartbeat_misses == 2);
  CHECK(registration_timeout == 0);
  CHECK(location.empty());
  CHECK_FALSE(reuse);
  CHECK(cluster_id.empty());
  CHECK(log_level == "info");
  CHECK_FALSE(log_to_file);
}

TEST_CASE("the engine template, uncommented, sets every engine option") {
  CLI::App app;
  std::string file = "unset", log_level, cluster_id = "unset", location = "unset";
  double timeout = 0, controller_timeout = 0;
  bool log_to_file = true;
  bool capture_fd_output = false;
  app.add_option("--file", file);
  app.add_option("--cluster-id", cluster_id);
  app.add_option("--location", location);
  app.add_flag("--capture-fd-output,!--no-capture-fd-output", capture_fd_output);
  // --load has no default (CLI11 2.1 reads no empty list): the template shows an example only.
  app.add_option("--timeout", timeout)->check(CLI::PositiveNumber);
  app.add_option("--controller-timeout", controller_timeout)->check(CLI::NonNegativeNumber);
  app.add_option("--log-level", log_level)->check(CLI::IsMember(kLogLevels));
  app.add_flag("--log-to-file", log_to_file);
  parse_template(app, "engine");
  CHECK(file.empty());
  CHECK(cluster_id.empty());
  CHECK(location.empty());
  CHECK(timeout == 5);
  CHECK(controller_timeout == 60);
  CHECK(capture_fd_output);
  CHECK(log_level == "info");
  CHECK_FALSE(log_to_file);
}

TEST_CASE("the cluster template, uncommented, sets every cluster option to its default") {
  CLI::App app;
  std::size_t n = 99;
  std::string engines, controller, engine_program, cluster_id = "unset", log_level;
  bool daemonize = true, log_to_file = true;
  double delay = -1, timeout = 0, stop_timeout = 0;
  app.add_option("-n,--n", n);
  std::string ssh, remote_engine_program, remote_profile_dir = "unset", mpiexec;
  std::string queue = "unset", job_name = "unset";
  app.add_option("--engines", engines)
      ->check(CLI::IsMember({"local", "ssh", "mpi", "slurm", "pbs", "sge"}));
  app.add_option("--controller", controller)
      ->check(CLI::IsMember({"local", "ssh", "slurm", "pbs", "sge"}));
  std::string remote_controller_program;
  app.add_option("--remote-controller-program", remote_controller_program);
  // The launchers' options without a default (hosts, keys, extra arguments, templates) are
  // shown as examples only.
  app.add_option("--ssh", ssh);
  app.add_option("--remote-engine-program", remote_engine_program);
  app.add_option("--remote-profile-dir", remote_profile_dir);
  app.add_option("--mpiexec", mpiexec);
  app.add_option("--queue", queue);
  app.add_option("--job-name", job_name);
  app.add_option("--delay", delay)->check(CLI::NonNegativeNumber);
  app.add_flag("--daemonize", daemonize);
  app.add_option("--timeout", timeout)->check(CLI::PositiveNumber);
  app.add_option("--stop-timeout", stop_timeout)->check(CLI::NonNegativeNumber);
  app.add_option("--engine-program", engine_program);
  // --load, --engine-arg and --controller-arg have no default (CLI11 2.1 reads no empty list):
  // the template shows examples only.
  app.add_option("--cluster-id", cluster_id);
  app.add_option("--log-level", log_level)->check(CLI::IsMember(kLogLevels));
  app.add_flag("--log-to-file", log_to_file);
  parse_template(app, "cluster");
  CHECK(n == 0);
  CHECK(engines == "local");
  CHECK(controller == "local");
  CHECK(delay == 0);
  CHECK_FALSE(daemonize);
  CHECK(timeout == 60);
  CHECK(stop_timeout == 5);
  CHECK(engine_program == "ipcpp-engine");
  CHECK(ssh == "ssh");
  CHECK(remote_engine_program == "ipcpp-engine");
  CHECK(remote_controller_program == "ipcpp-controller");
  CHECK(remote_profile_dir.empty());
  CHECK(mpiexec == "mpiexec");
  CHECK(queue.empty());
  CHECK(job_name.empty());
  CHECK(cluster_id.empty());
  CHECK(log_level == "info");
  CHECK_FALSE(log_to_file);
}

TEST_CASE("the px template, uncommented, sets every px option to its default") {
  CLI::App app;
  std::string targets;
  app.add_option("--targets", targets);
  parse_template(app, "px");
  CHECK(targets == "all");
}
