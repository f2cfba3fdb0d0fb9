#include "proto/large_buffer.hpp"

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <sys/mman.h>

namespace ipcpp::proto {
namespace {

constexpr std::size_t kPage = 4096;

std::size_t round_up(std::size_t size) {
  if (size > SIZE_MAX - kPage) throw std::bad_alloc();
  return (size + kPage - 1) & ~(kPage - 1);
}

void* map_fresh(std::size_t length) {
  void* p = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}

// Two pools of kept buffers, by what freed them: buffers that carried a frame through
// (kPassing) and copies that records kept (kKept). A copy for a record never takes a passing
// buffer, so that the threads that receive find theirs warm; it reuses what culled records
// gave back.
class Store {
 public:
  // A buffer of at least `length` bytes; `length` is set to the mapping's true length.
  void* take(std::size_t& length, LargeBufferUse use) {
    {
      const std::lock_guard lock(mutex_);
      if (void* p = reuse(length, use)) return p;
      if (use == LargeBufferUse::kPassing) {
        if (void* p = reuse(length, LargeBufferUse::kKept)) return p;
      }
    }
    void* p = map_fresh(length);
    const std::lock_guard lock(mutex_);
    mapped_now_ += length;
    ++mappings_;
    return p;
  }

  // Unmapping happens under the mutex: it allocates nothing, so give() cannot fail.
  void give(void* p, std::size_t length, LargeBufferUse use) noexcept {
    if (length > kLargeBufferKeep) {
      ::munmap(p, length);
      const std::lock_guard lock(mutex_);
      mapped_now_ -= length;
      return;
    }
    // The kernel may take these pages back under memory pressure; until it does, the next
    // buffer finds them in place, without a fault.
    (void)::madvise(p, length, MADV_FREE);
    const std::lock_guard lock(mutex_);
    // Room is made by dropping the largest kept buffers first.
    while (kept_now_ + length > kLargeBufferKeep) {
      auto& pool = pools_[0].empty() || (!pools_[1].empty() &&
                                         pools_[1].rbegin()->first > pools_[0].rbegin()->first)
                       ? pools_[1]
                       : pools_[0];
      if (pool.empty()) break;
      const auto last = std::prev(pool.end());
      ::munmap(last->second, last->first);
      kept_now_ -= last->first;
      mapped_now_ -= last->first;
      pool.erase(last);
    }
    try {
      pools_[static_cast<std::size_t>(use)].emplace(length, p);
      kept_now_ += length;
    } catch (...) {  // no memory for the pool's node: give the buffer back instead
      ::munmap(p, length);
      mapped_now_ -= length;
    }
  }

  LargeBufferStats stats() {
    const std::lock_guard lock(mutex_);
    return {mapped_now_, kept_now_, mappings_, reuses_};
  }

 private:
  // Under mutex_: a kept buffer of `use`'s pool at most a quarter larger than asked for (a
  // small request does not take, and pin, a much larger buffer), or null.
  void* reuse(std::size_t& length, LargeBufferUse use) {
    auto& pool = pools_[static_cast<std::size_t>(use)];
    const auto it = pool.lower_bound(length);
    if (it == pool.end() || it->first > length + length / 4) return nullptr;
    length = it->first;
    void* p = it->second;
    pool.erase(it);
    kept_now_ -= length;
    ++reuses_;
    return p;
  }

  std::mutex mutex_;
  std::array<std::multimap<std::size_t, void*>, 2> pools_;  // by LargeBufferUse: length → buffer
  std::size_t kept_now_ = 0;
  std::size_t mapped_now_ = 0;
  std::size_t mappings_ = 0;
  std::size_t reuses_ = 0;
};

// Never destroyed: buffers may be freed by threads still running while the process exits.
Store& store() {
  static Store* const s = new Store;
  return *s;
}

// The hint is the mapping's length, with the use in its lowest bit (lengths are whole pages).
void free_message_buffer(void* data, void* hint) {
  const auto bits = reinterpret_cast<std::uintptr_t>(hint);
  store().give(data, bits & ~std::uintptr_t{1}, static_cast<LargeBufferUse>(bits & 1));
}

}  // namespace

zmq::message_t large_message(std::size_t size) {
  if (size < kLargeBufferMin) return zmq::message_t(size);
  std::size_t length = round_up(size);
  void* p = store().take(length, LargeBufferUse::kPassing);
  try {
    return zmq::message_t(p, size, &free_message_buffer,
                          reinterpret_cast<void*>(static_cast<std::uintptr_t>(length)));
  } catch (...) {
    store().give(p, length, LargeBufferUse::kPassing);
    throw std::bad_alloc();
  }
}

std::shared_ptr<std::byte[]> large_bytes(std::size_t size, LargeBufferUse use) {
  if (size < kLargeBufferMin) return std::make_shared_for_overwrite<std::byte[]>(size);
  std::size_t length = round_up(size);
  void* p = store().take(length, use);
  // Should the control block not be had, shared_ptr gives the buffer back itself.
  return std::shared_ptr<std::byte[]>(
      static_cast<std::byte*>(p), [length, use](std::byte* q) { store().give(q, length, use); });
}

LargeBufferStats large_buffer_stats() {
  return store().stats();
}

}  // namespace ipcpp::proto
