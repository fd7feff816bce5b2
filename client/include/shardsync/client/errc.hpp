#pragma once
// Error codes of shardsync::client (category "shardsync.client").

#include <system_error>

namespace shardsync::client {

enum class errc {
  unsafe_path = 1,   // a URL that would map outside DEST, or onto a reserved or unsafe name
  path_collision,    // two resources map to one local path
  outside_source,    // a URL not under the source's base (other scheme, host, port or path)
  http_status,       // the server answered with an error status (the detail has it)
  transfer_failed,   // no usable response: connection, timeout, truncated body
  length_mismatch,   // the body's length is not the listed length
  hash_mismatch,     // the body's digest is not the listed digest
  disk_full,         // ENOSPC or EDQUOT while writing: free space and run again
  io_error,          // another local file-system error
  bad_document,      // a document that cannot be parsed or is of the wrong type
  discovery_failed,  // no Capability List could be found from SOURCE
  ambiguous_source,  // several sets and no --collection (the detail lists them)
  state_corrupt,     // DEST/.shardsync/ cannot be read
  source_changed,    // DEST mirrors another source than the one given
  delete_limit,      // more deletions than --max-delete: none were made
  not_retained,      // the source no longer has changes back to the saved point
  invalid_options,   // options that cannot work
  bad_package,       // a dump package (ZIP) that is unreadable, inconsistent or unlike its manifest
};

const std::error_category& client_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), client_category()};
}

}  // namespace shardsync::client

template <>
struct std::is_error_code_enum<shardsync::client::errc> : std::true_type {};
