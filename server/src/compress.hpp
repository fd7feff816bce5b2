#pragma once
// One-shot compression of rendered documents (they are served many times, compressed once).

#include <string>
#include <string_view>

namespace shardsync::server::detail {

// gzip (RFC 1952) at zlib level 6; empty on failure.
[[nodiscard]] std::string gzip_compress(std::string_view data);
// zstd at level 3; empty on failure.
[[nodiscard]] std::string zstd_compress(std::string_view data);

}  // namespace shardsync::server::detail
