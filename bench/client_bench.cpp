// client_bench: ipcpp (the C++ client, ipcpp-controller, ipcpp-engine) against ipyparallel
// (the Python client, /usr/bin/ipcontroller, Python engines), in one run, with a raw ZeroMQ
// echo as the floor.
//
//   build/bench/bin/client_bench [--quick] [--only floor,lb,direct,scatter_gather,scaling]
//                                [--skip-ipyparallel] [--skip-scaling] [--controller-arg=ARG] ...
//
// Measured, each on a fresh cluster started in a temporary profile (ipcpp-cluster's local
// launcher, as a library):
//   floor           a DEALER-ROUTER echo over tcp 127.0.0.1 in this process: the round trip
//                   with one message in flight (median, p99), and round trips per second
//                   with 100 in flight;
//   lb              load-balanced no-op throughput: map_async("echo", 0..TASKS-1) with
//                   chunksize 1 on E engines (default 4), median of 3 runs after a warm-up;
//   direct          rc[first].apply_sync("echo") round trip, median and p99, with the echo's
//                   round trip measured in blocks of 100 between its own blocks of 100 (the
//                   ratio to the floor then compares round trips of the same seconds);
//   scatter_gather  scatter("a", 10^7 doubles) over 4 engines then gather("a"), checked
//                   element by element; GB/s = 2 x 80 MB / (scatter + gather seconds),
//                   median of 3 runs after a warm-up;
//   scaling         240 tasks of sleep(1) load-balanced over 80 engines: wall time against
//                   the ideal ceil(240/80) x 1 s, and where the rest went (the latest first
//                   start, the longest wait of an engine between tasks, the longest reply
//                   return, from the requests' metadata).
// Then bench/ipyparallel_bench.py (run with /usr/bin/python3) measures the same four on
// ipyparallel, and one table gives both and the ratio of each pair (above 1: ipcpp better).
//
// Every process is started and stopped by this program (only the pids it started, also on
// Ctrl-C). It prints; it never fails on speed: the exit status is non-zero only when
// something did not work. --quick divides the counts by 10 (to try it, not to quote).
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "ipcpp/client.hpp"

#include "cluster/cluster.hpp"
#include "proto/allocator.hpp"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using json = nlohmann::json;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

struct Percentiles {
  double median = 0;
  double p99 = 0;
};

Percentiles percentiles(std::vector<double> v) {
  if (v.empty()) return {};
  std::sort(v.begin(), v.end());
  return {v[v.size() / 2], v[std::min(v.size() - 1, (v.size() * 99 + 99) / 100 - 1)]};
}

// x with `digits` decimals.
std::string fixed(double x, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << x;
  return out.str();
}

// ---- the floor: a raw DEALER-ROUTER echo ----------------------------------------------------

struct Floor {
  Percentiles round_trip_us;
  double per_second_100_in_flight = 0;
};

// The echo: a ROUTER thread that sends back what a DEALER in this thread sends it.
class Echo {
 public:
  Echo() : router_(ctx_, zmq::socket_type::router), stop_push_(ctx_, zmq::socket_type::pair) {
    router_.set(zmq::sockopt::linger, 0);
    router_.set(zmq::sockopt::sndhwm, 0);
    router_.set(zmq::sockopt::rcvhwm, 0);
    router_.bind("tcp://127.0.0.1:*");
    const std::string endpoint = router_.get(zmq::sockopt::last_endpoint);
    stop_push_.bind("inproc://floor-stop");
    thread_ = std::thread([this] { serve(); });
    dealer_ = zmq::socket_t(ctx_, zmq::socket_type::dealer);
    dealer_.set(zmq::sockopt::linger, 0);
    dealer_.set(zmq::sockopt::sndhwm, 0);
    dealer_.set(zmq::sockopt::rcvhwm, 0);
    dealer_.connect(endpoint);
  }
  Echo(const Echo&) = delete;
  Echo& operator=(const Echo&) = delete;
  ~Echo() {
    stop_push_.send(zmq::str_buffer("stop"), zmq::send_flags::none);
    thread_.join();
  }

  void send() { dealer_.send(zmq::buffer(payload_), zmq::send_flags::none); }
  void receive() {
    zmq::message_t reply;
    (void)dealer_.recv(reply);
  }
  // One round trip, in µs.
  double round_trip_us() {
    const auto t0 = Clock::now();
    send();
    receive();
    return std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  }

 private:
  void serve() {
    zmq::socket_t stop_pull(ctx_, zmq::socket_type::pair);
    stop_pull.connect("inproc://floor-stop");
    std::array<zmq::pollitem_t, 2> items{
        {{router_.handle(), 0, ZMQ_POLLIN, 0}, {stop_pull.handle(), 0, ZMQ_POLLIN, 0}}};
    for (;;) {
      zmq::poll(items.data(), items.size());
      if ((items[1].revents & ZMQ_POLLIN) != 0) return;
      for (;;) {
        zmq::message_t id;
        zmq::message_t body;
        if (!router_.recv(id, zmq::recv_flags::dontwait)) break;
        (void)router_.recv(body);
        router_.send(id, zmq::send_flags::sndmore);
        router_.send(body, zmq::send_flags::none);
      }
    }
  }

  zmq::context_t ctx_;
  zmq::socket_t router_;
  zmq::socket_t stop_push_;
  zmq::socket_t dealer_;
  std::thread thread_;
  const std::string payload_ = std::string(100, 'x');  // about a small request's size
};

Floor measure_floor(int round_trips, int messages) {
  Echo echo;
  for (int i = 0; i < 200; ++i)
    (void)echo.round_trip_us();
  std::vector<double> us;
  us.reserve(static_cast<std::size_t>(round_trips));
  for (int i = 0; i < round_trips; ++i)
    us.push_back(echo.round_trip_us());
  Floor floor;
  floor.round_trip_us = percentiles(us);
  const auto t0 = Clock::now();
  int sent = 0;
  int received = 0;
  while (sent < std::min(100, messages)) {
    echo.send();
    ++sent;
  }
  while (received < messages) {
    echo.receive();
    ++received;
    if (sent < messages) {
      echo.send();
      ++sent;
    }
  }
  floor.per_second_100_in_flight = messages / seconds_since(t0);
  return floor;
}

// ---- clusters -------------------------------------------------------------------------------

// The cluster running now, for the signal thread: it is stopped on Ctrl-C.
std::mutex g_cluster_mu;
ipcpp::cluster::Cluster* g_cluster = nullptr;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = "/tmp/ipcpp-client-bench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw std::runtime_error("cannot create a /tmp directory");
    path_ = tmpl;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    if (!keep) fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }
  bool keep = false;

 private:
  fs::path path_;
};

struct ClusterSettings {
  std::vector<std::string> controller_args;
  std::vector<std::string> engine_args;
  bool keep = false;
};

// A controller and n engines in a fresh profile, stopped when it goes out of scope.
class BenchCluster {
 public:
  BenchCluster(std::size_t n, const ClusterSettings& settings)
      : cluster_(ipcpp::cluster::ClusterOptions{.profile_dir = dir_.path() / "profile_bench"}) {
    dir_.keep = settings.keep;
    {
      std::lock_guard lock(g_cluster_mu);
      g_cluster = &cluster_;
    }
    std::cerr << "client_bench: starting a controller and " << n << " engines in "
              << dir_.path().string() << "\n";
    const auto t0 = Clock::now();
    try {
      state_ = cluster_.start(
          {.engines = {.n = n, .args = settings.engine_args, .timeout = ipcpp::Seconds(300)},
           .controller_args = settings.controller_args});
    } catch (...) {
      forget();
      throw;
    }
    std::cerr << "client_bench: " << n << " engines registered in " << fixed(seconds_since(t0), 2)
              << " s\n";
    client_.emplace(ipcpp::ClientOptions{.profile_dir = dir_.path() / "profile_bench",
                                         .timeout = ipcpp::Seconds(30)});
    client_->wait_for_engines(n, ipcpp::Seconds(60));
  }
  BenchCluster(const BenchCluster&) = delete;
  BenchCluster& operator=(const BenchCluster&) = delete;
  ~BenchCluster() {
    client_.reset();
    try {
      cluster_.stop();
    } catch (const std::exception& e) {
      std::cerr << "client_bench: stopping the cluster: " << e.what() << "\n";
    }
    forget();
  }
  ipcpp::Client& client() { return *client_; }

  // CPU seconds (user + system) used so far by the controller, by all engines together, and
  // by this process.
  struct Cpu {
    double controller = 0;
    double engines = 0;
    double client = 0;
  };
  Cpu cpu() const {
    Cpu c;
    c.controller = cpu_seconds(static_cast<pid_t>(state_.controller.pid));
    for (const auto& [id, set] : state_.engine_sets)
      for (const auto& e : set.engines)
        c.engines += cpu_seconds(static_cast<pid_t>(e.pid));
    c.client = cpu_seconds(::getpid());
    return c;
  }

 private:
  void forget() {
    std::lock_guard lock(g_cluster_mu);
    g_cluster = nullptr;
  }
  // utime + stime of /proc/<pid>/stat (all its threads), in seconds.
  static double cpu_seconds(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    std::getline(in, text);
    const auto close = text.rfind(')');
    if (close == std::string::npos) return 0;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stod(field);
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }

  TempDir dir_;
  ipcpp::cluster::Cluster cluster_;
  ipcpp::cluster::ClusterState state_;
  std::optional<ipcpp::Client> client_;
};

// SIGINT/SIGTERM/SIGHUP are blocked in every thread; this one waits for them, stops the
// running cluster and ends the program.
void start_signal_thread() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::thread([set] {
    int sig = 0;
    ::sigwait(&set, &sig);
    std::cerr << "client_bench: interrupted: stopping the cluster\n";
    {
      std::lock_guard lock(g_cluster_mu);
      if (g_cluster != nullptr) {
        try {
          g_cluster->stop();
        } catch (...) {
        }
      }
    }
    std::_Exit(128 + sig);
  }).detach();
}

// ---- the ipcpp workloads ----------------------------------------------------------------------

struct Options {
  bool quick = false;
  std::set<std::string> only;
  bool skip_ipyparallel = false;
  bool skip_scaling = false;
  std::size_t engines = 4;
  int tasks = 20000;
  int round_trips = 2000;
  std::size_t elements = 10'000'000;
  std::size_t scaling_engines = 80;
  int scaling_tasks = 240;
  double scaling_seconds = 1.0;
  ClusterSettings cluster;
  std::string python = "/usr/bin/python3";
  std::string reference_script;

  bool wants(const std::string& w) const { return only.empty() || only.count(w) != 0; }
};

json lb_workload(BenchCluster& cluster, const Options& o) {
  ipcpp::Client& rc = cluster.client();
  auto lview = rc.load_balanced_view();
  std::vector<std::int64_t> seq(static_cast<std::size_t>(o.tasks));
  for (std::size_t i = 0; i < seq.size(); ++i)
    seq[i] = static_cast<std::int64_t>(i);
  std::vector<double> rates;
  BenchCluster::Cpu cpu0;
  for (int run = 0; run < 4; ++run) {
    if (run == 1) cpu0 = cluster.cpu();
    const auto t0 = Clock::now();
    const ipcpp::Value v = lview.map_async("echo", seq).get(ipcpp::Seconds(600));
    const double s = seconds_since(t0);
    const auto back = v.as<std::vector<std::int64_t>>();
    if (back != seq) throw std::runtime_error("lb: the echoed values differ");
    if (run > 0) rates.push_back(o.tasks / s);  // run 0 warms up
    rc.purge_everything();
  }
  const BenchCluster::Cpu cpu1 = cluster.cpu();
  const double per_task = 1e6 / (3.0 * o.tasks);  // µs per task, from seconds over 3 runs
  std::sort(rates.begin(), rates.end());
  return {{"engines", o.engines},
          {"tasks", o.tasks},
          {"cpu_us_per_task",
           {{"client", (cpu1.client - cpu0.client) * per_task},
            {"controller", (cpu1.controller - cpu0.controller) * per_task},
            {"engines", (cpu1.engines - cpu0.engines) * per_task}}},
          {"tasks_per_s", rates[1]},
          {"min", rates.front()},
          {"max", rates.back()}};
}

// The direct round trip, and the echo's in blocks of 100 between its blocks of 100: the
// machine's state (a VM's neighbours, frequency) moves the echo by a third between runs, so the
// ratio the target is about compares round trips measured in the same seconds.
json direct_workload(ipcpp::Client& rc, const Options& o) {
  auto view = rc[rc.ids().front()];
  Echo echo;
  for (int i = 0; i < 50; ++i) {
    (void)view.apply_sync("echo");
    (void)echo.round_trip_us();
  }
  std::vector<double> us;
  std::vector<double> echo_us;
  us.reserve(static_cast<std::size_t>(o.round_trips));
  echo_us.reserve(static_cast<std::size_t>(o.round_trips));
  constexpr int kBlock = 100;
  for (int done = 0; done < o.round_trips; done += kBlock) {
    const int n = std::min(kBlock, o.round_trips - done);
    for (int i = 0; i < n; ++i) {
      const auto t0 = Clock::now();
      (void)view.apply_sync("echo");
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    for (int i = 0; i < n; ++i)
      echo_us.push_back(echo.round_trip_us());
  }
  rc.purge_everything();
  const Percentiles p = percentiles(us);
  const Percentiles e = percentiles(echo_us);
  return {
      {"engines", o.engines}, {"roundtrips", o.round_trips},        {"median_us", p.median},
      {"p99_us", p.p99},      {"echo_between_median_us", e.median}, {"echo_between_p99_us", e.p99}};
}

json scatter_gather_workload(ipcpp::Client& rc, const Options& o) {
  std::vector<double> x(o.elements);
  for (std::size_t i = 0; i < x.size(); ++i)
    x[i] = static_cast<double>(i);
  // The Value is made once, outside the timing, as the reference's numpy array exists before
  // its scatter: both then send their elements without copying them (a Value shares its
  // bytes; scatter's pieces are views of them).
  const ipcpp::Value data(x);
  auto all = rc.all();
  std::vector<double> scatter_s;
  std::vector<double> gather_s;
  for (int run = 0; run < 4; ++run) {
    const auto t0 = Clock::now();
    all.scatter("a", data).get(ipcpp::Seconds(600));
    const double s1 = seconds_since(t0);
    const auto t1 = Clock::now();
    const ipcpp::Value y = all.gather_sync("a");
    const double s2 = seconds_since(t1);
    if (y.as<std::vector<double>>() != x)
      throw std::runtime_error("scatter_gather: gathered values differ");
    if (run > 0) {
      scatter_s.push_back(s1);
      gather_s.push_back(s2);
    }
  }
  rc.purge_everything();
  std::vector<double> totals;
  for (std::size_t i = 0; i < scatter_s.size(); ++i)
    totals.push_back(scatter_s[i] + gather_s[i]);
  const std::size_t mid = static_cast<std::size_t>(std::distance(
      totals.begin(), std::find(totals.begin(), totals.end(), percentiles(totals).median)));
  const double bytes = 2.0 * 8.0 * static_cast<double>(o.elements);
  return {{"engines", rc.ids().size()},
          {"elements", o.elements},
          {"scatter_s", scatter_s[mid]},
          {"gather_s", gather_s[mid]},
          {"gb_per_s", bytes / totals[mid] / 1e9}};
}

json scaling_workload(ipcpp::Client& rc, const Options& o) {
  auto lview = rc.load_balanced_view();
  // A no-op on every engine first, as the reference does.
  (void)rc.all().apply_sync("echo");
  const auto t0 = Clock::now();
  auto ar = lview.map_async(
      "sleep", std::vector<double>(static_cast<std::size_t>(o.scaling_tasks), o.scaling_seconds));
  const ipcpp::Value v = ar.get(ipcpp::Seconds(600));
  const double wall = seconds_since(t0);
  // Where the time beyond the ideal went, from each request's times (all on this machine's
  // clock): the last task's submission, the latest first start on an engine, the longest
  // wait of an engine between its tasks, and the longest reply's way back.
  const auto md = ar.metadata();
  const auto first = *md.front().submitted;
  auto ms = [&](const std::optional<ipcpp::TimePoint>& t) {
    return t ? std::chrono::duration<double, std::milli>(*t - first).count() : 0.0;
  };
  std::map<std::int64_t, std::vector<const ipcpp::ResultMetadata*>> by_engine;
  double last_submit = 0;
  for (const auto& m : md) {
    by_engine[m.engine_id].push_back(&m);
    last_submit = std::max(last_submit, ms(m.submitted));
  }
  double latest_first_start = 0, longest_gap = 0, longest_return = 0;
  for (auto& [id, tasks] : by_engine) {
    std::sort(tasks.begin(), tasks.end(), [](auto a, auto b) { return a->started < b->started; });
    latest_first_start = std::max(latest_first_start, ms(tasks.front()->started));
    for (std::size_t i = 1; i < tasks.size(); ++i)
      longest_gap = std::max(longest_gap, ms(tasks[i]->started) - ms(tasks[i - 1]->completed));
    for (const auto* m : tasks)
      longest_return = std::max(longest_return, ms(m->received) - ms(m->completed));
  }
  if (v.as<std::vector<json>>().size() != static_cast<std::size_t>(o.scaling_tasks)) {
    throw std::runtime_error("scaling: wrong number of results");
  }
  const double ideal =
      std::ceil(static_cast<double>(o.scaling_tasks) / static_cast<double>(o.scaling_engines)) *
      o.scaling_seconds;
  return {{"engines", o.scaling_engines},
          {"tasks", o.scaling_tasks},
          {"task_seconds", o.scaling_seconds},
          {"wall_s", wall},
          {"ideal_s", ideal},
          {"last_submitted_ms", last_submit},
          {"latest_first_start_ms", latest_first_start},
          {"longest_engine_wait_ms", longest_gap},
          {"longest_reply_return_ms", longest_return}};
}

json measure_ipcpp(const Options& o) {
  json out = json::object();
  if (o.wants("lb") || o.wants("direct")) {
    BenchCluster c(o.engines, o.cluster);
    if (o.wants("lb")) {
      std::cerr << "client_bench: ipcpp lb\n";
      out["lb"] = lb_workload(c, o);
    }
    if (o.wants("direct")) {
      std::cerr << "client_bench: ipcpp direct\n";
      out["direct"] = direct_workload(c.client(), o);
    }
  }
  if (o.wants("scatter_gather")) {
    BenchCluster c(4, o.cluster);
    std::cerr << "client_bench: ipcpp scatter_gather\n";
    out["scatter_gather"] = scatter_gather_workload(c.client(), o);
  }
  if (o.wants("scaling") && !o.skip_scaling) {
    BenchCluster c(o.scaling_engines, o.cluster);
    std::cerr << "client_bench: ipcpp scaling\n";
    out["scaling"] = scaling_workload(c.client(), o);
  }
  return out;
}

// ---- the reference ------------------------------------------------------------------------------

json measure_ipyparallel(const Options& o) {
  std::vector<std::string> only;
  for (const char* w : {"lb", "direct", "scatter_gather", "scaling"}) {
    if (o.wants(w) && !(std::string(w) == "scaling" && o.skip_scaling)) only.emplace_back(w);
  }
  if (only.empty()) return json::object();
  std::ostringstream cmd;
  cmd << o.python << " " << o.reference_script << " --engines " << o.engines << " --tasks "
      << o.tasks / 5 << " --roundtrips " << o.round_trips / 2 << " --elements " << o.elements
      << " --scaling-engines " << o.scaling_engines << " --scaling-tasks " << o.scaling_tasks
      << " --scaling-seconds " << o.scaling_seconds << " --only ";
  for (std::size_t i = 0; i < only.size(); ++i)
    cmd << (i ? "," : "") << only[i];
  std::cerr << "client_bench: running " << cmd.str() << "\n";
  FILE* p = ::popen(cmd.str().c_str(), "r");
  if (p == nullptr) throw std::runtime_error("cannot run " + o.python);
  std::string out;
  std::array<char, 4096> buf{};
  while (std::fgets(buf.data(), static_cast<int>(buf.size()), p) != nullptr)
    out += buf.data();
  const int status = ::pclose(p);
  if (status != 0)
    throw std::runtime_error("the ipyparallel benchmark failed (see its output above)");
  const auto line_start = out.rfind("\n{");
  return json::parse(line_start == std::string::npos ? out : out.substr(line_start + 1));
}

// ---- the table ----------------------------------------------------------------------------------

std::string cell(const json& j, const char* workload, const char* key, int digits) {
  if (!j.contains(workload) || !j[workload].contains(key)) return "—";
  return fixed(j[workload][key].get<double>(), digits);
}

std::string ratio(const json& ours, const json& ref, const char* workload, const char* key,
                  bool higher_is_better) {
  if (!ours.contains(workload) || !ref.contains(workload)) return "—";
  const double a = ours[workload][key].get<double>();
  const double b = ref[workload][key].get<double>();
  if (a <= 0 || b <= 0) return "—";
  return (fixed(higher_is_better ? a / b : b / a, 1) + "×");
}

void print_table(const Floor* floor, const json& ours, const json& ref, const Options& o) {
  std::cout << "\n| measurement | ipyparallel 7.1 | ipcpp | ratio (above 1: ipcpp better) |\n"
            << "|---|---|---|---|\n";
  if (floor != nullptr) {
    std::cout << "| floor: raw DEALER-ROUTER echo, 1 in flight: median / p99 | | "
              << fixed(floor->round_trip_us.median, 0) << " / "
              << (fixed(floor->round_trip_us.p99, 0) + " µs") << " | |\n"
              << "| floor: raw echo, 100 in flight | | "
              << (fixed(floor->per_second_100_in_flight, 0) + " round trips/s") << " | |\n";
  }
  std::cout << "| load-balanced no-op tasks/s, " << o.engines << " engines (median of 3) | "
            << cell(ref, "lb", "tasks_per_s", 0) << " | " << cell(ours, "lb", "tasks_per_s", 0)
            << " | " << ratio(ours, ref, "lb", "tasks_per_s", true) << " |\n"
            << "| direct round trip: median µs | " << cell(ref, "direct", "median_us", 0) << " | "
            << cell(ours, "direct", "median_us", 0) << " | "
            << ratio(ours, ref, "direct", "median_us", false) << " |\n"
            << "| direct round trip: p99 µs | " << cell(ref, "direct", "p99_us", 0) << " | "
            << cell(ours, "direct", "p99_us", 0) << " | "
            << ratio(ours, ref, "direct", "p99_us", false) << " |\n"
            << "| floor: raw echo, 1 in flight, between the direct round trips: median / p99 | | "
            << cell(ours, "direct", "echo_between_median_us", 0) << " / "
            << cell(ours, "direct", "echo_between_p99_us", 0) << " µs | |\n"
            << "| scatter+gather of " << o.elements << " doubles, 4 engines: GB/s | "
            << cell(ref, "scatter_gather", "gb_per_s", 2) << " | "
            << cell(ours, "scatter_gather", "gb_per_s", 2) << " | "
            << ratio(ours, ref, "scatter_gather", "gb_per_s", true) << " |\n"
            << "| " << o.scaling_tasks << " × sleep(" << o.scaling_seconds << ") on "
            << o.scaling_engines << " engines: wall s (ideal "
            << fixed(std::ceil(static_cast<double>(o.scaling_tasks) /
                               static_cast<double>(o.scaling_engines)) *
                         o.scaling_seconds,
                     2)
            << ") | " << cell(ref, "scaling", "wall_s", 3) << " | "
            << cell(ours, "scaling", "wall_s", 3) << " | "
            << ratio(ours, ref, "scaling", "wall_s", false) << " |\n";
  if (ours.contains("direct")) {
    const json& d = ours["direct"];
    std::cout << "\nipcpp direct median / floor median, measured in the same seconds: "
              << (fixed(d["median_us"].get<double>() / d["echo_between_median_us"].get<double>(),
                        2) +
                  "×");
    if (floor != nullptr) {
      std::cout << " (against the floor measured first: "
                << (fixed(d["median_us"].get<double>() / floor->round_trip_us.median, 2) + "×)");
    }
    std::cout << "\n";
  }
  std::cout << "\nipcpp: " << ours.dump() << "\nipyparallel: " << ref.dump() << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  o.reference_script =
      (ipcpp::cluster::own_program_dir() / "../../../bench/ipyparallel_bench.py").string();
  std::string only;
  CLI::App app("client_bench: ipcpp against ipyparallel, with a raw ZeroMQ echo as the floor");
  app.add_flag("--quick", o.quick, "divide the counts by 10 (to try it)");
  app.add_option("--only", only, "comma list of floor,lb,direct,scatter_gather,scaling");
  app.add_flag("--skip-ipyparallel", o.skip_ipyparallel, "measure ipcpp only");
  app.add_flag("--skip-scaling", o.skip_scaling, "leave out the 80-engine scaling run");
  app.add_option("--engines", o.engines, "engines for lb and direct")->capture_default_str();
  app.add_option("--tasks", o.tasks, "tasks per lb run (ipyparallel gets a fifth)")
      ->capture_default_str();
  app.add_option("--roundtrips", o.round_trips, "direct round trips (ipyparallel gets half)")
      ->capture_default_str();
  app.add_option("--elements", o.elements, "doubles to scatter and gather")->capture_default_str();
  app.add_option("--scaling-engines", o.scaling_engines)->capture_default_str();
  app.add_option("--scaling-tasks", o.scaling_tasks)->capture_default_str();
  app.add_option("--scaling-seconds", o.scaling_seconds)->capture_default_str();
  app.add_option("--controller-arg", o.cluster.controller_args,
                 "an extra ipcpp-controller argument")
      ->allow_extra_args(false);
  app.add_option("--engine-arg", o.cluster.engine_args, "an extra ipcpp-engine argument")
      ->allow_extra_args(false);
  app.add_option("--python", o.python, "the Python with ipyparallel")->capture_default_str();
  app.add_option("--reference-script", o.reference_script, "ipyparallel_bench.py")
      ->capture_default_str();
  app.add_flag("--keep", o.cluster.keep, "keep the temporary profiles and logs");
  CLI11_PARSE(app, argc, argv);
  std::stringstream words(only);
  for (std::string w; std::getline(words, w, ',');)
    if (!w.empty()) o.only.insert(w);
  if (o.quick) {
    o.tasks /= 10;
    o.round_trips /= 10;
    o.elements /= 10;
    o.scaling_engines /= 10;
    o.scaling_tasks /= 10;
  }
  // As ipcpp-controller and ipcpp-engine do: large received frames reuse freed memory.
  ipcpp::proto::keep_freed_memory();
  start_signal_thread();
  try {
    std::optional<Floor> floor;
    if (o.wants("floor")) {
      std::cerr << "client_bench: floor\n";
      floor = measure_floor(o.quick ? 2000 : 20000, o.quick ? 20000 : 200000);
    }
    const json ours = measure_ipcpp(o);
    const json ref = o.skip_ipyparallel ? json::object() : measure_ipyparallel(o);
    print_table(floor ? &*floor : nullptr, ours, ref, o);
  } catch (const std::exception& e) {
    std::cerr << "client_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
