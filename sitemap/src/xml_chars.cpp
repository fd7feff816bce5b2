#include "xml_chars.hpp"

#include <cstring>

namespace shardsync::sitemap::detail {
namespace {

// True when any byte of `word` has its high bit set or is below 0x20 (SWAR "has less").
inline bool needs_slow_path(std::uint64_t word) {
  constexpr std::uint64_t kHigh = 0x8080808080808080ull;
  constexpr std::uint64_t kSpace = 0x2020202020202020ull;
  return ((word | ((word - kSpace) & ~word)) & kHigh) != 0;
}

}  // namespace

CharCheck check_xml_text(std::string_view bytes, std::size_t& valid) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  while (i < n) {
    // Plain ASCII text, 32 bytes at a time.
    while (i + 32 <= n) {
      std::uint64_t w[4];
      std::memcpy(w, p + i, 32);
      if (needs_slow_path(w[0]) || needs_slow_path(w[1]) || needs_slow_path(w[2]) ||
          needs_slow_path(w[3])) {
        break;
      }
      i += 32;
    }
    if (i >= n) break;
    if (i + 8 <= n) {
      std::uint64_t word;
      std::memcpy(&word, p + i, 8);
      if (!needs_slow_path(word)) {
        i += 8;
        continue;
      }
    }
    const unsigned char c = p[i];
    if (c < 0x80) {
      if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
        valid = i;
        return CharCheck::invalid;
      }
      ++i;
      continue;
    }
    std::size_t len;
    std::uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      valid = i;
      return CharCheck::invalid;  // continuation byte, overlong 2-byte lead, or > U+10FFFF
    }
    if (i + len > n) {
      // Check what is there so that garbage is not reported as merely incomplete.
      for (std::size_t k = i + 1; k < n; ++k) {
        if ((p[k] & 0xC0) != 0x80) {
          valid = i;
          return CharCheck::invalid;
        }
      }
      valid = i;
      return CharCheck::incomplete;
    }
    for (std::size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) {
        valid = i;
        return CharCheck::invalid;
      }
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
    if (overlong || !is_xml_char(cp)) {  // surrogates, U+FFFE/U+FFFF, > U+10FFFF
      valid = i;
      return CharCheck::invalid;
    }
    i += len;
  }
  valid = n;
  return CharCheck::ok;
}

std::size_t find_bad_reference(std::string_view text) {
  std::size_t pos = 0;
  while ((pos = text.find('&', pos)) != std::string_view::npos) {
    const std::string_view rest = text.substr(pos + 1);
    const auto semi = rest.find(';');
    if (semi == std::string_view::npos || semi == 0 || semi > 10) return pos;
    const std::string_view name = rest.substr(0, semi);
    if (name[0] == '#') {
      std::uint32_t value = 0;
      const bool hex = name.size() > 1 && name[1] == 'x';
      const std::string_view digits = name.substr(hex ? 2 : 1);
      if (digits.empty()) return pos;
      for (const char c : digits) {
        std::uint32_t d;
        if (c >= '0' && c <= '9') {
          d = static_cast<std::uint32_t>(c - '0');
        } else if (hex && c >= 'a' && c <= 'f') {
          d = static_cast<std::uint32_t>(c - 'a' + 10);
        } else if (hex && c >= 'A' && c <= 'F') {
          d = static_cast<std::uint32_t>(c - 'A' + 10);
        } else {
          return pos;
        }
        value = value * (hex ? 16u : 10u) + d;  // at most 8 digits: no overflow
      }
      if (!is_xml_char(value)) return pos;
    } else if (name != "lt" && name != "gt" && name != "amp" && name != "apos" && name != "quot") {
      return pos;
    }
    pos += semi + 2;
  }
  return std::string_view::npos;
}

}  // namespace shardsync::sitemap::detail
