#pragma once
// The pure half of an incremental sync (no I/O, unit-tested): which Change Lists to read
// from a saved cursor, and what the changes in them amount to.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/sitemap/model.hpp"

namespace shardsync::client {

// One Change List as a Change List Index lists it.
struct ChangeListRef {
  std::string url;
  std::optional<sitemap::Timestamp> from;
  std::optional<sitemap::Timestamp> until;  // absent: the open list
};

struct ListSelection {
  std::vector<std::string> urls;  // in chronological order
  // Not empty: the source cannot bring the destination forward from the cursor (it no longer
  // retains those changes, or its lists leave a gap); a new baseline is needed.
  std::string rebaseline_reason;
};

// Lists are put in `from` order; those that end before the cursor are skipped (boundaries are
// inclusive). `earliest_from` is the index's own `from`: what the source still retains.
// Without a cursor every list is read.
[[nodiscard]] ListSelection select_change_lists(
    std::vector<ChangeListRef> lists, const std::optional<sitemap::Timestamp>& earliest_from,
    const std::optional<sitemap::Timestamp>& cursor);

// A change read from a list, already mapped to its local path.
struct MappedChange {
  std::string path;
  sitemap::Entry entry;  // has md with `change`
};

// When a change happened: its `datetime`, else its `lastmod` (older documents), else nullopt.
[[nodiscard]] std::optional<sitemap::Timestamp> change_time(const sitemap::Entry& entry);

struct ReducedChanges {
  std::vector<MappedChange> changes;         // one per path, the last; ordered by change time
  std::optional<sitemap::Timestamp> newest;  // the latest `datetime` seen (the next cursor)
};

// Keeps the changes whose `datetime` is at or after `cursor` (inclusive; changes without a
// `datetime` are always kept), orders them by change time (stable: document order breaks
// ties) and keeps the last change of each path: applying the result brings a destination
// that was in sync at `cursor` to the source's latest state, and doing it twice changes
// nothing more. `newest` is the latest `datetime` seen.
[[nodiscard]] ReducedChanges reduce_changes(std::vector<MappedChange> changes,
                                            const std::optional<sitemap::Timestamp>& cursor);

}  // namespace shardsync::client
