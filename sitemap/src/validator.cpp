#include "shardsync/sitemap/validator.hpp"

#include <algorithm>
#include <array>
#include <unordered_set>

namespace shardsync::sitemap {
namespace {

constexpr std::uint64_t kMaxEntries = 50'000;
constexpr std::uint64_t kMaxBytes = 52'428'800;  // 50 MiB, as sitemaps.org counts 50 MB
constexpr std::size_t kMaxLocLength = 2'048;     // sitemaps.org: "less than 2,048 characters"

// Relations ResourceSync names (§6.2, §14) plus common IANA registrations; anything else
// should be a URI (RFC 5988 §4.2).
constexpr std::array<std::string_view, 40> kKnownRelations{"about",
                                                           "alternate",
                                                           "archives",
                                                           "author",
                                                           "canonical",
                                                           "collection",
                                                           "contents",
                                                           "describedby",
                                                           "describes",
                                                           "duplicate",
                                                           "edit",
                                                           "enclosure",
                                                           "first",
                                                           "help",
                                                           "hub",
                                                           "icon",
                                                           "index",
                                                           "item",
                                                           "last",
                                                           "latest-version",
                                                           "license",
                                                           "memento",
                                                           "next",
                                                           "original",
                                                           "prev",
                                                           "predecessor-version",
                                                           "previous",
                                                           "profile",
                                                           "related",
                                                           "replies",
                                                           "resourcesync",
                                                           "self",
                                                           "service",
                                                           "successor-version",
                                                           "timegate",
                                                           "timemap",
                                                           "type",
                                                           "up",
                                                           "version-history",
                                                           "via"};

bool is_uri(std::string_view s) {
  const auto colon = s.find(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  return std::all_of(s.begin(), s.begin() + static_cast<long>(colon),
                     [](char c) {
                       return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                              (c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.';
                     }) &&
         ((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'));
}

// An absolute URI with an authority, as <loc> needs: "scheme://host…", host not empty.
bool is_absolute_url(std::string_view s) {
  if (!is_uri(s)) return false;
  const auto colon = s.find(':');
  return s.compare(colon, 3, "://") == 0 && colon + 3 < s.size() && s[colon + 3] != '/' &&
         s.find_first_of(" \t\r\n") == std::string_view::npos;
}

// A bitstream path in a dump package: segments after the optional leading '/' that are not
// empty, "." or "..", without backslashes or control characters.
bool is_package_path(std::string_view path) {
  if (path.starts_with('/')) path.remove_prefix(1);
  if (path.empty()) return false;
  while (true) {
    const std::size_t slash = path.find('/');
    const std::string_view segment = path.substr(0, slash);
    if (segment.empty() || segment == "." || segment == "..") return false;
    for (const char c : segment) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '\\' || u < 0x20 || u == 0x7f) return false;
    }
    if (slash == std::string_view::npos) return true;
    path.remove_prefix(slash + 1);
  }
}

bool is_complete_utc(const Timestamp& t) {
  return t.utc_designator &&
         (t.precision == Precision::second || t.precision == Precision::fraction);
}

std::string_view section_of(DocumentType type) {
  switch (type) {
    case DocumentType::source_description:
    case DocumentType::source_description_index:
      return "§8";
    case DocumentType::capability_list:
    case DocumentType::capability_list_index:
      return "§9";
    case DocumentType::resource_list:
    case DocumentType::resource_list_index:
      return "§10";
    case DocumentType::resource_dump:
    case DocumentType::resource_dump_index:
      return "§11.1";
    case DocumentType::resource_dump_manifest:
      return "§11.2";
    case DocumentType::change_list:
    case DocumentType::change_list_index:
      return "§12";
    case DocumentType::change_dump:
    case DocumentType::change_dump_index:
      return "§13.1";
    case DocumentType::change_dump_manifest:
      return "§13.2";
    case DocumentType::changelist_notification:
    case DocumentType::framework_notification:
      return "ResourceSync Notification §3";
    default:
      return "ResourceSync Archives";
  }
}

}  // namespace

std::string Finding::format() const {
  std::string text = severity == Severity::error ? "ERROR" : "WARNING";
  text += " line " + std::to_string(line) + ": " + rule + ": " + message;
  return text;
}

struct Validator::State {
  std::vector<Finding> findings;
  DocumentHeader header;
  DocumentType type = DocumentType::other;
  Capability capability = Capability::unknown;
  bool saw_header = false;
  std::optional<Timestamp> last_time;
  std::uint32_t last_time_line = 0;
  std::unordered_set<std::string> locs;          // Resource List: duplicates
  std::unordered_set<std::string> paths;         // dump manifests: one bitstream per path
  std::unordered_set<std::string> capabilities;  // Capability List: one entry each

  void add(Severity severity, std::uint32_t line, std::string rule, std::string message) {
    findings.push_back(Finding{severity, line, std::move(rule), std::move(message)});
  }
  void error(std::uint32_t line, std::string rule, std::string message) {
    add(Severity::error, line, std::move(rule), std::move(message));
  }
  void warning(std::uint32_t line, std::string rule, std::string message) {
    add(Severity::warning, line, std::move(rule), std::move(message));
  }

  std::string doc_name() const { return std::string(document_type_name(type)); }

  void check_hashes(const HashList& hash, std::uint32_t line) {
    hash.for_each([&](std::string_view alg, std::string_view digest) {
      if (alg.empty()) {
        error(line, "hash-syntax",
              "hash token '" + std::string(digest) + "' is not algorithm:digest (§7)");
        return;
      }
      const auto known = algorithm_from_name(alg);
      if (!known) {
        warning(line, "hash-algorithm-unknown",
                "hash algorithm '" + std::string(alg) + "' is not md5, sha-1 or sha-256 (§7)");
        return;
      }
      if (!is_valid_hex_digest(*known, digest)) {
        error(line, "hash-not-hex",
              std::string(alg) + " digest '" + std::string(digest.substr(0, 80)) + "' is not " +
                  std::to_string(hex_digest_length(*known)) + " lower-case hex digits (§7)");
      }
    });
  }

  void check_extra(const std::vector<ExtraAttribute>& extra, std::string_view element,
                   std::uint32_t line) {
    for (const ExtraAttribute& a : extra) {
      if (a.namespace_uri == kResourceSyncNamespace) {
        error(line, "attribute-prefixed",
              "attribute '" + a.prefix + ":" + a.name + "' on " + std::string(element) +
                  ": ResourceSync attributes carry no namespace prefix (§7)");
        continue;
      }
      if (!a.namespace_uri.empty()) continue;  // community extensions are fine
      if (a.name == "modified" && element == "<rs:md>") {
        warning(line, "legacy-attribute",
                "'modified' on <rs:md> is a pre-1.0 attribute; 1.1 uses <lastmod> or datetime");
      } else {
        warning(line, "unknown-attribute",
                "attribute '" + a.name + "' on " + std::string(element) +
                    " is not defined by ResourceSync; extensions need a namespace (§7)");
      }
    }
  }

  void check_link(const Link& link, bool change_document) {
    const std::uint32_t line = link.line;
    if (link.rel.empty()) error(line, "ln-rel-required", "<rs:ln> needs a rel attribute (§7)");
    if (link.href.empty()) error(line, "ln-href-required", "<rs:ln> needs an href attribute (§7)");
    if (!link.rel.empty()) {
      // rel may hold several space-separated relation types.
      std::string_view rels = link.rel;
      while (!rels.empty()) {
        const auto end = rels.find(' ');
        const std::string_view rel = rels.substr(0, end);
        if (!rel.empty() && !is_uri(rel) &&
            std::find(kKnownRelations.begin(), kKnownRelations.end(), rel) ==
                kKnownRelations.end()) {
          warning(line, "rel-unregistered",
                  "relation '" + std::string(rel) +
                      "' is neither IANA-registered nor a URI (§7, RFC 5988 §4.2)");
        }
        if (end == std::string_view::npos) break;
        rels.remove_prefix(end + 1);
      }
    }
    if (link.pri && (*link.pri < 1 || *link.pri > 999'999)) {
      error(line, "pri-range", "pri " + std::to_string(*link.pri) + " is outside 1..999999 (§7)");
    }
    if (link.rel == "http://www.openarchives.org/rs/terms/patch") {
      if (link.type.empty()) {
        error(line, "patch-type-required", "a patch link must give the patch's media type (§14.4)");
      }
      if (!change_document) {
        warning(line, "patch-placement",
                "patch links belong in Change Lists and Change Dumps (§14.4)");
      }
      if (type == DocumentType::change_dump_manifest && link.path.empty()) {
        error(line, "patch-path-required",
              "a patch link in a Change Dump Manifest must give its path (§13.2, §14.4)");
      }
    }
    check_hashes(link.hash, line);
    check_extra(link.extra, "<rs:ln>", line);
  }

  void check_header() {
    const std::uint32_t root_line = header.line;
    const std::uint32_t md_line = header.md.line ? header.md.line : root_line;
    if (!header.has_md) {
      error(root_line, "md-required",
            "the root has no <rs:md capability=…>: not a ResourceSync document (§7)");
      return;
    }
    if (header.md.capability.empty()) {
      error(md_line, "capability-required", "the root <rs:md> needs a capability (§7)");
      return;
    }
    if (capability == Capability::unknown) {
      warning(md_line, "capability-unknown",
              "capability '" + header.md.capability + "' is not defined by ResourceSync");
      return;
    }
    const bool index = header.is_index();
    if (index && (capability == Capability::resourcedump_manifest ||
                  capability == Capability::changedump_manifest ||
                  capability == Capability::changelist_notification ||
                  capability == Capability::framework_notification)) {
      error(root_line, "index-not-allowed",
            "a " + header.md.capability + " is never a <sitemapindex> (§11.2, §13.2)");
      return;
    }
    if (type == DocumentType::capability_list_index) {
      warning(root_line, "capabilitylist-index",
              "a Capability List should not be a <sitemapindex> (§9)");
    }

    const bool snapshot_doc = is_snapshot_capability(capability) ||
                              capability == Capability::resourcelist_archive ||
                              capability == Capability::resourcedump_archive;
    const bool change_doc = is_change_capability(capability);
    const std::string section(section_of(type));
    if (is_snapshot_capability(capability)) {
      if (!header.md.at) {
        error(md_line, "at-required",
              "a " + doc_name() + " must give `at` on its root <rs:md> (" + section +
                  ", Appendix A)");
      }
    }
    if (change_doc && !header.md.from) {
      error(md_line, "from-required",
            "a " + doc_name() + " must give `from` on its root <rs:md> (" + section +
                ", Appendix A)");
    }
    if ((header.md.at || header.md.completed) && !snapshot_doc) {
      warning(md_line, "at-not-defined",
              "`at`/`completed` are not defined for a " + doc_name() + " (Appendix A)");
    }
    if ((header.md.from || header.md.until) && !change_doc) {
      warning(md_line, "from-not-defined",
              "`from`/`until` are not defined for a " + doc_name() + " (Appendix A)");
    }
    if (header.md.at && header.md.completed && *header.md.completed < *header.md.at) {
      error(md_line, "completed-before-at", "`completed` is earlier than `at` (§7)");
    }
    if (header.md.from && header.md.until && *header.md.until < *header.md.from) {
      error(md_line, "until-before-from", "`until` is earlier than `from` (§7)");
    }
    for (const auto* t : {&header.md.at, &header.md.completed, &header.md.from, &header.md.until}) {
      if (*t && !is_complete_utc(**t)) {
        warning(md_line, "datetime-form",
                "document datetimes should be complete UTC, YYYY-MM-DDThh:mm:ssZ (§7)");
        break;
      }
    }

    const bool is_description = capability == Capability::description;
    if (!is_description && !header.find_link("up")) {
      error(root_line, "up-required",
            "a " + doc_name() + " must link up to its " +
                (capability == Capability::capabilitylist ? "Source Description"
                                                          : "Capability List") +
                " with <rs:ln rel=\"up\"> (" + section + ")");
    }
    if ((is_description || capability == Capability::capabilitylist) &&
        !header.find_link("describedby")) {
      warning(root_line, "describedby-recommended",
              "a " + doc_name() +
                  " should link its description with <rs:ln rel=\"describedby\"> (" + section +
                  ")");
    }
    for (const Link& link : header.links) check_link(link, in_change_document());
    check_extra(header.md.extra, "<rs:md>", md_line);
  }

  void check_entry(const Entry& entry) {
    const std::uint32_t line = entry.line;
    const std::uint32_t md_line = entry.md && entry.md->line ? entry.md->line : line;
    if (entry.loc.empty()) {
      error(line, "loc-required", "an entry needs a <loc> (§7)");
    } else if (!is_absolute_url(entry.loc)) {
      error(line, "loc-absolute",
            "<loc> '" + entry.loc.substr(0, 200) + "' is not an absolute URI (§7)");
    } else if (entry.loc.size() >= kMaxLocLength) {
      error(line, "loc-too-long",
            "<loc> is " + std::to_string(entry.loc.size()) +
                " characters; Sitemaps allow fewer than 2,048 (sitemaps.org protocol, §4)");
    }
    if (entry.md) {
      check_hashes(entry.md->hash, md_line);
      check_extra(entry.md->extra, "<rs:md>", md_line);
    }
    for (const Link& link : entry.links) check_link(link, in_change_document());
    if (!header.has_md || capability == Capability::unknown) return;

    const Metadata empty_md;
    const Metadata& md = entry.md ? *entry.md : empty_md;
    if (md.at && md.completed && *md.completed < *md.at) {
      error(md_line, "completed-before-at", "`completed` is earlier than `at` (§7)");
    }
    if (md.from && md.until && *md.until < *md.from) {
      error(md_line, "until-before-from", "`until` is earlier than `from` (§7)");
    }
    const bool index = header.is_index();
    const std::string section(section_of(type));

    // Change documents: the change, its time window, and forward chronological order.
    const bool change_entries = !index && (capability == Capability::changelist ||
                                           capability == Capability::changedump_manifest ||
                                           capability == Capability::changelist_notification);
    if (change_entries) {
      if (!md.change) {
        error(md_line, "change-required",
              "an entry of a " + doc_name() + " must give change=created|updated|deleted (" +
                  section + ")");
      }
      if (!md.datetime) {
        warning(md_line, "datetime-recommended",
                "change entries should give `datetime`; resync 2.x refuses 1.1 change lists "
                "without it (§12.1)");
      }
      if (md.datetime && header.md.from && *md.datetime < *header.md.from) {
        error(md_line, "datetime-range",
              "datetime " + format_w3c_datetime(*md.datetime) + " is before the document's from " +
                  format_w3c_datetime(*header.md.from) + " (§7)");
      }
      if (md.datetime && header.md.until && *header.md.until < *md.datetime) {
        error(md_line, "datetime-range",
              "datetime " + format_w3c_datetime(*md.datetime) + " is after the document's until " +
                  format_w3c_datetime(*header.md.until) + " (§7)");
      }
      check_order(md.datetime, line, "entries", section, Severity::error);
    } else if (md.change && capability != Capability::framework_notification) {
      warning(md_line, "change-not-defined",
              "`change` is not defined on entries of a " + doc_name() + " (§7)");
    }

    switch (type) {
      case DocumentType::source_description:
        if (!entry.md) {
          warning(line, "entry-capability-recommended",
                  "Source Description entries should say <rs:md capability=\"capabilitylist\"/> "
                  "(§8)");
        } else if (md.capability.empty()) {
          error(md_line, "entry-capability-required",
                "a Source Description entry's <rs:md> must say capability=\"capabilitylist\" (§8)");
        } else if (md.capability != "capabilitylist") {
          error(md_line, "entry-capability-value",
                "a Source Description entry's capability must be capabilitylist, not '" +
                    md.capability + "' (§8)");
        }
        if (!entry.find_link("describedby")) {
          warning(line, "describedby-recommended",
                  "a Source Description entry should link the set's description with "
                  "rel=\"describedby\" (§8)");
        }
        if (entry.lastmod) {
          warning(line, "lastmod-discouraged",
                  "omit <lastmod> in a Source Description unless it is updated with every "
                  "Capability List (§8)");
        }
        break;
      case DocumentType::capability_list:
        if (md.capability.empty()) {
          error(md_line, "entry-capability-required",
                "each Capability List entry must give the capability it points to (§9)");
        } else {
          if (!capabilities.insert(md.capability).second) {
            error(md_line, "capability-duplicate",
                  "capability '" + md.capability +
                      "' is listed twice; a Capability List has one entry per capability (§9)");
          }
          const Capability c = capability_from_name(md.capability);
          if (c == Capability::description || c == Capability::capabilitylist ||
              c == Capability::resourcedump_manifest || c == Capability::changedump_manifest) {
            error(md_line, "entry-capability-value",
                  "a Capability List does not list a " + md.capability + " (§9)");
          }
        }
        if (entry.lastmod) {
          warning(line, "lastmod-discouraged",
                  "omit <lastmod> in a Capability List unless it is updated with every "
                  "capability document (§9)");
        }
        break;
      case DocumentType::resource_list:
        if (!locs.insert(entry.loc).second) {
          warning(line, "loc-duplicate",
                  "<loc> " + entry.loc.substr(0, 200) + " appears twice in this Resource List");
        }
        break;
      case DocumentType::resource_dump:
      case DocumentType::change_dump:
        if (md.type.empty() || !md.length) {
          warning(md_line, "package-metadata",
                  "a dump package entry should give its type and length (" + section + ")");
        }
        if (type == DocumentType::change_dump) {
          if (!md.from || !md.until) {
            warning(md_line, "package-interval",
                    "a Change Dump package should give from and until (§13.1, Appendix A)");
          }
          // §13.1 says packages *should* be in forward chronological order.
          check_order(md.from, line, "packages", section, Severity::warning);
        }
        break;
      case DocumentType::resource_dump_manifest:
      case DocumentType::change_dump_manifest: {
        const bool deleted = md.change == ChangeType::deleted;
        if (md.path.empty() && !deleted) {
          error(md_line, "path-required",
                "a " + doc_name() + " entry must give the bitstream's path in the package (" +
                    section + ")");
        } else if (!md.path.empty() && md.path.front() != '/') {
          warning(md_line, "path-leading-slash",
                  "path '" + md.path + "' should start with '/' (" + section + ")");
        }
        if (!md.path.empty()) {
          if (!is_package_path(md.path)) {
            // A destination unpacking the package by the manifest would write outside its
            // target (Zip Slip), or could not name the file at all.
            error(md_line, "path-unsafe",
                  "path '" + md.path.substr(0, 200) +
                      "' must name a file in the package: no '.', '..' or empty segment, "
                      "backslash or control character (" +
                      section + ")");
          } else if (!paths.insert(md.path).second) {
            error(md_line, "path-duplicate",
                  "path '" + md.path.substr(0, 200) +
                      "' is given twice: a package holds one bitstream per path (" + section + ")");
          }
        }
        if (md.type.empty() && !deleted) {
          warning(md_line, "type-recommended",
                  "a " + doc_name() + " entry should give the bitstream's media type (" + section +
                      ")");
        }
        break;
      }
      case DocumentType::change_list_index:
      case DocumentType::change_dump_index:
        if (!md.from) {
          warning(md_line, "index-entry-from",
                  "entries of a " + doc_name() + " should give from (and until when closed) (" +
                      section + ", Appendix A)");
        }
        if (type == DocumentType::change_list_index) {
          check_order(md.from, line, "change lists", section, Severity::error);
        }
        break;
      case DocumentType::resourcelist_archive:
      case DocumentType::resourcedump_archive:
        if (!md.at) {
          warning(md_line, "archive-entry-at",
                  "archive entries should give `at` (ResourceSync Archives)");
        }
        break;
      case DocumentType::changelist_archive:
      case DocumentType::changedump_archive:
        if (!md.from) {
          warning(md_line, "archive-entry-from",
                  "archive entries should give `from` and `until` (ResourceSync Archives)");
        }
        break;
      default:
        break;
    }
  }

  // Patch links belong where changes are listed (§14.4).
  bool in_change_document() const {
    return is_change_capability(capability) || capability == Capability::changelist_notification;
  }

  // Only change times order change documents: since 1.1, <lastmod> is the resource's own
  // modification time and need not follow the order of change events (§7).
  void check_order(const std::optional<Timestamp>& time, std::uint32_t line, std::string_view what,
                   const std::string& section, Severity severity) {
    if (!time) return;
    if (last_time && *time < *last_time) {
      add(severity, line, severity == Severity::error ? "chronological-order" : "package-order",
          std::string(what) + " must be in forward chronological order: " +
              format_w3c_datetime(*time) + " comes after " + format_w3c_datetime(*last_time) +
              " (line " + std::to_string(last_time_line) + ") (" + section + ")");
    }
    last_time = time;
    last_time_line = line;
  }
};

Validator::Validator() : state_(std::make_unique<State>()) {}
Validator::~Validator() = default;

void Validator::on_header(const DocumentHeader& header) {
  State& s = *state_;
  s.header = header;
  s.type = document_type(header);
  s.capability = header.capability();
  s.saw_header = true;
  s.check_header();
}

void Validator::on_entry(Entry&& entry) { state_->check_entry(entry); }

void Validator::finish(const ParseStats& stats) {
  State& s = *state_;
  if (stats.entries > kMaxEntries) {
    s.error(0, "too-many-entries",
            std::to_string(stats.entries) +
                " entries; a document holds at most 50,000: split it "
                "under a <sitemapindex> (§7)");
  }
  if (stats.bytes > kMaxBytes) {
    s.error(0, "document-too-large",
            std::to_string(stats.bytes) +
                " bytes; a document is at most 50 MB (52,428,800 "
                "bytes): split it under a <sitemapindex> (§7)");
  }
}

const std::vector<Finding>& Validator::findings() const { return state_->findings; }

std::size_t Validator::errors() const {
  return static_cast<std::size_t>(
      std::count_if(state_->findings.begin(), state_->findings.end(),
                    [](const Finding& f) { return f.severity == Severity::error; }));
}

std::size_t Validator::warnings() const { return state_->findings.size() - errors(); }

std::vector<Finding> validate(const Document& document) {
  Validator validator;
  validator.on_header(document.header);
  for (const Entry& entry : document.entries) validator.on_entry(Entry(entry));
  ParseStats stats;
  stats.entries = document.entries.size();
  validator.finish(stats);
  return validator.findings();
}

}  // namespace shardsync::sitemap
