// ipcpp-px as a program: a command on every engine or on some, its output prefixed by engine,
// failures, and wrong command lines.
#include <ipcpp/client.hpp>
#include <string>

#include <doctest/doctest.h>

#include "client/px.hpp"
#include "support/process.hpp"
#include "support/python_cluster.hpp"

namespace {

using ipcpp::test::PythonCluster;
using namespace std::chrono_literals;

const std::vector<std::string> kController = {"--ping", "200", "--heartbeat-misses", "3"};

std::vector<std::string> px(const PythonCluster& c, std::vector<std::string> args) {
  std::vector<std::string> argv{ipcpp::test::tool_path("ipcpp-px"), "--profile-dir",
                                c.profile_dir().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

// Three engines, registered.
struct ThreeEngines {
  ThreeEngines() : cluster(kController) {
    cluster.start_cpp_engines(3);
    ipcpp::ClientOptions o;
    o.profile_dir = cluster.profile_dir();
    ipcpp::Client(o).wait_for_engines(3, ipcpp::Seconds(60));
  }
  PythonCluster cluster;
};

}  // namespace

TEST_CASE("px: a shell command runs on every engine, each line prefixed with its engine") {
  ThreeEngines t;
  auto r = ipcpp::test::run(px(t.cluster, {"echo", "hello", "from", "$0"}));
  CHECK(r.exit_code == 0);
  CHECK(r.out ==
        "[engine 0] hello from /bin/sh\n[engine 1] hello from /bin/sh\n[engine 2] hello from "
        "/bin/sh\n");
  CHECK(r.err == "");
}

TEST_CASE("px: --targets chooses engines, and a failing command is reported per engine") {
  ThreeEngines t;
  auto r = ipcpp::test::run(px(t.cluster, {"--targets", "0,2", "echo out; echo err >&2; exit 3"}));
  CHECK(r.exit_code == 1);
  CHECK(r.out == "[engine 0] out\n[engine 2] out\n");
  CHECK(r.err ==
        "[engine 0] err\n[engine 2] err\n"
        "[engine 0] CalledProcessError: Command 'echo out; echo err >&2; exit 3' returned "
        "non-zero exit status 3.\n"
        "[engine 2] CalledProcessError: Command 'echo out; echo err >&2; exit 3' returned "
        "non-zero exit status 3.\n");
}

TEST_CASE("px: --code sends a call and prints its value") {
  ThreeEngines t;
  auto r = ipcpp::test::run(px(t.cluster, {"--targets", "1", "--code", "sum([1, 2, 3])"}));
  CHECK(r.exit_code == 0);
  CHECK(r.out == "[engine 1] Out: 6\n");
}

TEST_CASE("px: wrong targets and a missing cluster are one-line errors") {
  ThreeEngines t;
  auto unknown = ipcpp::test::run(px(t.cluster, {"--targets", "7", "true"}));
  CHECK(unknown.exit_code == 1);
  CHECK(unknown.err == "ipcpp-px: engine 7 is not registered (registered: 0, 1, 2)\n");
  auto bad = ipcpp::test::run(px(t.cluster, {"--targets", "0,x", "true"}));
  CHECK(bad.exit_code == 2);
  CHECK(bad.err ==
        "ipcpp-px: --targets: 'x' is not an engine id (use \"all\" or ids such as 0,2) (see "
        "ipcpp-px --help)\n");
  auto none = ipcpp::test::run({ipcpp::test::tool_path("ipcpp-px"), "--profile-dir",
                                (t.cluster.profile_dir() / "nope").string(), "--connect-timeout",
                                "0.1", "true"});
  CHECK(none.exit_code == 1);
  CHECK(none.err.find("ipcpp-px: no connection file ") == 0);
  CHECK(ipcpp::px::parse_targets("all").empty());
  CHECK(ipcpp::px::parse_targets("3,1") == std::vector<std::int64_t>{3, 1});
}
