#pragma once
// Parsers for HTTP header field values: token lists, HTTP-dates, byte ranges, content-coding
// negotiation and entity-tag conditions. Pure functions of their arguments (no sockets, no
// site), so the request handler and the fuzz targets (fuzz/range_fuzz.cpp) share them.

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>

namespace shardsync::server::detail {

// ---- Tokens ----

inline char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

inline bool is_ows(char c) { return c == ' ' || c == '\t'; }

inline std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Splits a comma-separated field value; calls f on each non-empty trimmed element.
template <typename F>
void for_each_element(std::string_view list, F&& f) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

inline bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses decimal digits; false on overflow or non-digits.
inline bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (!all_digits(s)) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// ---- Dates, ranges, negotiation ----

// IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") of Unix seconds.
[[nodiscard]] std::string http_date(std::int64_t unix_seconds);
// Parses an HTTP-date (IMF-fixdate, RFC 850 or asctime form) into Unix seconds.
[[nodiscard]] std::optional<std::int64_t> parse_http_date(std::string_view text);

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t length = 0;
};
enum class RangeKind {
  none,           // no Range, an unknown unit, a malformed or multi-range header: serve 200
  satisfiable,    // serve 206 with `range`
  unsatisfiable,  // serve 416
};
struct RangeResult {
  RangeKind kind = RangeKind::none;
  ByteRange range;
};
// A single byte range of a representation `size` bytes long (RFC 9110 §14.1.2).
[[nodiscard]] RangeResult parse_range(std::string_view header, std::uint64_t size);

// Whether an If-Range value still names the representation (RFC 9110 §13.1.5): a strong
// entity tag equal to `etag`, or an HTTP-date equal to `last_modified_s`. A weak tag never
// matches; the caller then sends the whole representation.
[[nodiscard]] bool if_range_matches(std::string_view if_range, std::string_view etag,
                                    std::int64_t last_modified_s);

enum class Coding { identity, gzip, zstd };
// The content coding to send a document in: the acceptable one with the highest q-value,
// zstd before gzip before identity on ties; `gzip_ok`/`zstd_ok` say the coding exists.
[[nodiscard]] Coding negotiate_coding(std::string_view accept_encoding, bool gzip_ok, bool zstd_ok);

// Whether `tag` (quoted, strong) is in an If-None-Match / If-Match list; `weak` compares
// weakly (W/"x" matches "x"). "*" matches any.
[[nodiscard]] bool etag_list_matches(std::string_view list, std::string_view tag, bool weak);

}  // namespace shardsync::server::detail
