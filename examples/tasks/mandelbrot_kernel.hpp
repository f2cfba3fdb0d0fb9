// The arithmetic of one Mandelbrot row, shared by the task mandelbrot_row (mandelbrot.cpp) and
// the client example examples/mandelbrot.cpp, which recomputes a few rows locally to check
// what the engines sent. Header-only and free of ipcpp: a caller passes a `tick` callable that
// is called once per iteration and once per pixel (the task looks at cancellation there;
// others pass a no-op).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ipcpp::examples::mandelbrot {

// Point `index` of `count` evenly spaced points from low to high, both included (as
// numpy.linspace(low, high, count)).
inline double linspace_at(double low, double high, std::int64_t count, std::int64_t index) {
  if (count == 1) return low;
  return low + (high - low) * static_cast<double>(index) / static_cast<double>(count - 1);
}

// The number of iterations of z <- z^2 + c, from z = 0, before |z| >= 2; max_iter if it never
// gets there (the point is taken to be in the set).
template <class Tick>
std::int32_t escape_time(double cx, double cy, std::int32_t max_iter, Tick&& tick) {
  double zx = 0.0;
  double zy = 0.0;
  for (std::int32_t i = 0; i < max_iter; ++i) {
    tick();
    const double next_x = zx * zx - zy * zy + cx;
    zy = 2.0 * zx * zy + cy;
    zx = next_x;
    if (zx * zx + zy * zy >= 4.0) return i;
  }
  return max_iter;
}

// The window of the complex plane an image shows.
struct Window {
  double xmin = -2.0;
  double xmax = 1.0;
  double ymin = -1.5;
  double ymax = 1.5;
};

// Row `y` of a width x height image of `window`: the escape time of each pixel. The caller
// checks the arguments (width >= 1, height >= 1, 0 <= y < height, max_iter >= 0).
template <class Tick>
std::vector<std::int32_t> row(std::int64_t y, std::int64_t width, std::int64_t height,
                              std::int32_t max_iter, const Window& window, Tick&& tick) {
  const double cy = linspace_at(window.ymin, window.ymax, height, y);
  std::vector<std::int32_t> counts(static_cast<std::size_t>(width));
  for (std::int64_t x = 0; x < width; ++x) {
    counts[static_cast<std::size_t>(x)] =
        escape_time(linspace_at(window.xmin, window.xmax, width, x), cy, max_iter, tick);
    tick();
  }
  return counts;
}

}  // namespace ipcpp::examples::mandelbrot
