// The interactive walkthrough of IPython parallel, in C++: direct and load-balanced views,
// apply, map, execute, push/pull, scatter/gather — on four engines that have the example
// task library loaded (for `minus`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/walkthrough
//   ipcpp-cluster stop
//
// Each step prints what it ran and what came back, and checks it; the program exits 1 at the
// first value that is not what the walkthrough expects.
#include <cstdlib>
#include <iostream>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "examples/example_options.hpp"

namespace {

int failures = 0;

void show(const std::string& what, const ipcpp::Value& value, const nlohmann::json& expected) {
  const nlohmann::json got = value.to_plain_json();
  const bool ok = expected.is_null() || got == expected;
  std::cout << "  " << what << "\n    -> " << examples::python_style(got)
            << (ok ? "" : "   WRONG, expected ") << (ok ? "" : examples::python_style(expected))
            << "\n";
  if (!ok) ++failures;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The IPython parallel walkthrough on ipcpp engines"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  CLI11_PARSE(app, argc, argv);

  try {
    ipcpp::Client rc = examples::connect(options);
    const auto ids = rc.ids();
    std::cout << "engines: " << examples::python_style(nlohmann::json(ids)) << "\n";
    const std::size_t n = ids.size();

    std::cout << "direct view on one engine, then on all:\n";
    ipcpp::DirectView e0 = rc[ids.front()];
    show("rc[" + std::to_string(ids.front()) + "].apply_sync(\"minus\", 5, 6)",
         e0.apply_sync("minus", 5, 6), -1);
    ipcpp::DirectView dview = rc.all();
    show("rc.all().apply_sync(\"minus\", 5, 6)", dview.apply_sync("minus", 5, 6),
         nlohmann::json(std::vector<int>(n, -1)));

    std::cout << "map, on the direct view and on a load-balanced view:\n";
    const std::vector<int> a{11, 10, 9, 8};
    const std::vector<int> b{5, 6, 7, 8};
    show("dview.map_sync(\"minus\", {11, 10, 9, 8}, {5, 6, 7, 8})", dview.map_sync("minus", a, b),
         {6, 4, 2, 0});
    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    show("lview.map_sync(\"minus\", {11, 10, 9, 8}, {5, 6, 7, 8})", lview.map_sync("minus", a, b),
         {6, 4, 2, 0});

    std::cout << "apply a built-in with an array argument:\n";
    show("dview.apply_sync(\"sum\", std::vector{1, 2, 3})",
         dview.apply_sync("sum", std::vector<int>{1, 2, 3}),
         nlohmann::json(std::vector<int>(n, 6)));

    std::cout << "execute, then pull from each engine's namespace:\n";
    dview.execute_sync("x = getpid()");
    const ipcpp::Value pids = dview.pull_sync("x");
    show("dview.execute_sync(\"x = getpid()\"); dview.pull_sync(\"x\")", pids, nullptr);
    const auto pid_list = pids.as<std::vector<long>>();
    if (std::set<long>(pid_list.begin(), pid_list.end()).size() != n) {
      std::cout << "    WRONG: expected " << n << " different process ids\n";
      ++failures;
    }

    std::cout << "scatter 0..15 over the engines, look at each piece, gather it back:\n";
    std::vector<int> seq(16);
    std::iota(seq.begin(), seq.end(), 0);
    dview.scatter("a", seq).get();
    // ipyparallel's partition: contiguous pieces, the first 16 % n engines one item more.
    nlohmann::json pieces = nlohmann::json::array();
    for (std::size_t p = 0, next = 0; p < n; ++p) {
      nlohmann::json piece = nlohmann::json::array();
      for (std::size_t k = 0; k < 16 / n + (p < 16 % n ? 1 : 0); ++k)
        piece.push_back(next++);
      pieces.push_back(piece);
    }
    show("dview.scatter(\"a\", 0..15); dview.pull_sync(\"a\")", dview.pull_sync("a"), pieces);
    show("dview.gather_sync(\"a\")", dview.gather_sync("a"), nlohmann::json(seq));

    std::cout << "dict-style access:\n";
    dview["y"] = ipcpp::Value("hello");
    show("dview[\"y\"] = \"hello\"; dview[\"y\"]", dview["y"].get(),
         nlohmann::json(std::vector<std::string>(n, "hello")));
  } catch (const std::exception& e) {
    std::cerr << "walkthrough: " << e.what() << "\n";
    return 1;
  }
  if (failures > 0) {
    std::cerr << "walkthrough: " << failures << " values were not as expected\n";
    return 1;
  }
  std::cout << "all values as expected\n";
  return 0;
}
