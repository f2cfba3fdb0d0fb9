// The example task library (examples/tasks): loaded with dlopen as an engine loads it, each
// function called through the registration table with a context written here.
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <dlfcn.h>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <doctest/doctest.h>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "examples/tasks/mandelbrot_kernel.hpp"
#include "support/temp_dir.hpp"

namespace {

using ipcpp::Args;
using ipcpp::Array;
using ipcpp::Value;
using nlohmann::json;

constexpr const char* kLibraryPath = IPCPP_LIB_DIR "/libipcpp_example_tasks.so";
constexpr const char* kFlightsDir = IPCPP_SOURCE_DIR "/examples/data/flights";

// A TaskContext as an engine gives one: a namespace, a cancellation flag, output streams.
class TestContext final : public ipcpp::TaskContext {
 public:
  std::int64_t engine_id() const override { return 0; }
  const std::string& engine_uuid() const override { return uuid_; }
  ipcpp::Namespace& ns() override { return ns_; }
  bool cancelled() const override { return cancelled_.load(); }
  bool sleep_for(std::chrono::nanoseconds duration) override {
    const auto deadline = std::chrono::steady_clock::now() + duration;
    while (!cancelled() && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return !cancelled();
  }
  std::ostream& out() override { return out_; }
  std::ostream& err() override { return err_; }

  void cancel() { cancelled_.store(true); }

 private:
  std::string uuid_ = "test-engine";
  ipcpp::Namespace ns_;
  std::atomic<bool> cancelled_{false};
  std::ostringstream out_;
  std::ostringstream err_;
};

// The library's registration table. The library stays loaded for the whole test run: values
// it returned own memory through its code.
const ipcpp::detail::TaskTable& task_table() {
  static const ipcpp::detail::TaskTable table = [] {
    void* handle = dlopen(kLibraryPath, RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr) FAIL("cannot load " << kLibraryPath << ": " << dlerror());
    void* symbol = dlsym(handle, "ipcpp_task_library_v1");
    if (symbol == nullptr) FAIL("no ipcpp_task_library_v1 in " << kLibraryPath);
    using Entry = ipcpp::detail::TaskTable (*)();
    return reinterpret_cast<Entry>(symbol)();
  }();
  return table;
}

// The task called `name`, or nullptr.
const ipcpp::TaskInfo* find_task(std::string_view name) {
  const auto& table = task_table();
  for (std::size_t i = 0; i < table.count; ++i) {
    if (table.tasks[i].name == name) return &table.tasks[i];
  }
  return nullptr;
}

Value call(std::string_view name, std::vector<Value> positional,
           std::vector<std::pair<std::string, Value>> keywords = {}) {
  const ipcpp::TaskInfo* task = find_task(name);
  REQUIRE_MESSAGE(task != nullptr, "no task " << name);
  TestContext ctx;
  return task->function(Args(std::move(positional), std::move(keywords)), ctx);
}

// Runs `f`; returns the TaskError's "ename: evalue", or "" if it threw none.
template <class F>
std::string task_error(F&& f) {
  try {
    f();
  } catch (const ipcpp::TaskError& e) {
    return e.ename() + ": " + e.what();
  }
  return "";
}

// A 2-D f8 array.
Value matrix(std::size_t rows, std::size_t cols, std::vector<double> elements) {
  return Array(ipcpp::DType::kFloat64, {rows, cols},
               ipcpp::Bytes::from_vector(std::move(elements)));
}

// maxdelay computed here, independently: the first row with the largest DepDelay.
json expected_maxdelay(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  REQUIRE(line == "Year,Month,DayofMonth,DepTime,DepDelay,Origin,Dest,Distance");
  json best;
  std::int64_t flights = 0;
  std::int64_t cancelled = 0;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream row(line);
    for (std::string field; std::getline(row, field, ',');)
      f.push_back(field);
    if (f.size() == 7) f.emplace_back();  // getline drops a trailing empty field
    REQUIRE(f.size() == 8);
    ++flights;
    if (f[4].empty()) {
      ++cancelled;
      continue;
    }
    const long delay = std::stol(f[4]);
    if (best.is_null() || delay > best["delay"].get<long>()) {
      best = {{"delay", delay}, {"origin", f[5]}, {"dest", f[6]}};
    }
  }
  best["flights"] = flights;
  best["cancelled"] = cancelled;
  return best;
}

}  // namespace

TEST_CASE("example tasks: the library registers every tutorial function with a signature") {
  for (const char* name : {"minus", "maxdelay", "mandelbrot_row", "count_words", "matmul_block",
                           "auc_slice", "pi_slice"}) {
    CAPTURE(name);
    const ipcpp::TaskInfo* task = find_task(name);
    REQUIRE(task != nullptr);
    CHECK((task->function != nullptr));
    CHECK(std::string(task->doc).starts_with(std::string(name) + "("));
  }
  CHECK(task_table().abi_version == ipcpp::detail::kTaskAbiVersion);
}

TEST_CASE("example tasks: minus keeps integers integral and mixes to a float") {
  const Value ints = call("minus", {json(5), json(6)});
  CHECK(ints.json().is_number_integer());
  CHECK(ints.json() == -1);
  const Value mixed = call("minus", {json(2.5), json(1)});
  CHECK(mixed.json().is_number_float());
  CHECK(mixed.json().get<double>() == 1.5);
  CHECK(task_error([] {
          call("minus", {json("a"), json(1)});
        }) == "TypeError: minus(): a must be a number, got \"a\"");
  CHECK(task_error([] { call("minus", {json(1)}); }) == "TypeError: takes 2 arguments (1 given)");
}

TEST_CASE("example tasks: maxdelay finds the largest departure delay of a month") {
  for (const char* month : {"2023-01", "2023-02", "2023-03", "2023-04", "2023-05", "2023-06",
                            "2023-07", "2023-08", "2023-09", "2023-10", "2023-11", "2023-12"}) {
    CAPTURE(month);
    std::string file = month;
    file.append(".csv");
    std::string path = kFlightsDir;  // appended, not added: g++ 12 -O3 warns falsely on +
    path.append("/").append(file);
    json expected = expected_maxdelay(path);
    expected["file"] = file;
    expected["month"] = month;
    const Value result = call("maxdelay", {json(path)});
    CHECK(result.json() == expected);
    CHECK(result.json()["delay"].is_number_integer());
  }

  SUBCASE("a missing file is a FileNotFoundError") {
    CHECK(task_error([] { call("maxdelay", {json("/nonexistent/2023-13.csv")}); }) ==
          "FileNotFoundError: no such file: /nonexistent/2023-13.csv");
  }
  SUBCASE("a malformed row names its file and line") {
    ipcpp::test::TempDir dir;
    const std::string bad = (dir.path() / "bad.csv").string();
    std::ofstream(bad) << "Year,Month,DayofMonth,DepTime,DepDelay,Origin,Dest,Distance\n"
                       << "2023,1,1,517,2,EWR,ATL,746\n"
                       << "2023,1,1,533,-4,LGA\n";
    CHECK(task_error([&] { call("maxdelay", {json(bad)}); }) ==
          "ValueError: " + bad + ":3: expected 8 fields, got 6");
    std::ofstream(bad) << "Year,Month,DayofMonth,DepTime,DepDelay,Origin,Dest,Distance\n"
                       << "2023,1,1,517,late,EWR,ATL,746\n";
    CHECK(task_error([&] { call("maxdelay", {json(bad)}); }) ==
          "ValueError: " + bad + ":2: DepDelay is not a number: 'late'");
  }
}

TEST_CASE("example tasks: mandelbrot_row gives width int32 counts, the centre in the set") {
  // A grid centred on 0: xmin = -xmax, ymin = -ymax, odd sizes put (0, 0) on pixel (2, 2).
  const Value row =
      call("mandelbrot_row", {json(2), json(5), json(5), json(100), json(-1.5), json(1.5)},
           {{"ymin", json(-1.5)}, {"ymax", json(1.5)}});
  REQUIRE(row.is_array());
  CHECK(row.array().dtype() == ipcpp::DType::kInt32);
  const std::vector<std::int32_t> counts = row.array().to_vector<std::int32_t>();
  REQUIRE(counts.size() == 5);
  CHECK(counts[2] == 100);
  CHECK(counts[0] == 100);  // -1.5 is in the set too
  CHECK(counts[4] == 1);    // 1.5: z = 1.5, then 3.75 escapes

  const Value defaults = call("mandelbrot_row", {json(0), json(7), json(3)});
  CHECK(defaults.array().size() == 7);
  CHECK(task_error([] {
          call("mandelbrot_row", {json(5), json(5), json(5)});
        }) == "ValueError: mandelbrot_row(): y must be from 0 to height - 1 = 4, got 5");
  CHECK(task_error([] {
          call("mandelbrot_row", {json(0), json(5), json(5), json(10)}, {{"max_iter", json(3)}});
        }) == "TypeError: mandelbrot_row() got multiple values for argument 'max_iter'");
}

TEST_CASE("example tasks: mandelbrot_row is the row of the kernel the examples share") {
  // examples/mandelbrot.cpp checks the engines' rows against mandelbrot_kernel.hpp.
  for (const std::int64_t y : {0, 7, 15}) {
    CAPTURE(y);
    const Value row = call("mandelbrot_row", {json(y), json(40), json(16)},
                           {{"max_iter", json(300)}, {"xmin", json(-2.5)}});
    const auto expected =
        ipcpp::examples::mandelbrot::row(y, 40, 16, 300, {-2.5, 1.0, -1.5, 1.5}, [] {});
    CHECK(row.array().to_vector<std::int32_t>() == expected);
  }
}

TEST_CASE("example tasks: count_words counts lower-cased words") {
  CHECK(call("count_words", {json("The the cat's")}).json() == json{{"the", 2}, {"cat's", 1}});
  CHECK(call("count_words", {json("'Quoted', 42 times; 42!")}).json() ==
        json{{"quoted", 1}, {"42", 2}, {"times", 1}});

  ipcpp::test::TempDir dir;
  const std::string path = (dir.path() / "text.txt").string();
  std::ofstream(path) << "One fish,\ntwo fish.\n";
  CHECK(call("count_words", {}, {{"path", json(path)}}).json() ==
        json{{"one", 1}, {"fish", 2}, {"two", 1}});
  CHECK(task_error([] { call("count_words", {}); }) ==
        "TypeError: count_words() takes a text or path=..., exactly one of them");
}

TEST_CASE("example tasks: matmul_block multiplies 2-D f8 blocks") {
  // [1 2 3; 4 5 6] x [7 8; 9 10; 11 12] = [58 64; 139 154]
  const Value product =
      call("matmul_block", {matrix(2, 3, {1, 2, 3, 4, 5, 6}), matrix(3, 2, {7, 8, 9, 10, 11, 12})});
  REQUIRE(product.is_array());
  CHECK(product.array().dtype() == ipcpp::DType::kFloat64);
  CHECK(product.array().shape() == std::vector<std::size_t>{2, 2});
  CHECK(product.array().to_vector<double>() == std::vector<double>{58, 64, 139, 154});

  // Received frames may start at any address: the same product from unaligned bytes.
  auto storage = std::make_shared<std::vector<std::byte>>(6 * sizeof(double) + 1);
  const std::vector<double> left = {1, 2, 3, 4, 5, 6};
  std::memcpy(storage->data() + 1, left.data(), 6 * sizeof(double));
  const Value unaligned = Array(ipcpp::DType::kFloat64, {2, 3},
                                ipcpp::Bytes(storage, storage->data() + 1, 6 * sizeof(double)));
  CHECK(call("matmul_block", {unaligned, matrix(3, 2, {7, 8, 9, 10, 11, 12})})
            .as<std::vector<double>>() == std::vector<double>{58, 64, 139, 154});

  CHECK(task_error([] {
          call("matmul_block", {matrix(2, 3, {1, 2, 3, 4, 5, 6}), matrix(2, 2, {1, 2, 3, 4})});
        }) ==
        "ValueError: matmul_block(): shapes (2, 3) and (2, 2) not aligned: 3 (dim 1) != 2 "
        "(dim 0)");
  CHECK(task_error([] {
          call("matmul_block", {json(1), matrix(1, 1, {1})});
        }) == "TypeError: matmul_block(): a must be a 2-D f8 array, got 1");
}

TEST_CASE("example tasks: auc_slice over three slices of [0, 3] adds up to 8.175") {
  double area = 0.0;
  for (int slice = 0; slice < 3; ++slice) {
    area += call("auc_slice", {json(slice), json(slice + 1), json(100000)}).as<double>();
  }
  CHECK(std::round(area * 1000.0) / 1000.0 == doctest::Approx(8.175).epsilon(1e-12));
  CHECK(task_error([] {
          call("auc_slice", {json(0), json(1), json(0)});
        }) == "ValueError: auc_slice(): n must be at least 1, got 0");
}

TEST_CASE("example tasks: pi_slice estimates pi reproducibly") {
  constexpr std::int64_t kSamples = 1000000;
  const auto inside = call("pi_slice", {json(kSamples), json(1)}).as<std::int64_t>();
  const double estimate = 4.0 * static_cast<double>(inside) / static_cast<double>(kSamples);
  CHECK(std::fabs(estimate - M_PI) < 0.01);
  CHECK(call("pi_slice", {json(kSamples), json(1)}).as<std::int64_t>() == inside);
  CHECK(call("pi_slice", {json(kSamples), json(2)}).as<std::int64_t>() != inside);
  // A float with an integral value, as Python's 1e6, is a count.
  CHECK(call("pi_slice", {json(1e6), json(1)}).as<std::int64_t>() == inside);
}

TEST_CASE("example tasks: a cancelled pi_slice stops with TaskCancelled") {
  const ipcpp::TaskInfo* task = find_task("pi_slice");
  REQUIRE(task != nullptr);
  // Hours of work if it were not cancelled.
  const Args args({json(std::int64_t{1} << 40), json(1)});
  TestContext ctx;
  SUBCASE("before it starts") {
    ctx.cancel();
  }
  SUBCASE("while it runs") {
    // The task throws whether the flag is set before or during the loop.
    std::thread canceller([&ctx] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ctx.cancel();
    });
    CHECK_THROWS_AS(task->function(args, ctx), ipcpp::TaskCancelled);
    canceller.join();
    return;
  }
  CHECK_THROWS_AS(task->function(args, ctx), ipcpp::TaskCancelled);
}
