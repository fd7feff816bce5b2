#pragma once
// Builds Resource Dumps and Change Dumps in the background, never per request.
//
// A Resource Dump is built from one consistent snapshot of the change log (every file's path,
// length and sha-256 at one log position) once the collection has been quiet for
// DumpOptions::delay; a file that changed since (its bytes no longer hash as logged) abandons
// that build, which is tried again later. A Change Dump package is built for each closed
// Change List as soon as it closes; the log keeps only the newest bytes of a file, so a list
// holding a change whose file has changed again since cannot be packed truthfully: it gets no
// package (and a log line saying why).
//
// Packages go to <state_dir>/dumps/<C>/ under temporary names and are renamed into place when
// complete; the previous dump stays published until the new one is, then its files are
// deleted (readers that opened them keep reading). What is published is saved in
// <dump dir>/catalog.json (dump_catalog_file.hpp): a restart serves it again, and packs anew
// only if the log has moved.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "dump_catalog_file.hpp"
#include "dump_packer.hpp"
#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/collection.hpp"
#include "shardsync/server/dumps.hpp"
#include "shardsync/server/scanner.hpp"

namespace shardsync::server::detail {

// Where one collection's dumps go and the URLs their manifests give.
struct DumpTarget {
  Collection collection;
  std::string base_url;   // ending in '/'
  std::string directory;  // <state_dir>/dumps/<C>, existing

  [[nodiscard]] std::string collection_url() const { return base_url + collection.name + "/"; }
  [[nodiscard]] std::string capability_list_url() const;
};

// Packs `snapshot` as a Resource Dump under `target`: packages of at most options.package_size
// bytes (a larger file alone) and options.package_entries files, their manifest copies and the
// Resource List at the same `at`. On failure nothing of it is left behind;
// errc::changed_while_read when a file changed since the snapshot.
[[nodiscard]] Result<ResourceDump> build_resource_dump(const DumpTarget& target,
                                                       const ChangeLog::Snapshot& snapshot,
                                                       const DumpOptions& options,
                                                       const PackHook& hook = {});

// Packs Change List `list` (its `changes`, oldest first, after `from_ns`) as one Change Dump
// package with a bitstream per created/updated change at /changes/<number>/<path>.
// errc::changed_while_read when a change's file no longer has the logged bytes.
[[nodiscard]] Result<ChangeDump> build_change_dump(const DumpTarget& target, std::uint64_t list,
                                                   std::int64_t from_ns,
                                                   const std::vector<Change>& changes,
                                                   const PackHook& hook = {});

// Deletes the files of a dump (missing ones are fine).
void remove_files(const std::string& directory, const ResourceDump& dump);
void remove_files(const std::string& directory, const ChangeDump& dump);

struct DumpBuilderOptions {
  DumpOptions dumps;
  std::string state_dir;
  std::vector<Collection> collections;
  std::string base_url;                 // ending in '/'
  std::uint64_t list_entries = 50'000;  // the Change List size, as the Site uses it
  LogSink log;
  // Called on the builder's thread after the catalog changed; the Site must serve the new
  // catalog when it returns (the replaced dump's files are deleted next).
  std::function<void()> on_publish;
  PackHook hook;  // tests: called before each file is packed
};

class DumpBuilder {
 public:
  // Opens its own connection to the change log and loads what was published before (files in
  // <state_dir>/dumps/<C>/ that no saved dump lists are deleted).
  [[nodiscard]] static Result<std::unique_ptr<DumpBuilder>> open(DumpBuilderOptions options);
  ~DumpBuilder();  // stops the thread

  void start();   // the background thread: run_once() on each notify() and every 250 ms
  void stop();    // cancels a package being written and joins; idempotent
  void notify();  // the log changed

  // What is published now; any thread.
  [[nodiscard]] std::shared_ptr<const DumpCatalog> catalog() const;

  // Builds what is due now: change dumps for newly closed lists, and a Resource Dump for a
  // collection that moved and has been quiet for the delay (`ignore_delay`: regardless).
  // Returns whether the catalog changed. Not concurrently with the thread.
  [[nodiscard]] Result<bool> run_once(bool ignore_delay = false);

 private:
  struct CollectionState {
    DumpTarget target;
    std::optional<std::uint64_t> dumped;  // last_change the newest Resource Dump is at
    std::chrono::steady_clock::time_point retry_after{};
    std::set<std::uint64_t> lists_done;  // Change Lists packed or found unpackable
  };

  explicit DumpBuilder(DumpBuilderOptions options);
  void run();
  Result<SavedDumps> load(const std::string& directory) const;
  void say(std::string_view level, const std::string& message) const;

  DumpBuilderOptions options_;
  std::unique_ptr<ChangeLog> log_;
  std::vector<CollectionState> states_;

  mutable std::mutex catalog_mutex_;
  std::shared_ptr<const DumpCatalog> catalog_ = std::make_shared<DumpCatalog>();

  std::mutex wake_mutex_;
  std::condition_variable wake_;
  bool woken_ = false;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
};

}  // namespace shardsync::server::detail
