#pragma once
// W3C datetimes (NOTE-datetime-19980827), the form of every time in ResourceSync:
// YYYY, YYYY-MM, YYYY-MM-DD, YYYY-MM-DDThh:mmTZD, YYYY-MM-DDThh:mm:ssTZD and
// YYYY-MM-DDThh:mm:ss.sTZD with any number of fractional digits; TZD is Z or +hh:mm/-hh:mm.

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace shardsync::sitemap {

// How much of the datetime the text gave; dates without a time mean 00:00:00Z.
enum class Precision : std::uint8_t { year, month, day, minute, second, fraction };

// An instant, exact to the nanosecond (digits past the ninth are dropped when parsing).
// Ordering and equality compare the instant only; `precision` and `utc_designator`
// remember how it was written, so a validator can flag forms the spec advises against.
struct Timestamp {
  std::int64_t seconds = 0;  // since 1970-01-01T00:00:00Z
  std::uint32_t nanos = 0;   // 0..999,999,999
  Precision precision = Precision::second;
  bool utc_designator = true;  // written with "Z" (or no time at all), not an offset

  static Timestamp from_unix(std::int64_t seconds, std::uint32_t nanos = 0) {
    return Timestamp{seconds, nanos, nanos ? Precision::fraction : Precision::second, true};
  }
  // From nanoseconds since the epoch (a file's st_mtim, a log's datetime); before 1970 too.
  static Timestamp from_unix_ns(std::int64_t ns) {
    constexpr std::int64_t kPerSecond = 1'000'000'000;
    std::int64_t seconds = ns / kPerSecond;
    std::int64_t nanos = ns % kPerSecond;
    if (nanos < 0) {
      nanos += kPerSecond;
      --seconds;
    }
    return from_unix(seconds, static_cast<std::uint32_t>(nanos));
  }

  friend bool operator==(const Timestamp& a, const Timestamp& b) {
    return a.seconds == b.seconds && a.nanos == b.nanos;
  }
  friend std::strong_ordering operator<=>(const Timestamp& a, const Timestamp& b) {
    if (auto c = a.seconds <=> b.seconds; c != 0) return c;
    return a.nanos <=> b.nanos;
  }
};

// Proleptic Gregorian calendar arithmetic (H. Hinnant's algorithms), shared by everything
// that turns dates into day counts and back (W3C datetimes here, HTTP dates in the server).
struct CivilDate {
  std::int64_t year;
  unsigned month;  // 1..12
  unsigned day;    // 1..31
};
// Days since 1970-01-01 of a date.
[[nodiscard]] std::int64_t days_from_civil(std::int64_t year, unsigned month, unsigned day);
// The date of a day count since 1970-01-01.
[[nodiscard]] CivilDate civil_from_days(std::int64_t days);

// Parses one W3C datetime; std::nullopt when `text` is not exactly one of the allowed forms
// (no leading/trailing space, no local times, no 24:00 or :60, offsets up to ±23:59).
[[nodiscard]] std::optional<Timestamp> parse_w3c_datetime(std::string_view text);

// Formats in complete UTC form, YYYY-MM-DDThh:mm:ssZ, adding only the fractional digits
// needed to represent the instant exactly (…:52.771331Z), so change order survives.
[[nodiscard]] std::string format_w3c_datetime(const Timestamp& t);

// Appends the same text to `out` without a temporary (the writer's hot path).
void append_w3c_datetime(std::string& out, const Timestamp& t);

}  // namespace shardsync::sitemap
