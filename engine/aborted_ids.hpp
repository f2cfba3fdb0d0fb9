// The msg_ids an engine was asked to abort before they arrived: a request whose id is here is
// answered "aborted" instead of being run. Bounded: an abort names ids that may never come to
// this engine (they ran elsewhere, or already ran), so beyond `limit` ids the oldest are
// forgotten, and a request that arrives after its id was forgotten runs.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_map>
#include <utility>

namespace ipcpp::engine {

class AbortedIds {
 public:
  explicit AbortedIds(std::size_t limit) : limit_(limit) {}

  void insert(std::string id) {
    const std::uint64_t serial = next_++;
    ids_.insert_or_assign(id, serial);
    order_.emplace_back(std::move(id), serial);
    while (order_.size() > limit_) {
      auto& [oldest, when] = order_.front();
      // Only the entry of the id's latest insertion removes it.
      if (auto it = ids_.find(oldest); it != ids_.end() && it->second == when) ids_.erase(it);
      order_.pop_front();
    }
  }

  // True (once) when `id` was inserted and has not been taken or forgotten since.
  bool take(const std::string& id) { return ids_.erase(id) > 0; }

  std::size_t size() const { return ids_.size(); }

 private:
  std::size_t limit_;
  std::uint64_t next_ = 0;
  std::unordered_map<std::string, std::uint64_t> ids_;       // id -> serial of its latest insert
  std::deque<std::pair<std::string, std::uint64_t>> order_;  // inserts, oldest first
};

}  // namespace ipcpp::engine
