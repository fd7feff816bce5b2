#pragma once
// The durable change log of a source: for every collection, the current state of each
// published resource and the ordered list of changes that led there. SQLite in WAL mode under
// the state directory; every change is one transaction, so after a crash the log and the
// resource table agree. Change datetimes strictly increase, even when the wall clock steps
// back (each is max(now, previous + 1 ns), with the previous one stored in the database).
//
// Thread safety: one ChangeLog object per thread; SQLite serialises writers across objects.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::server {

// What the log knows of one published file.
struct ResourceState {
  std::string path;  // relative to the collection root, '/'-separated, not encoded
  std::uint64_t length = 0;
  std::string sha256;         // lower-case hex
  std::string md5;            // lower-case hex
  std::int64_t mtime_ns = 0;  // the file's modification time (the entry's <lastmod>)
  std::string type;           // media type
};

struct Change {
  std::uint64_t number = 0;  // 1, 2, 3, … within its collection, never reused
  std::string path;
  sitemap::ChangeType change = sitemap::ChangeType::created;
  std::int64_t datetime_ns = 0;  // strictly increasing across the whole log
  ResourceState state;           // the state after the change (length/hashes empty on delete)
};

// Where a collection's history starts: its creation, or the first change still retained.
struct CollectionInfo {
  std::string name;
  std::int64_t created_ns = 0;        // when the log first saw the collection
  std::int64_t earliest_from_ns = 0;  // changes before this are no longer retained
  std::uint64_t first_retained = 1;   // number of the oldest change still in the log
  std::uint64_t last_change = 0;      // number of the newest change (0: none yet)
  std::int64_t last_datetime_ns = 0;  // datetime of the newest change (created_ns when none)
};

// Cached digests of a file, keyed by what identifies its content without reading it.
struct FileKey {
  std::uint64_t device = 0;
  std::uint64_t inode = 0;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
};

class ChangeLog {
 public:
  // Where "now" comes from for change datetimes, in ns since the Unix epoch.
  using Clock = std::function<std::int64_t()>;

  // Opens or creates <state_dir>/changes.sqlite (WAL, synchronous=FULL), creating state_dir
  // if needed. Fails with errc::database for a file that is not this log (or a newer schema).
  [[nodiscard]] static Result<std::unique_ptr<ChangeLog>> open(const std::string& state_dir);
  // The same, with `now` instead of the system clock (tests step the clock back with it).
  [[nodiscard]] static Result<std::unique_ptr<ChangeLog>> open(const std::string& state_dir,
                                                               Clock now);
  ~ChangeLog();

  // Registers a collection (idempotent); its created_ns is set the first time.
  [[nodiscard]] Result<CollectionInfo> ensure_collection(const std::string& name);
  [[nodiscard]] Result<CollectionInfo> collection(const std::string& name);

  // Records a change and updates the current state in one transaction. For created/updated,
  // `state` is the new state; for deleted only state.path matters. A change that changes
  // nothing (same hashes, length and mtime as the current state; delete of an unknown path)
  // is not recorded and returns std::nullopt. created and updated are interchangeable: the
  // change is recorded as `updated` when the path has a current state, `created` otherwise.
  // An unregistered collection is an errc::invalid_config error.
  [[nodiscard]] Result<std::optional<Change>> record(const std::string& collection,
                                                     sitemap::ChangeType change,
                                                     const ResourceState& state);

  // The current state of one resource, or nullopt.
  [[nodiscard]] Result<std::optional<ResourceState>> resource(const std::string& collection,
                                                              const std::string& path);

  // Every current resource of a collection, ordered by path, read in one transaction
  // together with the collection info (a consistent snapshot).
  struct Snapshot {
    CollectionInfo info;
    std::vector<ResourceState> resources;
  };
  [[nodiscard]] Result<Snapshot> snapshot(const std::string& collection);

  // The current resources below the directory `prefix` (paths starting with prefix + '/'),
  // ordered by path: what a moved or deleted directory took with it.
  [[nodiscard]] Result<std::vector<ResourceState>> resources_under(const std::string& collection,
                                                                   const std::string& prefix);

  // Changes numbered [first, last] (inclusive) of a collection, in order; those pruned are
  // missing, and first > last gives none.
  [[nodiscard]] Result<std::vector<Change>> changes(const std::string& collection,
                                                    std::uint64_t first, std::uint64_t last);

  // Drops changes with datetime before `keep_from_ns`, but only whole blocks of
  // `block` changes (so closed change lists vanish whole): changes 1..k*block for the largest
  // such k. first_retained becomes k*block + 1 and earliest_from_ns the datetime of change
  // k*block (the `until` of the last list dropped). A block of 0 is errc::invalid_config.
  [[nodiscard]] Result<void> prune(const std::string& collection, std::int64_t keep_from_ns,
                                   std::uint64_t block);

  // The hash cache: digests by (device, inode, size, mtime).
  [[nodiscard]] Result<std::optional<std::pair<std::string, std::string>>> cached_hashes(
      const FileKey& key);  // {sha256, md5}
  [[nodiscard]] Result<void> cache_hashes(const FileKey& key, const std::string& sha256,
                                          const std::string& md5);

  // Groups many record()/cache_hashes() calls into one transaction (a first scan of 100,000
  // files). Nested calls join the outer transaction (as a savepoint: a nested batch that
  // fails is undone alone). On failure (of `work` or the commit) nothing of it is kept.
  [[nodiscard]] Result<void> batch(const std::function<Result<void>()>& work);

 private:
  struct Impl;
  explicit ChangeLog(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::server
