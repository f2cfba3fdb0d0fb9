// The C++ client (include/ipcpp/client.hpp) end to end: ipcpp-controller and ipcpp-engines in
// a temporary profile on 127.0.0.1, ports chosen by the OS.
#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <future>
#include <iostream>
#include <ipcpp/client.hpp>
#include <numeric>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <doctest/doctest.h>
#include <zmq.hpp>
#include <zmq_addon.hpp>

#include "proto/connection_file.hpp"
#include "proto/session.hpp"
#include "support/files.hpp"
#include "support/process.hpp"
#include "support/python_cluster.hpp"
#include "support/temp_dir.hpp"

namespace {

using ipcpp::Client;
using ipcpp::Seconds;
using ipcpp::Value;
using ipcpp::test::PythonCluster;
using nlohmann::json;
using namespace std::chrono_literals;

const std::string kLib = IPCPP_LIB_DIR;
const std::vector<std::string> kController = {"--ping", "200", "--heartbeat-misses", "3"};
const std::vector<std::string> kEngineArgs = {"--load", kLib + "/libipcpp_example_tasks.so",
                                              "--load", kLib + "/libipcpp_test_tasks.so"};
constexpr Seconds kWait{60};

// A controller and n ipcpp engines, and a client that has seen them register.
struct Cluster {
  explicit Cluster(int n) : cluster(kController) {
    cluster.start_cpp_engines(n, kEngineArgs);
    client = std::make_unique<Client>(options());
    client->wait_for_engines(static_cast<std::size_t>(n), kWait);
  }
  // A test that fails by an exception shows what the controller and the engines logged.
  ~Cluster() {
    if (std::uncaught_exceptions() > 0) {
      std::cerr << "controller's output:\n"
                << cluster.controller().stderr_text() << "engines' output:\n"
                << cluster.engines_output();
    }
  }
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;
  ipcpp::ClientOptions options() const {
    ipcpp::ClientOptions o;
    o.profile_dir = cluster.profile_dir();
    o.timeout = Seconds(30);
    return o;
  }
  PythonCluster cluster;
  std::unique_ptr<Client> client;
};

void write_file(const std::filesystem::path& path, const std::string& text) {
  std::ofstream(path) << text;
}

// True when every thread of `pid` is stopped (SIGSTOP takes effect asynchronously).
bool all_threads_stopped(pid_t pid) {
  const std::filesystem::path tasks = "/proc/" + std::to_string(pid) + "/task";
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(tasks, ec)) {
    const std::string stat = ipcpp::test::read_text(task.path() / "stat");
    const auto close = stat.rfind(')');
    if (close == std::string::npos || close + 2 >= stat.size() || stat[close + 2] != 'T') {
      return false;
    }
  }
  return !ec;
}

template <class E, class F>
E caught(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e;
  }
  FAIL("no exception of the expected type was thrown");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("client: the walkthrough's values on four engines") {
  Cluster c(4);
  Client& rc = *c.client;
  CHECK(rc.ids() == std::vector<std::int64_t>{0, 1, 2, 3});

  CHECK(rc[0].apply_sync("minus", 5, 6).to_plain_json() == -1);
  CHECK(rc.all().apply_sync("minus", 5, 6).to_plain_json() == json{-1, -1, -1, -1});
  const std::vector<int> a{11, 10, 9, 8};
  const std::vector<int> b{5, 6, 7, 8};
  CHECK(rc.all().map_sync("minus", a, b).to_plain_json() == json{6, 4, 2, 0});
  CHECK(rc.load_balanced_view().map_sync("minus", a, b).to_plain_json() == json{6, 4, 2, 0});
  CHECK(rc.all().apply_sync("sum", std::vector<int>{1, 2, 3}).to_plain_json() == json{6, 6, 6, 6});

  auto dview = rc.all();
  dview.execute_sync("x = getpid()");
  const auto pids = dview.pull_sync("x").as<std::vector<long>>();
  CHECK(std::set<long>(pids.begin(), pids.end()).size() == 4);
  // execute's value is the code's last expression.
  CHECK(rc[2].execute_sync("x").to_plain_json() == pids[2]);

  std::vector<int> seq(16);
  std::iota(seq.begin(), seq.end(), 0);
  dview.scatter("a", seq).get();
  CHECK(dview.pull_sync("a").to_plain_json() ==
        json{{0, 1, 2, 3}, {4, 5, 6, 7}, {8, 9, 10, 11}, {12, 13, 14, 15}});
  const Value gathered = dview.gather_sync("a");
  REQUIRE(gathered.is_array());  // pieces of one array come back as one array
  CHECK(gathered.as<std::vector<int>>() == seq);

  dview["greeting"] = Value("hello");
  CHECK(Value(rc[1]["greeting"]).to_plain_json() == "hello");
}

TEST_CASE("client: scatter and gather partition like ipyparallel") {
  Cluster c(2);
  auto dview = c.client->all();
  // 7 items on 2 engines: [[0,1,2,3],[4,5,6]], for lists and for arrays.
  dview.scatter("l", json{0, 1, 2, 3, 4, 5, 6}).get();
  CHECK(dview.pull_sync("l").to_plain_json() == json{{0, 1, 2, 3}, {4, 5, 6}});
  CHECK(dview.gather_sync("l").to_plain_json() == json{0, 1, 2, 3, 4, 5, 6});
  dview.scatter("v", std::vector<double>{0.5, 1.5, 2.5}).get();
  CHECK(dview.pull_sync("v").to_plain_json() == json{{0.5, 1.5}, {2.5}});
  // One item for two engines: the second gets an empty piece.
  dview.scatter("one", json{"x"}).get();
  CHECK(dview.pull_sync("one").to_plain_json() == json{{"x"}, json::array()});
  CHECK(dview.gather_sync("one").to_plain_json() == json{"x"});

  // A large array goes and comes back as raw frames.
  std::vector<double> big(1'000'000);
  std::iota(big.begin(), big.end(), 0.25);
  dview.scatter("big", big).get();
  CHECK(dview.gather_sync("big").as<std::vector<double>>() == big);
}

TEST_CASE("client: a big reply arrives while the engine's next request still runs") {
  // The engine writes its replies itself: one larger than the kernel takes at once must
  // still reach the client before a long request queued behind it ends.
  Cluster c(1);
  auto engine = c.client->operator[](0);
  std::vector<double> big(5'000'000);  // 40 MB, many times a TCP socket's buffer
  std::iota(big.begin(), big.end(), 1.0);
  engine.push({{"big", big}}).get(kWait);
  auto pulled = engine.pull("big");
  auto slow = engine.apply_async("sleep", 10);
  CHECK(pulled.get(Seconds(8)).as<std::vector<double>>() == big);
  CHECK_FALSE(slow.ready());
  slow.abort();
}

TEST_CASE("client: a remote exception is a RemoteError with the engine's message") {
  Cluster c(2);
  Client& rc = *c.client;
  auto e = caught<ipcpp::RemoteError>([&] { rc[1].apply_sync("nosuch", 1); });
  CHECK(e.ename() == "NameError");
  CHECK(e.evalue() ==
        "unknown function 'nosuch': not a built-in and not in a loaded task library "
        "(functions() lists them)");
  CHECK(e.engine_id() == 1);
  CHECK(std::string(e.what()) == "[engine 1] NameError: " + e.evalue());

  auto composite = caught<ipcpp::CompositeError>([&] { rc.all().apply_sync("minus", 1); });
  REQUIRE(composite.errors().size() == 2);
  CHECK(composite.errors()[0].ename() == "TypeError");
  CHECK(composite.errors()[1].engine_id() == 1);
  CHECK(composite.ename() == "TypeError");

  auto syntax = caught<ipcpp::RemoteError>([&] { rc[0].execute_sync("x = = 1"); });
  CHECK(syntax.ename() == "SyntaxError");
  CHECK_FALSE(syntax.traceback().empty());

  // A task's own exception, load-balanced.
  auto thrown = caught<ipcpp::RemoteError>(
      [&] { rc.load_balanced_view().apply_sync("throw_runtime", "boom"); });
  CHECK(thrown.evalue().find("boom") != std::string::npos);

  // The client goes on.
  CHECK(rc.all().apply_sync("echo", 7).to_plain_json() == json{7, 7});
}

TEST_CASE("client: get with a timeout throws TimeoutError and the client stays usable") {
  Cluster c(2);
  Client& rc = *c.client;
  auto slow = rc[0].apply_async("sleep", 20);
  CHECK_THROWS_AS(slow.get(Seconds(0.2)), ipcpp::TimeoutError);
  CHECK_FALSE(slow.ready());
  CHECK(slow.progress() == 0);
  // The other engine, and the client, still work.
  CHECK(rc[1].apply_sync("echo", "still here").to_plain_json() == "still here");
  // Abort ends the sleep: TaskAborted.
  slow.abort();
  auto aborted = caught<ipcpp::RemoteError>([&] { slow.get(kWait); });
  CHECK(aborted.ename() == "TaskAborted");
  CHECK(rc[0].apply_sync("echo", 1).to_plain_json() == 1);
}

TEST_CASE(
    "client: a query or control request that times out is given up: wait() does not wait for "
    "it, and a late answer changes nothing") {
  Cluster c(1);
  ipcpp::ClientOptions o = c.options();
  o.timeout = Seconds(0.3);
  Client rc(o);
  rc.wait_for_engines(1, kWait);
  CHECK(rc.wait(Seconds(0)));
  // A stopped controller answers nothing: the query and the control request time out.
  c.cluster.controller().signal(SIGSTOP);
  REQUIRE(ipcpp::test::wait_until([&] { return all_threads_stopped(c.cluster.controller().pid()); },
                                  10s));
  CHECK_THROWS_AS(rc.queue_status(), ipcpp::TimeoutError);
  CHECK_THROWS_AS(rc.clear(), ipcpp::TimeoutError);
  // Nothing is outstanding: the requests given up are not waited for.
  CHECK(rc.wait(Seconds(0.2)));
  c.cluster.controller().signal(SIGCONT);
  // Their late answers arrive and are dropped; the client goes on.
  CHECK(rc[0].apply_sync("echo", 5).to_plain_json() == 5);
  CHECK(rc.queue_status().engines.size() == 1);
  CHECK(rc.wait(Seconds(0)));
}

TEST_CASE("client: a killed engine's requests fail with EngineError") {
  Cluster c(3);
  Client& rc = *c.client;
  // The process of engine 0 (engines get their ids in the order they register).
  const auto pid = rc[0].apply_sync("getpid").as<pid_t>();
  auto& engines = c.cluster.engines();
  auto it = std::find_if(engines.begin(), engines.end(), [&](auto& p) { return p.pid() == pid; });
  REQUIRE(it != engines.end());
  // Engine 0 runs a direct request and a load-balanced task pinned to it, then dies.
  auto direct = rc[0].apply_async("sleep", 30);
  ipcpp::TaskOptions pinned;
  pinned.targets = {0};
  auto task = rc.load_balanced_view(pinned).apply_async("sleep", 30);
  // Wait until the engine has both: the direct request runs, the task was given to it and
  // waits behind (a task still at the scheduler would fail as ImpossibleDependency instead).
  REQUIRE(ipcpp::test::wait_until(
      [&] {
        const auto q = rc.queue_status().engines.at(0);
        return q.queue >= 1 && q.tasks >= 1;
      },
      10s));
  it->signal(SIGKILL);
  auto e = caught<ipcpp::EngineError>([&] { direct.get(kWait); });
  CHECK(e.ename() == "EngineError");
  CHECK(e.engine_id() == 0);
  auto t = caught<ipcpp::RemoteError>([&] { task.get(kWait); });
  CHECK(t.ename() == "EngineError");
  // It leaves ids(); the others go on.
  CHECK(ipcpp::test::wait_until([&] { return rc.ids() == std::vector<std::int64_t>{1, 2}; }, 10s));
  CHECK(rc.all().apply_sync("echo", 5).to_plain_json() == json{5, 5});
  // A request to the departed engine fails at once.
  CHECK_THROWS_AS(rc[0], ipcpp::Error);
}

TEST_CASE("client: ids follow engines as they come and go") {
  Cluster c(1);
  Client& rc = *c.client;
  CHECK(rc.ids().size() == 1);
  c.cluster.start_cpp_engines(1, kEngineArgs);
  std::vector<std::size_t> seen;
  rc.wait_for_engines(2, kWait, [&](std::size_t n) { seen.push_back(n); });
  CHECK(rc.ids() == std::vector<std::int64_t>{0, 1});
  CHECK(seen.back() == 2);
  rc.shutdown({1});
  CHECK(ipcpp::test::wait_until([&] { return rc.ids().size() == 1; }, 10s));
  auto e = caught<ipcpp::TimeoutError>([&] { rc.wait_for_engines(3, Seconds(0.3)); });
  CHECK(std::string(e.what()) == "1 of 3 engines registered after 0.3 s");
}

TEST_CASE("client: the API is safe to use from several threads at once") {
  Cluster c(2);
  Client& rc = *c.client;
  constexpr int kThreads = 4;
  constexpr int kCalls = 150;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto lview = rc.load_balanced_view();
      auto dview = rc.all();
      std::vector<ipcpp::AsyncResult> results;
      for (int i = 0; i < kCalls; ++i)
        results.push_back(lview.apply_async("echo", t * 1000 + i));
      for (int i = 0; i < kCalls; ++i) {
        if (results[static_cast<std::size_t>(i)].get(kWait).to_plain_json() != t * 1000 + i)
          ++wrong;
      }
      if (dview.apply_sync("echo", t).to_plain_json() != json{t, t}) ++wrong;
      if (rc.ids().size() != 2) ++wrong;
    });
  }
  for (auto& th : threads)
    th.join();
  CHECK(wrong == 0);
  CHECK(rc.wait(kWait));
}

TEST_CASE("client: waits on maps end when they are done, beside other waits and timeouts") {
  // A thread waiting on a set is woken only once enough requests have finished (not at every
  // reply): it must still wake when its set is done, whatever else finishes meanwhile.
  Cluster c(2);
  Client& rc = *c.client;
  std::vector<int> xs(300);
  std::iota(xs.begin(), xs.end(), 0);
  auto slow = rc[0].apply_async("sleep", 0.5);
  CHECK_FALSE(slow.wait(Seconds(0)));  // a wait that times out at once says so
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      try {
        auto r = rc.load_balanced_view().map_async("echo", xs);
        if (t == 0 && r.wait(Seconds(0))) ++wrong;  // not all 300 at once
        if (r.get(kWait).as<std::vector<int>>() != xs) ++wrong;
      } catch (const std::exception&) {
        ++wrong;  // a wait that was never woken times out
      }
    });
  }
  // A single request waited on beside them, and one whose output follows its reply.
  auto x = rc[1].execute("x = getpid()");
  CHECK(x.wait_for_output(kWait));
  CHECK(rc[1].apply_sync("echo", 7).to_plain_json() == 7);
  for (auto& th : threads)
    th.join();
  CHECK(wrong == 0);
  CHECK(slow.wait(kWait));
  CHECK(rc.wait(kWait));
  // Alone, with no deadline: nothing else finishes to wake the waiter by chance, and no
  // timeout ends the wait for it.
  auto alone = std::async(std::launch::async, [&] {
    return rc.load_balanced_view().map_async("echo", xs).get().as<std::vector<int>>();
  });
  const bool woken = alone.wait_for(kWait) == std::future_status::ready;
  CHECK(woken);
  if (!woken) rc.close();  // ends the wait (it throws), so the test can end
  if (woken) CHECK(alone.get() == xs);
}

TEST_CASE("client: load-balanced map, options, and waiting on several results") {
  Cluster c(2);
  Client& rc = *c.client;
  ipcpp::TaskOptions o;
  o.chunksize = 3;
  o.ordered = false;
  auto lview = rc.load_balanced_view(o);
  std::vector<int> xs(10);
  std::iota(xs.begin(), xs.end(), 0);
  auto r = lview.map_async("echo", xs);
  CHECK(r.size() == 4);  // ceil(10 / 3) tasks
  std::vector<int> got;
  r.for_each([&](const Value& v) { got.push_back(v.as<int>()); }, kWait);
  std::sort(got.begin(), got.end());
  CHECK(got == xs);
  CHECK(r.get().as<std::vector<int>>() == xs);  // get() is always in order

  // after: the second task runs only once the first has finished.
  auto first = rc.load_balanced_view().apply_async("sleep", 0.2);
  ipcpp::TaskOptions after;
  after.after = first.msg_ids();
  auto second = rc.load_balanced_view(after).apply_async("echo", "second");
  std::vector<ipcpp::AsyncResult> both{first, second};
  REQUIRE(ipcpp::wait_all(both, kWait));
  CHECK(second.metadata()[0].started >= first.metadata()[0].completed);

  auto quick = rc[1].apply_async("echo", 1);
  auto slow = rc[0].apply_async("sleep", 10);
  std::vector<ipcpp::AsyncResult> race{slow, quick};
  CHECK(ipcpp::wait_any(race, kWait) == std::optional<std::size_t>(1));
  rc.abort({}, {0});
}

TEST_CASE(
    "client: the scheduler forgets the oldest finished tasks beyond --dependency-history, never "
    "one that a waiting task depends on") {
  std::vector<std::string> args = kController;
  args.insert(args.end(), {"--dependency-history", "3"});
  PythonCluster cluster(args);
  cluster.start_cpp_engines(2, kEngineArgs);
  ipcpp::ClientOptions options;
  options.profile_dir = cluster.profile_dir();
  options.timeout = Seconds(30);
  Client rc(options);
  rc.wait_for_engines(2, kWait);
  auto lview = rc.load_balanced_view();

  auto first = lview.apply_async("echo", 0);
  first.get(kWait);
  // `waiting` follows `first` (on its engine) after `slow`: while it waits, four more tasks
  // finish, more than the scheduler remembers; `first` stays, as `waiting` depends on it.
  auto slow = lview.apply_async("sleep", 1.0);
  ipcpp::TaskOptions o;
  o.follow = first.msg_ids();
  o.after = slow.msg_ids();
  auto waiting = rc.load_balanced_view(o).apply_async("echo", "waiting");
  std::vector<ipcpp::AsyncResult> quick;
  for (int i = 1; i <= 4; ++i)
    quick.push_back(lview.apply_async("echo", i));
  REQUIRE(ipcpp::wait_all(quick, kWait));
  CHECK_FALSE(waiting.ready());
  CHECK(waiting.get(kWait).as<std::string>() == "waiting");
  CHECK(waiting.metadata()[0].engine_id == first.metadata()[0].engine_id);

  // Now nothing depends on the first quick task any more, and it is forgotten: a task that
  // depends on it is refused at once (and counts as finished too). The last three to finish
  // (slow, waiting, the refused one) are remembered.
  ipcpp::TaskOptions old;
  old.after = quick.front().msg_ids();
  auto refused = caught<ipcpp::RemoteError>(
      [&] { rc.load_balanced_view(old).apply_async("echo", "late").get(kWait); });
  CHECK(refused.ename() == "InvalidDependency");
  CHECK(std::string(refused.evalue()).find("--dependency-history") != std::string::npos);
  ipcpp::TaskOptions recent;
  recent.after = waiting.msg_ids();
  CHECK(rc.load_balanced_view(recent).apply_async("echo", "ok").get(kWait).as<std::string>() ==
        "ok");
}

TEST_CASE(
    "client: what a task writes with printf, to stderr and from a child process is its output") {
  Cluster c(1);
  Client& rc = *c.client;
  auto r = rc[0].apply_async("write_fds", "hello");
  r.get(kWait);
  REQUIRE(r.wait_for_output(kWait));
  // Line-buffered, as on a terminal: the printf line comes before the child's.
  CHECK(r.stdout_texts() == std::vector<std::string>{"hello\nchild:hello\n"});
  CHECK(r.stderr_texts() == std::vector<std::string>{"err:hello\n"});

  // Far more than a pipe holds: the task does not block, and nothing is lost.
  const std::string line(99, 'x');
  auto big = rc[0].apply_async("write_fds", line, 30000);
  big.get(kWait);
  REQUIRE(big.wait_for_output(kWait));
  const std::string out = big.stdout_texts().at(0);
  CHECK(out.size() == 30000 * 100 + std::string("child:\n").size() + line.size());
  CHECK(out.starts_with(line + "\n" + line + "\n"));
  CHECK(out.ends_with("child:" + line + "\n"));
  CHECK(big.stderr_texts().at(0).size() == 30000 * 104);

  // The next task's output is its own.
  auto next = rc[0].apply_async("write_fds", "next");
  next.get(kWait);
  REQUIRE(next.wait_for_output(kWait));
  CHECK(next.stdout_texts() == std::vector<std::string>{"next\nchild:next\n"});
  CHECK(next.stderr_texts() == std::vector<std::string>{"err:next\n"});

  // An engine told to leave its descriptors alone keeps such output on its own stdout (where
  // C stdio holds its printf line in a block buffer: the child's line shows first).
  std::vector<std::string> args = kEngineArgs;
  args.push_back("--no-capture-fd-output");
  c.cluster.start_cpp_engines(1, args);
  rc.wait_for_engines(2, kWait);
  auto plain = rc[1].apply_async("write_fds", "plain");
  plain.get(kWait);
  REQUIRE(plain.wait_for_output(kWait));
  CHECK(plain.stdout_texts() == std::vector<std::string>{""});
  CHECK(ipcpp::test::wait_until(
      [&] {
        return c.cluster.engines().back().stdout_text().find("child:plain\n") != std::string::npos;
      },
      60s));
}

TEST_CASE("client: what an engine writes to stderr as it crashes reaches its own stderr") {
  Cluster c(1);
  Client& rc = *c.client;
  auto r = rc[0].apply_async("last_words", "the last words of engine 0");
  (void)caught<ipcpp::EngineError>([&] { r.get(kWait); });
  auto& engine = c.cluster.engines().front();
  REQUIRE(engine.wait_for(60s).has_value());
  // Not lost in the capture's pipe, which died with the process.
  CHECK(engine.stderr_text().find("the last words of engine 0\n") != std::string::npos);
}

TEST_CASE("client: output, metadata, and the controller's records") {
  Cluster c(2);
  Client& rc = *c.client;
  auto r = rc.all().apply_async("print", "hello", 42);
  r.get(kWait);
  REQUIRE(r.wait_for_output(kWait));
  CHECK(r.stdout_texts() == std::vector<std::string>{"hello 42\n", "hello 42\n"});
  const auto meta = r.metadata();
  REQUIRE(meta.size() == 2);
  CHECK(meta[0].engine_id == 0);
  CHECK(meta[1].engine_id == 1);
  CHECK(meta[0].status == "ok");
  CHECK(meta[0].submitted.has_value());
  CHECK(meta[0].started.has_value());
  CHECK(meta[0].completed.has_value());
  CHECK(r.elapsed() > Seconds(0));
  // A request that printed nothing has all of its output with its reply: the engine publishes
  // no statuses for it and says so (proto::kQuietStatusKey).
  auto silent = rc.all().apply_async("minus", 5, 6);
  silent.get(kWait);
  CHECK(silent.wait_for_output(Seconds(0)));
  CHECK(silent.stdout_texts() == std::vector<std::string>{"", ""});

  // The controller's view: queue status, history, records, and a result by msg_id.
  const auto status = rc.queue_status();
  CHECK(status.engines.size() == 2);
  CHECK(status.engines.at(0).completed >= 1);
  const auto history = rc.hub_history();
  CHECK(std::find(history.begin(), history.end(), r.msg_ids()[0]) != history.end());
  const json records = rc.db_query(json{{"msg_id", r.msg_ids()[1]}}, {"msg_id", "engine_uuid"});
  REQUIRE(records.size() == 1);
  CHECK(records[0]["engine_uuid"].is_string());
  // The request's and reply's dicts, which the hub kept as the frames' text: parsed now.
  const json dicts = rc.db_query(
      json{{"msg_id", r.msg_ids()[1]}, {"result_metadata", {{"$ne", nullptr}}}},
      {"header", "metadata", "content", "result_header", "result_metadata", "result_content"});
  REQUIRE(dicts.size() == 1);
  CHECK(dicts[0]["header"]["msg_id"] == r.msg_ids()[1]);
  CHECK(dicts[0]["header"]["msg_type"] == "apply_request");
  CHECK(dicts[0]["metadata"].is_object());
  CHECK(dicts[0]["content"].is_object());
  CHECK(dicts[0]["result_header"]["msg_type"] == "apply_reply");
  CHECK(dicts[0]["result_metadata"]["status"] == "ok");
  CHECK(dicts[0]["result_content"]["status"] == "ok");

  auto minus = rc[0].apply_async("minus", 10, 3);
  minus.get(kWait);
  auto again = rc.get_result(minus.msg_ids()[0]);
  CHECK(again.get(kWait).to_plain_json() == 7);
  auto unknown = caught<ipcpp::RemoteError>([&] { rc.get_result("no-such-msg-id"); });
  CHECK(unknown.ename() == "KeyError");

  rc.purge_everything();
  CHECK_THROWS_AS(rc.get_result(minus.msg_ids()[0]), ipcpp::RemoteError);
}

TEST_CASE("client: a missing connection file or a silent controller is a clear error") {
  ipcpp::test::TempDir tmp;
  ipcpp::ClientOptions o;
  o.connection_file = tmp.path() / "nope.json";
  o.timeout = Seconds(0.2);
  auto missing = caught<ipcpp::Error>([&] { Client rc(o); });
  CHECK(std::string(missing.what()) ==
        "no connection file " + o.connection_file.string() +
            " after 0.2 s: start a controller first (ipcpp-cluster start, or ipcpp-controller)");

  // A connection file whose controller is gone: nobody answers.
  std::string file_text;
  {
    PythonCluster gone(kController);
    file_text = ipcpp::test::read_text(gone.client_file());
  }
  o.connection_file = tmp.path() / "ipcontroller-client.json";
  write_file(o.connection_file, file_text);
  auto silent = caught<ipcpp::Error>([&] { Client rc(o); });
  CHECK(std::string(silent.what()).find("no answer from the controller at tcp://127.0.0.1:") == 0);
  CHECK(std::string(silent.what()).find(o.connection_file.string()) != std::string::npos);

  write_file(o.connection_file, "{\"key\": 3}");
  auto malformed = caught<ipcpp::Error>([&] { Client rc(o); });
  CHECK(std::string(malformed.what()).find(o.connection_file.string()) == 0);
}

TEST_CASE("client: closing fails what is still pending, and views then refuse") {
  Cluster c(1);
  auto view = c.client->all();
  auto slow = view.apply_async("sleep", 20);
  c.client->close();
  auto e = caught<ipcpp::Error>([&] { slow.get(kWait); });
  CHECK(std::string(e.what()) == "the client is closed");
  auto after = caught<ipcpp::Error>([&] { view.apply_async("echo", 1); });
  CHECK(std::string(after.what()) == "the client is closed");
  // Stop the sleeping engine's task so that the cluster stops at once.
  Client other(c.options());
  other.abort();
}

TEST_CASE("client: map passes keyword arguments to every call") {
  Cluster c(2);
  // Rows 0..3 of a 4x4 picture: the same keywords for every row.
  const ipcpp::Kwargs keywords{{"max_iter", 5}, {"xmin", -1.0}};
  const std::vector<int> four(4, 4);
  const Value rows = c.client->all().map_sync("mandelbrot_row", std::vector<int>{0, 1, 2, 3}, four,
                                              four, keywords);
  REQUIRE(rows.size() == 4);
  for (std::size_t i = 0; i < 4; ++i) {
    const Value one = c.client->load_balanced_view().apply_sync(
        "mandelbrot_row", static_cast<int>(i), 4, 4, keywords);
    CHECK(rows[i] == one);
  }
  // Without the keywords the row differs.
  const Value plain =
      c.client->all().map_sync("mandelbrot_row", std::vector<int>{0, 1, 2, 3}, four, four);
  CHECK_FALSE(plain[1] == rows[1]);
}

TEST_CASE("client: wait_for_engines finds an engine whose registration notification it missed") {
  // A stand-in for the controller, on real ZeroMQ sockets and the real protocol, that never
  // publishes a registration_notification: the second engine "registers" after the client's
  // first connection_request, as when its notification went out before the client's
  // subscription reached the controller. The client learns of it only by asking again.
  const std::string key = "a-key";
  zmq::context_t ctx;
  auto bound = [&ctx](zmq::socket_type type, int& port) {
    zmq::socket_t s(ctx, type);
    s.set(zmq::sockopt::linger, 0);
    s.bind("tcp://127.0.0.1:*");
    const std::string ep = s.get(zmq::sockopt::last_endpoint);
    port = std::stoi(ep.substr(ep.rfind(':') + 1));
    return s;
  };
  ipcpp::proto::ClientConnectionFile file;
  file.key = key;
  zmq::socket_t registration = bound(zmq::socket_type::router, file.registration);
  zmq::socket_t notification = bound(zmq::socket_type::pub, file.notification);
  zmq::socket_t mux = bound(zmq::socket_type::router, file.mux);
  zmq::socket_t task = bound(zmq::socket_type::router, file.task);
  zmq::socket_t control = bound(zmq::socket_type::router, file.control);
  zmq::socket_t iopub = bound(zmq::socket_type::pub, file.iopub);
  zmq::socket_t broadcast = bound(zmq::socket_type::router, file.broadcast);
  const ipcpp::test::TempDir tmp;
  const auto path = tmp.path() / "ipcontroller-client.json";
  std::ofstream(path) << ipcpp::proto::to_json_text(file);

  std::atomic<int> requests{0};
  std::atomic<bool> stop{false};
  std::thread hub([&] {
    ipcpp::proto::Session session(ipcpp::proto::SessionOptions{.key = key});
    while (!stop) {
      zmq::pollitem_t item{registration.handle(), 0, ZMQ_POLLIN, 0};
      zmq::poll(&item, 1, std::chrono::milliseconds(50));
      if ((item.revents & ZMQ_POLLIN) == 0) continue;
      std::vector<zmq::message_t> frames;
      (void)zmq::recv_multipart(registration, std::back_inserter(frames));
      auto m = session.decode(std::move(frames));
      if (!m || m->msg_type() != "connection_request") continue;
      // The first answer knows one engine, every later one two.
      json engines = {{"0", "engine-a"}};
      if (requests++ > 0) engines["1"] = "engine-b";
      auto reply = session.build(std::move(m->identities), "connection_reply",
                                 json{{"status", "ok"}, {"engines", engines}}, json(m->header));
      zmq::send_multipart(registration, reply);
    }
  });

  struct StopHub {  // also when a check throws
    std::atomic<bool>& stop;
    std::thread& thread;
    ~StopHub() {
      stop = true;
      thread.join();
    }
  } stop_hub{stop, hub};
  {
    ipcpp::ClientOptions options;
    options.connection_file = path;
    Client rc(options);
    CHECK(rc.ids() == std::vector<std::int64_t>{0});
    std::vector<std::size_t> seen;
    rc.wait_for_engines(2, Seconds(20), [&](std::size_t n) { seen.push_back(n); });
    CHECK(rc.ids() == std::vector<std::int64_t>{0, 1});
    CHECK(requests.load() >= 2);
    CHECK(seen.back() == 2);
  }
}
