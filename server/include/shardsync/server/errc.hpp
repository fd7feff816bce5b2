#pragma once
// Error codes of shardsync::server (category "shardsync.server").

#include <system_error>

namespace shardsync::server {

enum class errc {
  database = 1,        // SQLite failed (the detail has its message)
  io_error,            // a file or directory could not be read, written or watched
  invalid_config,      // options or config file that cannot work
  network,             // binding, accepting, TLS set-up
  changed_while_read,  // a file changed while it was hashed: try again later
  unsafe_path,         // a path that is reserved, escapes the collection or is unsafe
  already_exists,      // a create-only publish (If-None-Match: *) of a path that exists
};

const std::error_category& server_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), server_category()};
}

}  // namespace shardsync::server

template <>
struct std::is_error_code_enum<shardsync::server::errc> : std::true_type {};
