#include "http_fields.hpp"

#include <array>
#include <cstdio>
#include <limits>
#include <vector>

#include "shardsync/sitemap/timestamp.hpp"

namespace shardsync::server::detail {
namespace {

using sitemap::civil_from_days;
using sitemap::days_from_civil;

constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::optional<unsigned> month_number(std::string_view name) {
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (name == kMonths[i]) return static_cast<unsigned>(i + 1);
  }
  return std::nullopt;
}

bool parse_fixed(std::string_view s, unsigned& out) {
  std::uint64_t v = 0;
  if (!parse_u64(s, v) || v > 100000) return false;
  out = static_cast<unsigned>(v);
  return true;
}

// "08:49:37" -> seconds of the day.
std::optional<std::int64_t> parse_clock(std::string_view s) {
  unsigned h = 0, m = 0, sec = 0;
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return std::nullopt;
  if (!parse_fixed(s.substr(0, 2), h) || !parse_fixed(s.substr(3, 2), m) ||
      !parse_fixed(s.substr(6, 2), sec)) {
    return std::nullopt;
  }
  if (h > 23 || m > 59 || sec > 60) return std::nullopt;
  return static_cast<std::int64_t>(h) * 3600 + m * 60 + sec;
}

std::optional<std::int64_t> assemble(std::int64_t year, unsigned month, unsigned day,
                                     std::int64_t clock) {
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  return days_from_civil(year, month, day) * 86400 + clock;
}

}  // namespace

// ---- Dates ----

std::string http_date(std::int64_t t) {
  // Beyond year 9999 an IMF-fixdate has no form; clamp (Last-Modified only, never reached).
  constexpr std::int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  t = std::clamp<std::int64_t>(t, 0, kMax);
  const std::int64_t days = t / 86400;
  const std::int64_t secs = t % 86400;
  const sitemap::CivilDate c = civil_from_days(days);
  const auto weekday = static_cast<std::size_t>((days + 4) % 7);
  char out[40];
  std::snprintf(out, sizeof out, "%.3s, %02u %.3s %04lld %02lld:%02lld:%02lld GMT",
                kDays[weekday].data(), c.day, kMonths[c.month - 1].data(),
                static_cast<long long>(c.year), static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return out;
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  s = trim(s);
  unsigned day = 0, year = 0;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s.substr(25) == " GMT") {
    const auto month = month_number(s.substr(8, 3));
    const auto clock = parse_clock(s.substr(17, 8));
    if (!month || !clock || !parse_fixed(s.substr(5, 2), day) ||
        !parse_fixed(s.substr(12, 4), year)) {
      return std::nullopt;
    }
    return assemble(year, *month, day, *clock);
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
  if (const std::size_t comma = s.find(", ");
      comma != std::string_view::npos && s.size() == comma + 24 && s.ends_with(" GMT")) {
    const std::string_view d = s.substr(comma + 2);  // "06-Nov-94 08:49:37 GMT"
    if (d[2] != '-' || d[6] != '-' || d[9] != ' ') return std::nullopt;
    const auto month = month_number(d.substr(3, 3));
    const auto clock = parse_clock(d.substr(10, 8));
    if (!month || !clock || !parse_fixed(d.substr(0, 2), day) ||
        !parse_fixed(d.substr(7, 2), year)) {
      return std::nullopt;
    }
    // RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
    return assemble(year < 70 ? 2000 + year : 1900 + year, *month, day, *clock);
  }
  // asctime: "Sun Nov  6 08:49:37 1994"
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    const auto month = month_number(s.substr(4, 3));
    const auto clock = parse_clock(s.substr(11, 8));
    const std::string_view d = s[8] == ' ' ? s.substr(9, 1) : s.substr(8, 2);
    if (!month || !clock || !parse_fixed(d, day) || !parse_fixed(s.substr(20, 4), year)) {
      return std::nullopt;
    }
    return assemble(year, *month, day, *clock);
  }
  return std::nullopt;
}

// ---- Ranges ----

RangeResult parse_range(std::string_view header, std::uint64_t size) {
  header = trim(header);
  const std::size_t eq = header.find('=');
  if (eq == std::string_view::npos || !iequals(trim(header.substr(0, eq)), "bytes")) return {};
  std::vector<std::string_view> specs;
  for_each_element(header.substr(eq + 1), [&](std::string_view e) { specs.push_back(e); });
  // Several ranges: the whole representation (one response, no multipart; also defeats
  // overlapping-range amplification, CVE-2011-3192).
  if (specs.size() != 1) return {};
  // An empty representation has no byte to range over: send it whole (200, empty).
  if (size == 0) return {};
  const std::string_view spec = specs.front();
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  const std::string_view first_text = trim(spec.substr(0, dash));
  const std::string_view last_text = trim(spec.substr(dash + 1));
  if (first_text.empty()) {  // suffix: the last N bytes
    if (!all_digits(last_text)) return {};
    std::uint64_t n = 0;
    if (!parse_u64(last_text, n)) n = std::numeric_limits<std::uint64_t>::max();
    if (n == 0) return {RangeKind::unsatisfiable, {}};
    n = std::min(n, size);
    return {RangeKind::satisfiable, {size - n, n}};
  }
  if (!all_digits(first_text)) return {};
  std::uint64_t first = 0;
  // A first position past 2^64 is past any file.
  if (!parse_u64(first_text, first)) return {RangeKind::unsatisfiable, {}};
  std::uint64_t last = std::numeric_limits<std::uint64_t>::max();
  if (!last_text.empty()) {
    if (!all_digits(last_text)) return {};
    if (!parse_u64(last_text, last)) last = std::numeric_limits<std::uint64_t>::max();
    if (last < first) return {};  // invalid: ignore the header
  }
  if (first >= size) return {RangeKind::unsatisfiable, {}};
  last = std::min(last, size - 1);
  return {RangeKind::satisfiable, {first, last - first + 1}};
}

bool if_range_matches(std::string_view if_range, std::string_view etag,
                      std::int64_t last_modified_s) {
  const std::string_view validator = trim(if_range);
  if (validator.starts_with("\"")) return !etag.empty() && validator == etag;  // strong
  if (validator.starts_with("W/")) return false;
  const auto date = parse_http_date(validator);
  return date && *date == last_modified_s;
}

// ---- Negotiation and validators ----

Coding negotiate_coding(std::string_view accept_encoding, bool gzip_ok, bool zstd_ok) {
  // q-values in thousandths; -1: not mentioned.
  int q_zstd = -1, q_gzip = -1, q_identity = -1, q_any = -1;
  for_each_element(accept_encoding, [&](std::string_view element) {
    const std::size_t semi = element.find(';');
    const std::string_view coding = trim(element.substr(0, semi));
    int q = 1000;
    if (semi != std::string_view::npos) {
      std::string_view param = trim(element.substr(semi + 1));
      if (param.size() < 2 || lower(param[0]) != 'q' || param[1] != '=') return;
      param.remove_prefix(2);
      // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
      if (param.empty() || (param[0] != '0' && param[0] != '1')) return;
      q = param[0] == '1' ? 1000 : 0;
      if (param.size() > 1) {
        if (param[1] != '.' || param.size() > 5) return;
        int scale = 100;
        for (const char c : param.substr(2)) {
          if (c < '0' || c > '9') return;
          q += (c - '0') * scale;
          scale /= 10;
        }
        if (q > 1000) return;
      }
    }
    if (iequals(coding, "zstd")) {
      q_zstd = q;
    } else if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
      q_gzip = q;
    } else if (iequals(coding, "identity")) {
      q_identity = q;
    } else if (coding == "*") {
      q_any = q;
    }
  });
  const int zstd = zstd_ok ? (q_zstd >= 0 ? q_zstd : std::max(q_any, 0)) : 0;
  const int gzip = gzip_ok ? (q_gzip >= 0 ? q_gzip : std::max(q_any, 0)) : 0;
  // identity is acceptable unless refused explicitly; we still send it when nothing else is.
  const int identity = q_identity >= 0 ? q_identity : (q_any == 0 ? 0 : 1);
  if (zstd > 0 && zstd >= gzip && zstd >= identity) return Coding::zstd;
  if (gzip > 0 && gzip >= identity) return Coding::gzip;
  return Coding::identity;
}

bool etag_list_matches(std::string_view list, std::string_view tag, bool weak) {
  list = trim(list);
  if (list == "*") return true;
  if (tag.empty()) return false;
  while (!list.empty()) {
    while (!list.empty() && (is_ows(list.front()) || list.front() == ',')) list.remove_prefix(1);
    if (list.empty()) break;
    bool is_weak = false;
    if (list.starts_with("W/")) {
      is_weak = true;
      list.remove_prefix(2);
    }
    if (list.empty() || list.front() != '"') return false;
    const std::size_t close = list.find('"', 1);
    if (close == std::string_view::npos) return false;
    const std::string_view candidate = list.substr(0, close + 1);
    if ((weak || !is_weak) && candidate == tag) return true;
    list.remove_prefix(close + 1);
  }
  return false;
}

}  // namespace shardsync::server::detail
