#pragma once
// What the followed collections hold under runs/{run}/, learnt from their Change Lists
// (found through the collection's Capability List; or the lists of its index) with conditional
// GETs, so a poll of an unchanged list costs one 304. Each entry keeps the sha-256 and length the
// change list gives: fetched bytes are checked against them. Not thread-safe.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "shardsync/result.hpp"
#include "transport.hpp"

namespace shardsync::bridge::detail {

struct Listed {
  std::string url;     // absolute
  std::string path;    // relative to the collection: "runs/{run}/..."
  std::string sha256;  // from the change list (may be empty when the source gave none)
  std::uint64_t length = 0;
  std::size_t collection = 0;  // index into the followed collections
};

class RunIndex {
 public:
  // `collections`: collection URLs without a trailing slash.
  RunIndex(std::vector<std::string> collections, std::string run_id);

  // Re-reads every changed Change List. An unreachable server is skipped (logged by the
  // transport) so that one dead worker's server does not stop the others; fails only when
  // none answers.
  [[nodiscard]] Result<void> refresh(Transport& transport);

  // The entry for `path` (relative to a collection), preferring collection `preferred`.
  [[nodiscard]] const Listed* find(const std::string& path, std::size_t preferred = SIZE_MAX) const;
  // Every entry whose path starts with `prefix`.
  [[nodiscard]] std::vector<Listed> under(const std::string& prefix) const;

  [[nodiscard]] const std::vector<std::string>& collections() const { return collections_; }

 private:
  struct ListState {
    std::string etag;
  };
  void absorb(const sitemap::Document& list, std::size_t collection);

  std::vector<std::string> collections_;
  std::string run_prefix_;
  std::map<std::string, ListState> lists_;  // by list URL
  std::vector<std::string> change_lists_;   // per collection, once discovered
  // path -> collection -> entry
  std::map<std::string, std::map<std::size_t, Listed>> entries_;
};

}  // namespace shardsync::bridge::detail
