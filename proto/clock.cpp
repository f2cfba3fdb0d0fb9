#include "proto/clock.hpp"

#include <charconv>
#include <cstdio>

namespace ipcpp::proto {
namespace {

using std::chrono::days;
using std::chrono::hours;
using std::chrono::microseconds;
using std::chrono::minutes;
using std::chrono::seconds;

// Reads exactly n decimal digits at text[pos]; returns nullopt if they are not all digits.
std::optional<int> digits(std::string_view text, std::size_t pos, std::size_t n) {
  if (pos + n > text.size()) return std::nullopt;
  int value = 0;
  for (std::size_t i = pos; i < pos + n; ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + (c - '0');
  }
  return value;
}

}  // namespace

Timestamp now() {
  return std::chrono::time_point_cast<microseconds>(Clock::now());
}

std::string format_timestamp(Timestamp t) {
  // Written digit by digit: every message header carries one, and snprintf costs more than
  // the rest of the header.
  const auto day = std::chrono::floor<days>(t);
  const std::chrono::year_month_day ymd{day};
  const std::chrono::hh_mm_ss<microseconds> tod{t - day};
  const int year = int(ymd.year());
  if (year < 0 || year > 9999) {  // outside what four digits hold: the general way
    char buf[64];
    int n = std::snprintf(buf, sizeof buf, "%04d-%02u-%02uT%02d:%02d:%02d", year,
                          unsigned(ymd.month()), unsigned(ymd.day()), int(tod.hours().count()),
                          int(tod.minutes().count()), int(tod.seconds().count()));
    if (const auto us = tod.subseconds().count(); us != 0) {
      n += std::snprintf(buf + n, sizeof buf - std::size_t(n), ".%06d", int(us));
    }
    return std::string(buf, std::size_t(n)) + "Z";
  }
  const auto us = static_cast<unsigned>(tod.subseconds().count());
  char buf[28];
  auto put = [&buf](std::size_t at, unsigned value, std::size_t width) {
    for (std::size_t i = width; i-- > 0; value /= 10)
      buf[at + i] = static_cast<char>('0' + value % 10);
  };
  put(0, static_cast<unsigned>(year), 4);
  buf[4] = '-';
  put(5, unsigned(ymd.month()), 2);
  buf[7] = '-';
  put(8, unsigned(ymd.day()), 2);
  buf[10] = 'T';
  put(11, static_cast<unsigned>(tod.hours().count()), 2);
  buf[13] = ':';
  put(14, static_cast<unsigned>(tod.minutes().count()), 2);
  buf[16] = ':';
  put(17, static_cast<unsigned>(tod.seconds().count()), 2);
  std::size_t n = 19;
  if (us != 0) {
    buf[19] = '.';
    put(20, us, 6);
    n = 26;
  }
  buf[n++] = 'Z';
  return std::string(buf, n);
}

std::optional<Timestamp> parse_timestamp(std::string_view s) {
  // 2026-11-21T08:26:12
  // 0123456789012345678
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') ||
      s[13] != ':' || s[16] != ':') {
    return std::nullopt;
  }
  const auto y = digits(s, 0, 4), mo = digits(s, 5, 2), d = digits(s, 8, 2);
  const auto h = digits(s, 11, 2), mi = digits(s, 14, 2), se = digits(s, 17, 2);
  if (!y || !mo || !d || !h || !mi || !se) return std::nullopt;
  const std::chrono::year_month_day ymd{std::chrono::year{*y}, std::chrono::month(unsigned(*mo)),
                                        std::chrono::day(unsigned(*d))};
  if (!ymd.ok() || *h > 23 || *mi > 59 || *se > 60) return std::nullopt;
  std::size_t pos = 19;
  microseconds frac{0};
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    long long value = 0;
    std::size_t n = 0;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (n < 6) value = value * 10 + (s[pos] - '0');
      ++n;
      ++pos;
    }
    if (n == 0 || n > 9) return std::nullopt;
    for (std::size_t i = n; i < 6; ++i)
      value *= 10;
    frac = microseconds(value);
  }
  minutes offset{0};
  if (pos < s.size()) {
    if (s[pos] == 'Z' && pos + 1 == s.size()) {
      pos = s.size();
    } else if (s[pos] == '+' || s[pos] == '-') {
      const int sign = s[pos] == '-' ? -1 : 1;
      const auto oh = digits(s, pos + 1, 2);
      std::size_t mpos = pos + 3;
      if (mpos < s.size() && s[mpos] == ':') ++mpos;
      const auto om = digits(s, mpos, 2);
      if (!oh || !om || mpos + 2 != s.size()) return std::nullopt;
      offset = sign * (hours(*oh) + minutes(*om));
      pos = s.size();
    } else {
      return std::nullopt;
    }
  }
  const auto local = std::chrono::sys_days(ymd) + hours(*h) + minutes(*mi) + seconds(*se) + frac;
  return std::chrono::time_point_cast<microseconds>(local - offset);
}

}  // namespace ipcpp::proto
