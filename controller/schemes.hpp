// How the task scheduler picks an engine: one small interface, one class per scheme.
//
// A scheme sees the loads (outstanding tasks) of the candidate engines, in least-recently-used
// order (the engine that got a task longest ago first), and returns the index of the one to
// use. Candidates are never empty.
#pragma once

#include <cstddef>
#include <memory>
#include <random>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ipcpp::controller {

class Scheme {
 public:
  virtual ~Scheme() = default;
  virtual std::size_t pick(std::span<const int> loads) = 0;
};

// lru: the least recently used engine.
class LruScheme final : public Scheme {
 public:
  std::size_t pick(std::span<const int> loads) override;
};

// plainrandom: any candidate, uniformly.
class PlainRandomScheme final : public Scheme {
 public:
  explicit PlainRandomScheme(unsigned seed = std::random_device{}()) : rng_(seed) {}
  std::size_t pick(std::span<const int> loads) override;

 private:
  std::mt19937_64 rng_;
};

// twobin: two candidates at random, the less recently used of the two.
class TwoBinScheme final : public Scheme {
 public:
  explicit TwoBinScheme(unsigned seed = std::random_device{}()) : rng_(seed) {}
  std::size_t pick(std::span<const int> loads) override;

 private:
  std::mt19937_64 rng_;
};

// leastload: the least loaded; among equals, the least recently used. (Default.)
class LeastLoadScheme final : public Scheme {
 public:
  std::size_t pick(std::span<const int> loads) override;
};

// weighted: two candidates drawn with probability proportional to 1/(load + 1e-6), the less
// loaded of the two.
class WeightedScheme final : public Scheme {
 public:
  explicit WeightedScheme(unsigned seed = std::random_device{}()) : rng_(seed) {}
  std::size_t pick(std::span<const int> loads) override;

 private:
  std::mt19937_64 rng_;
  std::vector<double> sums_;
};

// The names --scheme accepts, in the order the help lists them.
const std::vector<std::string>& scheme_names();
// Throws std::invalid_argument naming the accepted schemes for an unknown name.
std::unique_ptr<Scheme> make_scheme(std::string_view name);

}  // namespace ipcpp::controller
