// maxdelay: the largest departure delay in one month's flights CSV, the per-file step of the
// Dask tutorial's nycflights example (`maxes.append(df.DepDelay.max())`, one file per task).
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "ipcpp/engine.hpp"
#include "ipcpp/value.hpp"

#include "task_args.hpp"

namespace {

using ipcpp::TaskError;

// A field for an error message: quoted, bytes outside printable ASCII as \xNN, cut at 40.
std::string shown(std::string_view field) {
  constexpr std::size_t kMaxShown = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < field.size() && i < kMaxShown; ++i) {
    const auto c = static_cast<unsigned char>(field[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(static_cast<char>(c));
    } else {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02X", static_cast<unsigned>(c));
      out += escaped;
    }
  }
  if (field.size() > kMaxShown) out += "...";
  return out + "'";
}

// The comma-separated fields of one line (no quoting: the flights files have none).
std::vector<std::string_view> split_fields(std::string_view line) {
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const std::size_t comma = line.find(',', start);
    if (comma == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return fields;
    }
    fields.push_back(line.substr(start, comma - start));
    start = comma + 1;
  }
}

// The whole of `field` as T, or nothing.
template <class T>
std::optional<T> parse_whole(std::string_view field) {
  T value{};
  const char* end = field.data() + field.size();
  const auto [ptr, ec] = std::from_chars(field.data(), end, value);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

// 1 to 8 ASCII letters and digits: JFK, EWR, ...
bool is_airport_code(std::string_view field) {
  if (field.empty() || field.size() > 8) return false;
  for (char c : field) {
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) {
      return false;
    }
  }
  return true;
}

std::string two_digits(std::int64_t n) {
  std::string text = std::to_string(n);
  if (n >= 0 && n < 10) text.insert(text.begin(), '0');
  return text;
}

// The columns maxdelay reads, by their index in the header.
struct Columns {
  std::size_t count = 0;  // fields per line
  std::size_t year = 0;
  std::size_t month = 0;
  std::size_t dep_delay = 0;
  std::size_t origin = 0;
  std::size_t dest = 0;
};

Columns parse_header(std::string_view line, const std::string& where) {
  const std::vector<std::string_view> fields = split_fields(line);
  const auto index_of = [&](std::string_view name) {
    for (std::size_t i = 0; i < fields.size(); ++i) {
      if (fields[i] == name) return i;
    }
    throw TaskError("ValueError", where + ": the header has no " + std::string(name) +
                                      " column (it is " + shown(line) + ")");
  };
  return Columns{fields.size(),        index_of("Year"),   index_of("Month"),
                 index_of("DepDelay"), index_of("Origin"), index_of("Dest")};
}

}  // namespace

IPCPP_TASK(maxdelay,
           "maxdelay(path): the largest departure delay in one month's flights CSV, "
           "{file, month, delay, origin, dest, flights, cancelled}") {
  constexpr const char* kTask = "maxdelay";
  args.expect(1, 1);
  ipcpp::examples::expect_keywords(args, kTask, {});
  const std::string path = ipcpp::examples::to_text(args[0], kTask, "path");
  const std::string data = ipcpp::examples::read_text_file(path);
  ipcpp::examples::CancellationCheck cancellation(ctx);

  std::optional<Columns> columns;
  std::string month;           // "2023-01", from the first row
  std::int64_t flights = 0;    // data rows
  std::int64_t cancelled = 0;  // rows without a DepDelay
  std::optional<double> max_delay;
  std::string max_origin;
  std::string max_dest;

  std::size_t line_number = 0;
  std::size_t start = 0;
  while (start < data.size()) {
    std::size_t end = data.find('\n', start);
    if (end == std::string::npos) end = data.size();
    std::string_view line(data.data() + start, end - start);
    start = end + 1;
    ++line_number;
    cancellation.tick();
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    const std::string where = path + ":" + std::to_string(line_number);
    if (!columns) {
      columns = parse_header(line, where);
      continue;
    }

    const std::vector<std::string_view> fields = split_fields(line);
    if (fields.size() != columns->count) {
      throw TaskError("ValueError", where + ": expected " + std::to_string(columns->count) +
                                        " fields, got " + std::to_string(fields.size()));
    }
    const auto year = parse_whole<std::int64_t>(fields[columns->year]);
    const auto month_number = parse_whole<std::int64_t>(fields[columns->month]);
    if (!year || *year < 0 || *year > 9999) {
      throw TaskError("ValueError",
                      where + ": Year is not a year: " + shown(fields[columns->year]));
    }
    if (!month_number || *month_number < 1 || *month_number > 12) {
      throw TaskError("ValueError",
                      where + ": Month is not from 1 to 12: " + shown(fields[columns->month]));
    }
    const std::string row_month = std::to_string(*year) + "-" + two_digits(*month_number);
    if (month.empty()) {
      month = row_month;
    } else if (row_month != month) {
      throw TaskError("ValueError", where + ": a row of " + row_month + " in the file of " + month +
                                        " (one file holds one month)");
    }
    const std::string_view origin = fields[columns->origin];
    const std::string_view dest = fields[columns->dest];
    if (!is_airport_code(origin)) {
      throw TaskError("ValueError", where + ": Origin is not an airport code: " + shown(origin));
    }
    if (!is_airport_code(dest)) {
      throw TaskError("ValueError", where + ": Dest is not an airport code: " + shown(dest));
    }

    ++flights;
    const std::string_view delay_field = fields[columns->dep_delay];
    if (delay_field.empty()) {  // a cancelled flight
      ++cancelled;
      continue;
    }
    const auto delay = parse_whole<double>(delay_field);
    if (!delay || !std::isfinite(*delay)) {
      throw TaskError("ValueError", where + ": DepDelay is not a number: " + shown(delay_field));
    }
    if (!max_delay || *delay > *max_delay) {  // the first of equal delays wins
      max_delay = *delay;
      max_origin = origin;
      max_dest = dest;
    }
  }

  if (!columns) throw TaskError("ValueError", path + ": the file is empty (no header line)");
  if (!max_delay) throw TaskError("ValueError", path + ": no flight with a departure delay");

  nlohmann::json delay;
  if (std::trunc(*max_delay) == *max_delay && std::fabs(*max_delay) < 9.0e15) {
    delay = static_cast<std::int64_t>(*max_delay);
  } else {
    delay = *max_delay;
  }
  return nlohmann::json{{"file", std::filesystem::path(path).filename().string()},
                        {"month", month},
                        {"delay", delay},
                        {"origin", max_origin},
                        {"dest", max_dest},
                        {"flights", flights},
                        {"cancelled", cancelled}};
}
