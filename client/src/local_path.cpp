#include "shardsync/client/local_path.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>

#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/url.hpp"

namespace shardsync::client {
namespace {

constexpr std::size_t kMaxSegmentBytes = 255;  // NAME_MAX on every Linux file system
constexpr std::size_t kMaxPathBytes = 4096;    // PATH_MAX
constexpr std::size_t kMaxDepth = 64;

char ascii_lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string ascii_lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](char c) { return ascii_lower(c); });
  return out;
}

// Invisible code points that HFS+ ignores in names and that make look-alike names (git's list
// for `.git` aliases, is_hfs_dotgit); none belongs in a file name.
bool is_ignorable(std::uint32_t cp) {
  return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
         (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x206F) || cp == 0xFEFF;
}

// Decodes one UTF-8 sequence at `text[i]`, advancing i. nullopt for anything RFC 3629 forbids:
// stray continuation bytes, truncation, overlong forms (%c0%ae as '.'), surrogates, > U+10FFFF.
std::optional<std::uint32_t> next_code_point(std::string_view text, std::size_t& i) {
  const auto lead = static_cast<unsigned char>(text[i++]);
  if (lead < 0x80) return lead;
  // Lead byte: how many continuation bytes follow, its payload bits, the smallest code point
  // that needs this length (anything below is an overlong form).
  std::size_t extra = 0;
  std::uint32_t cp = 0;
  std::uint32_t min = 0;
  if ((lead & 0xE0) == 0xC0) {
    extra = 1;
    cp = lead & 0x1Fu;
    min = 0x80;
  } else if ((lead & 0xF0) == 0xE0) {
    extra = 2;
    cp = lead & 0x0Fu;
    min = 0x800;
  } else if ((lead & 0xF8) == 0xF0) {
    extra = 3;
    cp = lead & 0x07u;
    min = 0x10000;
  } else {
    return std::nullopt;
  }
  if (text.size() - i < extra) return std::nullopt;
  for (std::size_t k = 0; k < extra; ++k) {
    const auto c = static_cast<unsigned char>(text[i++]);
    if ((c & 0xC0) != 0x80) return std::nullopt;
    cp = (cp << 6) | (c & 0x3Fu);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
  return cp;
}

// Why `cp` may not appear in a name, or nullptr.
const char* bad_code_point(std::uint32_t cp) {
  if (cp == 0) return "NUL";
  if (cp == '/') return "an encoded '/'";
  if (cp == '\\') return "a backslash";
  if (cp < 0x20 || cp == 0x7F) return "a control character";
  if (cp >= 0x80 && cp <= 0x9F) return "a C1 control character";
  if (is_ignorable(cp)) return "an invisible code point";
  return nullptr;
}

// Checks one decoded path component; the detail names the problem, never echoing raw bytes
// (they may hold CR/LF meant for a log line).
Result<void> check_segment(std::string_view segment) {
  if (segment.empty()) return fail(errc::unsafe_path, "empty path segment");
  if (segment == "." || segment == "..") return fail(errc::unsafe_path, "dot segment");
  if (segment.size() > kMaxSegmentBytes) {
    return fail(errc::unsafe_path, "path segment over 255 bytes");
  }
  for (std::size_t i = 0; i < segment.size();) {
    const auto cp = next_code_point(segment, i);
    if (!cp) return fail(errc::unsafe_path, "invalid UTF-8 in path segment");
    if (const char* why = bad_code_point(*cp)) {
      return fail(errc::unsafe_path, std::string("path segment with ") + why);
    }
  }
  if (is_reserved_name(segment)) return fail(errc::unsafe_path, "reserved name (.shardsync*)");
  return {};
}

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t end = text.find(sep, start);
    parts.push_back(text.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// An absolute http(s) URL taken apart; the path is still percent-encoded.
struct Url {
  std::string scheme;  // lower-case
  std::string host;    // lower-case; IPv6 literals keep their brackets
  int port = 0;        // explicit (80/443 when absent)
  std::string_view path;
  bool query_or_fragment = false;
};

std::optional<int> parse_port(std::string_view text, int default_port) {
  if (text.empty()) return default_port;  // "http://h:/" is "http://h/" (RFC 3986 §6.2.3)
  if (text.size() > 5) return std::nullopt;
  int port = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    port = port * 10 + (c - '0');
  }
  if (port == 0 || port > 65535) return std::nullopt;
  return port;
}

// Splits "host:port" / "[v6]:port" into its parts; the host is checked only for being a
// plausible name, since it is compared for equality with the configured one anyway.
bool split_authority(std::string_view authority, int default_port, Url& url) {
  std::string_view host = authority;
  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return false;
    host = authority.substr(0, close + 1);
    const std::string_view rest = authority.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return false;
      port = rest.substr(1);
    }
  } else if (const std::size_t colon = authority.find(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
  }
  if (host.empty()) return false;
  for (const char c : host) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7F) return false;
  }
  const auto parsed_port = parse_port(port, default_port);
  if (!parsed_port) return false;
  url.host = ascii_lower(host);
  url.port = *parsed_port;
  return true;
}

// Parses `text` as an absolute http(s) URL. Userinfo is refused outright: "a@b" hides which
// host is meant from whoever reads it (wget CVE-2024-38428), and a source never needs it.
Result<Url> parse_url(std::string_view text) {
  const std::size_t colon = text.find("://");
  if (colon == std::string_view::npos) return fail(errc::outside_source, "not an absolute URL");
  Url url;
  url.scheme = ascii_lower(text.substr(0, colon));
  int default_port = 0;
  if (url.scheme == "http") {
    default_port = 80;
  } else if (url.scheme == "https") {
    default_port = 443;
  } else {
    return fail(errc::outside_source, "not an http(s) URL");
  }
  const std::string_view rest = text.substr(colon + 3);
  const std::size_t authority_end = std::min(rest.find_first_of("/?#"), rest.size());
  const std::string_view authority = rest.substr(0, authority_end);
  if (authority.find('@') != std::string_view::npos) {
    return fail(errc::outside_source, "URL with userinfo");
  }
  // WHATWG parsers read '\' as '/' in http(s) URLs, so "h\.evil/" names another host there.
  if (authority.find('\\') != std::string_view::npos) {
    return fail(errc::outside_source, "backslash in URL authority");
  }
  if (!split_authority(authority, default_port, url)) {
    return fail(errc::outside_source, "malformed URL authority");
  }
  const std::string_view after = rest.substr(authority_end);
  const std::size_t path_end = std::min(after.find_first_of("?#"), after.size());
  url.path = after.substr(0, path_end);
  url.query_or_fragment = path_end < after.size();
  return url;
}

// The path's segments after the leading '/', each percent-decoded exactly once. Splitting on
// raw '/' first keeps an encoded "%2f" inside its segment, where check_segment refuses it.
Result<std::vector<std::string>> decode_segments(std::string_view path) {
  std::vector<std::string> segments;
  if (path.empty()) return segments;
  for (const std::string_view raw : split(path.substr(1), '/')) {
    auto decoded = sitemap::decode_percent(raw);
    if (!decoded) return fail(errc::unsafe_path, "malformed percent-escape in URL path");
    segments.push_back(std::move(*decoded));
  }
  return segments;
}

// A prefix path must be a plain directory: no empty or dot segments that would make two
// spellings of one prefix, no encoded separators.
bool plain_prefix_segment(std::string_view segment) {
  return !segment.empty() && segment != "." && segment != ".." &&
         segment.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

Result<void> check_local_dir(std::string_view local_dir) {
  if (local_dir.empty()) return {};
  if (local_dir.front() == '/') return fail(errc::invalid_options, "local_dir is absolute");
  for (const std::string_view segment : split(local_dir, '/')) {
    if (auto ok = check_segment(segment); !ok) {
      return fail(errc::invalid_options, "local_dir: " + ok.error().detail);
    }
  }
  return {};
}

}  // namespace

bool is_reserved_name(std::string_view segment) {
  std::string folded;
  for (std::size_t i = 0; i < segment.size() && folded.size() < kReservedPrefix.size();) {
    // U+017F (UTF-8 C5 BF) case-folds to 's' on case-insensitive file systems.
    if (segment.substr(i, 2) == "\xC5\xBF") {
      folded += 's';
      i += 2;
    } else {
      folded += ascii_lower(segment[i++]);
    }
  }
  return folded == kReservedPrefix;
}

Result<PathMapper> PathMapper::create(std::vector<PathMapping> mappings) {
  if (mappings.empty()) return fail(errc::invalid_options, "no URL prefix to map");
  PathMapper mapper;
  for (auto& mapping : mappings) {
    auto url = parse_url(mapping.url_prefix);
    if (!url || url->query_or_fragment || url->path.empty() || url->path.back() != '/') {
      return fail(errc::invalid_options,
                  "URL prefix is not an absolute http(s) URL ending in '/': " + mapping.url_prefix);
    }
    auto segments = decode_segments(url->path.substr(0, url->path.size() - 1));
    if (!segments || !std::all_of(segments->begin(), segments->end(), plain_prefix_segment)) {
      return fail(errc::invalid_options, "URL prefix path is not plain: " + mapping.url_prefix);
    }
    if (auto ok = check_local_dir(mapping.local_dir); !ok) return fail(std::move(ok.error()));
    Prefix prefix{std::move(url->scheme), std::move(url->host), url->port, std::move(*segments),
                  std::move(mapping.local_dir)};
    for (const Prefix& other : mapper.prefixes_) {
      if (other.scheme == prefix.scheme && other.host == prefix.host && other.port == prefix.port &&
          other.segments == prefix.segments) {
        return fail(errc::invalid_options, "URL prefix mapped twice: " + mapping.url_prefix);
      }
    }
    mapper.prefixes_.push_back(std::move(prefix));
  }
  std::stable_sort(
      mapper.prefixes_.begin(), mapper.prefixes_.end(),
      [](const Prefix& a, const Prefix& b) { return a.segments.size() > b.segments.size(); });
  return mapper;
}

Result<std::string> PathMapper::local_path(std::string_view url_text) const {
  auto url = parse_url(url_text);
  if (!url) return fail(std::move(url.error()));
  const auto same_origin = [&](const Prefix& p) {
    return p.scheme == url->scheme && p.host == url->host && p.port == url->port;
  };
  if (std::none_of(prefixes_.begin(), prefixes_.end(), same_origin)) {
    return fail(errc::outside_source, "URL on another scheme, host or port");
  }
  auto segments = decode_segments(url->path);
  if (!segments) return fail(std::move(segments.error()));
  const auto under = [&](const Prefix& p) {
    return same_origin(p) && segments->size() >= p.segments.size() &&
           std::equal(p.segments.begin(), p.segments.end(), segments->begin());
  };
  const auto prefix = std::find_if(prefixes_.begin(), prefixes_.end(), under);
  if (prefix == prefixes_.end()) return fail(errc::outside_source, "URL path outside the source");
  // Dropped queries or fragments would map a?x=1 and a?x=2 onto one file (U15).
  if (url->query_or_fragment) return fail(errc::unsafe_path, "URL with query or fragment");
  if (segments->size() == prefix->segments.size()) {
    return fail(errc::unsafe_path, "URL names the mapped directory itself");
  }
  std::string path = prefix->local_dir;
  std::size_t depth =
      path.empty() ? 0 : static_cast<std::size_t>(std::count(path.begin(), path.end(), '/') + 1);
  for (std::size_t i = prefix->segments.size(); i < segments->size(); ++i) {
    const std::string& segment = (*segments)[i];
    if (auto ok = check_segment(segment); !ok) return fail(std::move(ok.error()));
    if (!path.empty()) path += '/';
    path += segment;
    if (++depth > kMaxDepth) return fail(errc::unsafe_path, "path deeper than 64 segments");
    if (path.size() > kMaxPathBytes) return fail(errc::unsafe_path, "path over 4096 bytes");
  }
  return path;
}

std::string collision_key(std::string_view relative_path) { return ascii_lower(relative_path); }

}  // namespace shardsync::client
