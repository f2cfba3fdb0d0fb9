// Tests of the end-to-end helpers in tests/support: Process, run, wait_until, TempDir.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <signal.h>
#include <string>
#include <sys/stat.h>

#include <doctest/doctest.h>

#include "support/process.hpp"
#include "support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using ipcpp::test::Process;
using ipcpp::test::ProcessOptions;
using ipcpp::test::run;
using ipcpp::test::RunResult;
using ipcpp::test::TempDir;
using ipcpp::test::wait_until;
using namespace std::chrono_literals;

// Returns true if process `pid` exists and is not a zombie.
bool alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  const std::size_t end_of_name = line.rfind(')');
  if (end_of_name == std::string::npos || end_of_name + 2 >= line.size()) return false;
  const char state = line[end_of_name + 2];
  return state != 'Z' && state != 'X';
}

}  // namespace

TEST_CASE("run returns the exit code and what the program wrote to stdout and stderr") {
  const RunResult result = run({"/bin/sh", "-c", "echo out; echo err >&2; exit 3"});
  CHECK(result.exit_code == 3);
  CHECK(result.out == "out\n");
  CHECK(result.err == "err\n");
}

TEST_CASE("run finds a program without a slash in PATH") {
  const RunResult result = run({"echo", "hello"});
  CHECK(result.exit_code == 0);
  CHECK(result.out == "hello\n");
}

TEST_CASE("run sets and removes environment variables and runs in the given directory") {
  TempDir dir;
  ProcessOptions options;
  options.env["IPCPP_TEST_SET"] = "set value";
  options.env["IPCPP_TEST_BOTH"] = "set wins";
  options.unset_env = {"HOME", "IPCPP_TEST_BOTH"};
  options.cwd = dir.path();
  const RunResult result = run(
      {"/bin/sh", "-c", "echo \"$IPCPP_TEST_SET|${HOME-unset}|$IPCPP_TEST_BOTH|$(pwd)\""}, options);
  CHECK(result.exit_code == 0);
  CHECK(result.out == "set value|unset|set wins|" + dir.path().string() + "\n");
}

TEST_CASE("a child gets stdin from /dev/null and no other descriptor of the test") {
  const RunResult result = run({"/bin/sh", "-c", "cat; ls /proc/self/fd"});
  CHECK(result.exit_code == 0);
  // cat read nothing; ls sees 0, 1, 2 and the descriptor it opened to read the directory.
  CHECK(result.out == "0\n1\n2\n3\n");
}

TEST_CASE("a process that cannot start is an error naming the program") {
  CHECK_THROWS_WITH_AS(Process({"/nonexistent/ipcpp-no-such-tool"}),
                       "cannot start /nonexistent/ipcpp-no-such-tool: No such file or directory",
                       std::runtime_error);
  CHECK_THROWS_WITH_AS(run({"ipcpp-no-such-tool-in-path"}),
                       "cannot start ipcpp-no-such-tool-in-path: No such file or directory",
                       std::runtime_error);
}

TEST_CASE("run stops a program that outlives its timeout and throws") {
  CHECK_THROWS_WITH_AS(
      run({"sleep", "60"}, {}, 50ms),
      "sleep did not finish within 50 ms and was stopped; its stderr: ", std::runtime_error);
}

TEST_CASE("a process runs in its own process group") {
  Process process({"sleep", "60"});
  CHECK(::getpgid(process.pid()) == process.pid());
  CHECK(::getpgid(process.pid()) != ::getpgrp());
}

TEST_CASE("wait_for returns nothing while the process runs, then its exit status") {
  Process process({"sleep", "60"});
  CHECK(process.running());
  CHECK(process.wait_for(0ms) == std::nullopt);
  process.signal(SIGINT);
  CHECK(process.wait_for(60s) == 128 + SIGINT);
  CHECK_FALSE(process.running());
  CHECK(process.wait() == 128 + SIGINT);
}

TEST_CASE("stdout_text shows what a running process has written so far") {
  Process process({"/bin/sh", "-c", "echo started; echo warned >&2; exec sleep 60"});
  CHECK(wait_until([&] { return process.stdout_text() == "started\n"; }, 60s));
  CHECK(wait_until([&] { return process.stderr_text() == "warned\n"; }, 60s));
  CHECK(process.running());
}

TEST_CASE("stop ends the whole process group, grandchildren included") {
  Process process({"/bin/sh", "-c", "sleep 60 & echo $!; wait"});
  REQUIRE(wait_until([&] { return process.stdout_text().ends_with("\n"); }, 60s));
  const pid_t grandchild = std::stoi(process.stdout_text());
  REQUIRE(alive(grandchild));
  process.stop();
  CHECK(process.wait() == 128 + SIGTERM);
  CHECK(wait_until([&] { return !alive(grandchild); }, 60s));
}

TEST_CASE("stop kills a process that ignores SIGTERM once the grace period is over") {
  Process process({"/bin/sh", "-c", "trap '' TERM; echo ready; exec sleep 60"});
  REQUIRE(wait_until([&] { return process.stdout_text() == "ready\n"; }, 60s));
  process.stop(100ms);
  CHECK(process.wait() == 128 + SIGKILL);
}

TEST_CASE("destroying a running process ends and reaps it") {
  pid_t pid = 0;
  {
    Process process({"sleep", "60"});
    pid = process.pid();
    REQUIRE(alive(pid));
  }
  CHECK_FALSE(fs::exists("/proc/" + std::to_string(pid)));
}

TEST_CASE("a moved process is owned by its new object only") {
  Process first({"sleep", "60"});
  const pid_t pid = first.pid();
  Process second(std::move(first));
  CHECK(second.pid() == pid);
  CHECK(second.running());
  Process third({"/bin/true"});
  third = std::move(second);
  CHECK(third.pid() == pid);
  third.stop();
  CHECK(third.wait() == 128 + SIGTERM);
}

TEST_CASE("wait_until returns as soon as its predicate holds, else its last value") {
  int calls = 0;
  CHECK(wait_until([&] { return ++calls == 3; }, 60s));
  CHECK(calls == 3);
  calls = 0;
  CHECK_FALSE(wait_until([&] { return ++calls < 0; }, 0ms));
  CHECK(calls == 1);
}

TEST_CASE("TempDir makes a private directory and removes it with everything in it") {
  fs::path path;
  {
    TempDir dir;
    path = dir.path();
    CHECK(path.is_absolute());
    CHECK(path.filename().string().starts_with("ipcpp-test-"));
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    CHECK((st.st_mode & 07777) == 0700);
    fs::create_directories(path / "a" / "b");
    std::ofstream(path / "a" / "b" / "file") << "x";
  }
  CHECK_FALSE(fs::exists(path));
}

TEST_CASE("tool_path names a tool in the build's bin directory") {
  CHECK(ipcpp::test::tool_path("ipcpp-profile") == std::string(IPCPP_BIN_DIR) + "/ipcpp-profile");
  CHECK(fs::exists(ipcpp::test::tool_path("ipcpp-profile")));
}
