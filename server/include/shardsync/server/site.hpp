#pragma once
// What the HTTP layer serves: an immutable snapshot of every document (rendered, compressed,
// with its ETag) and of every published resource, built from the change log and swapped
// whole when the log changes (readers hold a shared_ptr<const Site>; no locks per request).
//
// URL layout, for base URL B (ending in '/') and a collection C:
//   B.well-known/resourcesync                Source Description (every collection)
//   B C/capabilitylist.xml                   Capability List of C
//   B C/.resourcesync/resourcelist.xml       Resource List (an index past list_entries)
//   B C/.resourcesync/resourcelist-00001.xml parts of that index
//   B C/.resourcesync/changelist.xml         Change List Index
//   B C/.resourcesync/changelist-00001.xml   Change Lists: closed ones, then the open one
//   B C/a/b.bin                              the file <dir of C>/a/b.bin (percent-encoded)
// and, with dumps enabled, the dump documents, packages and archives of dumps.hpp.

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/collection.hpp"
#include "shardsync/server/dumps.hpp"

namespace shardsync::server {

struct SiteOptions {
  std::string base_url;  // e.g. "http://127.0.0.1:8080/"; must end in '/'
  std::vector<Collection> collections;
  // Entries per Resource List part and per Change List (Sitemaps allow 50,000).
  std::uint64_t list_entries = 50'000;
  // Advertise the notification topics (notifier.hpp) in each Capability List.
  bool notifications = false;
  // Publish the archives (and, once built, the dumps in `dumps`) and link to them.
  bool archives = false;
  std::shared_ptr<const DumpCatalog> dumps;
};

struct ServedDocument {
  std::string body;                  // UTF-8 XML
  std::string gzip;                  // body gzip-compressed
  std::string zstd;                  // body zstd-compressed
  std::string etag;                  // strong ETag, quoted
  std::int64_t last_modified_s = 0;  // Unix seconds, for Last-Modified
  bool immutable = false;            // a closed Change List: its bytes never change again
  // The same three byte strings in sealed memfds, so they go out with sendfile(2) like
  // files (one copy fewer per request than write()); -1 where none could be made.
  int body_fd = -1, gzip_fd = -1, zstd_fd = -1;

  ServedDocument() = default;
  ~ServedDocument();
  ServedDocument(const ServedDocument&) = delete;
  ServedDocument& operator=(const ServedDocument&) = delete;
};

struct ServedResource {
  std::string collection;
  std::string absolute_path;  // the collection directory joined with the relative path
  ResourceState state;        // path (relative), length, hashes, mtime, type
  std::string etag;           // strong ETag from the sha-256, quoted
  std::string root;           // the directory state.path is under; empty: the collection's
};

struct Site {
  // Keys are decoded URL paths: "/.well-known/resourcesync", "/C/capabilitylist.xml",
  // "/C/.resourcesync/changelist.xml".
  std::unordered_map<std::string, std::shared_ptr<const ServedDocument>> documents;
  // Keys are "C/<relative path>" (decoded).
  std::unordered_map<std::string, ServedResource> resources;
  std::vector<Collection> collections;
  std::string base_url;
  // Per collection, the log position the documents were built at: {last change, first
  // retained change}. A rebuild reuses a collection whose position has not moved.
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> versions;
  // Per collection, the dumps the documents describe (a new dump means a rebuild too).
  std::map<std::string, std::shared_ptr<const CollectionDumps>> dumps;
};

// The Change List entry of `change`, for a collection whose resources live under
// `collection_url` (shared with the change notifications).
[[nodiscard]] sitemap::Entry change_entry(const std::string& collection_url, const Change& change);

// Builds the snapshot from the log. Closed Change Lists of `previous` are reused as they
// are (they are immutable), so a rebuild renders only what changed.
[[nodiscard]] Result<std::shared_ptr<const Site>> build_site(ChangeLog& log,
                                                             const SiteOptions& options,
                                                             const Site* previous = nullptr);

}  // namespace shardsync::server
