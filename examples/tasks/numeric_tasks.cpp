// Numeric tasks of the classic tutorials: minus (the smallest apply call), auc_slice (the area
// under a curve, one slice per engine), pi_slice (Monte Carlo pi, one batch of samples per
// engine) and matmul_block (one block of a blocked matrix product).
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "task_args.hpp"

namespace {

using ipcpp::Array;
using ipcpp::TaskError;
using ipcpp::Value;
using ipcpp::examples::CancellationCheck;
using ipcpp::examples::expect_keywords;
using ipcpp::examples::to_integer;
using ipcpp::examples::to_number;

// The JSON integer in `json` as an int64, or nothing when it is not an integer or too large.
std::optional<std::int64_t> small_integer(const nlohmann::json& json) {
  if (!json.is_number_integer()) return std::nullopt;
  if (json.is_number_unsigned() &&
      json.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX)) {
    return std::nullopt;
  }
  return json.get<std::int64_t>();
}

// f(x) = 0.7x^3 - 2x^2 + 4, the curve of the auc exercises; its integral over [0, 3] is 8.175.
double curve(double x) {
  return (0.7 * x - 2.0) * x * x + 4.0;
}

// Python's rendering of a shape: (2, 3), (3,).
std::string shape_text(const std::vector<std::size_t>& shape) {
  std::string text = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) text += ", ";
    text += std::to_string(shape[i]);
  }
  return text + (shape.size() == 1 ? ",)" : ")");
}

// Positional argument `index` as a 2-D f8 array.
const Array& matrix_arg(const ipcpp::Args& args, std::size_t index, const char* name) {
  const Value& value = args[index];
  const std::string what = std::string("matmul_block(): ") + name;
  if (!value.is_array()) {
    throw TaskError("TypeError", what + " must be a 2-D f8 array, got " + value.json().dump());
  }
  const Array& array = value.array();
  if (array.dtype() != ipcpp::DType::kFloat64) {
    throw TaskError("TypeError", what + " must be a 2-D f8 array, got an array of " +
                                     std::string(ipcpp::dtype_name(array.dtype())));
  }
  if (array.shape().size() != 2) {
    throw TaskError("ValueError", what + " must be 2-D, got shape " + shape_text(array.shape()));
  }
  return array;
}

// The largest product matmul_block builds: 2^27 elements, 1 GiB of f8.
constexpr std::size_t kMaxProductElements = std::size_t{1} << 27;

}  // namespace

IPCPP_TASK(minus, "minus(a, b): a - b; an integer when both are integers, else a float") {
  args.expect(2, 2);
  expect_keywords(args, "minus", {});
  const double a = to_number(args[0], "minus", "a");
  const double b = to_number(args[1], "minus", "b");
  const auto int_a = small_integer(args[0].json());
  const auto int_b = small_integer(args[1].json());
  if (int_a && int_b) {
    std::int64_t difference = 0;
    if (!__builtin_sub_overflow(*int_a, *int_b, &difference)) return difference;
  }
  // Floats, or integers whose difference does not fit in 64 bits.
  return a - b;
}

IPCPP_TASK(auc_slice,
           "auc_slice(a, b, n): the area under 0.7x^3 - 2x^2 + 4 on [a, b] by the midpoint rule "
           "with n rectangles (a float)") {
  args.expect(3, 3);
  expect_keywords(args, "auc_slice", {});
  const double a = to_number(args[0], "auc_slice", "a");
  const double b = to_number(args[1], "auc_slice", "b");
  const std::int64_t n = to_integer(args[2], "auc_slice", "n");
  if (!std::isfinite(a) || !std::isfinite(b)) {
    throw TaskError("ValueError", "auc_slice(): a and b must be finite");
  }
  if (n < 1) {
    throw TaskError("ValueError", "auc_slice(): n must be at least 1, got " + std::to_string(n));
  }
  CancellationCheck cancellation(ctx);
  const double width = (b - a) / static_cast<double>(n);
  double sum = 0.0;
  for (std::int64_t i = 0; i < n; ++i) {
    sum += curve(a + (static_cast<double>(i) + 0.5) * width);
    cancellation.tick();
  }
  return sum * width;
}

IPCPP_TASK(pi_slice,
           "pi_slice(n, seed): how many of n uniform random points in the unit square fall in "
           "the quarter circle x^2 + y^2 <= 1 (an integer; the same for the same seed)") {
  args.expect(2, 2);
  expect_keywords(args, "pi_slice", {});
  const std::int64_t n = to_integer(args[0], "pi_slice", "n");
  if (n < 0) {
    throw TaskError("ValueError", "pi_slice(): n must not be negative, got " + std::to_string(n));
  }
  // Any 64-bit integer is a seed; negative ones are taken modulo 2^64.
  const nlohmann::json& seed_json = args[1].json();
  const std::uint64_t seed =
      !args[1].is_array() && seed_json.is_number_unsigned()
          ? seed_json.get<std::uint64_t>()
          : static_cast<std::uint64_t>(to_integer(args[1], "pi_slice", "seed"));

  CancellationCheck cancellation(ctx);
  std::mt19937_64 engine(seed);
  // Doubles in [0, 1) from the top 53 bits, the same on every platform (unlike
  // std::uniform_real_distribution, whose algorithm the standard leaves open).
  const auto uniform = [&engine] { return static_cast<double>(engine() >> 11) * 0x1.0p-53; };
  std::int64_t inside = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const double x = uniform();
    const double y = uniform();
    if (x * x + y * y <= 1.0) ++inside;
    cancellation.tick();
  }
  return inside;
}

IPCPP_TASK(matmul_block,
           "matmul_block(a, b): the product of the 2-D f8 arrays a (m x k) and b (k x n), a 2-D "
           "f8 array (m x n)") {
  args.expect(2, 2);
  expect_keywords(args, "matmul_block", {});
  const Array& a = matrix_arg(args, 0, "a");
  const Array& b = matrix_arg(args, 1, "b");
  const std::size_t m = a.shape()[0];
  const std::size_t k = a.shape()[1];
  const std::size_t n = b.shape()[1];
  if (b.shape()[0] != k) {
    throw TaskError("ValueError", "matmul_block(): shapes " + shape_text(a.shape()) + " and " +
                                      shape_text(b.shape()) + " not aligned: " + std::to_string(k) +
                                      " (dim 1) != " + std::to_string(b.shape()[0]) + " (dim 0)");
  }
  if (n != 0 && m > kMaxProductElements / n) {
    throw TaskError("ValueError", "matmul_block(): the product of shapes " + shape_text(a.shape()) +
                                      " and " + shape_text(b.shape()) + " would have more than " +
                                      std::to_string(kMaxProductElements) + " elements");
  }

  CancellationCheck cancellation(ctx);
  // Received frames may be unaligned for double: copy rather than view.
  const std::vector<double> left = a.to_vector<double>();
  const std::vector<double> right = b.to_vector<double>();
  std::vector<double> product(m * n, 0.0);
  // i-p-j order: the inner loop walks rows of `right` and `product` contiguously.
  for (std::size_t i = 0; i < m; ++i) {
    double* row = product.data() + i * n;
    for (std::size_t p = 0; p < k; ++p) {
      const double factor = left[i * k + p];
      const double* right_row = right.data() + p * n;
      for (std::size_t j = 0; j < n; ++j)
        row[j] += factor * right_row[j];
      cancellation.tick(n + 1);
    }
  }
  return Array(ipcpp::DType::kFloat64, {m, n}, ipcpp::Bytes::from_vector(std::move(product)));
}
