#pragma once
// Writes one dump package: a ZIP (libzip) whose first entry is manifest.xml, followed by one
// STORED entry per file (ZIP64 where libzip needs it: past 4 GiB or 65,535 entries). Every
// file is hashed while it is packed; bytes that differ from what the manifest says abort the
// package, so a published package never contradicts its manifest.
//
// Called on the dump builder's thread (or a test's); functions are reentrant.

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/dumps.hpp"

namespace shardsync::server::detail {

// One file to pack: `expected.path` beneath `root`, stored as `entry_name` (no leading '/').
struct PackItem {
  std::string entry_name;
  std::string root;
  ResourceState expected;  // length, sha256 and mtime_ns the bytes must have
};

// Called just before an item's bytes are read; false cancels the package (errc::io_error).
// The builder cancels a package when it stops; tests change files here.
using PackHook = std::function<bool(const PackItem&)>;

// Writes `directory`/`name` atomically (a temporary name, fsync, rename, fsync of the
// directory): manifest.xml holding `manifest` (dated `manifest_mtime_ns`, so that the same
// input gives the same bytes, and the same ETag, after a restart), then `items` in order. Fails
// with errc::changed_while_read when a file is missing or its bytes differ from `expected` (then
// nothing is left behind), errc::io_error otherwise.
[[nodiscard]] Result<DumpFile> write_package(const std::string& directory, const std::string& name,
                                             std::string_view manifest,
                                             std::int64_t manifest_mtime_ns,
                                             const std::vector<PackItem>& items,
                                             const PackHook& hook = {});

// Writes `bytes` to `directory`/`name` atomically, as write_package does.
[[nodiscard]] Result<DumpFile> write_dump_file(const std::string& directory,
                                               const std::string& name, std::string_view bytes);

// Bytes a package of `items` takes beyond their contents and the manifest (headers, central
// directory, ZIP64 records), an upper bound used to keep packages under a size.
[[nodiscard]] std::uint64_t package_overhead(std::string_view entry_name);

}  // namespace shardsync::server::detail
