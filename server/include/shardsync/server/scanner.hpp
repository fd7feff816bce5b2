#pragma once
// Brings the change log in line with a collection's directory: a full scan (at start-up and
// periodically), and a check of single paths (after a file-system event).
//
// Only regular files are published. Symlinks are never followed or published; neither are
// reserved paths (collection.hpp), names that are not valid UTF-8 or contain control
// characters or backslashes. Each refusal is reported once per scan through `log`.
// A file is hashed (sha-256 and md5 in one pass) only when the hash cache does not know its
// (device, inode, size, mtime); it is published only if it did not change while being hashed
// and only while no one has it open for writing (asked of the kernel with a read lease; where
// that cannot be asked, once it has been left alone for `settle_ns`). A file still being
// written is not published torn; its close is reported by the watcher.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/collection.hpp"

namespace shardsync::server {

// One line for people ("refused a/capabilitylist.xml: reserved name").
using LogSink = std::function<void(std::string_view level, std::string_view message)>;

struct ScanOptions {
  // A file modified less than this long ago is left for a later scan (or its close event).
  std::int64_t settle_ns = 2'000'000'000;
  // Ask the kernel whether a file is open for writing (a read lease, fcntl F_SETLEASE) before
  // publishing it; the settle time decides only where leases are unavailable (files owned by
  // another user without CAP_LEASE, network file systems).
  bool use_leases = true;
  // Hashing reads in blocks of this size.
  std::size_t read_block = 1 << 20;
};

struct ScanStats {
  std::uint64_t files = 0;       // regular files seen
  std::uint64_t hashed = 0;      // files read and hashed
  std::uint64_t cache_hits = 0;  // files whose digests came from the hash cache
  std::uint64_t bytes_hashed = 0;
  std::uint64_t created = 0, updated = 0, deleted = 0;
  std::uint64_t refused = 0;    // symlinks, reserved or unsafe names
  std::uint64_t unsettled = 0;  // left for later: still being written
  std::uint64_t settling = 0;   // of those, the ones waiting out settle_ns (no lease to ask)
};

// The media type published for a file, by its extension (application/octet-stream when
// unknown: checkpoint and shard formats have no registered type).
[[nodiscard]] std::string media_type_of(std::string_view path);

class Scanner {
 public:
  Scanner(Collection collection, ChangeLog& log, ScanOptions options = {}, LogSink sink = {});

  // Walks the whole directory; records created/updated files and deletes of files gone.
  // The first scan, which must run before uploads are taken, also removes upload temp files
  // that no process has open for writing (left by a server killed mid-upload).
  [[nodiscard]] Result<ScanStats> scan();

  // Re-checks one relative path after an event: records created/updated/deleted as the file
  // now is. `closed` says the writer closed it (no settle time needed). A directory path
  // re-checks everything below it.
  [[nodiscard]] Result<ScanStats> check(const std::string& relative_path, bool closed);

 private:
  struct Run;  // the state of one scan() or check() (scanner.cpp)

  // What a file not yet settled looked like when first seen so: a file whose mtime cannot be
  // trusted (in the future after the wall clock stepped back) settles once it has stayed the
  // same for settle_ns of steady time.
  struct Unsettled {
    FileKey key;
    std::int64_t ctime_ns = 0;
    std::chrono::steady_clock::time_point since;
    std::uint64_t scan = 0;  // the last scan() that saw it; older entries are dropped
  };

  Collection collection_;
  ChangeLog& log_;
  ScanOptions options_;
  LogSink sink_;
  std::unordered_map<std::string, Unsettled> unsettled_;
  std::uint64_t scans_ = 0;
};

}  // namespace shardsync::server
