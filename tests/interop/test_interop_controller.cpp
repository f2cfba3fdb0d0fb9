// ipcpp-controller with the real Python ipyparallel 7.1 engines and client: the compatibility
// promise of the controller, end to end, on 127.0.0.1 with ports chosen by the OS.
#include <csignal>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include "proto/connection_file.hpp"
#include "proto/session.hpp"
#include "proto/wire.hpp"
#include "support/frames.hpp"
#include "support/python_cluster.hpp"

namespace fs = std::filesystem;
using ipcpp::test::PythonCluster;
using nlohmann::json;
using namespace std::chrono_literals;

namespace {

// The controller's heartbeat in these tests: 500 ms, 3 misses.
const std::vector<std::string> kFastHeartbeat = {"--ping=500", "--heartbeat-misses", "3"};

[[maybe_unused]] std::vector<std::string> with(std::vector<std::string> a,
                                               const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto pos = text.find(what); pos != std::string::npos; pos = text.find(what, pos + 1))
    ++n;
  return n;
}

std::vector<zmq::message_t> frames_of(std::initializer_list<std::string_view> parts) {
  std::vector<zmq::message_t> out;
  for (auto p : parts)
    out.emplace_back(p.data(), p.size());
  return out;
}

// Sends forged, unsigned, replayed and garbage messages to every socket of the controller
// that accepts input. Returns how many replies came back to the one valid request sent twice.
int attack(const PythonCluster& cluster) {
  auto client = ipcpp::proto::read_client_connection_file(cluster.client_file());
  auto engine = ipcpp::proto::read_engine_connection_file(cluster.engine_file());
  REQUIRE(client.ok());
  REQUIRE(engine.ok());
  zmq::context_t ctx;
  ipcpp::proto::Session good({.key = client->key});
  ipcpp::proto::Session forger({.key = "not-the-key"});
  ipcpp::proto::Session unsigned_session({.key = ""});

  auto bad_messages = [&](std::string_view target) {
    std::vector<std::vector<zmq::message_t>> all;
    all.push_back(frames_of({"garbage"}));
    all.push_back(frames_of({"a", "b", "c"}));
    all.push_back(frames_of({"<IDS|MSG>", "sig", "{", "}"}));
    auto prefix = [&] {
      std::vector<zmq::message_t> ids;
      if (!target.empty()) ids.emplace_back(target.data(), target.size());
      return ids;
    };
    all.push_back(forger.build(prefix(), "connection_request", json::object()));
    all.push_back(unsigned_session.build(prefix(), "apply_request", json::object()));
    auto wire = good.build(prefix(), "execute_request", {{"code", "1"}});
    auto split = ipcpp::proto::split(std::move(wire));
    REQUIRE(split.ok());
    split->header = ipcpp::test::frame(R"({"msg_id": "x", "msg_type": "execute_request"})");
    all.push_back(ipcpp::proto::join(std::move(split.value())));  // altered after signing
    return all;
  };

  std::vector<std::pair<int, std::string>> routers = {{client->registration, ""},
                                                      {client->mux, "no-such-engine"},
                                                      {client->control, "no-such-engine"},
                                                      {client->task, ""},
                                                      {client->broadcast, ""},
                                                      {engine->mux, ""},
                                                      {engine->control, ""},
                                                      {engine->task, ""},
                                                      {engine->broadcast[0], ""},
                                                      {engine->broadcast[1], ""},
                                                      {engine->hb_pong, ""}};
  for (const auto& [port, target] : routers) {
    zmq::socket_t s(ctx, zmq::socket_type::dealer);
    s.set(zmq::sockopt::linger, 1000);
    s.connect("tcp://127.0.0.1:" + std::to_string(port));
    for (auto& m : bad_messages(target))
      ipcpp::proto::send_frames(s, std::move(m));
  }
  {
    zmq::socket_t pub(ctx, zmq::socket_type::pub);
    pub.set(zmq::sockopt::linger, 1000);
    pub.connect("tcp://127.0.0.1:" + std::to_string(engine->iopub));
    std::this_thread::sleep_for(300ms);  // let the subscription reach us
    for (auto& m : bad_messages("engine.0.stream"))
      ipcpp::proto::send_frames(pub, std::move(m));
  }
  // One valid query, sent twice: the replay gets no answer.
  zmq::socket_t query(ctx, zmq::socket_type::dealer);
  query.set(zmq::sockopt::linger, 0);
  query.connect("tcp://127.0.0.1:" + std::to_string(client->registration));
  auto request = good.build({}, "connection_request", json::object());
  ipcpp::proto::send_frames(query, ipcpp::test::copy_frames(request));
  ipcpp::proto::send_frames(query, std::move(request));
  int replies = 0;
  zmq::pollitem_t items[] = {{query.handle(), 0, ZMQ_POLLIN, 0}};
  while (zmq::poll(items, 1, 1500ms) > 0) {
    auto frames = ipcpp::proto::recv_frames(query);
    auto reply = good.decode(std::move(frames));
    if (reply.ok() && reply->msg_type() == "connection_reply") ++replies;
  }
  return replies;
}

}  // namespace

TEST_CASE("ipcpp-controller serves real Python engines and clients as ipcontroller does") {
  PythonCluster cluster(kFastHeartbeat);
  cluster.start_engines(4);

  SUBCASE("direct and load-balanced work, then dependencies, attacks and hub queries") {
    const json basics = cluster.scenario("basics", {"--engines", "4"});
    CHECK(basics["ids"] == json({0, 1, 2, 3}));
    std::set<int> pids(basics["pids"].begin(), basics["pids"].end());
    CHECK(pids.size() == 4);
    CHECK(basics["map_ok"] == true);
    // The broadcast scheduler, one reply per engine and coalesced.
    std::vector<int> sorted_pids(pids.begin(), pids.end());
    CHECK(basics["broadcast_pids"] == json(sorted_pids));
    CHECK(basics["coalesced_pids"] == json(sorted_pids));
    CHECK(basics["gathered"] == json({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}));
    CHECK(basics["pulled"] == json({21, 21, 21, 21}));
    CHECK(basics["view_y"] == json({42, 42, 42, 42}));
    CHECK(basics["metadata"] == json({{"engine_id", 3},
                                      {"submitted", true},
                                      {"started", true},
                                      {"completed", true},
                                      {"ordered", true}}));

    const json spread = cluster.scenario("spread", {"--engines", "4"});
    CHECK(spread["per_engine"].size() == 4);  // leastload used every engine
    CHECK(spread["max_tasks_per_engine"] == 1);
    CHECK(spread["unassigned_while_busy"].get<int>() > 0);

    const json deps = cluster.scenario("dependencies", {"--engines", "4"});
    CHECK(deps["failed_task"] == "ValueError");
    CHECK(deps["after_failed"] == "ImpossibleDependency");
    CHECK(deps["after_failure_allowed"] == "ran");
    CHECK(deps["invalid"] == "InvalidDependency");
    CHECK(deps["follow_same_engine"] == true);
    CHECK(deps["retries_moved"] == true);
    CHECK(deps["retries_exhausted"] == "AssertionError");
    CHECK(deps["timeout"] == "TaskTimeout");

    // Forged, unsigned, replayed and garbage messages on every socket: dropped and logged.
    CHECK(attack(cluster) == 1);
    const std::string log = cluster.controller().stderr_text();
    for (const char* who : {"hub:", "mux:", "control:", "task:", "broadcast:", "iopub:"}) {
      CAPTURE(who);
      CHECK(count(log, std::string(who) + " dropped") >= 3);
    }
    CHECK(log.find("duplicate signature") != std::string::npos);
    CHECK(cluster.controller().running());
    const json again = cluster.scenario("basics", {"--engines", "4"});
    CHECK(again["map_ok"] == true);

    const json hub = cluster.scenario("hub_queries", {"--engines", "4", "--shutdown"});
    CHECK(hub["other_client_result"] == 42);
    CHECK(hub["result_status"]["pending"] == json::array());
    CHECK(hub["result_status"]["completed"].size() == 1);
    CHECK(hub["queue_status_keys"] == json({"0", "1", "2", "3", "unassigned"}));
    CHECK(hub["queue_completed_total"].get<int>() > 2000);
    CHECK(hub["history_has"] == true);
    CHECK(hub["db_both_keys"].size() == 1);
    CHECK(hub["db_gt_excludes_self"] == true);
    CHECK(hub["resubmit_same_engine"] == true);
    CHECK(hub["big_echo"] == true);
    CHECK(hub["big_request_kept"] == true);
    CHECK(hub["big_result_kept"] == true);
    CHECK(hub["big_resubmitted"] == true);
    CHECK(hub["after_purge"] == "KeyError");
    CHECK(hub["db_after_purge_all"] == 0);
    CHECK(hub["shutdown"] == true);
    // shutdown(hub=True): the controller exits by itself and removes its files.
    CHECK(cluster.controller().wait_for(10s) == 0);
    CHECK_FALSE(fs::exists(cluster.client_file()));
    CHECK_FALSE(fs::exists(cluster.engine_file()));
    CHECK_FALSE(fs::exists(cluster.profile_dir() / "pid" / "ipcontroller.pid"));
  }
}

TEST_CASE("every scheme is selectable and spreads tasks over every engine within the hwm") {
  for (const std::string scheme : {"lru", "plainrandom", "twobin", "weighted"}) {
    CAPTURE(scheme);
    const std::string hwm = scheme == "weighted" ? "2" : "1";
    PythonCluster cluster(with(kFastHeartbeat, {"--scheme", scheme, "--hwm", hwm}));
    cluster.start_engines(2);
    const json client = json::parse(ipcpp::test::read_text(cluster.client_file()));
    CHECK(client["task_scheme"] == scheme);
    const json spread = cluster.scenario("spread", {"--engines", "2"});
    CHECK(spread["per_engine"].size() == 2);
    CHECK(spread["max_tasks_per_engine"] == std::stoi(hwm));
    CHECK(spread["unassigned_while_busy"].get<int>() > 0);
  }
}

TEST_CASE("a dead engine's tasks fail with EngineError at once and busy engines live on") {
  // 500 ms period, 3 misses: a silent engine is gone within 500 ms x (3 + 1) + 1 s = 3 s.
  PythonCluster cluster(kFastHeartbeat);
  cluster.start_engines(3);

  // kill -9: the engine's nanny reports the death at once.
  const json killed = cluster.scenario("killed", {"--engines", "3", "--mode", "kill"});
  CHECK(killed["direct"] == "EngineError");
  CHECK(killed["task"] == "EngineError");
  CHECK(killed["left_ids_seconds"].get<double>() < 3.0);
  CHECK(killed["busy_result_ok"] == true);
  CHECK(killed["sleeper_result"] == "slept");
  CHECK(killed["others_work"] == true);
  CHECK(killed["ids_final"] == json({1, 2}));
  MESSAGE("kill -9: EngineError after " << killed["task_seconds"] << " s, left ids after "
                                        << killed["left_ids_seconds"] << " s");

  // SIGSTOP: the engine goes silent; only the heartbeat can tell.
  cluster.start_engines(1);  // engine 3, so that two remain after the next loss
  const json stopped = cluster.scenario("killed", {"--engines", "3", "--mode", "stop"});
  CHECK(stopped["direct"] == "EngineError");
  CHECK(stopped["task"] == "EngineError");
  CHECK(stopped["left_ids_seconds"].get<double>() < 3.0);
  CHECK(stopped["busy_result_ok"] == true);
  CHECK(stopped["sleeper_result"] == "slept");
  CHECK(stopped["others_work"] == true);
  CHECK(stopped["ids_final"] == json({2, 3}));
  MESSAGE("silent engine: EngineError after " << stopped["task_seconds"] << " s, left ids after "
                                              << stopped["left_ids_seconds"] << " s");
}

TEST_CASE("with --db sqlite --reuse, results and engines survive a controller restart") {
  PythonCluster cluster(with(kFastHeartbeat, {"--db", "sqlite", "--reuse"}));
  cluster.start_engines(2);
  const json before = cluster.scenario("before_restart", {"--engines", "2"});
  CHECK(before["ids"] == json({0, 1}));
  const std::string client_before = ipcpp::test::read_text(cluster.client_file());

  cluster.restart_controller();
  // --reuse: the same files (ports and key) are kept across the restart.
  CHECK(ipcpp::test::read_text(cluster.client_file()) == client_before);
  CHECK(fs::exists(cluster.profile_dir() / "tasks.db"));
  // The engines are re-registered by the controller, with their old ids, as soon as their
  // hearts beat again: nobody restarts or re-registers them.
  const json after =
      cluster.scenario("after_restart", {"--engines", "2", "--msg-id", before["msg_id"]});
  CHECK(after["ids"] == json({0, 1}));
  CHECK(after["result"] == "kept across restart");
  CHECK(after["runs"] == json({"ok", "ok"}));

  // SIGTERM with --reuse keeps the connection files; without it they go.
  cluster.controller().signal(SIGTERM);
  CHECK(cluster.controller().wait_for(10s) == 0);
  CHECK(fs::exists(cluster.client_file()));
  CHECK(fs::exists(cluster.engine_file()));
  CHECK_FALSE(fs::exists(cluster.profile_dir() / "pid" / "ipcontroller.pid"));
}

TEST_CASE("ipyparallel's Cluster starts ipcpp-controller as its controller_cmd") {
  ipcpp::test::TempDir tmp;
  ipcpp::test::ProcessOptions options;
  options.env["IPYTHONDIR"] = (tmp.path() / "ipython").string();
  options.env["HOME"] = tmp.path().string();
  const fs::path profile = tmp.path() / "profile_cluster";
  const auto result = ipcpp::test::run(
      {IPCPP_REFERENCE_PYTHON, std::string(IPCPP_INTEROP_DIR) + "/controller_scenarios.py",
       "cluster_launch", "--profile-dir", profile.string(), "--engines", "2", "--controller",
       ipcpp::test::tool_path("ipcpp-controller")},
      options, 120s);
  INFO(result.out << result.err);
  REQUIRE(result.exit_code == 0);
  const json out = json::parse(result.out.substr(result.out.rfind('{')));
  CHECK(out["controller_cmd"] == ipcpp::test::tool_path("ipcpp-controller"));
  CHECK(out["ids"] == json({0, 1}));
  CHECK(out["results"].size() == 20);
  CHECK(out["results"][19] == 20);
  // Cluster stopped it with SIGTERM: its connection files are gone.
  CHECK_FALSE(fs::exists(profile / "security" / "ipcontroller-client.json"));
  CHECK_FALSE(fs::exists(profile / "security" / "ipcontroller-engine.json"));
}

TEST_CASE("SIGTERM and SIGINT stop ipcpp-controller cleanly and promptly") {
  for (const int sig : {SIGTERM, SIGINT}) {
    CAPTURE(sig);
    PythonCluster cluster({});
    const auto t0 = std::chrono::steady_clock::now();
    cluster.controller().signal(sig);
    CHECK(cluster.controller().wait_for(5s) == 0);
    const auto ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
            .count();
    MESSAGE("stopped " << ms << " ms after the signal");
    CHECK_FALSE(fs::exists(cluster.client_file()));
    CHECK_FALSE(fs::exists(cluster.engine_file()));
  }
}
