#pragma once
// The sync engine's dump path (`shardsync sync --via-dump`): a baseline from the set's
// Resource Dump instead of GETting every resource of the Resource List (ResourceSync §5.2:
// "GET the packages, unpack them, and let the manifest's loc values name the files"), and
// an incremental run's catch-up from the Change Dump before the Change Lists.
//
// Packages are fetched with the Downloader (parallel, resumable, length and hash checked
// when the dump lists them) into DEST/.shardsync/dumps/: libzip needs a seekable file with
// its central directory, so a package is unpacked only once it is whole on disk, then
// removed. At most `parallel` packages are on disk at once. Engine policy (which files are
// current, path collisions, failures, progress) comes in through DumpContext.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/client/dest_root.hpp"
#include "shardsync/client/dump_package.hpp"
#include "shardsync/client/local_path.hpp"
#include "shardsync/client/sync.hpp"
#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::client::detail {

struct DumpContext {
  const SyncOptions& options;
  DestRoot& root;
  const PathMapper& mapper;
  // A ResourceSync document of one of `types`, on the source's host.
  std::function<Result<sitemap::Document>(const std::string& url,
                                          std::initializer_list<sitemap::DocumentType> types)>
      get_document;
  // The raw body of a document on the source's host (the advertised manifest copies).
  std::function<Result<std::string>(const std::string& url)> get_bytes;
  // claim / is_current / on_bytes for the unpacker.
  UnpackHooks hooks;
  // Package bytes over the wire (the report's bytes_fetched), and package sizes once known.
  std::function<void(std::uint64_t bytes)> on_package_bytes;
  std::function<void(std::uint64_t bytes)> on_package_listed;
  // Every selected manifest entry's outcome, with its manifest entry.
  std::function<void(const UnpackedEntry&, const sitemap::Entry&)> on_entry;
  // A package that could not be fetched or was refused whole.
  std::function<void(const std::string& url, Error error)> on_package_failed;
  std::function<void(const std::string&)> log;
};

struct DumpBaseline {
  std::optional<sitemap::Timestamp> at;  // the Resource Dump's (or its index's) `at`
  // Local paths of every resource the unpacked manifests list (failed ones included).
  std::vector<std::string> listed;
  std::uint64_t packages = 0;
};

// Reads the Resource Dump (or Resource Dump Index) at `url` and unpacks every package.
// Errors: the dump document itself (fetch, parse, type) or DEST/.shardsync/dumps unusable;
// per-package and per-resource problems go to the context's callbacks.
[[nodiscard]] Result<DumpBaseline> baseline_from_dump(const DumpContext& context,
                                                      const std::string& url);

struct DumpChanges {
  // The latest point the applied packages cover (their `until`, else their newest change):
  // the cursor to continue from with Change Lists. nullopt: no package was applied.
  std::optional<sitemap::Timestamp> newest;
  std::uint64_t packages = 0;
};

// Applies the packages of the Change Dump (or Change Dump Index) at `url` whose interval
// reaches `cursor` or later, in `from` order; within a package only changes at or after
// `cursor` (inclusive, as Change Lists are read). Deletions are reported to on_entry as
// deleted_change for the caller to make. Stops at the first package that fails (later
// changes must not be recorded as applied past a gap).
[[nodiscard]] Result<DumpChanges> changes_from_dump(
    const DumpContext& context, const std::string& url,
    const std::optional<sitemap::Timestamp>& cursor);

}  // namespace shardsync::client::detail
