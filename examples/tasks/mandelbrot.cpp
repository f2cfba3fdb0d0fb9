// mandelbrot_row: one row of a Mandelbrot image, the embarrassingly parallel example of the
// Numba and parallel-Python tutorials (each engine computes some rows of the picture).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "mandelbrot_kernel.hpp"
#include "task_args.hpp"

namespace {

using ipcpp::TaskError;
using ipcpp::examples::CancellationCheck;
using ipcpp::examples::find_param;
using ipcpp::examples::to_integer;
using ipcpp::examples::to_number;

constexpr const char* kTask = "mandelbrot_row";
// The widest row mandelbrot_row computes: 2^24 pixels, 64 MiB of int32.
constexpr std::int64_t kMaxWidth = std::int64_t{1} << 24;

}  // namespace

IPCPP_TASK(mandelbrot_row,
           "mandelbrot_row(y, width, height, max_iter=255, xmin=-2.0, xmax=1.0, ymin=-1.5, "
           "ymax=1.5): the iteration counts of row y, an int32 array of width elements") {
  args.expect(3, 8);
  ipcpp::examples::expect_keywords(args, kTask, {"max_iter", "xmin", "xmax", "ymin", "ymax"});
  const std::int64_t y = to_integer(args[0], kTask, "y");
  const std::int64_t width = to_integer(args[1], kTask, "width");
  const std::int64_t height = to_integer(args[2], kTask, "height");
  const auto optional_number = [&args](std::size_t index, const char* name, double fallback) {
    const ipcpp::Value* value = find_param(args, kTask, index, name);
    return value == nullptr ? fallback : to_number(*value, kTask, name);
  };
  const ipcpp::Value* max_iter_value = find_param(args, kTask, 3, "max_iter");
  const std::int64_t max_iter =
      max_iter_value == nullptr ? 255 : to_integer(*max_iter_value, kTask, "max_iter");
  const double xmin = optional_number(4, "xmin", -2.0);
  const double xmax = optional_number(5, "xmax", 1.0);
  const double ymin = optional_number(6, "ymin", -1.5);
  const double ymax = optional_number(7, "ymax", 1.5);

  const std::string prefix = std::string(kTask) + "(): ";
  if (width < 1 || width > kMaxWidth) {
    throw TaskError("ValueError", prefix + "width must be from 1 to " + std::to_string(kMaxWidth) +
                                      ", got " + std::to_string(width));
  }
  if (height < 1) {
    throw TaskError("ValueError",
                    prefix + "height must be at least 1, got " + std::to_string(height));
  }
  if (y < 0 || y >= height) {
    throw TaskError("ValueError", prefix + "y must be from 0 to height - 1 = " +
                                      std::to_string(height - 1) + ", got " + std::to_string(y));
  }
  if (max_iter < 0 || max_iter > INT32_MAX) {
    throw TaskError("ValueError", prefix + "max_iter must be from 0 to " +
                                      std::to_string(INT32_MAX) + ", got " +
                                      std::to_string(max_iter));
  }
  if (!std::isfinite(xmin) || !std::isfinite(xmax) || !(xmin < xmax)) {
    throw TaskError("ValueError", prefix + "need finite xmin < xmax");
  }
  if (!std::isfinite(ymin) || !std::isfinite(ymax) || !(ymin < ymax)) {
    throw TaskError("ValueError", prefix + "need finite ymin < ymax");
  }

  CancellationCheck cancellation(ctx);
  return ipcpp::examples::mandelbrot::row(y, width, height, static_cast<std::int32_t>(max_iter),
                                          {xmin, xmax, ymin, ymax},
                                          [&cancellation] { cancellation.tick(); });
}
