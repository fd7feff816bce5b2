#pragma once
// Bearer tokens live in files (never on the command line, where `ps` shows them).

#include <cstddef>
#include <string>

#include "shardsync/result.hpp"

namespace shardsync::app {

// The first line of `path`, trailing CR and spaces removed; an error (for people) when the
// file cannot be read or the token is shorter than `min_length`.
[[nodiscard]] Result<std::string> read_token_file(const std::string& path,
                                                  std::size_t min_length = 1);

}  // namespace shardsync::app
