#include "dump_documents.hpp"

#include <optional>

#include "shardsync/server/collection.hpp"

namespace shardsync::server::detail {
namespace {

using sitemap::Capability;
using sitemap::DocumentHeader;
using sitemap::Entry;
using sitemap::Timestamp;

constexpr std::string_view kZipType = "application/zip";
constexpr std::string_view kXmlType = "application/xml";

class DumpDocuments {
 public:
  DumpDocuments(Site& site, const Collection& c, const std::string& base_url,
                std::int64_t modified_ns)
      : site_(site),
        c_(c),
        collection_url_(base_url + c.name + "/"),
        capability_list_url_(collection_url_ + std::string(kCapabilityListName)),
        modified_ns_(modified_ns) {}

  Result<std::vector<Entry>> add(const CollectionDumps* dumps,
                                 const std::vector<Entry>& change_lists) {
    std::vector<Entry> advertised;
    if (dumps && !dumps->resource_dumps.empty()) {
      if (auto r = resource_dumps(*dumps); !r) return fail(r.error());
      advertised.push_back(capability_entry(Capability::resourcedump, "resourcedump.xml"));
    }
    if (dumps && !dumps->change_dumps.empty()) {
      if (auto r = change_dump(*dumps); !r) return fail(r.error());
      advertised.push_back(capability_entry(Capability::changedump, "changedump.xml"));
    }
    if (dumps && has_resource_list_archive(*dumps)) {
      if (auto r = resource_list_archive(*dumps); !r) return fail(r.error());
      advertised.push_back(
          capability_entry(Capability::resourcelist_archive, "resourcelist-archive.xml"));
    }
    if (dumps && !dumps->resource_dumps.empty()) {
      if (auto r = resource_dump_archive(*dumps); !r) return fail(r.error());
      advertised.push_back(
          capability_entry(Capability::resourcedump_archive, "resourcedump-archive.xml"));
    }
    if (auto r = change_list_archive(change_lists); !r) return fail(r.error());
    advertised.push_back(
        capability_entry(Capability::changelist_archive, "changelist-archive.xml"));
    return advertised;
  }

 private:
  std::string documents_url() const {
    return collection_url_ + std::string(kDocumentsDirectory) + "/";
  }
  std::string key(std::string_view name) const {
    return "/" + c_.name + "/" + std::string(kDocumentsDirectory) + "/" + std::string(name);
  }

  Entry capability_entry(Capability capability, std::string_view name) const {
    Entry e;
    e.loc = documents_url() + std::string(name);
    e.md.emplace();
    e.md->capability = sitemap::capability_name(capability);
    return e;
  }

  void serve_file(const std::string& directory, const DumpFile& file, std::string_view type) {
    ServedResource served;
    served.collection = c_.name;
    served.root = directory;
    served.absolute_path = directory + "/" + file.name;
    served.state.path = file.name;
    served.state.length = file.length;
    served.state.sha256 = file.sha256;
    served.state.mtime_ns = file.mtime_ns;
    served.state.type = std::string(type);
    served.etag = "\"" + file.sha256 + "\"";
    site_.resources[c_.name + "/" + std::string(kDocumentsDirectory) + "/dump/" + file.name] =
        std::move(served);
  }

  // A package's entry in a Resource Dump or Change Dump: the ZIP and its manifest copy.
  Entry package_entry(const std::string& directory, const DumpPackage& package) {
    serve_file(directory, package.zip, kZipType);
    serve_file(directory, package.manifest, kXmlType);
    Entry e;
    e.loc = dump_url(collection_url_) + package.zip.name;
    e.lastmod = Timestamp::from_unix_ns(package.zip.mtime_ns);
    e.md.emplace();
    e.md->type = std::string(kZipType);
    e.md->length = package.zip.length;
    e.md->hash.set(sitemap::HashAlgorithm::sha256, package.zip.sha256);
    sitemap::Link contents =
        sitemap::make_link("contents", dump_url(collection_url_) + package.manifest.name);
    contents.type = std::string(kXmlType);
    e.links.push_back(std::move(contents));
    return e;
  }

  Result<void> publish(std::string_view name, const DocumentHeader& header,
                       const std::vector<Entry>& entries, std::int64_t modified_ns) {
    auto doc = render_document(header, entries, modified_ns, false);
    if (!doc) return fail(doc.error());
    site_.documents[key(name)] = *doc;
    return {};
  }

  // Each retained dump has its own Resource Dump document (what the archive lists); the
  // newest one is also resourcedump.xml.
  Result<void> resource_dumps(const CollectionDumps& dumps) {
    for (const ResourceDump& dump : dumps.resource_dumps) {
      DocumentHeader header = sitemap::make_snapshot_header(
          Capability::resourcedump, Timestamp::from_unix_ns(dump.at_ns), capability_list_url_);
      header.md.completed = Timestamp::from_unix_ns(dump.completed_ns);
      header.links.push_back(
          sitemap::make_link("archives", archive_url(collection_url_, "resourcedump")));
      std::vector<Entry> entries;
      for (const DumpPackage& p : dump.packages)
        entries.push_back(package_entry(dumps.directory, p));
      auto doc = render_document(header, entries, dump.completed_ns, false);
      if (!doc) return fail(doc.error());
      site_.documents[key("dump/" + dump.stem + "-resourcedump.xml")] = *doc;
      if (&dump == &dumps.resource_dumps.back()) site_.documents[key("resourcedump.xml")] = *doc;
      if (dump.resource_list) serve_file(dumps.directory, *dump.resource_list, kXmlType);
    }
    return {};
  }

  Result<void> change_dump(const CollectionDumps& dumps) {
    DocumentHeader header = sitemap::make_change_header(
        Capability::changedump, Timestamp::from_unix_ns(dumps.change_dumps.front().from_ns),
        std::nullopt, capability_list_url_);
    std::vector<Entry> entries;
    for (const ChangeDump& dump : dumps.change_dumps) {
      Entry e = package_entry(dumps.directory, dump.package);
      e.md->from = Timestamp::from_unix_ns(dump.from_ns);
      e.md->until = Timestamp::from_unix_ns(dump.until_ns);
      entries.push_back(std::move(e));
    }
    return publish("changedump.xml", header, entries,
                   dumps.change_dumps.back().package.zip.mtime_ns);
  }

  DocumentHeader archive_header(Capability capability) const {
    DocumentHeader header;
    header.has_md = true;
    header.md.capability = sitemap::capability_name(capability);
    header.links.push_back(sitemap::make_link("up", capability_list_url_));
    return header;
  }

  Result<void> resource_list_archive(const CollectionDumps& dumps) {
    return snapshot_archive("resourcelist-archive.xml", Capability::resourcelist_archive, dumps,
                            [](const ResourceDump& dump) -> std::optional<std::string> {
                              if (!dump.resource_list) return std::nullopt;
                              return dump.resource_list->name;
                            });
  }

  Result<void> resource_dump_archive(const CollectionDumps& dumps) {
    return snapshot_archive("resourcedump-archive.xml", Capability::resourcedump_archive, dumps,
                            [](const ResourceDump& dump) -> std::optional<std::string> {
                              return dump.stem + "-resourcedump.xml";
                            });
  }

  // One entry per retained dump, at its `at` and `completed`: `name_of` names the document
  // of that snapshot kept beside its packages (none: the dump has none).
  template <class NameOf>
  Result<void> snapshot_archive(std::string_view name, Capability capability,
                                const CollectionDumps& dumps, NameOf name_of) {
    std::vector<Entry> entries;
    for (const ResourceDump& dump : dumps.resource_dumps) {
      const std::optional<std::string> document = name_of(dump);
      if (!document) continue;
      Entry e;
      e.loc = dump_url(collection_url_) + *document;
      e.lastmod = Timestamp::from_unix_ns(dump.completed_ns);
      e.md.emplace();
      e.md->at = Timestamp::from_unix_ns(dump.at_ns);
      e.md->completed = Timestamp::from_unix_ns(dump.completed_ns);
      entries.push_back(std::move(e));
    }
    return publish(name, archive_header(capability), entries,
                   dumps.resource_dumps.back().completed_ns);
  }

  // Every retained closed Change List (the open one is the current list, not an archive).
  Result<void> change_list_archive(const std::vector<Entry>& change_lists) {
    std::vector<Entry> entries;
    for (const Entry& list : change_lists) {
      if (!list.md || !list.md->until || !list.md->from) continue;
      const Timestamp from = *list.md->from;
      const Timestamp until = *list.md->until;
      Entry e;
      e.loc = list.loc;
      e.lastmod = until;
      e.md.emplace();
      e.md->from = from;
      e.md->until = until;
      entries.push_back(std::move(e));
    }
    return publish("changelist-archive.xml", archive_header(Capability::changelist_archive),
                   entries, modified_ns_);
  }

  Site& site_;
  const Collection& c_;
  const std::string collection_url_;
  const std::string capability_list_url_;
  const std::int64_t modified_ns_;
};

}  // namespace

std::string archive_url(const std::string& collection_url, std::string_view kind) {
  return collection_url + std::string(kDocumentsDirectory) + "/" + std::string(kind) +
         "-archive.xml";
}

std::string dump_url(const std::string& collection_url) {
  return collection_url + std::string(kDocumentsDirectory) + "/dump/";
}

bool has_resource_list_archive(const CollectionDumps& dumps) {
  for (const ResourceDump& dump : dumps.resource_dumps) {
    if (dump.resource_list) return true;
  }
  return false;
}

Result<std::vector<sitemap::Entry>> add_dump_documents(
    Site& site, const Collection& c, const std::string& base_url, const CollectionDumps* dumps,
    const std::vector<sitemap::Entry>& change_lists, std::int64_t modified_ns) {
  return DumpDocuments(site, c, base_url, modified_ns).add(dumps, change_lists);
}

}  // namespace shardsync::server::detail
