// ipcpp-engine as a program: its options and config file, and how it fails and stops — a
// missing or malformed connection file, a controller that does not answer or signs with
// another key, a controller that goes away, signals, and a task that ignores cancellation.
#include <csignal>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include <doctest/doctest.h>

#include "profiles/config_templates.hpp"
#include "proto/connection_file.hpp"
#include "proto/messages.hpp"
#include "proto/payload.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/proto_client.hpp"
#include "support/python_cluster.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using ipcpp::test::Process;
using ipcpp::test::ProtoClient;
using ipcpp::test::PythonCluster;
using namespace std::chrono_literals;

const std::string kExampleTasks = std::string(IPCPP_LIB_DIR) + "/libipcpp_example_tasks.so";
const std::string kTestTasks = std::string(IPCPP_LIB_DIR) + "/libipcpp_test_tasks.so";
const std::vector<std::string> kOurController = {"--ping", "200", "--heartbeat-misses", "3"};

std::string engine_tool() {
  return ipcpp::test::tool_path("ipcpp-engine");
}

ipcpp::test::ProcessOptions isolated(const ipcpp::test::TempDir& tmp) {
  ipcpp::test::ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  return options;
}

// The engine connection file of a controller that is not there: a port nobody listens on.
fs::path dead_controller_file(const ipcpp::test::TempDir& tmp) {
  ipcpp::proto::EngineConnectionFile file;
  zmq::context_t ctx;
  zmq::socket_t probe(ctx, zmq::socket_type::router);
  probe.bind("tcp://127.0.0.1:*");
  const std::string endpoint = probe.get(zmq::sockopt::last_endpoint);
  const int port = std::stoi(endpoint.substr(endpoint.rfind(':') + 1));
  probe.close();  // now nobody listens there
  file.registration = file.control = file.mux = file.task = file.iopub = file.hb_ping =
      file.hb_pong = port;
  file.broadcast = {port, port};
  file.key = "1234abcd-0123456789abcdef01234567";
  const fs::path path = tmp.path() / "dead-engine.json";
  std::ofstream(path) << ipcpp::proto::to_json_text(file);
  return path;
}

}  // namespace

TEST_CASE("ipcpp-engine reads the profile's config file, and the command line wins") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const fs::path dir = tmp.path() / "profile_conf";
  fs::create_directories(dir);

  SUBCASE("the template, every option uncommented, is accepted as it is") {
    std::string text(ipcpp::profiles::config_template("engine"));
    text = std::regex_replace(text, std::regex("^# ([a-z-]+ = )", std::regex::multiline), "$1");
    std::ofstream(dir / "ipcpp_engine.toml") << text;
    const auto r = ipcpp::test::run(
        {engine_tool(), "--profile-dir", dir.string(), "--list-functions"}, options);
    CHECK(r.err == "");
    CHECK(r.exit_code == 0);
    CHECK(r.out.find("getpid\t") != std::string::npos);
  }
  SUBCASE("load and timeout set in the file are used, and the command line overrides them") {
    std::ofstream(dir / "ipcpp_engine.toml")
        << "load = [\"" << kExampleTasks << "\"]\ntimeout = 0.5\n";
    const auto listed = ipcpp::test::run(
        {engine_tool(), "--profile-dir", dir.string(), "--list-functions"}, options);
    CHECK(listed.out.find("minus\t") != std::string::npos);
    const std::string expected_file = (dir / "security" / "ipcontroller-engine.json").string();
    const auto waited = ipcpp::test::run({engine_tool(), "--profile-dir", dir.string()}, options);
    CHECK(waited.exit_code == 1);
    CHECK(waited.err.ends_with("ipcpp-engine: no connection file at " + expected_file +
                               " after 0.5 s: start the controller first, or give --file with "
                               "a copy of its ipcontroller-engine.json\n"));
    const auto longer =
        ipcpp::test::run({engine_tool(), "--profile-dir", dir.string(), "--timeout", "1"}, options);
    CHECK(longer.err.find("after 1 s") != std::string::npos);
  }
  SUBCASE("an unknown key in the file is an error that names it") {
    std::ofstream(dir / "ipcpp_engine.toml") << "lod = [\"x.so\"]\n";
    const auto r = ipcpp::test::run({engine_tool(), "--profile-dir", dir.string()}, options);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("lod") != std::string::npos);
  }
}

TEST_CASE("ipcpp-engine refuses a wrong command line with exit status 2") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c :
       {Case{{"--timeout", "-1"}, "--timeout"},
        Case{{"--log-level", "loud"}, "unknown level 'loud'"}, Case{{"--id", "x"}, "--id"},
        Case{{"--no-such-option"}, "no-such-option"}}) {
    CAPTURE(c.says);
    std::vector<std::string> argv = {engine_tool(), "--profile-dir", (tmp.path() / "p").string()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const auto r = ipcpp::test::run(argv, options);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(c.says) != std::string::npos);
  }
}

TEST_CASE("ipcpp-engine names the file and the field of a malformed connection file") {
  ipcpp::test::TempDir tmp;
  const fs::path file = tmp.path() / "engine.json";
  std::ofstream(file) << R"({"interface": "tcp://127.0.0.1", "registration": "many"})";
  const auto r = ipcpp::test::run({engine_tool(), "--file", file.string()}, isolated(tmp));
  CHECK(r.exit_code == 1);
  CHECK(r.err.starts_with("ipcpp-engine: " + file.string() + ": field 'registration'"));
}

TEST_CASE("ipcpp-engine gives up with a clear message when no controller answers") {
  ipcpp::test::TempDir tmp;
  const fs::path file = dead_controller_file(tmp);
  const auto r =
      ipcpp::test::run({engine_tool(), "--file", file.string(), "--timeout", "0.5"}, isolated(tmp));
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("ipcpp-engine: no answer from the controller at tcp://127.0.0.1:") !=
        std::string::npos);
  CHECK(r.err.find(" within 0.5 s: is it running, and is " + file.string() +
                   " its current connection file (same ports and key)?") != std::string::npos);

  // --log-to-file: the log goes to the profile's log/ directory, the error to stderr as well.
  const fs::path profile = tmp.path() / "profile_logged";
  const auto logged = ipcpp::test::run({engine_tool(), "--profile-dir", profile.string(), "--file",
                                        file.string(), "--timeout", "0.5", "--log-to-file"},
                                       isolated(tmp));
  CHECK(logged.exit_code == 1);
  CHECK(logged.err.find("no answer from the controller") != std::string::npos);
  std::vector<fs::path> logs;
  for (const auto& entry : fs::directory_iterator(profile / "log"))
    logs.push_back(entry.path());
  REQUIRE(logs.size() == 1);
  CHECK(logs[0].filename().string().starts_with("ipengine--"));
  const std::string text = ipcpp::test::read_text(logs[0]);
  CHECK(text.find("registering with the controller at tcp://127.0.0.1:") != std::string::npos);
  CHECK(text.find("[critical] no answer from the controller") != std::string::npos);
}

TEST_CASE("ipcpp-engine with a wrong key is not registered, and says so") {
  PythonCluster cluster(kOurController);
  ipcpp::test::TempDir tmp;
  auto file = ipcpp::proto::read_engine_connection_file(cluster.engine_file());
  REQUIRE(file.ok());
  file->key = "00000000-000000000000000000000000";
  const fs::path copy = tmp.path() / "stale-engine.json";
  std::ofstream(copy) << ipcpp::proto::to_json_text(*file);
  const auto r = ipcpp::test::run({engine_tool(), "--file", copy.string(), "--timeout", "1"},
                                  cluster.process_options());
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("no answer from the controller") != std::string::npos);
  // The controller dropped the forged registration and says why.
  CHECK(ipcpp::test::wait_until(
      [&] { return cluster.controller().stderr_text().find("signature") != std::string::npos; },
      10s));
  // And it still serves engines with the right key.
  cluster.start_cpp_engines(1);
  ProtoClient client(cluster.client_file());
  CHECK(client.wait_for_engines(1, 30s).size() == 1);
}

TEST_CASE("ipcpp-engine stops on SIGTERM and unregisters, and exits when its controller is gone") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(2, {"--controller-timeout", "1"});
  ProtoClient client(cluster.client_file());
  REQUIRE(client.wait_for_engines(2, 30s).size() == 2);

  cluster.engines()[0].signal(SIGTERM);
  CHECK(cluster.engines()[0].wait_for(10s) == 0);
  CHECK(client.wait_for_engines(1, 10s).size() == 1);

  // The controller vanishes without a word (SIGKILL): the engine notices by the heartbeat.
  cluster.controller().signal(SIGKILL);
  const auto status = cluster.engines()[1].wait_for(30s);
  CHECK(status == 1);
  CHECK(cluster.engines()[1].stderr_text().find(
            "stopping: no heartbeat from the controller at tcp://127.0.0.1:") != std::string::npos);
}

TEST_CASE("ipcpp-engine does not wait for a task that ignores its cancellation") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(1, {"--load", kTestTasks, "--log-level", "debug"});
  ProtoClient client(cluster.client_file());
  const std::string uuid = client.wait_for_engines(1, 30s).at(0);
  // The task creates this file once it runs: a signal before that would cancel the request
  // before its function is called, and the engine would stop at once, as it should.
  const ipcpp::test::TempDir tmp;
  const fs::path started = tmp.path() / "started";
  const std::string running = client.execute(ProtoClient::Queue::kLoadBalanced, uuid,
                                             "ignore_cancel(60, \"" + started.string() + "\")");
  REQUIRE(ipcpp::test::wait_until([&] { return fs::exists(started); }, 30s));
  cluster.engines()[0].signal(SIGTERM);
  // It exits after the grace period (500 ms), not after the 60 s task.
  const auto status = cluster.engines()[0].wait_for(20s);
  CHECK(status == 0);
  CHECK(cluster.engines()[0].stderr_text().find("did not stop within 500 ms of its "
                                                "cancellation; exiting without it") !=
        std::string::npos);
  // The controller is told: the task fails as the engine's death.
  const auto reply = client.reply(running, 30s);
  CHECK(reply.content.value("ename", std::string()) == "EngineError");
}

TEST_CASE("ipcpp-engine publishes busy and idle only around output when a request asks") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(1);
  ProtoClient client(cluster.client_file());
  const std::string uuid = client.wait_for_engines(1, 30s).at(0);
  using ipcpp::Value;
  using ipcpp::proto::encode_apply;
  const nlohmann::json quiet = {{ipcpp::proto::kQuietStatusKey, true}};
  const auto direct = ProtoClient::Queue::kDirect;
  const auto balanced = ProtoClient::Queue::kLoadBalanced;
  // Each request is followed by a plain one: once its idle status is in, everything the
  // first published is too (one engine publishes in order).
  auto published = [&](const std::string& msg_id) {
    const std::string marker =
        client.apply(direct, uuid, encode_apply("echo", Value::list({}), {}));
    client.reply(marker, 30s);
    return client.published(msg_id, marker, 30s);
  };
  auto idle_follows = [](const ipcpp::proto::Message& reply) {
    const auto it = reply.metadata.find(ipcpp::proto::kIdleFollowsKey);
    return it == reply.metadata.end() ? nlohmann::json("absent") : *it;
  };
  using Types = std::vector<std::string>;

  // As ipyparallel's engines: busy and idle around every request.
  const std::string plain = client.apply(direct, uuid, encode_apply("echo", Value::list({1}), {}));
  CHECK(idle_follows(client.reply(plain, 30s)) == "absent");
  CHECK(published(plain) == Types{"status:busy", "status:idle"});

  // Quiet, nothing printed: nothing published, and the reply says that no idle follows.
  for (const auto queue : {direct, balanced}) {
    const std::string id =
        client.apply(queue, uuid, encode_apply("echo", Value::list({1}), {}), quiet);
    CHECK(idle_follows(client.reply(id, 30s)) == false);
    CHECK(published(id).empty());
  }

  // Quiet, with output or an error: the idle status follows it, and the reply says so.
  const std::string printing =
      client.apply(direct, uuid, encode_apply("print", Value::list({"hi"}), {}), quiet);
  CHECK(idle_follows(client.reply(printing, 30s)) == true);
  CHECK(published(printing) == Types{"stream", "status:idle"});
  const std::string failing =
      client.apply(balanced, uuid, encode_apply("no_such_function", Value::list({}), {}), quiet);
  const auto failed = client.reply(failing, 30s);
  CHECK(failed.content.value("status", std::string()) == "error");
  CHECK(idle_follows(failed) == true);
  CHECK(published(failing) == Types{"error", "status:idle"});
}
