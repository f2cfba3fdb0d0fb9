// Keeping freed message memory for the next message.
//
// ZeroMQ allocates each received frame with malloc. glibc serves large blocks (above its
// mmap threshold, which starts at 128 KiB) with fresh mmap()ed pages and gives them back on
// free, so every large frame costs page faults and zeroing of all of its pages again
// (`clear_page` in a profile): scatter/gather of 10^7 doubles moved 40% slower for it.
// keep_freed_memory() raises the mmap and trim thresholds so that freed blocks are reused.
// The price: a process keeps the memory of its largest messages (its peak heap) after them.
#pragma once

namespace ipcpp::proto {

// Call once, early in main(), before threads start. Returns false if glibc refused.
bool keep_freed_memory();

}  // namespace ipcpp::proto
