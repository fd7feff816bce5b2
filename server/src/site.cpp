#include "shardsync/server/site.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "compress.hpp"
#include "dump_documents.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/sitemap/url.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::server {
namespace {

using sitemap::Capability;
using sitemap::DocumentHeader;
using sitemap::Entry;
using sitemap::Timestamp;

constexpr std::int64_t kNanos = 1'000'000'000;

std::string numbered(std::string_view stem, std::uint64_t number) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05llu.xml", static_cast<unsigned long long>(number));
  return std::string(stem) + suffix;
}

// A sealed memfd holding `bytes` (-1 on failure: the document is then sent from memory).
int sealed_memfd(std::string_view bytes) {
  const int fd = ::memfd_create("shardsync-document", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return -1;
  while (!bytes.empty()) {
    const ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      return -1;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
  return fd;
}

// Renders, compresses and tags one document.
Result<std::shared_ptr<const ServedDocument>> serve(const DocumentHeader& header,
                                                    const std::vector<Entry>& entries,
                                                    std::int64_t modified_ns, bool immutable) {
  auto rendered = sitemap::write_document(header, entries);
  if (!rendered) return fail(rendered.error());
  std::string body = std::move(*rendered);

  auto doc = std::make_shared<ServedDocument>();
  sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256});
  hasher.update(body);
  doc->etag =
      "\"" + std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256).substr(0, 32)) + "\"";
  doc->gzip = detail::gzip_compress(body);
  doc->zstd = detail::zstd_compress(body);
  doc->body = std::move(body);
  doc->body_fd = sealed_memfd(doc->body);
  doc->gzip_fd = doc->gzip.empty() ? -1 : sealed_memfd(doc->gzip);
  doc->zstd_fd = doc->zstd.empty() ? -1 : sealed_memfd(doc->zstd);
  doc->last_modified_s = modified_ns / kNanos;
  doc->immutable = immutable;
  return std::shared_ptr<const ServedDocument>(std::move(doc));
}

Entry resource_entry(const std::string& base, const ResourceState& r) {
  Entry e;
  e.loc = base + sitemap::encode_path(r.path);
  e.lastmod = Timestamp::from_unix_ns(r.mtime_ns);
  e.md.emplace();
  if (!r.sha256.empty()) e.md->hash.set(sitemap::HashAlgorithm::sha256, r.sha256);
  if (!r.md5.empty()) e.md->hash.set(sitemap::HashAlgorithm::md5, r.md5);
  e.md->length = r.length;
  e.md->type = r.type;
  return e;
}

class SiteBuilder {
 public:
  SiteBuilder(ChangeLog& log, const SiteOptions& options, const Site* previous)
      : log_(log), options_(options), previous_(previous) {}

  Result<std::shared_ptr<const Site>> build() {
    if (options_.base_url.empty() || options_.base_url.back() != '/') {
      return fail(errc::invalid_config, "base URL must end in '/': " + options_.base_url);
    }
    if (options_.list_entries == 0) return fail(errc::invalid_config, "list_entries is 0");
    site_->base_url = options_.base_url;
    site_->collections = options_.collections;
    std::int64_t newest_ns = 0;
    for (const Collection& c : options_.collections) {
      auto info = collection(c);
      if (!info) return fail(info.error());
      newest_ns = std::max(newest_ns, *info);
    }
    return source_description(newest_ns);
  }

 private:
  std::string collection_url(const Collection& c) const { return options_.base_url + c.name + "/"; }
  std::string documents_url(const Collection& c) const {
    return collection_url(c) + std::string(kDocumentsDirectory) + "/";
  }
  std::string capability_list_url(const Collection& c) const {
    return collection_url(c) + std::string(kCapabilityListName);
  }
  std::string source_description_url() const {
    return options_.base_url + ".well-known/resourcesync";
  }
  static std::string document_key(const Collection& c, std::string_view name) {
    return "/" + c.name + "/" + std::string(kDocumentsDirectory) + "/" + std::string(name);
  }

  // Builds one collection's documents and resource entries; returns its newest time.
  Result<std::int64_t> collection(const Collection& c) {
    auto snapshot = log_.snapshot(c.name);
    if (!snapshot) return fail(snapshot.error());
    const CollectionInfo& info = snapshot->info;
    const std::pair version{info.last_change, info.first_retained};
    site_->versions[c.name] = version;
    dumps_ = nullptr;
    if (options_.dumps) {
      const auto it = options_.dumps->find(c.name);
      if (it != options_.dumps->end()) dumps_ = it->second;
    }
    site_->dumps[c.name] = dumps_;
    if (previous_ && reuse(c, version)) return info.last_datetime_ns;

    if (auto r = resource_list(c, info, snapshot->resources); !r) return fail(r.error());
    for (ResourceState& r : snapshot->resources) {
      ServedResource served;
      served.collection = c.name;
      served.absolute_path = c.directory + "/" + r.path;
      served.etag = "\"" + r.sha256 + "\"";
      std::string key = c.name + "/" + r.path;
      served.state = std::move(r);
      site_->resources.emplace(std::move(key), std::move(served));
    }
    if (auto r = change_lists(c, info); !r) return fail(r.error());
    std::vector<Entry> extra;
    if (options_.archives) {
      auto added = detail::add_dump_documents(*site_, c, options_.base_url, dumps_.get(),
                                              change_list_entries_, info.last_datetime_ns);
      if (!added) return fail(added.error());
      extra = std::move(*added);
    }
    if (auto r = capability_list(c, info, extra); !r) return fail(r.error());
    return info.last_datetime_ns;
  }

  // A collection whose log position did not move keeps its documents and resources.
  bool reuse(const Collection& c, const std::pair<std::uint64_t, std::uint64_t>& version) {
    const auto it = previous_->versions.find(c.name);
    if (it == previous_->versions.end() || it->second != version) return false;
    const auto dumps = previous_->dumps.find(c.name);
    if ((dumps == previous_->dumps.end() ? nullptr : dumps->second) != dumps_) return false;
    const std::string doc_prefix = "/" + c.name + "/";
    for (const auto& [key, doc] : previous_->documents) {
      if (key.starts_with(doc_prefix)) site_->documents.emplace(key, doc);
    }
    const std::string resource_prefix = c.name + "/";
    for (const auto& [key, resource] : previous_->resources) {
      if (key.starts_with(resource_prefix)) site_->resources.emplace(key, resource);
    }
    return true;
  }

  // `states` come from the snapshot, ordered by path.
  Result<void> resource_list(const Collection& c, const CollectionInfo& info,
                             const std::vector<ResourceState>& states) {
    // The snapshot includes every change up to the newest one: that is its `at`.
    const Timestamp at = Timestamp::from_unix_ns(info.last_datetime_ns);
    const std::string base = collection_url(c);
    std::vector<Entry> entries;
    entries.reserve(std::min<std::size_t>(states.size(), options_.list_entries));
    std::vector<std::string> part_urls;
    const std::string index_url = documents_url(c) + "resourcelist.xml";

    const bool split = states.size() > options_.list_entries;
    DocumentHeader header =
        sitemap::make_snapshot_header(Capability::resourcelist, at, capability_list_url(c));
    std::optional<sitemap::Link> archives;
    if (dumps_ && detail::has_resource_list_archive(*dumps_)) {
      archives =
          sitemap::make_link("archives", detail::archive_url(collection_url(c), "resourcelist"));
      header.links.push_back(*archives);
    }
    if (!split) {
      for (const ResourceState& r : states) entries.push_back(resource_entry(base, r));
      auto doc = serve(header, entries, info.last_datetime_ns, false);
      if (!doc) return fail(doc.error());
      site_->documents[document_key(c, "resourcelist.xml")] = *doc;
      return {};
    }
    header.links.push_back(sitemap::make_link("index", index_url));
    std::uint64_t part = 0;
    for (std::size_t i = 0; i < states.size(); i += options_.list_entries) {
      entries.clear();
      const std::size_t end = std::min(states.size(), i + options_.list_entries);
      for (std::size_t k = i; k < end; ++k) entries.push_back(resource_entry(base, states[k]));
      const std::string name = numbered("resourcelist", ++part);
      auto doc = serve(header, entries, info.last_datetime_ns, false);
      if (!doc) return fail(doc.error());
      site_->documents[document_key(c, name)] = *doc;
      part_urls.push_back(documents_url(c) + name);
    }
    DocumentHeader index_header = sitemap::make_snapshot_header(
        Capability::resourcelist, at, capability_list_url(c), sitemap::RootKind::sitemapindex);
    if (archives) index_header.links.push_back(*archives);
    std::vector<Entry> index_entries;
    for (const std::string& url : part_urls) {
      Entry e;
      e.loc = url;
      e.md.emplace();
      e.md->at = at;
      index_entries.push_back(std::move(e));
    }
    auto index = serve(index_header, index_entries, info.last_datetime_ns, false);
    if (!index) return fail(index.error());
    site_->documents[document_key(c, "resourcelist.xml")] = *index;
    return {};
  }

  // Change Lists hold list_entries changes each, by change number: list k holds changes
  // (k-1)*N+1 .. k*N. A full list is closed (until = its last change) and never changes
  // again; the list after it is open. Several lists are grouped under a Change List Index
  // (changelist.xml) whose earliest `from` tells a destination how far back it can resume;
  // while there is only one list, changelist.xml is that list itself, as a Resource List is
  // one document until it needs an index (clients tell them apart by the root element, and
  // simpler clients, resync among them, read only plain lists).
  Result<void> change_lists(const Collection& c, const CollectionInfo& info) {
    const std::uint64_t n = options_.list_entries;
    const std::uint64_t first_list = (info.first_retained - 1) / n + 1;
    const std::uint64_t open_list = info.last_change / n + 1;  // the list the next change joins
    const bool single = first_list == open_list;
    const std::string base = collection_url(c);
    std::vector<Entry> index_entries;
    std::int64_t from_ns = info.earliest_from_ns;

    for (std::uint64_t k = first_list; k <= open_list; ++k) {
      const bool closed = k < open_list;
      const std::string name = numbered("changelist", k);
      const std::string key = document_key(c, name);
      const std::uint64_t first = (k - 1) * n + 1;
      const std::uint64_t last = std::min(k * n, info.last_change);
      std::int64_t until_ns = 0;

      const ServedDocument* reused = nullptr;
      if (closed && previous_) {
        const auto it = previous_->documents.find(key);
        if (it != previous_->documents.end() && it->second->immutable) reused = it->second.get();
      }
      // A reused closed list needs only its last change, for the `until` in the index.
      auto read = log_.changes(c.name, reused ? last : first, last);
      if (!read) return fail(read.error());
      const std::vector<Change>& changes = *read;
      if (closed) until_ns = changes.empty() ? from_ns : changes.back().datetime_ns;
      if (reused) {
        site_->documents[key] = previous_->documents.at(key);
      } else {
        std::vector<Entry> entries;
        entries.reserve(changes.size());
        for (const Change& change : changes) entries.push_back(change_entry(base, change));
        DocumentHeader header = sitemap::make_change_header(
            Capability::changelist, Timestamp::from_unix_ns(from_ns),
            closed ? std::optional(Timestamp::from_unix_ns(until_ns)) : std::nullopt,
            capability_list_url(c));
        add_archives_link(c, header);
        if (!single) {
          header.links.push_back(sitemap::make_link("index", documents_url(c) + "changelist.xml"));
        }
        const std::int64_t modified = changes.empty() ? from_ns : changes.back().datetime_ns;
        auto doc = serve(header, entries, modified, closed);
        if (!doc) return fail(doc.error());
        site_->documents[key] = *doc;
      }
      Entry entry;
      entry.loc = documents_url(c) + name;
      entry.md.emplace();
      entry.md->from = Timestamp::from_unix_ns(from_ns);
      if (closed) entry.md->until = Timestamp::from_unix_ns(until_ns);
      index_entries.push_back(std::move(entry));
      if (closed) from_ns = until_ns;
    }
    change_list_entries_ = index_entries;
    if (single) {
      site_->documents[document_key(c, "changelist.xml")] =
          site_->documents.at(document_key(c, numbered("changelist", open_list)));
      return {};
    }
    DocumentHeader index_header = sitemap::make_change_header(
        Capability::changelist, Timestamp::from_unix_ns(info.earliest_from_ns), std::nullopt,
        capability_list_url(c), sitemap::RootKind::sitemapindex);
    add_archives_link(c, index_header);
    auto index = serve(index_header, index_entries, info.last_datetime_ns, false);
    if (!index) return fail(index.error());
    site_->documents[document_key(c, "changelist.xml")] = *index;
    return {};
  }

  void add_archives_link(const Collection& c, DocumentHeader& header) const {
    if (!options_.archives) return;
    header.links.push_back(
        sitemap::make_link("archives", detail::archive_url(collection_url(c), "changelist")));
  }

  // `extra`: the dumps and archives to advertise besides the lists.
  Result<void> capability_list(const Collection& c, const CollectionInfo& info,
                               std::vector<Entry>& extra) {
    DocumentHeader header = sitemap::make_capability_list(source_description_url());
    std::vector<Entry> entries;
    for (const auto& [capability, name] : {std::pair{Capability::resourcelist, "resourcelist.xml"},
                                           std::pair{Capability::changelist, "changelist.xml"}}) {
      Entry e;
      e.loc = documents_url(c) + name;
      e.md.emplace();
      e.md->capability = sitemap::capability_name(capability);
      entries.push_back(std::move(e));
    }
    if (options_.notifications) {
      // The channels' topic URIs (notifier.hpp), where WebSub subscribers and event streams
      // go; their capability names the channel.
      for (const Capability capability :
           {Capability::changelist_notification, Capability::framework_notification}) {
        Entry e;
        e.md.emplace();
        e.md->capability = sitemap::capability_name(capability);
        e.loc = documents_url(c) + e.md->capability;
        entries.push_back(std::move(e));
      }
    }
    for (Entry& e : extra) entries.push_back(std::move(e));
    auto doc = serve(header, entries, info.created_ns, false);
    if (!doc) return fail(doc.error());
    site_->documents["/" + c.name + "/" + std::string(kCapabilityListName)] = *doc;
    return {};
  }

  Result<std::shared_ptr<const Site>> source_description(std::int64_t newest_ns) {
    DocumentHeader header = sitemap::make_source_description();
    std::vector<Entry> entries;
    for (const Collection& c : options_.collections) {
      Entry e;
      e.loc = capability_list_url(c);
      e.md.emplace();
      e.md->capability = sitemap::capability_name(Capability::capabilitylist);
      entries.push_back(std::move(e));
    }
    auto doc = serve(header, entries, newest_ns, false);
    if (!doc) return fail(doc.error());
    site_->documents["/.well-known/resourcesync"] = *doc;
    return std::shared_ptr<const Site>(std::move(site_));
  }

  ChangeLog& log_;
  const SiteOptions& options_;
  const Site* previous_;
  std::shared_ptr<Site> site_ = std::make_shared<Site>();
  // Of the collection being built: its dumps, and its Change Lists as index entries.
  std::shared_ptr<const CollectionDumps> dumps_;
  std::vector<Entry> change_list_entries_;
};

}  // namespace

Entry change_entry(const std::string& base, const Change& change) {
  Entry e;
  e.loc = base + sitemap::encode_path(change.path);
  e.md.emplace();
  e.md->change = change.change;
  e.md->datetime = Timestamp::from_unix_ns(change.datetime_ns);
  if (change.change != sitemap::ChangeType::deleted) {
    e.lastmod = Timestamp::from_unix_ns(change.state.mtime_ns);
    if (!change.state.sha256.empty()) {
      e.md->hash.set(sitemap::HashAlgorithm::sha256, change.state.sha256);
    }
    if (!change.state.md5.empty()) e.md->hash.set(sitemap::HashAlgorithm::md5, change.state.md5);
    e.md->length = change.state.length;
    e.md->type = change.state.type;
  }
  return e;
}

namespace detail {

Result<std::shared_ptr<const ServedDocument>> render_document(
    const sitemap::DocumentHeader& header, const std::vector<sitemap::Entry>& entries,
    std::int64_t modified_ns, bool immutable) {
  return serve(header, entries, modified_ns, immutable);
}

sitemap::Entry resource_entry(const std::string& collection_url, const ResourceState& state) {
  return server::resource_entry(collection_url, state);
}

}  // namespace detail

ServedDocument::~ServedDocument() {
  for (const int fd : {body_fd, gzip_fd, zstd_fd}) {
    if (fd >= 0) ::close(fd);
  }
}

Result<std::shared_ptr<const Site>> build_site(ChangeLog& log, const SiteOptions& options,
                                               const Site* previous) {
  return SiteBuilder(log, options, previous).build();
}

}  // namespace shardsync::server
