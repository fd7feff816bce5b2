#pragma once
// Error codes of shardsync::sitemap (category "shardsync.sitemap").

#include <system_error>

namespace shardsync::sitemap {

enum class errc {
  malformed_xml = 1,     // not well-formed XML (pugixml or our framing found it)
  doctype_refused,       // <!DOCTYPE> or another markup declaration: sitemaps never need one
  limit_exceeded,        // document size, depth, entry count, entry size, attribute count
  invalid_utf8,          // bytes that are not UTF-8, or characters XML 1.0 forbids
  unsupported_encoding,  // a declaration or byte-order mark naming anything but UTF-8
  not_a_sitemap,         // root is not <urlset>/<sitemapindex> in the Sitemap namespace
  multiple_roots,        // a second top-level element
  duplicate_attribute,   // the same attribute twice on one element
  invalid_value,         // a datetime, integer, change or changefreq value that does not parse
  structure,             // e.g. two <loc> in one entry, <rs:md> on the root after entries
  truncated,             // input ended inside the document
  decompression_failed,  // corrupt gzip stream or trailing data
  io_error,              // reading or writing a file failed
};

const std::error_category& sitemap_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), sitemap_category()};
}

}  // namespace shardsync::sitemap

template <>
struct std::is_error_code_enum<shardsync::sitemap::errc> : std::true_type {};
