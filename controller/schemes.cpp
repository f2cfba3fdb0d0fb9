#include "controller/schemes.hpp"

#include <algorithm>
#include <stdexcept>

namespace ipcpp::controller {

std::size_t LruScheme::pick(std::span<const int> /*loads*/) {
  return 0;
}

std::size_t PlainRandomScheme::pick(std::span<const int> loads) {
  return std::uniform_int_distribution<std::size_t>(0, loads.size() - 1)(rng_);
}

std::size_t TwoBinScheme::pick(std::span<const int> loads) {
  std::uniform_int_distribution<std::size_t> any(0, loads.size() - 1);
  const std::size_t a = any(rng_);
  const std::size_t b = any(rng_);
  return std::min(a, b);
}

std::size_t LeastLoadScheme::pick(std::span<const int> loads) {
  return static_cast<std::size_t>(std::min_element(loads.begin(), loads.end()) - loads.begin());
}

std::size_t WeightedScheme::pick(std::span<const int> loads) {
  sums_.resize(loads.size());
  double total = 0;
  for (std::size_t i = 0; i < loads.size(); ++i) {
    total += 1.0 / (1e-6 + loads[i]);
    sums_[i] = total;
  }
  std::uniform_real_distribution<double> draw(0.0, total);
  auto index_of = [&](double x) {
    const auto it = std::lower_bound(sums_.begin(), sums_.end(), x);
    return std::min(static_cast<std::size_t>(it - sums_.begin()), loads.size() - 1);
  };
  const std::size_t a = index_of(draw(rng_));
  const std::size_t b = index_of(draw(rng_));
  return loads[b] < loads[a] ? b : a;
}

const std::vector<std::string>& scheme_names() {
  static const std::vector<std::string> names = {"lru", "plainrandom", "twobin", "leastload",
                                                 "weighted"};
  return names;
}

std::unique_ptr<Scheme> make_scheme(std::string_view name) {
  if (name == "lru") return std::make_unique<LruScheme>();
  if (name == "plainrandom") return std::make_unique<PlainRandomScheme>();
  if (name == "twobin") return std::make_unique<TwoBinScheme>();
  if (name == "leastload") return std::make_unique<LeastLoadScheme>();
  if (name == "weighted") return std::make_unique<WeightedScheme>();
  throw std::invalid_argument("unknown scheme '" + std::string(name) +
                              "': use lru, plainrandom, twobin, leastload or weighted");
}

}  // namespace ipcpp::controller
