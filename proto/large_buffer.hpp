// Memory for large frames and arrays (megabytes), kept for reuse apart from malloc.
//
// A fresh page costs a page fault and its zeroing when it is first written; on this project's
// virtual machines that made writing fresh memory run at about 1.5 GB/s, and at 0.3 GB/s for
// memory the guest had handed back to its host (bench/RESULTS.md). glibc gives large blocks
// back to the system at every free: its mmap threshold cannot be raised above 32 MiB, and a
// thread's arena unmaps a heap that became empty. So a received 20 MB frame, or a gathered
// 80 MB array, cost fresh pages every time.
//
// Here a large buffer is a mapping of its own, and a freed one is kept for the next buffer of
// about its size (at most a quarter larger), up to kLargeBufferKeep bytes per process. Kept
// buffers are marked MADV_FREE: the kernel may take their pages back under memory pressure,
// and until it does the next buffer finds them in place. A copy kept long (LargeBufferUse::
// kKept) reuses only what such copies freed, so that it never takes the warm buffer the next
// received frame needs.
//
// (2 MiB pages were tried: they come from the blocks of free memory the guest reports to its
// host, and zeroing them was slower than 4 KiB faults.)
#pragma once

#include <cstddef>
#include <memory>

#include <zmq.hpp>

namespace ipcpp::proto {

// Sizes from which large_message() and large_bytes() use a mapping of their own.
inline constexpr std::size_t kLargeBufferMin = std::size_t{2} << 20;
// The most freed buffer memory a process keeps for reuse.
inline constexpr std::size_t kLargeBufferKeep = std::size_t{1} << 30;

// What a large buffer is for, which decides which kept buffers it may reuse.
enum class LargeBufferUse {
  kPassing = 0,  // a frame received and passed on, a result handed to a caller
  kKept = 1,     // a copy kept long (the hub's records): reuses only what such copies freed
};

// A message of `size` bytes, not initialised (kPassing). Below kLargeBufferMin it is an
// ordinary message; otherwise its memory returns to the large-buffer store when the last copy
// is dropped. Throws std::bad_alloc when the memory cannot be had.
zmq::message_t large_message(std::size_t size);

// `size` bytes, not initialised, alive while the returned pointer (or a copy) is. Same rules.
std::shared_ptr<std::byte[]> large_bytes(std::size_t size,
                                         LargeBufferUse use = LargeBufferUse::kPassing);

// What the store holds now and has done (for tests and benchmarks).
struct LargeBufferStats {
  std::size_t mapped_now = 0;  // bytes in mappings, in use or kept
  std::size_t kept_now = 0;    // bytes kept for reuse
  std::size_t mappings = 0;    // mappings made so far
  std::size_t reuses = 0;      // buffers served from kept memory so far
};
LargeBufferStats large_buffer_stats();

}  // namespace ipcpp::proto
