#pragma once
// Character-level checks pugixml does not make: UTF-8 validity, the characters XML 1.0
// forbids, and references that name no predefined entity or a forbidden character.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace shardsync::sitemap::detail {

// XML 1.0 Char production, for a decoded code point.
constexpr bool is_xml_char(std::uint32_t c) {
  return c == 0x9 || c == 0xA || c == 0xD || (c >= 0x20 && c <= 0xD7FF) ||
         (c >= 0xE000 && c <= 0xFFFD) || (c >= 0x10000 && c <= 0x10FFFF);
}

enum class CharCheck { ok, incomplete, invalid };

// Checks `bytes` for well-formed UTF-8 whose code points are all XML Chars.
// `valid` receives the length of the longest checked prefix; a result of `incomplete`
// means the bytes end inside a multi-byte sequence (call again with more data).
CharCheck check_xml_text(std::string_view bytes, std::size_t& valid);

// Checks every '&' in `text` (character data or a start tag, not a comment or CDATA):
// it must begin &lt; &gt; &amp; &apos; &quot; or a character reference to an XML Char.
// Returns the offset of the first bad '&', or npos.
std::size_t find_bad_reference(std::string_view text);

}  // namespace shardsync::sitemap::detail
