// The URL -> local path mapper (RELIABILITY.md §1.1, U1–U9, U15–U17). Input: a URL, or a
// reference resolved against the source's base.
// Oracles for every mapped path: relative, no empty/"."/".." segment, no C0, DEL or
// backslash, valid UTF-8, within the length and depth limits, no reserved name, under the
// mapping's directory, equal to the URL's own percent-decoded segments (so the mapping is
// injective), deterministic; collision_key idempotent.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "shardsync/client/local_path.hpp"
#include "shardsync/sitemap/url.hpp"

namespace {

using shardsync::client::PathMapper;

constexpr std::string_view kBase = "https://example.org/data/";

const PathMapper& single_mapper() {
  static const PathMapper mapper = *PathMapper::create({{std::string(kBase), ""}});
  return mapper;
}

// Two prefixes, one nested in the other, the inner one mapped to a subdirectory.
const PathMapper& nested_mapper() {
  static const PathMapper mapper = *PathMapper::create(
      {{"https://example.org/data/", ""}, {"http://Example.org:8080/data/deep/er/", "sub/dir"}});
  return mapper;
}

bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : 9;
    if (n == 9 || s.size() - i - 1 < n) return false;
    std::uint32_t cp = n == 0 ? c : n == 1 ? (c & 0x1Fu) : n == 2 ? (c & 0x0Fu) : (c & 0x07u);
    for (std::size_t k = 1; k <= n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3Fu);
    }
    const std::uint32_t min[] = {0, 0x80, 0x800, 0x10000};
    if (cp < min[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::vector<std::string_view> split(std::string_view s) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t slash = s.find('/', start);
    parts.push_back(s.substr(start, slash == std::string_view::npos ? slash : slash - start));
    if (slash == std::string_view::npos) return parts;
    start = slash + 1;
  }
}

void check_path(const std::string& path, std::string_view local_dir) {
  FUZZ_CHECK(!path.empty(), "empty path");
  FUZZ_CHECK(path.front() != '/', "absolute path");
  FUZZ_CHECK(path.size() <= 4096, "path over 4096 bytes");
  FUZZ_CHECK(valid_utf8(path), "invalid UTF-8");
  for (const char c : path) {
    const auto u = static_cast<unsigned char>(c);
    FUZZ_CHECK(u >= 0x20 && u != 0x7F && c != '\\', "C0, DEL or backslash in a path");
  }
  const auto segments = split(path);
  FUZZ_CHECK(segments.size() <= 64, "path deeper than 64");
  for (const auto segment : segments) {
    FUZZ_CHECK(!segment.empty() && segment != "." && segment != "..", "empty or dot segment");
    FUZZ_CHECK(segment.size() <= 255, "segment over 255 bytes");
    FUZZ_CHECK(!shardsync::client::is_reserved_name(segment), "reserved name");
  }
  if (!local_dir.empty()) {
    FUZZ_CHECK(path.size() > local_dir.size() && path.starts_with(local_dir) &&
                   path[local_dir.size()] == '/',
               "not under the mapping's directory");
  }
  const std::string key = shardsync::client::collision_key(path);
  FUZZ_CHECK(shardsync::client::collision_key(key) == key, "collision_key not idempotent");
}

// The path the single mapper must give `url` if it maps it at all: its path's segments after
// "/data/", each percent-decoded once, joined by '/'. Computed without the mapper's code.
std::optional<std::string> expected_single(std::string_view url) {
  const std::size_t scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return std::nullopt;
  const std::size_t path_at = url.find('/', scheme_end + 3);
  if (path_at == std::string_view::npos) return std::nullopt;
  const auto segments = split(url.substr(path_at + 1));
  std::string out;
  for (std::size_t i = 1; i < segments.size(); ++i) {
    auto decoded = shardsync::sitemap::decode_percent(segments[i]);
    if (!decoded) return std::nullopt;
    if (i > 1) out += '/';
    out += *decoded;
  }
  return out;
}

void map_and_check(std::string_view url) {
  auto single = single_mapper().local_path(url);
  auto again = single_mapper().local_path(url);
  FUZZ_CHECK(single.has_value() == again.has_value() && (!single || *single == *again),
             "mapping is not deterministic");
  if (single) {
    check_path(*single, "");
    const auto expected = expected_single(url);
    FUZZ_CHECK(expected && *expected == *single, "path is not the URL's decoded segments");
  }
  auto nested = nested_mapper().local_path(url);
  if (nested) {
    const bool deep = nested->starts_with("sub/dir/");
    check_path(*nested, deep ? "sub/dir" : "");
    if (!deep) FUZZ_CHECK(single && *single == *nested, "outer prefix maps differently");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 8192) return 0;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  // A reference without a scheme is taken relative to the base, as old documents do.
  map_and_check(input.find("://") == std::string_view::npos
                    ? std::string(kBase) + std::string(input)
                    : std::string(input));
  return 0;
}
