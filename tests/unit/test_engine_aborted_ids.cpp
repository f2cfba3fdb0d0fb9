// The engine's memory of aborted msg_ids (engine/aborted_ids.hpp).
#include <string>

#include <doctest/doctest.h>

#include "engine/aborted_ids.hpp"

using ipcpp::engine::AbortedIds;

TEST_CASE("engine: an aborted id is answered once, and the memory keeps the newest ids only") {
  AbortedIds ids(3);
  ids.insert("a");
  CHECK(ids.take("a"));
  CHECK_FALSE(ids.take("a"));  // answered once
  CHECK_FALSE(ids.take("never aborted"));

  for (const char* id : {"1", "2", "3", "4"})
    ids.insert(id);
  CHECK(ids.size() == 3);
  CHECK_FALSE(ids.take("1"));  // the oldest, forgotten beyond the limit
  CHECK(ids.take("2"));
  CHECK(ids.take("4"));

  // An id aborted again counts from its latest abort.
  AbortedIds again(2);
  again.insert("x");
  again.insert("y");
  again.insert("x");  // the first "x" leaves the memory; the second stays
  CHECK(again.size() == 2);
  CHECK(again.take("x"));
  CHECK(again.take("y"));
  again.insert("z");
  again.insert("w");
  again.insert("v");
  CHECK(again.size() == 2);
  CHECK_FALSE(again.take("z"));
}
