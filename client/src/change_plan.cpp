#include "shardsync/client/change_plan.hpp"

#include <algorithm>
#include <cstdint>
#include <unordered_map>

namespace shardsync::client {

ListSelection select_change_lists(std::vector<ChangeListRef> lists,
                                  const std::optional<sitemap::Timestamp>& earliest_from,
                                  const std::optional<sitemap::Timestamp>& cursor) {
  ListSelection selection;
  std::stable_sort(lists.begin(), lists.end(), [](const ChangeListRef& a, const ChangeListRef& b) {
    if (!a.from || !b.from) return b.from.has_value() && !a.from.has_value();
    return *a.from < *b.from;
  });
  if (cursor) {
    std::optional<sitemap::Timestamp> retained = earliest_from;
    if (!lists.empty() && lists.front().from && (!retained || *lists.front().from > *retained)) {
      retained = lists.front().from;
    }
    if (retained && *retained > *cursor) {
      selection.rebaseline_reason =
          "the source retains changes from " + sitemap::format_w3c_datetime(*retained) +
          " only; this mirror is at " + sitemap::format_w3c_datetime(*cursor);
      return selection;
    }
  }
  const ChangeListRef* previous = nullptr;
  for (const auto& list : lists) {
    if (cursor && list.until && *list.until < *cursor) continue;
    if (previous && previous->until && list.from && *previous->until != *list.from) {
      selection.rebaseline_reason = "the source's change lists leave a gap between " +
                                    sitemap::format_w3c_datetime(*previous->until) + " and " +
                                    sitemap::format_w3c_datetime(*list.from);
      selection.urls.clear();
      return selection;
    }
    selection.urls.push_back(list.url);
    previous = &list;
  }
  return selection;
}

std::optional<sitemap::Timestamp> change_time(const sitemap::Entry& entry) {
  if (entry.md && entry.md->datetime) return entry.md->datetime;
  return entry.lastmod;
}

ReducedChanges reduce_changes(std::vector<MappedChange> changes,
                              const std::optional<sitemap::Timestamp>& cursor) {
  ReducedChanges result;
  // Only a `datetime` says when a change happened; a `lastmod` (all that older documents
  // give) is the resource's own time, which can precede the change, so such changes are
  // always applied (idempotent, and cheap for files already right).
  std::erase_if(changes, [&](const MappedChange& c) {
    const auto& md = c.entry.md;
    return cursor && md && md->datetime && *md->datetime < *cursor;
  });
  // Sort keys: a change without any time takes the time of the change before it in the
  // document, so it stays where the document put it relative to its neighbours.
  std::vector<std::pair<sitemap::Timestamp, std::size_t>> keys;
  keys.reserve(changes.size());
  sitemap::Timestamp previous = cursor.value_or(sitemap::Timestamp{INT64_MIN / 2, 0});
  for (std::size_t i = 0; i < changes.size(); ++i) {
    if (const auto t = change_time(changes[i].entry)) previous = *t;
    keys.emplace_back(previous, i);
  }
  std::stable_sort(keys.begin(), keys.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<MappedChange> ordered;
  ordered.reserve(changes.size());
  for (const auto& [key, index] : keys) ordered.push_back(std::move(changes[index]));
  changes = std::move(ordered);
  std::unordered_map<std::string, std::size_t> last;  // path -> index of its last change
  for (std::size_t i = 0; i < changes.size(); ++i) {
    last[changes[i].path] = i;
    const auto& md = changes[i].entry.md;
    if (md && md->datetime && (!result.newest || *md->datetime > *result.newest)) {
      result.newest = md->datetime;
    }
  }
  for (std::size_t i = 0; i < changes.size(); ++i) {
    if (last[changes[i].path] == i) result.changes.push_back(std::move(changes[i]));
  }
  return result;
}

}  // namespace shardsync::client
