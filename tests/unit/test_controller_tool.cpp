// The ipcpp-controller command line: ipcontroller's spellings, the profile config file, and
// clear errors for a wrong command line. Runs the real binary on 127.0.0.1.
#include <csignal>
#include <fstream>
#include <regex>
#include <sstream>

#include <doctest/doctest.h>

#include "profiles/config_templates.hpp"
#include "support/process.hpp"
#include "support/python_cluster.hpp"
#include "support/temp_dir.hpp"

namespace fs = std::filesystem;
using ipcpp::test::Process;
using ipcpp::test::read_text;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

ipcpp::test::ProcessOptions isolated(const ipcpp::test::TempDir& tmp) {
  ipcpp::test::ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  return options;
}

// Starts the controller, waits for its client file (and its pid file, which is written last
// and removed at exit), returns the client file's JSON and stops it.
json start_and_read(const std::vector<std::string>& args, const fs::path& client_file,
                    const ipcpp::test::ProcessOptions& options) {
  const fs::path pid_dir = client_file.parent_path().parent_path() / "pid";
  std::vector<std::string> argv = {ipcpp::test::tool_path("ipcpp-controller")};
  argv.insert(argv.end(), args.begin(), args.end());
  Process controller(argv, options);
  const bool ready = ipcpp::test::wait_until(
      [&] {
        return json::accept(read_text(client_file)) && fs::exists(pid_dir) &&
               !fs::is_empty(pid_dir);
      },
      20s);
  INFO(controller.stderr_text());
  REQUIRE(ready);
  const json file = json::parse(read_text(client_file));
  controller.signal(SIGTERM);
  CHECK(controller.wait_for(10s) == 0);
  return file;
}

}  // namespace

TEST_CASE("ipcpp-controller accepts ipcontroller's spellings of its options") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const fs::path root = tmp.path() / "ipython";
  // --profile=NAME --ipython-dir=DIR --cluster-id=ID --ping=MS --dictdb --log-level=10
  const fs::path client = root / "profile_lab" / "security" / "ipcontroller-c1-client.json";
  const json file =
      start_and_read({"--profile=lab", "--ipython-dir=" + root.string(), "--cluster-id=c1",
                      "--ping=750", "--dictdb", "--ip=127.0.0.1", "--log-level=10", "--reuse"},
                     client, options);
  CHECK(file["interface"] == "tcp://127.0.0.1");
  CHECK(file["task_scheme"] == "leastload");
  // --reuse kept the files; a second start reuses the same ports and key.
  REQUIRE(fs::exists(client));
  const json again = start_and_read(
      {"--profile=lab", "--ipython-dir=" + root.string(), "--cluster-id=c1", "--reuse"}, client,
      options);
  CHECK(again == file);
  // An empty --cluster-id means none, as ipyparallel's launchers pass it.
  const json plain = start_and_read({"--profile-dir", (root / "p2").string(), "--cluster-id", ""},
                                    root / "p2" / "security" / "ipcontroller-client.json", options);
  CHECK(plain["task_scheme"] == "leastload");
}

TEST_CASE("ipcpp-controller reads the profile's config file, and the command line wins") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const fs::path dir = tmp.path() / "profile_conf";
  const fs::path client = dir / "security" / "ipcontroller-client.json";
  fs::create_directories(dir);

  SUBCASE("the template, every option uncommented, is accepted as it is") {
    std::string text(ipcpp::profiles::config_template("controller"));
    text = std::regex_replace(text, std::regex("^# ([a-z-]+ = )", std::regex::multiline), "$1");
    std::ofstream(dir / "ipcpp_controller.toml") << text;
    const json file = start_and_read({"--profile-dir", dir.string()}, client, options);
    CHECK(file["task_scheme"] == "leastload");
  }
  SUBCASE("a value set in the file is used, and the command line overrides it") {
    std::ofstream(dir / "ipcpp_controller.toml") << "scheme = \"lru\"\nhwm = 4\n";
    CHECK(start_and_read({"--profile-dir", dir.string()}, client, options)["task_scheme"] == "lru");
    CHECK(start_and_read({"--profile-dir", dir.string(), "--scheme", "twobin"}, client,
                         options)["task_scheme"] == "twobin");
  }
  SUBCASE("an unknown key in the file is an error that names it") {
    std::ofstream(dir / "ipcpp_controller.toml") << "schema = \"lru\"\n";
    const auto r = ipcpp::test::run(
        {ipcpp::test::tool_path("ipcpp-controller"), "--profile-dir", dir.string()}, options);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("schema") != std::string::npos);
    CHECK_FALSE(fs::exists(client));
  }
}

TEST_CASE("ipcpp-controller refuses a wrong command line with exit status 2") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const std::string dir = (tmp.path() / "p").string();
  const std::string tool = ipcpp::test::tool_path("ipcpp-controller");
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c :
       {Case{{"--scheme", "fastest"}, "fastest"}, Case{{"--db", "mongodb"}, "mongodb"},
        Case{{"--ports", "9000-8000"}, "'9000-8000' is not a port range"},
        Case{{"--log-level", "loud"}, "unknown level 'loud'"},
        Case{{"--no-such-option"}, "no-such-option"}}) {
    CAPTURE(c.says);
    std::vector<std::string> argv = {tool, "--profile-dir", dir};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const auto r = ipcpp::test::run(argv, options);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.says) != std::string::npos);
  }
}

TEST_CASE("ipcpp-controller fails clearly when it cannot start") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const fs::path dir = tmp.path() / "p";
  const std::string tool = ipcpp::test::tool_path("ipcpp-controller");

  SUBCASE("a port in use") {
    zmq::context_t ctx;
    zmq::socket_t holder(ctx, zmq::socket_type::router);
    holder.bind("tcp://127.0.0.1:*");
    const std::string endpoint = holder.get(zmq::sockopt::last_endpoint);
    const std::string port = endpoint.substr(endpoint.rfind(':') + 1);
    const auto r = ipcpp::test::run(
        {tool, "--profile-dir", dir.string(), "--ports", port + "-" + port}, options);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("cannot listen on tcp://127.0.0.1:" + port) != std::string::npos);
    CHECK_FALSE(fs::exists(dir / "security" / "ipcontroller-client.json"));
  }
  SUBCASE("--reuse with a malformed connection file") {
    fs::create_directories(dir / "security");
    std::ofstream(dir / "security" / "ipcontroller-client.json") << "{\"mux\": \"x\"}";
    std::ofstream(dir / "security" / "ipcontroller-engine.json") << "{}";
    const auto r = ipcpp::test::run({tool, "--profile-dir", dir.string(), "--reuse"}, options);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("--reuse: " + (dir / "security" / "ipcontroller-client.json").string()) !=
          std::string::npos);
    // Nothing is lost: the files are left as they were.
    CHECK(read_text(dir / "security" / "ipcontroller-client.json") == "{\"mux\": \"x\"}");
  }
}
