// A Mandelbrot image computed a row per task: the embarrassingly parallel example of the Numba
// and parallel-Python tutorials, on ipcpp engines that have the example task library loaded
// (for `mandelbrot_row`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/mandelbrot --output mandelbrot.pgm
//   ipcpp-cluster stop
//
// Every row is one load-balanced task. The rows in the set's middle take many more iterations
// than those at the top and bottom, so the engines' busy times spread widely: the program
// prints that spread (from each task's started/completed times) and how many rows each engine
// did, assembles the image (a PGM file with --output, and a small picture in the terminal)
// and checks some rows against the same computation done here.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/example_options.hpp"
#include "examples/tasks/mandelbrot_kernel.hpp"

namespace {

namespace kernel = ipcpp::examples::mandelbrot;
using Image = std::vector<std::vector<std::int32_t>>;

// Writes `image` as a binary PGM: points of the set black, the others from white (escaped at
// once) to dark (escaped late), on a log scale.
void write_pgm(const std::string& path, const Image& image, std::int32_t max_iter) {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error("cannot write " + path);
  const std::size_t width = image.empty() ? 0 : image.front().size();
  out << "P5\n" << width << " " << image.size() << "\n255\n";
  for (const auto& row : image) {
    std::string bytes(row.size(), '\0');
    for (std::size_t x = 0; x < row.size(); ++x) {
      const std::int32_t n = row[x];
      // On a log scale, as most points escape within a few iterations.
      const double late = std::log1p(n) / std::log1p(max_iter);
      const auto shade = n >= max_iter ? 0 : static_cast<int>(255.0 * (1.0 - late));
      bytes[x] = static_cast<char>(static_cast<unsigned char>(std::clamp(shade, 0, 255)));
    }
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

// The image in characters, `columns` wide: '#' in the set; outside it, the later a point
// escapes the denser its character.
void print_thumbnail(const Image& image, std::int32_t max_iter, std::size_t columns) {
  if (image.empty() || image.front().empty()) return;
  const std::size_t width = image.front().size();
  columns = std::min(columns, width);
  // Terminal cells are about twice as tall as wide.
  const std::size_t rows = std::max<std::size_t>(1, image.size() * columns / width / 2);
  static const std::string shades = " .:-=+*%";
  for (std::size_t r = 0; r < rows; ++r) {
    std::string line = "  ";
    const auto& row = image[r * image.size() / rows];
    for (std::size_t c = 0; c < columns; ++c) {
      const std::int32_t n = row[c * width / columns];
      if (n >= max_iter) {
        line += '#';
      } else {
        // On a log scale, as in the PGM.
        const double fraction = std::log1p(n) / std::log1p(max_iter);
        const auto level = static_cast<std::size_t>(fraction * static_cast<double>(shades.size()));
        line += shades[std::min(level, shades.size() - 1)];
      }
    }
    std::cout << line << "\n";
  }
}

// The `count` rows to recompute here: evenly spread, the first, the middle and the last.
std::set<std::int64_t> rows_to_check(std::int64_t height, std::int64_t count) {
  std::set<std::int64_t> rows{0, height / 2, height - 1};
  for (std::int64_t k = 0; k < count; ++k)
    rows.insert(k * (height - 1) / std::max<std::int64_t>(count - 1, 1));
  return rows;
}

double milliseconds(std::chrono::system_clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"A Mandelbrot image, one row per load-balanced task"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  std::int64_t width = 800;
  std::int64_t height = 600;
  std::int32_t max_iter = 1000;
  std::int64_t check_rows = 5;
  std::string output;
  app.add_option("--width", width, "Image width in pixels")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24))
      ->capture_default_str();
  app.add_option("--height", height, "Image height in pixels (one task per row)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--max-iter", max_iter, "Iterations before a point counts as in the set")
      ->check(CLI::Range(1, 1 << 30))
      ->capture_default_str();
  app.add_option("--check-rows", check_rows,
                 "Rows recomputed here to check (besides first, "
                 "middle and last)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--output,-o", output, "Write the image to this PGM file")->type_name("FILE");
  CLI11_PARSE(app, argc, argv);

  try {
    ipcpp::Client rc = examples::connect(options);
    std::cout << "engines: " << nlohmann::json(rc.ids()).dump() << "\n";
    std::cout << "mandelbrot_row(y, " << width << ", " << height << ", max_iter=" << max_iter
              << ") for y = 0.." << height - 1 << ", one load-balanced task per row\n";
    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    std::vector<ipcpp::AsyncResult> tasks;
    tasks.reserve(static_cast<std::size_t>(height));
    for (std::int64_t y = 0; y < height; ++y) {
      tasks.push_back(lview.apply_async("mandelbrot_row", y, width, height,
                                        ipcpp::Kwargs{{"max_iter", max_iter}}));
    }
    const ipcpp::Seconds timeout(options.timeout);
    if (!ipcpp::wait_all(tasks, timeout)) {
      throw ipcpp::TimeoutError("the rows were not all computed after " +
                                std::to_string(options.timeout) + " s");
    }

    // Assemble the image, and collect each task's engine and busy time.
    Image image;
    image.reserve(tasks.size());
    std::vector<double> busy_ms;
    std::map<std::int64_t, std::size_t> rows_per_engine;
    std::optional<ipcpp::TimePoint> first_start;
    std::optional<ipcpp::TimePoint> last_end;
    for (const ipcpp::AsyncResult& task : tasks) {
      image.push_back(task.get(timeout).as<std::vector<std::int32_t>>());
      const ipcpp::ResultMetadata m = task.metadata().at(0);
      ++rows_per_engine[m.engine_id];
      if (m.started && m.completed) {
        busy_ms.push_back(milliseconds(*m.completed - *m.started));
        if (!first_start || *m.started < *first_start) first_start = m.started;
        if (!last_end || *m.completed > *last_end) last_end = m.completed;
      }
    }

    print_thumbnail(image, max_iter, 72);
    std::cout << std::fixed << std::setprecision(2);
    if (!busy_ms.empty()) {
      std::vector<double> sorted = busy_ms;
      std::sort(sorted.begin(), sorted.end());
      double total = 0;
      for (double t : sorted)
        total += t;
      const double span = milliseconds(*last_end - *first_start);
      std::cout << "engine time per row: min " << sorted.front() << " ms, median "
                << sorted[sorted.size() / 2] << " ms, max " << sorted.back() << " ms; " << total
                << " ms in all, in " << span
                << " ms from the first start to the last end: " << (span > 0 ? total / span : 0.0)
                << " engines busy on average\n";
    }
    if (!busy_ms.empty() && busy_ms.size() == image.size()) {
      // Where the slow rows are: the busy time of a few rows, top to bottom.
      std::cout << "engine time by row:";
      for (std::size_t k = 0; k < 9; ++k) {
        const std::size_t y = k * (busy_ms.size() - 1) / 8;
        std::cout << " [" << y << "] " << busy_ms[y];
      }
      std::cout << " ms\n";
    }
    std::cout << "rows per engine:";
    for (const auto& [engine, rows] : rows_per_engine)
      std::cout << " engine " << engine << ": " << rows;
    std::cout << "\n" << std::defaultfloat;

    if (!output.empty()) {
      write_pgm(output, image, max_iter);
      std::cout << "wrote " << output << " (" << width << " x " << height << " PGM)\n";
    }

    // The check: every row complete, and some of them exactly as computed here.
    int failures = 0;
    std::int64_t in_set = 0;
    for (std::size_t y = 0; y < image.size(); ++y) {
      if (image[y].size() != static_cast<std::size_t>(width)) {
        std::cerr << "mandelbrot: row " << y << " has " << image[y].size() << " pixels, not "
                  << width << "\n";
        ++failures;
      }
      in_set += std::count(image[y].begin(), image[y].end(), max_iter);
    }
    const std::set<std::int64_t> checked = rows_to_check(height, check_rows);
    for (std::int64_t y : checked) {
      const std::vector<std::int32_t> expected = kernel::row(y, width, height, max_iter, {}, [] {});
      if (image[static_cast<std::size_t>(y)] != expected) {
        std::cerr << "mandelbrot: row " << y << " differs from the one computed here\n";
        ++failures;
      }
    }
    if (in_set == 0) {
      std::cerr << "mandelbrot: no pixel is in the set\n";
      ++failures;
    }
    if (failures > 0) {
      std::cerr << "mandelbrot: " << failures << " checks failed\n";
      return 1;
    }
    std::cout << in_set << " of " << width * height << " pixels in the set; rows "
              << nlohmann::json(std::vector<std::int64_t>(checked.begin(), checked.end())).dump()
              << " agree with the local computation\n";
  } catch (const std::exception& e) {
    std::cerr << "mandelbrot: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
