#include "proto/allocator.hpp"

#include <malloc.h>

namespace ipcpp::proto {

bool keep_freed_memory() {
  constexpr int kGiB = 1 << 30;
  constexpr int kMmapThresholdMax = 32 << 20;  // glibc's limit on 64-bit when 1 GiB is refused
  const bool mmap_ok =
      ::mallopt(M_MMAP_THRESHOLD, kGiB) == 1 || ::mallopt(M_MMAP_THRESHOLD, kMmapThresholdMax) == 1;
  const bool trim_ok = ::mallopt(M_TRIM_THRESHOLD, kGiB) == 1;
  return mmap_ok && trim_ok;
}

}  // namespace ipcpp::proto
