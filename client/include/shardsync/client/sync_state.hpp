#pragma once
// What a destination remembers between runs, in DEST/.shardsync/state.json: which source it
// mirrors and how far it got. Written crash-safely (temp file → fsync → rename → fsync of
// the directory), so after a crash it holds either the previous or the new state, never a
// mix. The cursor only moves when a run ended with every resource in sync, so a rerun after
// a failure or a kill redoes (cheaply: files already right are not fetched again) what was
// not confirmed.

#include <optional>
#include <string>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/timestamp.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::client {

struct SyncState {
  std::string source;  // SetEndpoints::identity() of the source mirrored
  // A baseline from the Resource List finished with every resource in sync.
  bool baseline_complete = false;
  std::optional<sitemap::Timestamp> baseline_at;  // the Resource List's `at`
  // Changes with a datetime at or after this are still to be applied (inclusive: several
  // changes may share one datetime, and applying a change twice is harmless).
  std::optional<sitemap::Timestamp> cursor;

  // How SOURCE (and --collection) resolved, so that a run with the same arguments goes
  // straight to the documents (discovery again only when they are gone).
  std::string source_argument, collection_argument;
  std::string set_name, base_url, resource_list_url, change_list_url;
  // Validators of the change documents read last: a run whose conditional GETs all come
  // back 304 has nothing to apply. Under an index, the open list read last is kept too.
  std::string change_list_etag;
  bool change_list_is_index = false;
  std::string open_list_url, open_list_etag;
};

// The open state directory of one destination, locked (flock) for the lifetime of this
// object so that two syncs into one DEST cannot interleave.
class StateStore {
 public:
  // Opens or creates `.shardsync/` under `root_fd` (never through a symlink) and takes the
  // lock; errc::io_error when another process holds it or the directory cannot be made.
  [[nodiscard]] static Result<StateStore> open(int root_fd);

  // nullopt when no state was ever saved; errc::state_corrupt when it cannot be parsed.
  [[nodiscard]] Result<std::optional<SyncState>> load() const;
  [[nodiscard]] Result<void> save(const SyncState& state) const;

 private:
  explicit StateStore(UniqueFd dir, UniqueFd lock) : dir_(std::move(dir)), lock_(std::move(lock)) {}
  UniqueFd dir_;
  UniqueFd lock_;
};

}  // namespace shardsync::client
