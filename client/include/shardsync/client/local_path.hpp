#pragma once
// Maps resource URLs to paths beneath the destination root (DEST), refusing anything that could
// land outside it or on the client's own files (RELIABILITY.md §1.1, U1–U9, U15–U17).
//
// A resource's local path is its URL path relative to a mapped URL prefix (by default the
// directory of the set's Capability List), percent-decoded exactly once, then checked segment
// by segment. Pure string work: no file-system access, safe from any thread.

#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::client {

// Names beginning with this are the client's own (state directory, partial downloads); a
// resource mapping onto one, or onto any case variant of it, is refused.
inline constexpr std::string_view kReservedPrefix = ".shardsync";

// True when `segment` (one path component) is in the client's namespace: it starts with
// kReservedPrefix after ASCII case folding (U+017F LONG S case-folds to 's', so it counts too).
[[nodiscard]] bool is_reserved_name(std::string_view segment);

// One URL prefix and the directory (relative to DEST, "" = DEST itself) it maps to.
struct PathMapping {
  std::string url_prefix;  // absolute http(s) URL ending in '/'
  std::string local_dir;   // relative, '/'-separated, already validated; "" for DEST
};

class PathMapper {
 public:
  // `mappings` are tried longest prefix first. Fails (errc::invalid_options) for an empty list,
  // a prefix that is not an absolute http(s) URL ending in '/' (or has userinfo, a query, or
  // empty or dot segments), a prefix given twice, or a local_dir that is absolute, has an
  // empty or `..` segment, or is reserved.
  [[nodiscard]] static Result<PathMapper> create(std::vector<PathMapping> mappings);

  // The relative local path ("a/b.bin") for `url`, or:
  //  errc::outside_source: no mapping's scheme, host, port and path prefix match `url`
  //    (compared after normalising scheme and host case and default ports);
  //  errc::unsafe_path: a query or fragment, an empty, "." or ".." segment (also encoded), an
  //    encoded '/' or '\\', a backslash, NUL/C0/DEL/C1, invisible (default-ignorable) code
  //    points, invalid UTF-8 (overlong forms, surrogates), a malformed %-escape, a segment over
  //    255 bytes, a path over 4,096 bytes or deeper than 64, a reserved name, or the prefix
  //    itself. Each segment is decoded exactly once: "%252e%252e" is the literal name "%2e%2e".
  //  A URL with userinfo ("user@host") is errc::outside_source whatever its host.
  [[nodiscard]] Result<std::string> local_path(std::string_view url) const;

 private:
  // A mapping with its prefix parsed: scheme and host lower-cased, the port made explicit and
  // the path split into percent-decoded segments (so "/d%61ta/" and "/data/" are one prefix).
  struct Prefix {
    std::string scheme;
    std::string host;
    int port = 0;
    std::vector<std::string> segments;
    std::string local_dir;
  };
  std::vector<Prefix> prefixes_;  // most segments first, so the longest prefix wins
};

// A key under which two paths collide on case-insensitive file systems: ASCII case-folded.
// Used to refuse a second resource whose path aliases the first. No Unicode folding or
// normalisation (NFC vs NFD "é" get different keys): that needs ICU.
[[nodiscard]] std::string collision_key(std::string_view relative_path);

}  // namespace shardsync::client
