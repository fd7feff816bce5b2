#include "shardsync/sitemap/model.hpp"

#include <array>
#include <utility>

namespace shardsync::sitemap {
namespace {

constexpr std::array<std::pair<Capability, std::string_view>, 14> kCapabilityNames{{
    {Capability::description, "description"},
    {Capability::capabilitylist, "capabilitylist"},
    {Capability::resourcelist, "resourcelist"},
    {Capability::changelist, "changelist"},
    {Capability::resourcedump, "resourcedump"},
    {Capability::changedump, "changedump"},
    {Capability::resourcedump_manifest, "resourcedump-manifest"},
    {Capability::changedump_manifest, "changedump-manifest"},
    {Capability::resourcelist_archive, "resourcelist-archive"},
    {Capability::resourcedump_archive, "resourcedump-archive"},
    {Capability::changelist_archive, "changelist-archive"},
    {Capability::changedump_archive, "changedump-archive"},
    {Capability::changelist_notification, "changelist-notification"},
    {Capability::framework_notification, "framework-notification"},
}};

constexpr std::array<std::string_view, 3> kChangeNames{"created", "updated", "deleted"};
constexpr std::array<std::string_view, 7> kFrequencyNames{"always",  "hourly", "daily", "weekly",
                                                          "monthly", "yearly", "never"};

}  // namespace

std::string_view capability_name(Capability capability) {
  for (const auto& [value, name] : kCapabilityNames) {
    if (value == capability) return name;
  }
  return "unknown";
}

Capability capability_from_name(std::string_view name) {
  for (const auto& [value, text] : kCapabilityNames) {
    if (text == name) return value;
  }
  return Capability::unknown;
}

bool is_snapshot_capability(Capability c) {
  return c == Capability::resourcelist || c == Capability::resourcedump ||
         c == Capability::resourcedump_manifest;
}

bool is_change_capability(Capability c) {
  return c == Capability::changelist || c == Capability::changedump ||
         c == Capability::changedump_manifest;
}

std::string_view change_type_name(ChangeType change) {
  return kChangeNames[static_cast<std::size_t>(change)];
}

std::optional<ChangeType> change_type_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kChangeNames.size(); ++i) {
    if (kChangeNames[i] == name) return static_cast<ChangeType>(i);
  }
  return std::nullopt;
}

std::string_view change_frequency_name(ChangeFrequency frequency) {
  return kFrequencyNames[static_cast<std::size_t>(frequency)];
}

std::optional<ChangeFrequency> change_frequency_from_name(std::string_view name) {
  for (std::size_t i = 0; i < kFrequencyNames.size(); ++i) {
    if (kFrequencyNames[i] == name) return static_cast<ChangeFrequency>(i);
  }
  return std::nullopt;
}

bool Metadata::empty() const {
  return capability.empty() && !at && !completed && !from && !until && !change && !datetime &&
         hash.empty() && !length && type.empty() && encoding.empty() && path.empty() &&
         extra.empty();
}

// Equality compares content only: where a value was read (`line`) does not matter.
bool operator==(const Metadata& a, const Metadata& b) {
  return a.capability == b.capability && a.at == b.at && a.completed == b.completed &&
         a.from == b.from && a.until == b.until && a.change == b.change &&
         a.datetime == b.datetime && a.hash == b.hash && a.length == b.length && a.type == b.type &&
         a.encoding == b.encoding && a.path == b.path && a.extra == b.extra;
}

bool operator==(const Link& a, const Link& b) {
  return a.rel == b.rel && a.href == b.href && a.type == b.type && a.length == b.length &&
         a.hash == b.hash && a.modified == b.modified && a.path == b.path &&
         a.encoding == b.encoding && a.pri == b.pri && a.extra == b.extra;
}

bool operator==(const Entry& a, const Entry& b) {
  return a.loc == b.loc && a.lastmod == b.lastmod && a.changefreq == b.changefreq &&
         a.priority == b.priority && a.md == b.md && a.links == b.links &&
         a.extra_attributes == b.extra_attributes && a.extra_elements == b.extra_elements;
}

bool operator==(const DocumentHeader& a, const DocumentHeader& b) {
  return a.root == b.root && a.has_md == b.has_md && a.md == b.md && a.links == b.links &&
         a.extra_attributes == b.extra_attributes && a.extra_elements == b.extra_elements;
}

const Link* Entry::find_link(std::string_view rel) const {
  for (const Link& link : links) {
    if (link.rel == rel) return &link;
  }
  return nullptr;
}

const Link* DocumentHeader::find_link(std::string_view rel) const {
  for (const Link& link : links) {
    if (link.rel == rel) return &link;
  }
  return nullptr;
}

DocumentType document_type(const DocumentHeader& header) {
  if (!header.has_md) return DocumentType::other;
  const bool index = header.is_index();
  switch (header.capability()) {
    case Capability::description:
      return index ? DocumentType::source_description_index : DocumentType::source_description;
    case Capability::capabilitylist:
      return index ? DocumentType::capability_list_index : DocumentType::capability_list;
    case Capability::resourcelist:
      return index ? DocumentType::resource_list_index : DocumentType::resource_list;
    case Capability::changelist:
      return index ? DocumentType::change_list_index : DocumentType::change_list;
    case Capability::resourcedump:
      return index ? DocumentType::resource_dump_index : DocumentType::resource_dump;
    case Capability::changedump:
      return index ? DocumentType::change_dump_index : DocumentType::change_dump;
    case Capability::resourcedump_manifest:
      return index ? DocumentType::other : DocumentType::resource_dump_manifest;
    case Capability::changedump_manifest:
      return index ? DocumentType::other : DocumentType::change_dump_manifest;
    case Capability::resourcelist_archive:
      return index ? DocumentType::resourcelist_archive_index : DocumentType::resourcelist_archive;
    case Capability::resourcedump_archive:
      return index ? DocumentType::resourcedump_archive_index : DocumentType::resourcedump_archive;
    case Capability::changelist_archive:
      return index ? DocumentType::changelist_archive_index : DocumentType::changelist_archive;
    case Capability::changedump_archive:
      return index ? DocumentType::changedump_archive_index : DocumentType::changedump_archive;
    case Capability::changelist_notification:
      return index ? DocumentType::other : DocumentType::changelist_notification;
    case Capability::framework_notification:
      return index ? DocumentType::other : DocumentType::framework_notification;
    case Capability::unknown:
      return DocumentType::other;
  }
  return DocumentType::other;
}

std::string_view document_type_name(DocumentType type) {
  switch (type) {
    case DocumentType::source_description:
      return "Source Description";
    case DocumentType::source_description_index:
      return "Source Description Index";
    case DocumentType::capability_list:
      return "Capability List";
    case DocumentType::capability_list_index:
      return "Capability List Index";
    case DocumentType::resource_list:
      return "Resource List";
    case DocumentType::resource_list_index:
      return "Resource List Index";
    case DocumentType::change_list:
      return "Change List";
    case DocumentType::change_list_index:
      return "Change List Index";
    case DocumentType::resource_dump:
      return "Resource Dump";
    case DocumentType::resource_dump_index:
      return "Resource Dump Index";
    case DocumentType::resource_dump_manifest:
      return "Resource Dump Manifest";
    case DocumentType::change_dump:
      return "Change Dump";
    case DocumentType::change_dump_index:
      return "Change Dump Index";
    case DocumentType::change_dump_manifest:
      return "Change Dump Manifest";
    case DocumentType::resourcelist_archive:
      return "Resource List Archive";
    case DocumentType::resourcelist_archive_index:
      return "Resource List Archive Index";
    case DocumentType::resourcedump_archive:
      return "Resource Dump Archive";
    case DocumentType::resourcedump_archive_index:
      return "Resource Dump Archive Index";
    case DocumentType::changelist_archive:
      return "Change List Archive";
    case DocumentType::changelist_archive_index:
      return "Change List Archive Index";
    case DocumentType::changedump_archive:
      return "Change Dump Archive";
    case DocumentType::changedump_archive_index:
      return "Change Dump Archive Index";
    case DocumentType::changelist_notification:
      return "Change Notification";
    case DocumentType::framework_notification:
      return "Framework Notification";
    case DocumentType::other:
      return "Sitemap";
  }
  return "Sitemap";
}

Link make_link(std::string_view rel, std::string_view href) {
  Link link;
  link.rel = rel;
  link.href = href;
  return link;
}

DocumentHeader make_source_description() {
  DocumentHeader header;
  header.has_md = true;
  header.md.capability = capability_name(Capability::description);
  return header;
}

DocumentHeader make_capability_list(std::string_view up_source_description) {
  DocumentHeader header;
  header.has_md = true;
  header.md.capability = capability_name(Capability::capabilitylist);
  if (!up_source_description.empty())
    header.links.push_back(make_link("up", up_source_description));
  return header;
}

DocumentHeader make_snapshot_header(Capability capability, Timestamp at,
                                    std::string_view up_capability_list, RootKind root) {
  DocumentHeader header;
  header.root = root;
  header.has_md = true;
  header.md.capability = capability_name(capability);
  header.md.at = at;
  if (!up_capability_list.empty()) header.links.push_back(make_link("up", up_capability_list));
  return header;
}

DocumentHeader make_change_header(Capability capability, Timestamp from,
                                  std::optional<Timestamp> until,
                                  std::string_view up_capability_list, RootKind root) {
  DocumentHeader header;
  header.root = root;
  header.has_md = true;
  header.md.capability = capability_name(capability);
  header.md.from = from;
  header.md.until = until;
  if (!up_capability_list.empty()) header.links.push_back(make_link("up", up_capability_list));
  return header;
}

}  // namespace shardsync::sitemap
