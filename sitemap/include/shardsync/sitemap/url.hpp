#pragma once
// Percent-encoding of resource paths in <loc> URLs (RFC 3986).

#include <optional>
#include <string>
#include <string_view>

namespace shardsync::sitemap {

// Encodes a relative file path ("a b/c#.bin") for use after a base URL ("a%20b/c%23.bin"):
// every byte but unreserved characters and the '/' separators is percent-encoded.
[[nodiscard]] std::string encode_path(std::string_view path);

// Decodes %XX sequences exactly once. std::nullopt for a malformed escape ("%4", "%zz").
[[nodiscard]] std::optional<std::string> decode_percent(std::string_view text);

}  // namespace shardsync::sitemap
