// The large-buffer store (proto/large_buffer.hpp): large frames and arrays reuse what earlier
// ones freed, copies kept long leave the receivers' buffers alone, and the kept memory is
// bounded. Each test case runs in a process of its own under ctest; the checks compare the
// store's counters before and after, so they also hold when cases share a process.
#include <cstring>
#include <vector>

#include <doctest/doctest.h>

#include "proto/large_buffer.hpp"

using ipcpp::proto::kLargeBufferKeep;
using ipcpp::proto::kLargeBufferMin;
using ipcpp::proto::large_buffer_stats;
using ipcpp::proto::large_bytes;
using ipcpp::proto::large_message;
using ipcpp::proto::LargeBufferUse;

namespace {
constexpr std::size_t kMiB = std::size_t{1} << 20;
}  // namespace

TEST_CASE("large buffers: a freed buffer serves the next one of about its size") {
  const auto before = large_buffer_stats();
  const std::byte* first = nullptr;
  {
    auto b = large_bytes(3 * kMiB);
    first = b.get();
    std::memset(b.get(), 0x5a, 3 * kMiB);
    CHECK(large_buffer_stats().mapped_now >= before.mapped_now + 3 * kMiB);
  }
  CHECK(large_buffer_stats().kept_now >= before.kept_now + 3 * kMiB);
  {
    // Somewhat smaller: the same buffer again, without a new mapping; and it is writable.
    auto b = large_bytes(3 * kMiB - 100'000);
    CHECK(b.get() == first);
    std::memset(b.get(), 0x11, 3 * kMiB - 100'000);
    CHECK(static_cast<unsigned char>(b[12345]) == 0x11);
    const auto now = large_buffer_stats();
    CHECK(now.reuses == before.reuses + 1);
    CHECK(now.mappings == before.mappings + 1);
  }
  {
    // Much smaller than the kept buffer: a mapping of its own, the kept one stays kept.
    auto b = large_bytes(2 * kMiB);
    CHECK(b.get() != first);
    CHECK(large_buffer_stats().mappings == before.mappings + 2);
  }
  {
    // Below the threshold: ordinary memory, the store is not involved.
    auto small = large_bytes(kLargeBufferMin - 1);
    auto message = large_message(1000);
    CHECK(message.size() == 1000);
    CHECK(large_buffer_stats().mappings == before.mappings + 2);
  }
}

TEST_CASE("large buffers: a message's memory returns when its last copy is dropped") {
  const auto before = large_buffer_stats();
  zmq::message_t message = large_message(4 * kMiB + 3);
  REQUIRE(message.size() == 4 * kMiB + 3);
  std::memset(message.data(), 7, message.size());
  zmq::message_t copy;
  copy.copy(message);  // shares the memory, as the relays' copies for the hub do
  const void* where = message.data();
  message = zmq::message_t();
  CHECK(large_buffer_stats().kept_now == before.kept_now);  // the copy still holds it
  CHECK(static_cast<const unsigned char*>(copy.data())[4 * kMiB + 2] == 7);
  copy = zmq::message_t();
  CHECK(large_buffer_stats().kept_now > before.kept_now);
  zmq::message_t next = large_message(4 * kMiB);
  CHECK(next.data() == where);
}

TEST_CASE("large buffers: copies kept long do not take the receivers' buffers") {
  const auto before = large_buffer_stats();
  const void* passing = nullptr;
  {
    zmq::message_t received = large_message(5 * kMiB);
    passing = received.data();
  }
  const std::byte* kept_copy = nullptr;
  {
    // A record's copy: new memory, though a passing buffer of its size is kept.
    auto record = large_bytes(5 * kMiB, LargeBufferUse::kKept);
    kept_copy = record.get();
    CHECK(static_cast<const void*>(kept_copy) != passing);
    CHECK(large_buffer_stats().mappings == before.mappings + 2);
    // The next received frame finds its buffer.
    zmq::message_t received = large_message(5 * kMiB);
    CHECK(received.data() == passing);
  }
  // What a record freed (it was culled) serves the next record first...
  auto record = large_bytes(5 * kMiB, LargeBufferUse::kKept);
  CHECK(record.get() == kept_copy);
  record.reset();
  // ...and a receiver when no passing buffer fits.
  zmq::message_t a = large_message(5 * kMiB);
  zmq::message_t b = large_message(5 * kMiB);
  CHECK(((a.data() == passing && b.data() == kept_copy) ||
         (a.data() == kept_copy && b.data() == passing)));
  CHECK(large_buffer_stats().mappings == before.mappings + 2);
}

TEST_CASE("large buffers: the memory kept for reuse is bounded") {
  // Mappings that are never written cost address space only.
  const auto before = large_buffer_stats();
  const std::size_t each = kLargeBufferKeep / 2 + kMiB;
  {
    auto a = large_bytes(each);
    auto b = large_bytes(each);
    auto c = large_bytes(each);
    CHECK(large_buffer_stats().mapped_now >= before.mapped_now + 3 * each);
  }
  const auto after = large_buffer_stats();
  CHECK(after.kept_now <= kLargeBufferKeep);
  CHECK(after.mapped_now <= before.mapped_now + kLargeBufferKeep);
  // Larger than all that may be kept: given back at once.
  { auto huge = large_bytes(kLargeBufferKeep + kMiB); }
  CHECK(large_buffer_stats().mapped_now == after.mapped_now);
}
