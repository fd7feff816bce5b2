#include "shardsync/sitemap/timestamp.hpp"

#include <array>

namespace shardsync::sitemap {
namespace {

constexpr bool is_leap(std::int64_t y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

constexpr unsigned days_in_month(std::int64_t y, unsigned m) {
  constexpr std::array<unsigned, 12> days{31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

// Reads exactly `n` decimal digits at `pos`, advancing it.
bool read_digits(std::string_view s, std::size_t& pos, std::size_t n, unsigned& value) {
  if (pos + n > s.size()) return false;
  value = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const char c = s[pos + i];
    if (c < '0' || c > '9') return false;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  pos += n;
  return true;
}

bool expect(std::string_view s, std::size_t& pos, char c) {
  if (pos >= s.size() || s[pos] != c) return false;
  ++pos;
  return true;
}

void append_padded(std::string& out, unsigned value, int width) {
  char buf[10];
  for (int i = width - 1; i >= 0; --i) {
    buf[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
  out.append(buf, static_cast<std::size_t>(width));
}

}  // namespace

std::optional<Timestamp> parse_w3c_datetime(std::string_view s) {
  std::size_t pos = 0;
  unsigned year = 0, month = 1, day = 1, hour = 0, minute = 0, second = 0;
  std::uint32_t nanos = 0;
  Timestamp t;
  t.utc_designator = true;

  if (!read_digits(s, pos, 4, year)) return std::nullopt;
  t.precision = Precision::year;
  if (pos < s.size()) {
    if (!expect(s, pos, '-') || !read_digits(s, pos, 2, month)) return std::nullopt;
    t.precision = Precision::month;
  }
  if (pos < s.size()) {
    if (!expect(s, pos, '-') || !read_digits(s, pos, 2, day)) return std::nullopt;
    t.precision = Precision::day;
  }
  if (month < 1 || month > 12 || day < 1 || day > days_in_month(year, month)) return std::nullopt;

  int offset_minutes = 0;
  if (pos < s.size()) {
    if (t.precision != Precision::day) return std::nullopt;
    if (!expect(s, pos, 'T') || !read_digits(s, pos, 2, hour) || !expect(s, pos, ':') ||
        !read_digits(s, pos, 2, minute)) {
      return std::nullopt;
    }
    t.precision = Precision::minute;
    if (pos < s.size() && s[pos] == ':') {
      ++pos;
      if (!read_digits(s, pos, 2, second)) return std::nullopt;
      t.precision = Precision::second;
      if (pos < s.size() && s[pos] == '.') {
        ++pos;
        const std::size_t first = pos;
        std::uint32_t scale = 100'000'000;
        while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
          nanos += static_cast<std::uint32_t>(s[pos] - '0') * scale;
          scale /= 10;  // past the ninth digit the scale is 0: digits are read, then dropped
          ++pos;
        }
        if (pos == first) return std::nullopt;
        t.precision = Precision::fraction;
      }
    }
    if (hour > 23 || minute > 59 || second > 59) return std::nullopt;
    // A time needs a time zone designator: W3C datetimes have no local time.
    if (pos >= s.size()) return std::nullopt;
    if (s[pos] == 'Z') {
      ++pos;
    } else if (s[pos] == '+' || s[pos] == '-') {
      const int sign = s[pos] == '-' ? -1 : 1;
      ++pos;
      unsigned oh = 0, om = 0;
      if (!read_digits(s, pos, 2, oh) || !expect(s, pos, ':') || !read_digits(s, pos, 2, om) ||
          oh > 23 || om > 59) {
        return std::nullopt;
      }
      offset_minutes = sign * static_cast<int>(oh * 60 + om);
      t.utc_designator = false;
    } else {
      return std::nullopt;
    }
    if (pos != s.size()) return std::nullopt;
  }

  t.seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
              static_cast<std::int64_t>(offset_minutes) * 60;
  t.nanos = nanos;
  return t;
}

std::int64_t days_from_civil(std::int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const std::int64_t era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<std::int64_t>(doe) - 719468;
}

CivilDate civil_from_days(std::int64_t z) {
  z += 719468;
  const std::int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  return {static_cast<std::int64_t>(yoe) + era * 400 + (m <= 2), m, d};
}

void append_w3c_datetime(std::string& out, const Timestamp& t) {
  const std::int64_t days = t.seconds >= 0 ? t.seconds / 86400 : (t.seconds - 86399) / 86400;
  const auto secs_of_day = static_cast<unsigned>(t.seconds - days * 86400);
  const CivilDate c = civil_from_days(days);
  if (c.year < 0 || c.year > 9999) {
    // Outside what four digits can hold: clamp rather than emit an invalid datetime.
    out += c.year < 0 ? "0000-01-01T00:00:00Z" : "9999-12-31T23:59:59Z";
    return;
  }
  append_padded(out, static_cast<unsigned>(c.year), 4);
  out += '-';
  append_padded(out, c.month, 2);
  out += '-';
  append_padded(out, c.day, 2);
  out += 'T';
  append_padded(out, secs_of_day / 3600, 2);
  out += ':';
  append_padded(out, secs_of_day / 60 % 60, 2);
  out += ':';
  append_padded(out, secs_of_day % 60, 2);
  if (t.nanos != 0) {
    unsigned digits = 9;
    std::uint32_t n = t.nanos;
    while (n % 10 == 0) {
      n /= 10;
      --digits;
    }
    out += '.';
    append_padded(out, n, static_cast<int>(digits));
  }
  out += 'Z';
}

std::string format_w3c_datetime(const Timestamp& t) {
  std::string out;
  out.reserve(32);
  append_w3c_datetime(out, t);
  return out;
}

}  // namespace shardsync::sitemap
