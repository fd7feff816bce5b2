#pragma once
// Writes a list of any length as ResourceSync documents on disk: one document while it fits
// the Sitemap limits (50,000 entries, 50 MiB), otherwise parts plus a <sitemapindex> over
// them, each part linked to the index (rel="index") and to the Capability List (rel="up").
// Memory stays constant; nothing appears under a final name until finish() succeeds.

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::sitemap {

struct SplitWriterOptions {
  // Directory the files are written to; it must exist.
  std::string directory;
  // <name>.xml is the document (or the index when split); parts are <name>-00001.xml, ….
  std::string name = "resourcelist";
  // Public URL of `directory`, ending in '/': the base of each part's <loc> and of the
  // index href. Required.
  std::string base_url;
  // Entries per document (Sitemaps: at most 50,000).
  std::uint64_t max_entries = 50'000;
  // Bytes per document, uncompressed (Sitemaps: 50 MiB = 52,428,800).
  std::uint64_t max_bytes = 52'428'800;
};

struct SplitResult {
  std::string document_path;       // <directory>/<name>.xml
  bool indexed = false;            // true: document_path is a <sitemapindex>
  std::vector<std::string> parts;  // part paths when indexed
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;  // all files written
};

class SplitWriter {
 public:
  explicit SplitWriter(SplitWriterOptions options);
  ~SplitWriter();
  SplitWriter(const SplitWriter&) = delete;
  SplitWriter& operator=(const SplitWriter&) = delete;

  // `header` describes the whole list: a <urlset> header of a snapshot document (`at`) or a
  // change document (`from`, and `until` if closed). Parts of a change list are closed at
  // the time of their last entry and the next part starts there.
  [[nodiscard]] Result<void> begin(const DocumentHeader& header);
  // Change documents take entries in forward chronological order only.
  [[nodiscard]] Result<void> add(const Entry& entry);
  // Publishes: parts first, then the document or index; removes parts of an earlier, longer
  // list under the same name.
  [[nodiscard]] Result<SplitResult> finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace shardsync::sitemap
