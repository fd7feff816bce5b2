#pragma once
// Unpacks one ResourceSync dump package (a ZIP with `manifest.xml` at its top level, §11/§13)
// into the destination, guided by the manifest only (RELIABILITY.md §1.3 Z5–Z8):
//  - the package is opened with libzip's consistency checks (central directory against every
//    local header), and refused whole when it fails them, holds a name twice, has no
//    `manifest.xml`, a manifest over max_manifest_bytes or of the wrong capability, or a
//    manifest that differs from the advertised `contents` copy;
//  - each manifest entry's local path comes from its `<loc>` through the PathMapper, exactly
//    as for a fetch; a ZIP entry name never decides a path, and entries the manifest does
//    not name are never read;
//  - the entry named by `path` must be a regular file (not a directory, not a symlink or
//    other non-regular Unix mode) whose declared size is the manifest's `length`; its bytes
//    are inflated into a temp file beside the target, capped at that length (a bomb or a size
//    lie stops there), hashed as written, and the strongest listed hash (sha-256 > sha-1 >
//    md5) must match before the committer gives the file its name (fdatasync → rename, the
//    directories fsynced before unpack() returns). A failed entry leaves the existing file
//    untouched.
// Not thread-safe: one thread uses a DumpUnpacker (it starts committer threads while it runs).

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/client/dest_root.hpp"
#include "shardsync/client/local_path.hpp"
#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::client {

struct UnpackOptions {
  // Where the package came from: messages, and the base for relative `<loc>` values.
  std::string package_url;
  // The manifest copy the dump advertised (`rs:ln rel="contents"`), as fetched; it must
  // match the package's manifest (byte-equal, or the same document once parsed).
  std::optional<std::string> manifest_copy;
  // A Resource Dump package ("resourcedump-manifest") or a Change Dump one
  // ("changedump-manifest").
  sitemap::Capability manifest_capability = sitemap::Capability::resourcedump_manifest;
  // Bytes of manifest.xml (Sitemaps allow 50 MB).
  std::uint64_t max_manifest_bytes = 64ull << 20;
  // Committer threads (fdatasync + rename overlap with the next entry's inflation).
  int commit_threads = 2;
};

// What to do with a manifest entry whose path is mapped: the caller's policy.
struct UnpackHooks {
  // Which entries to act on (Change Dumps: only those after the cursor, the last per path).
  // Default: every entry. Entries not selected are neither extracted nor reported.
  std::function<bool(std::size_t index, const std::string& path, const sitemap::Entry&)> select;
  // An error refuses the entry (a path another resource already has). Default: none.
  std::function<std::optional<Error>(const std::string& path)> claim;
  // True when the local file already is this entry: it is then not extracted. Default: never.
  std::function<Result<bool>(const std::string& path, const sitemap::Entry&)> is_current;
  // Body bytes inflated so far (progress).
  std::function<void(std::uint64_t bytes)> on_bytes;
};

struct UnpackedEntry {
  enum class Outcome { extracted, current, deleted_change, failed };
  std::size_t index = 0;  // of the entry in UnpackReport::manifest.entries
  std::string url;        // the entry's resolved <loc>
  std::string path;       // local path; empty when the <loc> could not be mapped
  Outcome outcome = Outcome::failed;
  std::optional<Error> error;  // with Outcome::failed
  std::uint64_t bytes = 0;     // written (extracted)
  bool verified = false;       // a listed hash was checked
};

struct UnpackReport {
  sitemap::Document manifest;
  std::vector<UnpackedEntry> entries;     // one per selected manifest entry, in manifest order
  std::uint64_t ignored_zip_entries = 0;  // in the ZIP but not in the manifest (not read)
};

// Unpacks the ZIP open at `zip_fd` (the caller keeps its fd; it is dup()ed). Package-level
// refusals are errors (errc::bad_package) and change nothing in DEST; per-entry problems are
// Outcome::failed entries. In a Change Dump package only the last change of each path is
// acted on (entries are in forward chronological order, CDM1), and its `deleted` changes are
// reported as deleted_change, never touching the file system here; in a Resource Dump
// package a `change` attribute means nothing.
[[nodiscard]] Result<UnpackReport> unpack_package(int zip_fd, const UnpackOptions& options,
                                                  DestRoot& root, const PathMapper& mapper,
                                                  const UnpackHooks& hooks = {});

}  // namespace shardsync::client
