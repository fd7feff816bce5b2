#pragma once
// `shardsync sync` and `shardsync audit` as library calls: discover the set, then bring DEST
// to the source's state (baseline from the Resource List, or incremental from Change Lists
// past the saved cursor), or compare DEST with it. Fatal problems (no source, unreadable
// listing, unusable DEST) are errors; per-resource problems are listed in the report and the
// run goes on with the others.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::client {

struct SyncOptions {
  std::string source;      // base URL, Source Description, Capability List or list URL
  std::string dest;        // the destination root; created when missing
  std::string collection;  // which set, when the source has several
  // Remove local files the source deleted (incremental) or no longer lists (baseline).
  bool delete_files = false;
  // Refuse (make none) when more deletions than this would be made. Unset: a baseline that
  // would delete more than half of the local files makes none (a broken source is likelier
  // than a mass deletion); deletions a Change List names are not limited.
  std::optional<std::uint64_t> max_delete;
  int parallel = 8;          // transfers at once
  std::string bearer_token;  // for documents and resources
  bool force_baseline = false;
  // Baseline from the set's Resource Dump (ZIP packages unpacked by their manifests) instead
  // of one GET per resource; without a Resource Dump, from the Resource List (logged).
  bool via_dump = false;
  // Extra URL prefix → directory (relative to DEST) mappings, for sets that list resources
  // outside the Capability List's directory. The set's own directory always maps to DEST.
  std::vector<std::pair<std::string, std::string>> maps;
  // Retry policy (tests shorten these).
  int max_attempts = 4;
  int initial_backoff_ms = 250;
  int low_speed_seconds = 30;
  std::string ca_file;
  std::function<void(const std::string&)> log;  // one line per event, for stderr
};

struct SyncProgress {
  std::uint64_t files_total = 0, files_done = 0;
  std::uint64_t bytes_total = 0, bytes_done = 0;
};

struct ResourceFailure {
  std::string url;
  std::string path;  // empty when the URL could not be mapped
  Error error;
};

enum class SyncMode { baseline, incremental };

struct SyncReport {
  SyncMode mode = SyncMode::baseline;
  std::string rebaseline_reason;  // why an incremental run became a baseline
  std::string set_name;
  std::uint64_t listed = 0;      // resources (baseline) or changes (incremental) considered
  std::uint64_t fetched = 0;     // files downloaded and committed
  std::uint64_t up_to_date = 0;  // files already right
  std::uint64_t deleted = 0;
  std::uint64_t deletes_skipped = 0;  // deletions not made (no --delete, limit, or failures)
  std::string delete_refusal;         // why deletions were refused, when they were
  std::uint64_t bytes_fetched = 0;    // resource body bytes over the wire
  std::uint64_t bytes_resumed = 0;    // bytes kept from partial files
  std::uint64_t documents = 0;        // ResourceSync documents fetched
  std::uint64_t document_bytes = 0;
  std::uint64_t unverified = 0;  // resources listed without any hash
  std::vector<ResourceFailure> failures;
  double seconds = 0;

  [[nodiscard]] bool in_sync() const { return failures.empty() && delete_refusal.empty(); }
};

// Errors: what discovery, the destination or the listing returned (see errc.hpp).
[[nodiscard]] Result<SyncReport> sync(
    const SyncOptions& options, const std::function<void(const SyncProgress&)>& progress = {});

struct AuditDifference {
  enum class Kind { missing, length, hash, extra, unsafe };
  Kind kind;
  std::string path;
  std::string url;
  std::string detail;
};
[[nodiscard]] const char* audit_kind_name(AuditDifference::Kind kind);

struct AuditReport {
  std::string set_name;
  std::uint64_t listed = 0;   // resources the source has now
  std::uint64_t matched = 0;  // local files with the listed length and hash
  std::vector<AuditDifference> differences;
  double seconds = 0;
  [[nodiscard]] bool in_sync() const { return differences.empty(); }
};

// Compares DEST with the current Resource List plus the Change Lists after its `at`, by
// length and hash (every local file is read). Extra local files are differences too. Writes
// nothing in DEST (not even .shardsync/).
[[nodiscard]] Result<AuditReport> audit(const SyncOptions& options);

}  // namespace shardsync::client
