// The "memory" task store (records in this process, bounded) and the "none" store (nothing).
#include <algorithm>
#include <cstdint>
#include <list>
#include <map>
#include <set>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "controller/task_store.hpp"

namespace ipcpp::controller {

namespace {

using proto::Errc;
using proto::Error;
using proto::Result;
using proto::Status;
using proto::Timestamp;

// Records in first-put order (a list), found by msg_id in O(1) (an unordered map of list
// positions). Two ordered indexes keep culling and history cheap: the completed records by
// first-put sequence number (the oldest completed is culled first), and the records that have a
// submitted time by (submitted, msg_id). A put costs O(log n), never O(n).
class MemoryStore final : public TaskStore {
 public:
  MemoryStore(std::size_t record_limit, std::size_t size_limit)
      : record_limit_(record_limit), size_limit_(size_limit) {}

  const char* name() const override { return "memory"; }
  bool keeps_records() const override { return true; }

  Status put(TaskRecord record) override {
    auto found = index_.find(record.msg_id);
    if (found == index_.end()) {
      records_.push_back(std::move(record));
      auto it = std::prev(records_.end());
      found = index_.emplace(it->msg_id, Slot{it, next_seq_++}).first;
    } else {
      // A record put again (the request's, then its result's) keeps its submission time:
      // its history entry then stays where it is.
      const bool same_submitted = found->second.it->submitted == record.submitted;
      unindex(*found, /*history=*/!same_submitted);
      *found->second.it = std::move(record);
      reindex(*found, /*history=*/!same_submitted);
      cull();
      return {};
    }
    reindex(*found);
    cull();
    return {};
  }

  std::optional<TaskRecord> get(const std::string& msg_id) override {
    const auto found = index_.find(msg_id);
    if (found == index_.end()) return std::nullopt;
    return *found->second.it;
  }

  Result<std::vector<TaskRecord>> find(const RecordQuery& query) override {
    std::vector<TaskRecord> out;
    for_each_match(query, [&](const TaskRecord& r) { out.push_back(r); });
    return out;
  }

  std::vector<std::string> history() override {
    std::vector<std::string> out;
    out.reserve(history_.size());
    for (const auto& entry : history_)
      out.emplace_back(entry.second);
    return out;
  }

  Status remove(const std::vector<std::string>& msg_ids) override {
    for (const std::string& id : msg_ids) {
      const auto found = index_.find(id);
      if (found != index_.end()) erase(found);
    }
    return {};
  }

  Result<std::size_t> remove_matching(const RecordQuery& query) override {
    std::vector<std::string> ids;
    for_each_match(query, [&](const TaskRecord& r) { ids.push_back(r.msg_id); });
    Status removed = remove(ids);
    if (!removed) return removed.error();
    return ids.size();
  }

  Status flush() override { return {}; }

 private:
  using Records = std::list<TaskRecord>;
  struct Slot {
    Records::iterator it;
    std::uint64_t seq;  // first-put order
  };
  using Index = std::unordered_map<std::string, Slot>;

  // Calls fn on each record matching the query, in first-put order. A query that names msg_ids
  // ({"msg_id": id}, or $eq or $in on msg_id) looks them up instead of scanning every record.
  template <class Fn>
  void for_each_match(const RecordQuery& query, Fn fn) {
    const std::optional<std::vector<std::string>> named = named_ids(query.json());
    if (!named) {
      for (const TaskRecord& r : records_) {
        if (query.matches(r)) fn(r);
      }
      return;
    }
    std::vector<const Slot*> slots;
    for (const std::string& id : *named) {
      if (const auto found = index_.find(id); found != index_.end()) {
        slots.push_back(&found->second);
      }
    }
    std::sort(slots.begin(), slots.end(),
              [](const Slot* a, const Slot* b) { return a->seq < b->seq; });
    slots.erase(std::unique(slots.begin(), slots.end()), slots.end());
    for (const Slot* slot : slots) {
      if (query.matches(*slot->it)) fn(*slot->it);
    }
  }

  // The msg_ids among which every record matching the query is, when the query names them;
  // nullopt when it does not.
  static std::optional<std::vector<std::string>> named_ids(const nlohmann::json& query) {
    const auto found = query.find("msg_id");
    if (found == query.end()) return std::nullopt;
    const nlohmann::json& value = *found;
    std::vector<std::string> ids;
    if (value.is_string()) {
      ids.push_back(value.get<std::string>());
      return ids;
    }
    if (!value.is_object()) return std::nullopt;
    const nlohmann::json* list = nullptr;
    if (const auto eq = value.find("$eq"); eq != value.end()) {
      if (eq->is_string()) ids.push_back(eq->get<std::string>());
      return ids;  // msg_id is a string: nothing else equals it
    }
    if (const auto in = value.find("$in"); in != value.end() && in->is_array()) list = &*in;
    if (list == nullptr) return std::nullopt;
    for (const nlohmann::json& v : *list) {
      if (v.is_string()) ids.push_back(v.get<std::string>());
    }
    return ids;
  }

  // Removes the record's bytes and its index entries (before it is replaced or erased); its
  // history entry too unless `history` is false.
  void unindex(Index::value_type& entry, bool history = true) {
    const TaskRecord& r = *entry.second.it;
    bytes_ -= r.buffer_bytes();
    if (r.completed) completed_.erase(entry.second.seq);
    if (history && r.submitted) history_.erase({*r.submitted, std::string_view(entry.first)});
  }

  // Adds the record's bytes and its index entries; its history entry too unless `history` is
  // false.
  void reindex(Index::value_type& entry, bool history = true) {
    const TaskRecord& r = *entry.second.it;
    bytes_ += r.buffer_bytes();
    if (r.completed) completed_.emplace(entry.second.seq, &entry.first);
    if (history && r.submitted) history_.emplace(*r.submitted, std::string_view(entry.first));
  }

  void erase(Index::iterator found) {
    unindex(*found);
    records_.erase(found->second.it);
    index_.erase(found);
  }

  // Culls the oldest completed records while a limit is exceeded.
  void cull() {
    while ((records_.size() > record_limit_ || bytes_ > size_limit_) && !completed_.empty()) {
      erase(index_.find(*completed_.begin()->second));
    }
  }

  std::size_t record_limit_;
  std::size_t size_limit_;
  std::size_t bytes_ = 0;
  std::uint64_t next_seq_ = 0;
  Records records_;
  Index index_;  // keys are stable: the indexes below point at them
  std::map<std::uint64_t, const std::string*> completed_;
  std::set<std::pair<Timestamp, std::string_view>> history_;
};

class NoneStore final : public TaskStore {
 public:
  const char* name() const override { return "none"; }
  bool keeps_records() const override { return false; }
  Status put(TaskRecord) override { return {}; }
  std::optional<TaskRecord> get(const std::string&) override { return std::nullopt; }
  Result<std::vector<TaskRecord>> find(const RecordQuery&) override {
    return Error{Errc::kUnsupported,
                 "the task store is 'none': no records are kept (start the controller with "
                 "--db memory or --db sqlite)"};
  }
  std::vector<std::string> history() override { return {}; }
  Status remove(const std::vector<std::string>&) override { return {}; }
  Result<std::size_t> remove_matching(const RecordQuery&) override { return std::size_t{0}; }
  Status flush() override { return {}; }
};

}  // namespace

namespace detail {

std::unique_ptr<TaskStore> make_memory_store(std::size_t record_limit, std::size_t size_limit) {
  return std::make_unique<MemoryStore>(record_limit, size_limit);
}

std::unique_ptr<TaskStore> make_none_store() {
  return std::make_unique<NoneStore>();
}

}  // namespace detail

}  // namespace ipcpp::controller
