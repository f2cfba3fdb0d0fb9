// The area under f(x) = 0.7x^3 - 2x^2 + 4 on [0, 3], the exercise of the mpi4py workshops
// (auc_serial.py, auc_mpi.py), on ipcpp engines that have the example task library loaded
// (for `auc_slice`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/auc
//   ipcpp-cluster stop
//
// The interval is cut into one slice per engine; a direct view's map gives each engine its
// slice (auc_slice(a, b, n), the midpoint rule), and the client adds the areas up: the reduce.
// The check compares the sum with the exact integral (8.175 on [0, 3]).
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/example_options.hpp"

namespace {

// An antiderivative of 0.7x^3 - 2x^2 + 4.
double antiderivative(double x) {
  return ((0.175 * x - 2.0 / 3.0) * x) * x * x + 4.0 * x;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"The area under 0.7x^3 - 2x^2 + 4, one slice of the interval per engine"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  double a = 0.0;
  double b = 3.0;
  std::int64_t rectangles = 10'000'000;
  std::size_t slices = 0;
  app.add_option("--a", a, "Left end of the interval")->capture_default_str();
  app.add_option("--b", b, "Right end of the interval")->capture_default_str();
  app.add_option("--rectangles", rectangles, "Rectangles of the midpoint rule, in all")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 40))
      ->capture_default_str();
  app.add_option("--slices", slices, "Slices of the interval (default: one per engine)");
  CLI11_PARSE(app, argc, argv);

  try {
    if (!(a < b)) throw std::invalid_argument("--a must be less than --b");
    ipcpp::Client rc = examples::connect(options);
    const std::vector<std::int64_t> ids = rc.ids();
    std::cout << "engines: " << nlohmann::json(ids).dump() << "\n";
    if (slices == 0) slices = ids.size();

    // Slices of equal width and equal rectangle counts, so that every rectangle is as wide as
    // in one serial sum over [a, b].
    const auto per_slice =
        static_cast<std::int64_t>((static_cast<std::uint64_t>(rectangles) + slices - 1) / slices);
    std::vector<double> lefts, rights;
    std::vector<std::int64_t> counts(slices, per_slice);
    for (std::size_t s = 0; s < slices; ++s) {
      lefts.push_back(a + (b - a) * static_cast<double>(s) / static_cast<double>(slices));
      rights.push_back(s + 1 == slices ? b
                                       : a + (b - a) * static_cast<double>(s + 1) /
                                                 static_cast<double>(slices));
    }
    std::cout << "f(x) = 0.7x^3 - 2x^2 + 4 on [" << a << ", " << b << "]: " << slices
              << " slices of " << per_slice << " rectangles, auc_slice(a, b, n) mapped over a "
              << "direct view on every engine\n";

    ipcpp::DirectView dview = rc.all();
    const ipcpp::AsyncResult result = dview.map_async("auc_slice", lefts, rights, counts);
    const auto areas = result.get(ipcpp::Seconds(options.timeout)).as<std::vector<double>>();
    if (areas.size() != slices) {
      throw std::runtime_error(std::to_string(areas.size()) + " areas came back for " +
                               std::to_string(slices) + " slices");
    }

    double area = 0;  // the reduce
    std::cout << std::setprecision(6);
    for (std::size_t s = 0; s < slices; ++s) {
      std::cout << "  [" << std::setw(8) << lefts[s] << ", " << std::setw(8) << rights[s]
                << "]  area " << std::setw(10) << areas[s] << "\n";
      area += areas[s];
    }
    const double exact = antiderivative(b) - antiderivative(a);
    const double error = std::abs(area - exact);
    std::cout << std::fixed << std::setprecision(3) << "area = " << area << " (exact " << exact
              << "); " << std::scientific << std::setprecision(2) << "error " << error << "; "
              << std::fixed << std::setprecision(3) << result.elapsed().count() << " s, engines "
              << "busy " << result.serial_time().count() << " s in all\n"
              << std::defaultfloat;

    if (!(error < 1e-3)) {
      std::cerr << "auc: the area " << area << " is not within 1e-3 of the exact " << exact << "\n";
      return 1;
    }
    std::cout << "within 1e-3 of the exact value\n";
  } catch (const std::exception& e) {
    std::cerr << "auc: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
