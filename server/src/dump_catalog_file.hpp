#pragma once
// What a collection has published as dumps, kept in <dump dir>/catalog.json so that a restart
// serves the same packages instead of packing the whole collection again (and keeps the
// Change Dumps of lists whose files have changed since: those could not be packed again).
//
// The file is replaced atomically after the packages it names are durable and before the
// files it no longer names are deleted, so after a crash it names only complete files; files
// it does not name are leftovers and are deleted when it is loaded.

#include <cstdint>
#include <set>
#include <string>

#include "shardsync/result.hpp"
#include "shardsync/server/dumps.hpp"

namespace shardsync::server::detail {

struct SavedDumps {
  CollectionDumps dumps;               // dumps.directory is not saved: the loader sets it
  std::set<std::uint64_t> lists_done;  // Change Lists packed or found unpackable
};

inline constexpr std::string_view kCatalogFileName = "catalog.json";

// Writes `saved` to <directory>/catalog.json atomically.
[[nodiscard]] Result<void> save_dumps(const std::string& directory, const SavedDumps& saved);

// Reads <directory>/catalog.json (none: nothing saved) and keeps the dumps whose files are all
// there with their recorded lengths; deletes every other file in `directory` (but a
// catalog.json.bad). `dropped` counts the dumps left out. A catalog that cannot be parsed is
// an errc::io_error, and nothing is deleted then.
[[nodiscard]] Result<SavedDumps> load_dumps(const std::string& directory, std::size_t& dropped);

}  // namespace shardsync::server::detail
