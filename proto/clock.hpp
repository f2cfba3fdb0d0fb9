// Timestamps in the format of the message header's "date": UTC ISO 8601 with microseconds
// and a trailing Z, e.g. 2026-11-21T08:26:12.742857Z (the fraction is left out when it is
// zero, as Python's isoformat does).
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

namespace ipcpp::proto {

using Clock = std::chrono::system_clock;
using Timestamp = std::chrono::time_point<Clock, std::chrono::microseconds>;

Timestamp now();

// "YYYY-MM-DDTHH:MM:SS[.ffffff]Z" in UTC.
std::string format_timestamp(Timestamp t);

// Reads "YYYY-MM-DDTHH:MM:SS[.f{1,9}][Z|+HH:MM|+HHMM|-HH:MM|-HHMM]" (a space may stand for the
// T). A time without a zone is read as UTC. Returns nullopt for anything else.
std::optional<Timestamp> parse_timestamp(std::string_view text);

}  // namespace ipcpp::proto
