// ipcpp-cluster as a program: start (daemonized and in the foreground), status, engines and
// stop of a real controller and real engines on 127.0.0.1, in temporary profiles; how it fails
// (a missing engine program, an engine that exits at once, a cluster already running, nothing
// to stop); its command line and its config file.
#include <csignal>
#include <fstream>
#include <regex>
#include <set>
#include <string>
#include <unistd.h>
#include <utility>
#include <vector>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "profiles/config_templates.hpp"
#include "support/cluster_profile.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/python_cluster.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using namespace ipcpp::test;
using nlohmann::json;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("ipcpp-cluster starts a daemonized cluster, shows it, grows it and stops it") {
  ClusterProfile profile;
  const fs::path state_file = profile.state_file();

  const auto started = profile.run("start", {"-n", "2", "--daemonize", kFastController});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  CHECK(started.out == "Leaving cluster running: " + state_file.string() + "\n");
  CHECK(started.err.find("ipcpp-cluster: 2/2 engines registered\n") != std::string::npos);

  // The state file: private, the profile, the controller and one set of two engines, all alive.
  CHECK(ipcpp::test::mode_of(state_file) == 0600);
  json state = profile.state();
  REQUIRE(state.is_object());
  CHECK(state["profile_dir"] == profile.dir().string());
  CHECK(state["cluster_id"] == "");
  CHECK_FALSE(state["start_time"].get<std::string>().empty());
  CHECK_FALSE(state.contains("watcher"));
  REQUIRE(state["engine_sets"].size() == 1);
  CHECK(state["engine_sets"]["1"]["n"] == 2);
  const std::vector<Recorded> first = recorded_processes(state);
  REQUIRE(first.size() == 3);
  CHECK(all_running(first));
  CHECK(fs::path(state["controller"]["command"][0].get<std::string>()).filename() ==
        "ipcpp-controller");
  CHECK(fs::path(state["engine_sets"]["1"]["command"][0].get<std::string>()).filename() ==
        "ipcpp-engine");
  // The controller's files, and one log per process under log/, named after its pid.
  CHECK(fs::exists(profile.dir() / "security" / "ipcontroller-client.json"));
  CHECK(fs::exists(profile.dir() / "security" / "ipcontroller-engine.json"));
  CHECK(state["controller"]["log"] ==
        (profile.dir() / "log" / ("ipcontroller--" + std::to_string(first[0].pid) + ".log"))
            .string());
  for (const json& engine : state["engine_sets"]["1"]["engines"]) {
    const fs::path log = engine["log"].get<std::string>();
    CHECK(log == profile.dir() / "log" /
                     ("ipengine--" + std::to_string(engine["pid"].get<int>()) + ".log"));
    CHECK(fs::exists(log));
  }
  CHECK(fs::exists(state["controller"]["log"].get<std::string>()));

  SUBCASE("status, engines, status, stop, stop again") {
    const auto status = profile.run("status");
    INFO(status.out);
    INFO(status.err);
    CHECK(status.exit_code == 0);
    CHECK(status.out.find("Controller: pid " + std::to_string(first[0].pid) + ", running") !=
          std::string::npos);
    CHECK(status.out.find("Engine set 1: 2 of 2 running") != std::string::npos);
    CHECK(status.out.find("): 2 engines registered\n") != std::string::npos);
    CHECK(status.out.find("Engines per host:\n  " + host_name() + ": 2 engines\n") !=
          std::string::npos);
    CHECK(status.out.find("  engine 0: queue 0, tasks 0, completed ") != std::string::npos);
    CHECK(status.out.find("  unassigned: 0\n") != std::string::npos);

    const auto grown = profile.run("engines", {"-n", "1"});
    INFO(grown.err);
    CHECK(grown.exit_code == 0);
    CHECK(grown.out == "Added engine set 2 to the cluster: " + state_file.string() + "\n");
    CHECK(grown.err.find("ipcpp-cluster: 1/1 engines registered\n") != std::string::npos);
    state = profile.state();
    REQUIRE(state["engine_sets"].size() == 2);
    CHECK(state["engine_sets"]["2"]["n"] == 1);
    const std::vector<Recorded> all = recorded_processes(state);
    REQUIRE(all.size() == 4);
    CHECK(all_running(all));

    const auto again = profile.run("status");
    CHECK(again.exit_code == 0);
    CHECK(again.out.find("Engine set 2: 1 of 1 running") != std::string::npos);
    CHECK(again.out.find("): 3 engines registered\n") != std::string::npos);
    CHECK(again.out.find("  " + host_name() + ": 3 engines\n") != std::string::npos);

    const auto stopped = profile.run("stop");
    INFO(stopped.err);
    CHECK(stopped.exit_code == 0);
    CHECK(stopped.out.find("Stopped controller " + std::to_string(all[0].pid) + "\n") !=
          std::string::npos);
    for (std::size_t i = 1; i < all.size(); ++i)
      CHECK(stopped.out.find("Stopped engine " + std::to_string(all[i].pid)) != std::string::npos);
    CHECK(stopped.out.ends_with("Removed " + state_file.string() + "\n"));
    CHECK(none_running(all));
    CHECK_FALSE(fs::exists(state_file));
    // The controller removed its files when it stopped.
    CHECK_FALSE(fs::exists(profile.dir() / "security" / "ipcontroller-client.json"));

    const auto twice = profile.run("stop");
    CHECK(twice.exit_code == 11);
    CHECK(twice.out == "");
    CHECK(twice.err == "ipcpp-cluster: no cluster is running in " + profile.dir().string() +
                           " (no " + state_file.string() + ")\n");
    const auto nothing = profile.run("status");
    CHECK(nothing.exit_code == 12);
    CHECK(nothing.err ==
          "ipcpp-cluster: no cluster is running in " + profile.dir().string() + "\n");
    const auto no_engines = profile.run("engines", {"-n", "1"});
    CHECK(no_engines.exit_code == 11);
    CHECK(no_engines.err.find("no cluster is running in") != std::string::npos);
  }
  SUBCASE("a second start of the same cluster is refused with exit status 10") {
    const auto second = profile.run("start", {"-n", "1", "--daemonize"});
    CHECK(second.exit_code == 10);
    CHECK(second.err == "ipcpp-cluster: a cluster is already running in " + profile.dir().string() +
                            " (controller pid " + std::to_string(first[0].pid) +
                            "): stop it with ipcpp-cluster stop\n");
    CHECK(all_running(first));
    CHECK(profile.state() == state);
    CHECK(profile.run("stop").exit_code == 0);
    CHECK(none_running(first));
  }
}

TEST_CASE("ipcpp-cluster keeps clusters of different cluster ids apart") {
  ClusterProfile profile;
  const auto started =
      profile.run("start", {"-n", "1", "--daemonize", "--cluster-id", "c1", kFastController});
  INFO(started.err);
  REQUIRE(started.exit_code == 0);
  const fs::path state_file = profile.dir() / "security" / "ipcpp-cluster-c1.json";
  CHECK(started.out == "Leaving cluster running: " + state_file.string() + "\n");
  CHECK(fs::exists(profile.dir() / "security" / "ipcontroller-c1-client.json"));
  const json state = profile.state("c1");
  REQUIRE(state.is_object());
  const std::vector<Recorded> processes = recorded_processes(state);
  CHECK(state["cluster_id"] == "c1");
  CHECK(fs::path(state["controller"]["log"].get<std::string>())
            .filename()
            .string()
            .starts_with("ipcontroller-c1-"));
  // The cluster without an id is not running.
  CHECK(profile.run("stop").exit_code == 11);
  CHECK(profile.run("status", {"--cluster-id", "c1"}).exit_code == 0);
  const auto stopped = profile.run("stop", {"--cluster-id", "c1"});
  CHECK(stopped.exit_code == 0);
  CHECK(none_running(processes));
  CHECK_FALSE(fs::exists(state_file));
}

TEST_CASE("ipcpp-cluster start in the foreground stops the whole cluster on SIGTERM") {
  ClusterProfile profile;
  Process cluster = profile.spawn("start", {"-n", "2", kFastController});
  const bool running = wait_until(
      [&] {
        return cluster.stderr_text().find("cluster running: 2 engines (Ctrl-C to stop)") !=
                   std::string::npos ||
               !cluster.running();
      },
      60s);
  INFO(cluster.stderr_text());
  REQUIRE(running);
  REQUIRE(cluster.running());
  const json state = profile.state();
  REQUIRE(state.is_object());
  CHECK(state["watcher"]["pid"] == cluster.pid());
  const std::vector<Recorded> processes = recorded_processes(state);
  REQUIRE(processes.size() == 3);
  CHECK(all_running(processes));

  SUBCASE("SIGTERM to the foreground ipcpp-cluster") {
    cluster.signal(SIGTERM);  // its process group only: the cluster runs in its own sessions
    CHECK(cluster.wait_for(60s) == 0);
    CHECK(cluster.stderr_text().find("ipcpp-cluster: SIGTERM: stopping the cluster\n") !=
          std::string::npos);
    CHECK(cluster.stdout_text().find("Stopped controller " + std::to_string(processes[0].pid)) !=
          std::string::npos);
  }
  SUBCASE("ipcpp-cluster stop, which asks the foreground one to stop it") {
    const auto stopped = profile.run("stop");
    CHECK(stopped.exit_code == 0);
    CHECK(stopped.out.starts_with("Asked the foreground ipcpp-cluster (pid " +
                                  std::to_string(cluster.pid()) + ") to stop the cluster\n"));
    CHECK(stopped.out.find("Stopped controller " + std::to_string(processes[0].pid)) !=
          std::string::npos);
    CHECK(cluster.wait_for(60s) == 0);
  }
  SUBCASE("the controller exits by itself: the engines are stopped, exit status 1") {
    ::kill(processes[0].pid, SIGKILL);
    CHECK(cluster.wait_for(60s) == 1);
    CHECK(cluster.stderr_text().find(
              "ipcpp-cluster: the controller (pid " + std::to_string(processes[0].pid) +
              ") exited (killed by signal 9 (SIGKILL))") != std::string::npos);
  }
  CHECK(none_running(processes));
  CHECK_FALSE(fs::exists(profile.state_file()));
}

TEST_CASE("ipcpp-cluster start fails clearly, and leaves nothing running") {
  ClusterProfile profile;

  SUBCASE("an engine program that does not exist: nothing is started") {
    const auto r = profile.run("start", {"-n", "2", "--daemonize", "--engine-program",
                                         "/no/such/engine", kFastController});
    CHECK(r.exit_code == 1);
    CHECK(r.err == "ipcpp-cluster: cannot start /no/such/engine: No such file or directory\n");
    CHECK(files_in(profile.dir() / "log", "ip").empty());
    CHECK_FALSE(fs::exists(profile.state_file()));
  }
  SUBCASE("a task library that does not exist: nothing is started") {
    const auto r = profile.run("start", {"-n", "1", "--daemonize", "--load", "/no/such.so"});
    CHECK(r.exit_code == 1);
    CHECK(r.err ==
          "ipcpp-cluster: cannot load the task library /no/such.so: No such file or directory\n");
    CHECK(files_in(profile.dir() / "log", "ip").empty());
  }
  SUBCASE("an engine that exits at once: its log is named and quoted, the controller stopped") {
    const auto r = profile.run(
        "start", {"-n", "2", "--daemonize", "--engine-arg=--load=/no/such.so", kFastController});
    INFO(r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.out == "");
    const std::vector<fs::path> engine_logs = files_in(profile.dir() / "log", "ipengine-");
    CHECK(engine_logs.size() == 2);
    const std::regex failure(
        "ipcpp-cluster: an engine \\(pid ([0-9]+)\\) exited \\(exit status 1\\) before the "
        "engines had registered; the end of its log (\\S+):\n"
        "  ipcpp-engine: cannot load task library /no/such.so: [^\n]*\n$");
    std::smatch match;
    REQUIRE(std::regex_search(r.err, match, failure));
    CHECK(fs::path(match[2].str()) ==
          profile.dir() / "log" / ("ipengine--" + match[1].str() + ".log"));
    // The controller it started is gone, and so is the state file.
    const std::vector<fs::path> controller_logs = files_in(profile.dir() / "log", "ipcontroller-");
    REQUIRE(controller_logs.size() == 1);
    const std::string name = controller_logs[0].stem().string();
    const pid_t controller = std::stoi(name.substr(name.rfind('-') + 1));
    CHECK_FALSE(runs(controller, ipcpp::test::tool_path("ipcpp-controller")));
    CHECK(read_text(controller_logs[0]).find("received SIGTERM") != std::string::npos);
    CHECK_FALSE(fs::exists(profile.state_file()));
    CHECK_FALSE(fs::exists(profile.dir() / "security" / "ipcontroller-client.json"));
  }
  SUBCASE("a controller that cannot start: the end of its log") {
    const auto r =
        profile.run("start", {"-n", "1", "--daemonize", "--controller-arg=--scheme=fastest"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(") exited (exit status 2); the end of its log ") != std::string::npos);
    CHECK(r.err.find("  ipcpp-controller: --scheme: fastest not in") != std::string::npos);
    CHECK(files_in(profile.dir() / "log", "ipengine-").empty());
    CHECK_FALSE(fs::exists(profile.state_file()));
  }
}

TEST_CASE("ipcpp-cluster start removes a stale state file with a note") {
  ClusterProfile profile;
  fs::create_directories(profile.dir() / "security");
  // A cluster whose processes are long gone (and whose program never existed).
  std::ofstream(profile.state_file())
      << R"({"profile_dir": ")" << profile.dir().string()
      << R"(", "cluster_id": "", "start_time": "2026-01-01T00:00:00Z",
            "controller": {"pid": 999999999, "log": "", "command": ["/no/such/controller"]},
            "engine_sets": {"1": {"n": 1, "command": ["/no/such/engine"],
                                  "engines": [{"pid": 999999998, "log": ""}]}}})";
  const auto r = profile.run("start", {"-n", "1", "--daemonize", kFastController});
  INFO(r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.starts_with("ipcpp-cluster: removing the stale state file " +
                          profile.state_file().string() +
                          " (its controller, pid 999999999, is gone)\n"));
  const json state = profile.state();
  CHECK(state["controller"]["pid"] != 999999999);
  CHECK(profile.run("stop").exit_code == 0);
}

TEST_CASE("ipcpp-cluster status shows a cluster it did not start, a Python engine's host as ?") {
  ipcpp::test::PythonCluster cluster({"--ping", "200"});
  cluster.start_engines(1);
  cluster.start_cpp_engines(1);
  ipcpp::test::RunResult status{};
  const bool both = wait_until(
      [&] {
        status = ipcpp::test::run(
            {cluster_tool(), "status", "--profile-dir", cluster.profile_dir().string()},
            cluster.process_options());
        return status.out.find("): 2 engines registered\n") != std::string::npos;
      },
      90s);
  INFO(status.out);
  INFO(status.err);
  INFO(cluster.engines_output());
  REQUIRE(both);
  CHECK(status.exit_code == 0);
  CHECK(status.out.find("No state file " +
                        (cluster.profile_dir() / "security" / "ipcpp-cluster.json").string() +
                        ": this cluster was not started by ipcpp-cluster\n") != std::string::npos);
  // Sorted by host name: "?" comes first.
  CHECK(status.out.find("Engines per host:\n  ?: 1 engine\n  " + host_name() + ": 1 engine\n") !=
        std::string::npos);
  // Nothing to stop: ipcpp-cluster stops only what it started.
  const auto stop =
      ipcpp::test::run({cluster_tool(), "stop", "--profile-dir", cluster.profile_dir().string()},
                       cluster.process_options());
  CHECK(stop.exit_code == 11);
  CHECK(cluster.controller().running());
}

TEST_CASE("ipcpp-cluster refuses a wrong command line with exit status 2") {
  ipcpp::test::TempDir tmp;
  const auto options = isolated(tmp);
  const std::string dir = (tmp.path() / "p").string();
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  for (const Case& c :
       {Case{{}, "A subcommand is required"}, Case{{"start", "--delay", "-1"}, "--delay"},
        Case{{"start", "--engines", "ssh"}, "ssh"},
        Case{{"start", "--no-such-option"}, "no-such-option"}, Case{{"stop", "-n", "2"}, "-n"},
        Case{{"status", "--log-level", "loud"}, "unknown level 'loud'"},
        Case{{"launch"}, "unknown subcommand 'launch'"}}) {
    CAPTURE(c.says);
    std::vector<std::string> argv = {cluster_tool()};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    argv.insert(argv.end(), {"--profile-dir", dir});
    const auto r = ipcpp::test::run(argv, options);
    CHECK(r.exit_code == 2);
    CHECK(r.err.starts_with("ipcpp-cluster: "));
    CHECK(r.err.find(c.says) != std::string::npos);
    CHECK(r.err.ends_with(" (see ipcpp-cluster --help)\n"));
  }
  const auto help = ipcpp::test::run({cluster_tool(), "--help"}, options);
  CHECK(help.exit_code == 0);
  CHECK(help.out.find("10 a cluster is already running, 11 no cluster file (nothing to stop), "
                      "12 no cluster is running") != std::string::npos);
}

TEST_CASE("ipcpp-cluster reads the profile's config file, and the command line wins") {
  ClusterProfile profile;
  fs::create_directories(profile.dir());
  const fs::path config = profile.dir() / "ipcpp_cluster.toml";

  SUBCASE("the template, every option uncommented, is accepted as it is") {
    std::string text(ipcpp::profiles::config_template("cluster"));
    text = std::regex_replace(text, std::regex("^# ([a-z-]+ = )", std::regex::multiline), "$1");
    std::ofstream(config) << text;
    const auto stop = profile.run("stop");
    CHECK(stop.exit_code == 11);
    CHECK(stop.err.find("no cluster is running") != std::string::npos);
    const auto status = profile.run("status");
    CHECK(status.exit_code == 12);
  }
  SUBCASE("values set in the file are used, and the command line overrides them") {
    std::ofstream(config) << "n = 1\ndaemonize = true\ncontroller-arg = [\"--ping=200\"]\n"
                             "engine-arg = [\"--timeout=20\"]\n";
    const auto r = profile.run("start", {"-n", "2"});
    INFO(r.err);
    CHECK(r.exit_code == 0);  // daemonized, so it returned
    const json state = profile.state();
    REQUIRE(state.is_object());
    CHECK(state["engine_sets"]["1"]["n"] == 2);
    const json controller = state["controller"]["command"];
    CHECK(controller.back() == "--ping=200");
    CHECK(state["engine_sets"]["1"]["command"].back() == "--timeout=20");
    CHECK(profile.run("stop").exit_code == 0);
  }
  SUBCASE("an unknown key in the file is an error that names it") {
    std::ofstream(config) << "engine-count = 4\n";
    const auto r = profile.run("start", {"--daemonize"});
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("engine-count") != std::string::npos);
    CHECK_FALSE(fs::exists(profile.state_file()));
  }
}
