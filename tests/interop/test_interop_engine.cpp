// ipcpp-engine end to end: real engines registered with ipcpp-controller and with ipyparallel's
// ipcontroller, driven by the real Python Client (tests/interop/engine_scenarios.py) and by a
// client built on proto/ alone. Everything runs on 127.0.0.1 with ports chosen by the OS.
#include <csignal>
#include <string>

#include <doctest/doctest.h>

#include "proto/messages.hpp"
#include "proto/payload.hpp"
#include "support/process.hpp"
#include "support/proto_client.hpp"
#include "support/python_cluster.hpp"
#include "support/temp_dir.hpp"

namespace {

using ipcpp::test::Process;
using ipcpp::test::ProtoClient;
using ipcpp::test::PythonCluster;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kLib = IPCPP_LIB_DIR;
const std::string kExampleTasks = kLib + "/libipcpp_example_tasks.so";
const std::string kTestTasks = kLib + "/libipcpp_test_tasks.so";

// A short heartbeat: the Python engines of other tests register on a tick; ours at once.
const std::vector<std::string> kOurController = {"--ping", "200", "--heartbeat-misses", "3"};
const std::vector<std::string> kReferenceController = {"--ip=127.0.0.1", "--ping=200",
                                                       "--log-level=30"};

void check_basics(const json& out, bool loaded) {
  CHECK(out["ids"] == json::array({0, 1}));
  CHECK(out["echo_stdout"] == json::array({"hi\n", "hi\n"}));
  CHECK(out["stderr"] == json::array({"oops\n", "oops\n"}));
  // x = getpid() then x: each engine's own pid, as execute_result.
  const auto& pids = out["pids"];
  REQUIRE(pids.size() == 2);
  CHECK(pids[0].is_number_integer());
  CHECK(pids[0] != pids[1]);
  // The same through the broadcast scheduler.
  json sorted = pids;
  std::sort(sorted.begin(), sorted.end());
  CHECK(out["broadcast_pids"] == sorted);
  CHECK(out["unknown_function"]["ename"] == "NameError");
  CHECK(out["unknown_function"]["evalue"] ==
        "unknown function 'nosuch': not a built-in and not in a loaded task library "
        "(functions() lists them)");
  CHECK(out["unknown_function"]["count"] == 2);
  CHECK(out["syntax_error"]["ename"] == "SyntaxError");
  CHECK(out["failed_command"]["ename"] == "CalledProcessError");
  CHECK(out["failed_command"]["evalue"] == "Command 'exit 3' returned non-zero exit status 3.");
  CHECK(out["pickle"]["ename"] == "NotImplementedError");
  CHECK(out["pickle"]["evalue"] ==
        "apply request is a Python pickle (protocol 4): this engine runs C++ functions, not "
        "Python ones");
  CHECK(out["after_pickle"] == json::array({41}));
  CHECK(out["sum"] == json::array({45, 45}));
  CHECK(out["print_stdout"] == "y is 45\n");
  CHECK(out["after_clear"]["ename"] == "NameError");
  if (loaded) {
    CHECK(out["minus"] == json::array({-1, -1}));
    const auto& functions = out["functions"];
    for (const char* f : {"minus", "maxdelay", "mandelbrot_row", "count_words", "matmul_block",
                          "auc_slice", "pi_slice", "sleep", "getpid"}) {
      CHECK_MESSAGE(std::find(functions.begin(), functions.end(), f) != functions.end(), f);
    }
  }
}

}  // namespace

TEST_CASE("engine: two ipcpp-engines serve the Python client through ipcpp-controller") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(2, {"--load", kExampleTasks});
  check_basics(cluster.engine_scenario("basics", {"--load"}), true);
}

TEST_CASE("engine: two ipcpp-engines serve the Python client through ipyparallel's ipcontroller") {
  PythonCluster cluster(kReferenceController, "/usr/bin/ipcontroller");
  cluster.start_cpp_engines(2, {"--timeout", "30", "--load", kExampleTasks});
  check_basics(cluster.engine_scenario("basics", {"--load"}), true);
}

TEST_CASE("engine: output of a shell command or a function streams while it runs") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(1);
  const json out = cluster.engine_scenario("streaming", {"--engines", "1"});
  CHECK(out["shell"]["seen_while_running"] == true);
  CHECK(out["shell"]["stdout"] == "first\nsecond\n");
  CHECK(out["function"]["seen_while_running"] == true);
  CHECK(out["function"]["stdout"] == "first\nsecond\n");
}

TEST_CASE("engine: a sleeping engine stays registered, and abort or shutdown stop it at once") {
  // 200 ms x 3 misses: an engine that did not answer would be gone after 0.8 s; the
  // scenario waits 2 s while engine 0 sleeps.
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(2);
  const json out = cluster.engine_scenario("busy", {"--wait", "2"});
  CHECK(out["registered_while_sleeping"] == true);
  CHECK(out["queue_while_sleeping"] == 1);
  CHECK(out["abort"]["ename"] == "TaskAborted");
  CHECK(out["after_abort"] == json::array({7}));
  // The engine answers the task it was running as aborted, then unregisters. The reply (mux
  // relay) and the unregistration notification (hub) reach the client by two paths, so the
  // client may hear of the engine's departure first and fail the task itself: either error
  // says the task ended with the engine.
  const std::string shutdown_error = out["shutdown_error"]["ename"].get<std::string>();
  CHECK_MESSAGE((shutdown_error == "TaskAborted" || shutdown_error == "EngineError"),
                shutdown_error);
  CHECK(out["ids_after_shutdown"] == json::array({0}));
  // The sleep had 18 s to go: both ended far sooner (measured: milliseconds).
  CHECK(out["abort"]["seconds"].get<double>() < 10);
  CHECK(out["shutdown_seconds"].get<double>() < 10);
  MESSAGE("abort took " << out["abort"]["seconds"] << " s, shutdown " << out["shutdown_seconds"]
                        << " s");
  // The engine that was shut down exited by itself, with status 0.
  bool found = false;
  for (auto& engine : cluster.engines()) {
    if (engine.pid() != out["shutdown_pid"].get<int>()) continue;
    found = true;
    const auto status = engine.wait_for(10s);
    CHECK_MESSAGE(status == 0, cluster.engines_output());
  }
  CHECK(found);
}

TEST_CASE(
    "engine: --load registers a task library's functions, and bad libraries fail at start-up") {
  ipcpp::test::TempDir tmp;
  const std::string engine = ipcpp::test::tool_path("ipcpp-engine");
  const std::string profile = (tmp.path() / "p").string();

  const auto listed = ipcpp::test::run({engine, "--profile-dir", profile, "--load", kExampleTasks,
                                        "--load", kTestTasks, "--list-functions"});
  CHECK(listed.exit_code == 0);
  for (const char* f :
       {"minus\t", "maxdelay\t", "mandelbrot_row\t", "count_words\t", "matmul_block\t",
        "auc_slice\t", "pi_slice\t", "abort_process\t", "sleep\t", "echo\t", "getpid\t",
        "hostname\t", "ncpus\t", "sum\t", "len\t", "range\t"}) {
    const bool found =
        listed.out.find(std::string("\n") + f) != std::string::npos || listed.out.starts_with(f);
    CHECK_MESSAGE(found, f);
  }
  CHECK(listed.out.find("[" + kExampleTasks + "]") != std::string::npos);

  const auto missing =
      ipcpp::test::run({engine, "--profile-dir", profile, "--load", "/no/such/lib.so"});
  CHECK(missing.exit_code == 1);
  CHECK(missing.err == "ipcpp-engine: cannot load task library /no/such/lib.so: no such file\n");

  const std::string foreign = kLib + "/libipcpp_not_a_task_library.so";
  const auto not_tasks = ipcpp::test::run({engine, "--profile-dir", profile, "--load", foreign});
  CHECK(not_tasks.exit_code == 1);
  CHECK(not_tasks.err == "ipcpp-engine: " + foreign +
                             " is not an ipcpp task library: it has no ipcpp_task_library_v1 "
                             "symbol (define its functions with IPCPP_TASK from "
                             "<ipcpp/engine.hpp>)\n");

  const std::string text_file = (tmp.path() / "notes.so").string();
  ipcpp::test::run({"sh", "-c", "echo hello > " + text_file});
  const auto garbage = ipcpp::test::run({engine, "--profile-dir", profile, "--load", text_file});
  CHECK(garbage.exit_code == 1);
  CHECK(garbage.err.starts_with("ipcpp-engine: cannot load task library " + text_file + ": "));
}

TEST_CASE("engine: a task that crashes its process fails with EngineError, and the others go on") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(3, {"--load", kTestTasks});
  // Direct: the Python client, told by the hub's unregistration notification.
  const json out = cluster.engine_scenario("crash", {"--engines", "3"});
  CHECK(out["ids_before"] == json::array({0, 1, 2}));
  CHECK(out["crash"]["ename"] == "EngineError");
  CHECK(out["crash"]["seconds"].get<double>() < 10);
  MESSAGE("EngineError for the direct task " << out["crash"]["seconds"] << " s after sending it");
  CHECK(out["ids_after"] == json::array({1, 2}));
  CHECK(out["others_pids"].size() == 2);

  // Load-balanced: the task scheduler's own EngineError reply.
  ProtoClient client(cluster.client_file());
  const auto engines = client.wait_for_engines(2, 30s);
  const std::string victim = engines.at(1);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string msg_id =
      client.execute(ProtoClient::Queue::kLoadBalanced, victim, "abort_process()");
  const auto reply = client.reply(msg_id, 30s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  CHECK(reply.content["status"] == "error");
  CHECK(reply.content["ename"] == "EngineError");
  MESSAGE("EngineError for the load-balanced task " << seconds << " s after sending it");
  const std::string survivor = engines.at(2);
  const auto ok =
      client.reply(client.execute(ProtoClient::Queue::kLoadBalanced, survivor, "getpid()"), 30s);
  CHECK(ok.content["status"] == "ok");
}

TEST_CASE("engine: a 10^7-element array is pushed and pulled as raw frames, not JSON text") {
  PythonCluster cluster(kOurController);
  cluster.start_cpp_engines(1);
  ProtoClient client(cluster.client_file());
  const std::string uuid = client.wait_for_engines(1, 30s).at(0);

  constexpr std::size_t kN = 10'000'000;
  std::vector<double> values(kN);
  for (std::size_t i = 0; i < kN; ++i)
    values[i] = static_cast<double>(i) * 0.5;
  const ipcpp::Value kwargs = ipcpp::Value::object({{"a", ipcpp::Value(values)}});
  auto push = ipcpp::proto::encode_apply("push", ipcpp::Value::list({}), kwargs);
  // What goes out: a small JSON document and one raw frame of 8 * 10^7 bytes.
  REQUIRE(push.size() == 2);
  CHECK(push[0].size() < 200);
  CHECK(push[1].size() == kN * sizeof(double));
  const auto pushed =
      client.reply(client.apply(ProtoClient::Queue::kDirect, uuid, std::move(push)), 60s);
  REQUIRE(pushed.content["status"] == "ok");

  auto pull = ipcpp::proto::encode_apply("pull", ipcpp::Value::list({ipcpp::Value("a")}));
  auto pulled = client.reply(client.apply(ProtoClient::Queue::kDirect, uuid, std::move(pull)), 60s);
  REQUIRE(pulled.content["status"] == "ok");
  // What comes back: the same shape, the array as its own frame.
  REQUIRE(pulled.buffers.size() == 2);
  CHECK(pulled.buffers[0].size() < 200);
  CHECK(pulled.buffers[1].size() == kN * sizeof(double));
  const auto value = ipcpp::proto::decode_value(std::move(pulled.buffers));
  REQUIRE(value.ok());
  REQUIRE(value->is_array());
  CHECK(value->array().dtype() == ipcpp::DType::kFloat64);
  CHECK(value->as<std::vector<double>>() == values);
}
