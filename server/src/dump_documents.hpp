#pragma once
// The Site's side of dumps and archives: renders a collection's Resource Dump, Change Dump and
// archive documents from what the dump builder published, and registers the package files as
// resources, so they are served like any file (sendfile, Range, ETag). Also the document
// helpers of site.cpp that the dump builder renders manifests with.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/dumps.hpp"
#include "shardsync/server/site.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::server::detail {

// "<collection URL>.resourcesync/<kind>-archive.xml"; kind: resourcelist, resourcedump, ...
[[nodiscard]] std::string archive_url(const std::string& collection_url, std::string_view kind);
// "<collection URL>.resourcesync/dump/": where the dump files are served.
[[nodiscard]] std::string dump_url(const std::string& collection_url);
// Whether any retained Resource Dump kept the Resource List at its `at`.
[[nodiscard]] bool has_resource_list_archive(const CollectionDumps& dumps);

// Adds to `site` collection `c`'s dump documents and archives and its dump files (dumps may
// be null: none built yet); returns the Capability List entries that advertise them.
// `change_lists` are the Change Lists as Change List Index entries (closed ones have until).
[[nodiscard]] Result<std::vector<sitemap::Entry>> add_dump_documents(
    Site& site, const Collection& c, const std::string& base_url, const CollectionDumps* dumps,
    const std::vector<sitemap::Entry>& change_lists, std::int64_t modified_ns);

// From site.cpp: renders, compresses and tags a document.
[[nodiscard]] Result<std::shared_ptr<const ServedDocument>> render_document(
    const sitemap::DocumentHeader& header, const std::vector<sitemap::Entry>& entries,
    std::int64_t modified_ns, bool immutable);
// From site.cpp: a resource's Resource List entry (loc under `collection_url`).
[[nodiscard]] sitemap::Entry resource_entry(const std::string& collection_url,
                                            const ResourceState& state);

}  // namespace shardsync::server::detail
