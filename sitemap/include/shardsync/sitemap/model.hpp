#pragma once
// The ResourceSync document model (ANSI/NISO Z39.99-2017, ResourceSync 1.1, plus the OAI
// Archives and Notification documents). Every document is a Sitemap <urlset> (a list) or
// <sitemapindex> (an index) with one root <rs:md>, any number of root <rs:ln>, and entries
// (<url> or <sitemap>) that carry <loc>, <lastmod>, <changefreq>, <rs:md> and <rs:ln>.
// These are plain values: copy, compare and build them freely.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/sitemap/hashes.hpp"
#include "shardsync/sitemap/timestamp.hpp"

namespace shardsync::sitemap {

inline constexpr std::string_view kSitemapNamespace = "http://www.sitemaps.org/schemas/sitemap/0.9";
inline constexpr std::string_view kResourceSyncNamespace = "http://www.openarchives.org/rs/terms/";

// The value of `capability` on a root <rs:md>. `unknown` keeps a document with a value this
// library does not know readable (the raw text stays in Metadata::capability).
enum class Capability {
  description,
  capabilitylist,
  resourcelist,
  changelist,
  resourcedump,
  changedump,
  resourcedump_manifest,
  changedump_manifest,
  resourcelist_archive,
  resourcedump_archive,
  changelist_archive,
  changedump_archive,
  changelist_notification,
  framework_notification,
  unknown,
};

[[nodiscard]] std::string_view capability_name(Capability capability);  // "resourcedump-manifest"
[[nodiscard]] Capability capability_from_name(std::string_view name);   // unknown when unknown

// Snapshot documents describe state at `at`; change documents describe changes since `from`.
[[nodiscard]] bool is_snapshot_capability(Capability capability);
[[nodiscard]] bool is_change_capability(Capability capability);

enum class ChangeType { created, updated, deleted };
[[nodiscard]] std::string_view change_type_name(ChangeType change);
[[nodiscard]] std::optional<ChangeType> change_type_from_name(std::string_view name);

enum class ChangeFrequency { always, hourly, daily, weekly, monthly, yearly, never };
[[nodiscard]] std::string_view change_frequency_name(ChangeFrequency frequency);
[[nodiscard]] std::optional<ChangeFrequency> change_frequency_from_name(std::string_view name);

// An attribute this library does not interpret: in a foreign namespace (community
// extensions), or a no-namespace attribute ResourceSync does not define (e.g. the legacy
// `modified` on <rs:md>). Kept so that documents round-trip.
struct ExtraAttribute {
  std::string namespace_uri;  // empty: no namespace
  std::string name;           // local name
  std::string value;
  std::string prefix;  // prefix as read, a hint for writing (may be empty)
  // Names compare by namespace and local name: the prefix is not part of the value.
  friend bool operator==(const ExtraAttribute& a, const ExtraAttribute& b) {
    return a.namespace_uri == b.namespace_uri && a.name == b.name && a.value == b.value;
  }
};

// An element in a foreign namespace inside an entry or the root (Sitemap extensions such as
// image:image). Never interpreted; kept whole so that documents round-trip.
struct ExtraElement {
  std::string namespace_uri;
  std::string name;
  std::string prefix;
  std::vector<ExtraAttribute> attributes;
  std::string text;  // concatenated character data directly inside this element
  std::vector<ExtraElement> children;
  friend bool operator==(const ExtraElement& a, const ExtraElement& b) {
    return a.namespace_uri == b.namespace_uri && a.name == b.name && a.attributes == b.attributes &&
           a.text == b.text && a.children == b.children;
  }
};

// <rs:md>. On the root it describes the document; on an entry, the resource (or change).
struct Metadata {
  std::string capability;               // raw text; capability_from_name() types it
  std::optional<Timestamp> at;          // snapshot start (resource list, dumps, manifest)
  std::optional<Timestamp> completed;   // snapshot end
  std::optional<Timestamp> from;        // change documents: all changes since
  std::optional<Timestamp> until;       // present: closed; absent: open
  std::optional<ChangeType> change;     // change list / change dump manifest entries
  std::optional<Timestamp> datetime;    // when the change happened (1.1)
  HashList hash;                        // "md5:… sha-256:…"
  std::optional<std::uint64_t> length;  // bytes of the representation
  std::string type;                     // media type
  std::string encoding;                 // content coding
  std::string path;                     // bitstream path inside a dump package
  std::vector<ExtraAttribute> extra;
  std::uint32_t line = 0;  // where it was read (0: not read from text)

  [[nodiscard]] bool empty() const;
  friend bool operator==(const Metadata& a, const Metadata& b);
};

// <rs:ln>: a typed link from a document or resource to another resource.
struct Link {
  std::string rel;  // "up", "index", "describedby", "duplicate", …
  std::string href;
  std::string type;
  std::optional<std::uint64_t> length;
  HashList hash;
  std::optional<Timestamp> modified;
  std::string path;
  std::string encoding;
  std::optional<std::uint32_t> pri;  // 1..999,999; lower is preferred
  std::vector<ExtraAttribute> extra;
  std::uint32_t line = 0;

  friend bool operator==(const Link& a, const Link& b);
};

// One <url> (in a list) or <sitemap> (in an index).
struct Entry {
  std::string loc;
  std::optional<Timestamp> lastmod;
  std::optional<ChangeFrequency> changefreq;
  std::string priority;  // Sitemap <priority>, kept as written (ResourceSync does not use it)
  std::optional<Metadata> md;
  std::vector<Link> links;
  std::vector<ExtraAttribute> extra_attributes;  // foreign attributes on <url>/<sitemap>
  std::vector<ExtraElement> extra_elements;
  std::uint32_t line = 0;

  // The first link with this relation, or nullptr.
  [[nodiscard]] const Link* find_link(std::string_view rel) const;
  friend bool operator==(const Entry& a, const Entry& b);
};

enum class RootKind { urlset, sitemapindex };

// Everything in a document but its entries: what the parser reports before the first entry
// and the writer needs before writing one.
struct DocumentHeader {
  RootKind root = RootKind::urlset;
  Metadata md;  // md.line == 0 and md.capability empty when the document has no <rs:md>
  std::vector<Link> links;
  std::vector<ExtraAttribute> extra_attributes;  // foreign attributes on the root element
  std::vector<ExtraElement> extra_elements;      // foreign elements directly under the root
  bool has_md = false;                           // a root <rs:md> was present
  std::uint32_t line = 0;                        // line of the root element

  [[nodiscard]] Capability capability() const { return capability_from_name(md.capability); }
  [[nodiscard]] bool is_index() const { return root == RootKind::sitemapindex; }
  [[nodiscard]] const Link* find_link(std::string_view rel) const;
  friend bool operator==(const DocumentHeader& a, const DocumentHeader& b);
};

// Which of the ResourceSync documents a header describes, e.g. "Change List Index".
enum class DocumentType {
  source_description,
  source_description_index,
  capability_list,
  capability_list_index,  // allowed by Sitemaps, advised against by ResourceSync (§9)
  resource_list,
  resource_list_index,
  change_list,
  change_list_index,
  resource_dump,
  resource_dump_index,
  resource_dump_manifest,
  change_dump,
  change_dump_index,
  change_dump_manifest,
  resourcelist_archive,
  resourcelist_archive_index,
  resourcedump_archive,
  resourcedump_archive_index,
  changelist_archive,
  changelist_archive_index,
  changedump_archive,
  changedump_archive_index,
  changelist_notification,
  framework_notification,
  other,  // no <rs:md>, an unknown capability, or an index form nothing defines
};

[[nodiscard]] DocumentType document_type(const DocumentHeader& header);
[[nodiscard]] std::string_view document_type_name(DocumentType type);  // "Resource List Index"

// A whole document in memory. For documents too large for that, use the streaming
// parse_stream() / DocumentWriter instead.
struct Document {
  DocumentHeader header;
  std::vector<Entry> entries;

  [[nodiscard]] DocumentType type() const { return document_type(header); }
  friend bool operator==(const Document&, const Document&) = default;
};

// Starts documents of each kind with the attributes and links the spec makes mandatory.
// `up` is the Capability List (or, for a Capability List, the Source Description);
// pass an empty string where there is none.
[[nodiscard]] DocumentHeader make_source_description();
[[nodiscard]] DocumentHeader make_capability_list(std::string_view up_source_description);
[[nodiscard]] DocumentHeader make_snapshot_header(Capability capability, Timestamp at,
                                                  std::string_view up_capability_list,
                                                  RootKind root = RootKind::urlset);
[[nodiscard]] DocumentHeader make_change_header(Capability capability, Timestamp from,
                                                std::optional<Timestamp> until,
                                                std::string_view up_capability_list,
                                                RootKind root = RootKind::urlset);
[[nodiscard]] Link make_link(std::string_view rel, std::string_view href);

}  // namespace shardsync::sitemap
