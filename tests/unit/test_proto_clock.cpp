#include <doctest/doctest.h>

#include "proto/clock.hpp"

using namespace ipcpp::proto;
using std::chrono::microseconds;

TEST_CASE("timestamps are written like Python's isoformat with a Z") {
  const auto t = parse_timestamp("2026-11-21T08:26:12.742857Z");
  REQUIRE(t);
  CHECK(format_timestamp(*t) == "2026-11-21T08:26:12.742857Z");
  CHECK(format_timestamp(*parse_timestamp("2026-11-21T08:26:12Z")) == "2026-11-21T08:26:12Z");
  CHECK(format_timestamp(Timestamp(microseconds(1))) == "1970-01-01T00:00:00.000001Z");
}

TEST_CASE("timestamps with offsets, short fractions and no zone are read") {
  CHECK(parse_timestamp("2026-11-21T10:26:12+02:00") == parse_timestamp("2026-11-21T08:26:12Z"));
  CHECK(parse_timestamp("2026-11-21T06:26:12-0200") == parse_timestamp("2026-11-21T08:26:12Z"));
  CHECK(parse_timestamp("2026-11-21T08:26:12.5") == parse_timestamp("2026-11-21T08:26:12.500000Z"));
  CHECK(parse_timestamp("2026-11-21 08:26:12Z").has_value());
}

TEST_CASE("malformed timestamps are refused") {
  CHECK_FALSE(parse_timestamp(""));
  CHECK_FALSE(parse_timestamp("2026-11-21"));
  CHECK_FALSE(parse_timestamp("2026-13-21T08:26:12Z"));
  CHECK_FALSE(parse_timestamp("2026-11-21T08:26:12.Z"));
  CHECK_FALSE(parse_timestamp("2026-11-21T08:26:12Zjunk"));
  CHECK_FALSE(parse_timestamp("2026-11-21T08:26:12+2"));
}

TEST_CASE("now() round-trips through the text form") {
  const auto t = now();
  CHECK(parse_timestamp(format_timestamp(t)) == t);
}

TEST_CASE("format_timestamp writes every field with its leading zeros") {
  CHECK(format_timestamp(*parse_timestamp("0999-01-02T03:04:05.000070Z")) ==
        "0999-01-02T03:04:05.000070Z");
  CHECK(format_timestamp(*parse_timestamp("2026-12-31T23:59:59.999999Z")) ==
        "2026-12-31T23:59:59.999999Z");
  CHECK(format_timestamp(*parse_timestamp("2000-02-29T00:00:00.100000Z")) ==
        "2000-02-29T00:00:00.100000Z");
}
