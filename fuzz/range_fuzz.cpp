// The server's Range / If-Range handling (RELIABILITY.md §1.6, R3–R5) and the date and
// entity-tag parsers it relies on. Input: 8 bytes of representation size, 8 of Last-Modified,
// then "Range\nIf-Range\nETag". Oracles: a satisfiable range lies inside [0, size), is not
// empty and is re-found from its own "bytes=first-last" form; several ranges are never served
// as such (count capped at one); a weak or mismatched If-Range never matches; parsed dates
// print and re-parse to themselves.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "fuzz_check.hpp"
#include "http_fields.hpp"

namespace {

using namespace shardsync::server::detail;

std::uint64_t take_u64(std::string_view& in) {
  std::uint64_t v = 0;
  const std::size_t n = std::min<std::size_t>(8, in.size());
  std::memcpy(&v, in.data(), n);
  in.remove_prefix(n);
  return v;
}

std::string_view take_line(std::string_view& in) {
  const std::size_t nl = in.find('\n');
  const std::string_view line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

std::size_t elements_after_unit(std::string_view header) {
  const std::size_t eq = header.find('=');
  std::size_t count = 0;
  if (eq != std::string_view::npos) {
    for_each_element(header.substr(eq + 1), [&](std::string_view) { ++count; });
  }
  return count;
}

void check_range(std::string_view header, std::uint64_t size) {
  const RangeResult r = parse_range(header, size);
  const RangeResult again = parse_range(header, size);
  FUZZ_CHECK(r.kind == again.kind && r.range.first == again.range.first &&
                 r.range.length == again.range.length,
             "parse_range is not deterministic");
  if (r.kind != RangeKind::satisfiable) return;
  FUZZ_CHECK(r.range.length > 0, "empty satisfiable range");
  FUZZ_CHECK(r.range.first < size, "range starts past the end");
  FUZZ_CHECK(r.range.length <= size - r.range.first, "range ends past the end");
  FUZZ_CHECK(elements_after_unit(header) == 1, "more than one range served");
  const std::string canonical = "bytes=" + std::to_string(r.range.first) + "-" +
                                std::to_string(r.range.first + r.range.length - 1);
  const RangeResult round = parse_range(canonical, size);
  FUZZ_CHECK(round.kind == RangeKind::satisfiable && round.range.first == r.range.first &&
                 round.range.length == r.range.length,
             "a served range does not re-parse to itself");
}

void check_if_range(std::string_view if_range, std::string_view etag, std::int64_t last_modified) {
  if (!if_range_matches(if_range, etag, last_modified)) return;
  const std::string_view v = trim(if_range);
  FUZZ_CHECK(!v.starts_with("W/"), "a weak validator matched");
  if (v.starts_with("\"")) FUZZ_CHECK(v == etag && !etag.empty(), "entity tags differ");
}

void check_date(std::string_view text) {
  const auto t = parse_http_date(text);
  if (!t || *t < 0 || *t > 253402300799) return;  // http_date prints years 1970..9999
  const std::string printed = http_date(*t);
  FUZZ_CHECK(printed.size() == 29, "IMF-fixdate is not 29 characters");
  FUZZ_CHECK(parse_http_date(printed) == t, "a printed date does not re-parse to itself");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 4096) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const std::uint64_t rep_size = take_u64(in);
  const auto last_modified = static_cast<std::int64_t>(take_u64(in) % 253402300800);
  const std::string_view range = take_line(in);
  const std::string_view if_range = take_line(in);
  const std::string_view etag = take_line(in);
  check_range(range, rep_size);
  check_range(range, rep_size & 0xFFFF);  // small files too, where ranges clamp
  check_if_range(if_range, etag, last_modified);
  check_date(if_range);
  // Date validators of our own Last-Modified match exactly that second.
  FUZZ_CHECK(if_range_matches(http_date(last_modified), etag, last_modified),
             "our own Last-Modified does not match itself");
  (void)etag_list_matches(if_range, etag, true);
  (void)etag_list_matches(if_range, etag, false);
  (void)negotiate_coding(range, true, true);
  return 0;
}
