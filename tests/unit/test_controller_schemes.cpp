// The task scheduler's schemes: which engine each picks from loads in LRU order.
#include <map>

#include <doctest/doctest.h>

#include "controller/schemes.hpp"

using namespace ipcpp::controller;

TEST_CASE("lru picks the least recently used engine, whatever the loads") {
  LruScheme lru;
  const std::vector<int> loads = {5, 0, 0};
  CHECK(lru.pick(loads) == 0);
}

TEST_CASE("leastload picks the least loaded, and the least recently used among equals") {
  LeastLoadScheme scheme;
  CHECK(scheme.pick(std::vector<int>{2, 1, 3, 1}) == 1);
  CHECK(scheme.pick(std::vector<int>{0, 0, 0}) == 0);
  CHECK(scheme.pick(std::vector<int>{4}) == 0);
}

TEST_CASE("plainrandom and twobin pick every engine, twobin favouring the least recently used") {
  PlainRandomScheme plain(42);
  TwoBinScheme twobin(42);
  const std::vector<int> loads(4, 0);
  std::map<std::size_t, int> p, t;
  for (int i = 0; i < 4000; ++i) {
    ++p[plain.pick(loads)];
    ++t[twobin.pick(loads)];
  }
  CHECK(p.size() == 4);
  CHECK(t.size() == 4);
  CHECK(p.rbegin()->first == 3);
  // min of two uniform draws: index 0 is chosen 7/16 of the time, index 3 only 1/16.
  CHECK(t[0] > t[1]);
  CHECK(t[1] > t[2]);
  CHECK(t[2] > t[3]);
}

TEST_CASE("weighted prefers idle engines by far and never leaves the range") {
  WeightedScheme weighted(7);
  std::map<std::size_t, int> seen;
  for (int i = 0; i < 1000; ++i)
    ++seen[weighted.pick(std::vector<int>{3, 0, 3})];
  CHECK(seen[1] > 990);
  for (int i = 0; i < 1000; ++i)
    CHECK(weighted.pick(std::vector<int>{1, 1}) < 2);
}

TEST_CASE("make_scheme knows the five schemes and names them when refusing another") {
  for (const auto& name : scheme_names())
    CHECK(make_scheme(name) != nullptr);
  CHECK(scheme_names().size() == 5);
  CHECK_THROWS_WITH_AS(make_scheme("pure"),
                       "unknown scheme 'pure': use lru, plainrandom, twobin, leastload or weighted",
                       std::invalid_argument);
}
