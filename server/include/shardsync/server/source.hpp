#pragma once
// The source side at run time: the change log, one scanner and one watcher per collection,
// and the current Site snapshot. A background thread turns file-system events and periodic
// rescans into logged changes and swaps in a rebuilt Site after each burst of changes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/collection.hpp"
#include "shardsync/server/dumps.hpp"
#include "shardsync/server/http_server.hpp"
#include "shardsync/server/scanner.hpp"
#include "shardsync/server/site.hpp"

namespace shardsync::server {

struct SourceOptions {
  std::vector<Collection> collections;
  std::string state_dir;                          // holds changes.sqlite
  std::uint64_t list_entries = 50'000;            // per Resource List part / Change List
  std::chrono::seconds rescan_interval{300};      // full rescans catch what inotify missed
  std::optional<std::chrono::seconds> retention;  // drop changes older than this (whole lists)
  // The longest a burst of events may settle before the rebuild; it ends sooner, once the
  // watchers have been quiet for 3 ms (a lone file is published within milliseconds).
  std::chrono::milliseconds rebuild_delay{50};
  ScanOptions scan;
  // Called on the Source's thread after each rebuild, with the new and the previous snapshot
  // (nullptr on the first): the notifier's hook. Must not call back into the Source.
  std::function<void(const std::shared_ptr<const Site>&, const Site*)> on_rebuild;
  // Advertise the notification channels in the Capability Lists (SiteOptions::notifications).
  bool notifications = false;
  DumpOptions dumps;  // Resource/Change Dumps and archives (off by default)
};

class Source {
 public:
  // Opens the log, registers the collections and scans each (hashing only what the hash
  // cache does not know). Fails on an unusable directory or state directory.
  [[nodiscard]] static Result<std::unique_ptr<Source>> open(SourceOptions options, Metrics& metrics,
                                                            LogSink log);
  ~Source();

  // Builds the Site for `base_url` (ending in '/') and starts watching. Call once.
  [[nodiscard]] Result<void> start(const std::string& base_url);
  // Stops the watcher thread; the log is consistent at every point anyway.
  void stop();

  // The current snapshot (nullptr before start()). Any thread; cheap.
  [[nodiscard]] std::shared_ptr<const Site> site() const;

  // PUT/DELETE hooks for the HTTP server: files land in the collections and are logged
  // at once; the Site is rebuilt shortly after (as for any change).
  [[nodiscard]] PublishHooks publish_hooks();

  // Applies pending events and rescans now and rebuilds the Site if anything changed
  // (what the background thread does; tests call it to avoid waiting).
  [[nodiscard]] Result<void> refresh();

 private:
  struct Impl;
  explicit Source(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::server
