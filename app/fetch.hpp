#pragma once
// Reads a document named on the command line: a local file, or an http(s) URL fetched with
// libcurl (redirects followed, gzip accepted, size capped).

#include <string>

#include "shardsync/result.hpp"

namespace shardsync::app {

[[nodiscard]] bool is_url(const std::string& target);

// Fetches `url` into memory; at most `max_bytes` of body. HTTP errors (>= 400) are errors.
[[nodiscard]] Result<std::string> fetch_url(const std::string& url, std::size_t max_bytes);

}  // namespace shardsync::app
