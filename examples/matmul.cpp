// Matrix multiplication by blocks, on ipcpp engines that have the example task library loaded
// (for `matmul_block`):
//
//   ipcpp-cluster start -n 4 --daemonize --load build/release/lib/libipcpp_example_tasks.so
//   build/release/bin/matmul --n 400 --blocks 4
//   ipcpp-cluster stop
//
// A and B are random N x N matrices cut into a grid of b x b blocks. Block (i, j) of C = A B is
// the sum over k of A(i, k) B(k, j): one load-balanced task per product of two blocks (b^3
// tasks), the blocks travelling as raw 2-D f8 arrays (never as JSON), the sums made here. The
// check compares C with a serial product computed here.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iomanip>
#include <iostream>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "examples/example_options.hpp"

namespace {

// A dense row-major matrix.
struct Matrix {
  std::size_t rows = 0;
  std::size_t cols = 0;
  std::vector<double> data;

  Matrix(std::size_t r, std::size_t c) : rows(r), cols(c), data(r * c, 0.0) {}
  double& at(std::size_t i, std::size_t j) { return data[i * cols + j]; }
  double at(std::size_t i, std::size_t j) const { return data[i * cols + j]; }
};

Matrix random_matrix(std::size_t n, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> uniform(-1.0, 1.0);
  Matrix m(n, n);
  for (double& x : m.data)
    x = uniform(rng);
  return m;
}

// The serial product, i-p-j order.
Matrix multiply(const Matrix& a, const Matrix& b) {
  Matrix c(a.rows, b.cols);
  for (std::size_t i = 0; i < a.rows; ++i) {
    for (std::size_t p = 0; p < a.cols; ++p) {
      const double f = a.at(i, p);
      for (std::size_t j = 0; j < b.cols; ++j)
        c.at(i, j) += f * b.at(p, j);
    }
  }
  return c;
}

// Where the blocks start: n split into `parts` contiguous ranges, the first n % parts of them
// one longer (as scatter partitions). edges[k] .. edges[k + 1] is range k.
std::vector<std::size_t> block_edges(std::size_t n, std::size_t parts) {
  std::vector<std::size_t> edges{0};
  for (std::size_t k = 0; k < parts; ++k)
    edges.push_back(edges.back() + n / parts + (k < n % parts ? 1 : 0));
  return edges;
}

// Rows [r0, r1) and columns [c0, c1) of `m` as a 2-D f8 array.
ipcpp::Array block(const Matrix& m, std::size_t r0, std::size_t r1, std::size_t c0,
                   std::size_t c1) {
  std::vector<double> elements;
  elements.reserve((r1 - r0) * (c1 - c0));
  for (std::size_t i = r0; i < r1; ++i) {
    for (std::size_t j = c0; j < c1; ++j)
      elements.push_back(m.at(i, j));
  }
  return ipcpp::Array(ipcpp::DType::kFloat64, {r1 - r0, c1 - c0},
                      ipcpp::Bytes::from_vector(std::move(elements)));
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Matrix multiplication by blocks, one block product per load-balanced task"};
  examples::ExampleOptions options;
  add_example_options(app, options);
  std::size_t n = 200;
  std::size_t blocks = 2;
  std::uint64_t seed = 2023;
  app.add_option("--n,-N", n, "Matrix size N (N x N)")
      ->check(CLI::Range(std::size_t{1}, std::size_t{8192}))
      ->capture_default_str();
  app.add_option("--blocks,-b", blocks, "Blocks per side: a b x b grid, b^3 tasks")
      ->check(CLI::Range(std::size_t{1}, std::size_t{16}))
      ->capture_default_str();
  app.add_option("--seed", seed, "Seed of the random matrices")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    if (blocks > n) throw std::invalid_argument("--blocks must not exceed --n");
    std::mt19937_64 rng(seed);
    const Matrix a = random_matrix(n, rng);
    const Matrix b = random_matrix(n, rng);
    const std::vector<std::size_t> edges = block_edges(n, blocks);

    ipcpp::Client rc = examples::connect(options);
    std::cout << "engines: " << nlohmann::json(rc.ids()).dump() << "\n";
    std::cout << "C = A B for random " << n << " x " << n << " matrices in " << blocks << " x "
              << blocks << " blocks: " << blocks * blocks * blocks
              << " load-balanced tasks matmul_block(A(i,k), B(k,j)), summed over k here\n";

    // Each block is cut once; the Arrays share their bytes with every request that sends them.
    std::vector<std::vector<ipcpp::Array>> a_blocks(blocks), b_blocks(blocks);
    for (std::size_t i = 0; i < blocks; ++i) {
      for (std::size_t k = 0; k < blocks; ++k) {
        a_blocks[i].push_back(block(a, edges[i], edges[i + 1], edges[k], edges[k + 1]));
        b_blocks[i].push_back(block(b, edges[i], edges[i + 1], edges[k], edges[k + 1]));
      }
    }

    const auto start = std::chrono::steady_clock::now();
    ipcpp::LoadBalancedView lview = rc.load_balanced_view();
    struct Task {
      std::size_t i, j, k;
      ipcpp::AsyncResult result;
    };
    std::vector<Task> tasks;
    for (std::size_t i = 0; i < blocks; ++i) {
      for (std::size_t j = 0; j < blocks; ++j) {
        for (std::size_t k = 0; k < blocks; ++k) {
          tasks.push_back({i, j, k,
                           lview.apply_async("matmul_block", ipcpp::Value(a_blocks[i][k]),
                                             ipcpp::Value(b_blocks[k][j]))});
        }
      }
    }

    // Assemble C: each block product added into its place.
    Matrix c(n, n);
    std::map<std::int64_t, std::size_t> per_engine;
    const ipcpp::Seconds timeout(options.timeout);
    for (const Task& t : tasks) {
      const ipcpp::Value value = t.result.get(timeout);
      const ipcpp::Array& product = value.array();
      const std::size_t rows = edges[t.i + 1] - edges[t.i];
      const std::size_t cols = edges[t.j + 1] - edges[t.j];
      if (product.shape() != std::vector<std::size_t>{rows, cols}) {
        throw std::runtime_error("block (" + std::to_string(t.i) + ", " + std::to_string(t.j) +
                                 ") came back with the wrong shape");
      }
      const std::vector<double> elements = product.to_vector<double>();
      for (std::size_t r = 0; r < rows; ++r) {
        for (std::size_t col = 0; col < cols; ++col)
          c.at(edges[t.i] + r, edges[t.j] + col) += elements[r * cols + col];
      }
      ++per_engine[t.result.metadata().at(0).engine_id];
    }
    const std::chrono::duration<double> parallel = std::chrono::steady_clock::now() - start;

    const auto serial_start = std::chrono::steady_clock::now();
    const Matrix expected = multiply(a, b);
    const std::chrono::duration<double> serial = std::chrono::steady_clock::now() - serial_start;

    double max_error = 0;
    double max_abs = 0;
    for (std::size_t e = 0; e < c.data.size(); ++e) {
      max_error = std::max(max_error, std::abs(c.data[e] - expected.data[e]));
      max_abs = std::max(max_abs, std::abs(expected.data[e]));
    }
    std::cout << "block products per engine:";
    for (const auto& [engine, count] : per_engine)
      std::cout << " engine " << engine << ": " << count;
    std::cout << "\n"
              << std::fixed << std::setprecision(3) << "on the engines " << parallel.count()
              << " s (blocks sent as raw arrays, products summed here); serially here "
              << serial.count() << " s\n"
              << std::defaultfloat << std::setprecision(3) << "C[0][0] = " << c.at(0, 0)
              << ", C[N-1][N-1] = " << c.at(n - 1, n - 1) << ", largest |C| = " << max_abs
              << "; max |C - serial product| = " << max_error << "\n";

    if (!(max_error < 1e-9)) {
      std::cerr << "matmul: the blocked product differs from the serial one by " << max_error
                << " (more than 1e-9)\n";
      return 1;
    }
    std::cout << "the blocked product agrees with the serial one (max abs error < 1e-9)\n";
  } catch (const std::exception& e) {
    std::cerr << "matmul: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
