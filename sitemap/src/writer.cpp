#include "shardsync/sitemap/writer.hpp"

#include <array>
#include <charconv>

#include "atomic_file.hpp"
#include "shardsync/sitemap/errc.hpp"

namespace shardsync::sitemap {
namespace {
constexpr std::size_t kFlushBytes = 256 * 1024;
}  // namespace

namespace detail {
namespace {

void append_number(std::string& out, std::uint64_t value) {
  char buf[24];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  out.append(buf, end);
}

void append_attribute(std::string& out, std::string_view name, std::string_view value) {
  out += ' ';
  out += name;
  out += "=\"";
  append_escaped(out, value, true);
  out += '"';
}

void append_time_attribute(std::string& out, std::string_view name,
                           const std::optional<Timestamp>& t) {
  if (!t) return;
  out += ' ';
  out += name;
  out += "=\"";
  append_w3c_datetime(out, *t);
  out += '"';
}

// A prefix for a foreign namespace, declared on the element that uses it. The prefix read is
// reused unless it would clash with the ones this writer binds itself.
std::string_view prefix_for(const std::string& hint, std::string_view uri) {
  if (uri == "http://www.w3.org/XML/1998/namespace") return "xml";
  if (hint.empty() || hint == "rs" || hint == "xml" || hint.starts_with("xmlns")) return "ns";
  return hint;
}

// Foreign attributes; each namespace is declared on the element itself.
void append_extra_attributes(std::string& out, const std::vector<ExtraAttribute>& extra) {
  for (std::size_t i = 0; i < extra.size(); ++i) {
    const ExtraAttribute& a = extra[i];
    if (a.namespace_uri.empty()) {
      append_attribute(out, a.name, a.value);
      continue;
    }
    // The hint's trailing digits are dropped before this attribute's own are added, so a
    // document read back and written again keeps "ns0" rather than growing "ns00".
    std::string hint = a.prefix;
    while (!hint.empty() && hint.back() >= '0' && hint.back() <= '9') hint.pop_back();
    std::string prefix(prefix_for(hint, a.namespace_uri));
    if (prefix != "xml") {
      prefix += std::to_string(i);  // distinct per attribute: two namespaces never share one
      append_attribute(out, "xmlns:" + prefix, a.namespace_uri);
    }
    append_attribute(out, prefix + ":" + a.name, a.value);
  }
}

void append_extra_element(std::string& out, const ExtraElement& e) {
  std::string qname;
  std::string declaration;
  if (e.namespace_uri.empty()) {
    qname = e.name;
    declaration = " xmlns=\"\"";  // undo the Sitemap default namespace
  } else {
    const std::string prefix(prefix_for(e.prefix, e.namespace_uri));
    qname = prefix + ":" + e.name;
    if (prefix != "xml") {
      declaration = " xmlns:" + prefix + "=\"";
      append_escaped(declaration, e.namespace_uri, true);
      declaration += '"';
    }
  }
  out += '<';
  out += qname;
  out += declaration;
  append_extra_attributes(out, e.attributes);
  if (e.text.empty() && e.children.empty()) {
    out += "/>";
    return;
  }
  out += '>';
  append_escaped(out, e.text, false);
  for (const ExtraElement& child : e.children) append_extra_element(out, child);
  out += "</";
  out += qname;
  out += '>';
}

void append_md(std::string& out, const Metadata& md) {
  out += "<rs:md";
  if (!md.capability.empty()) append_attribute(out, "capability", md.capability);
  append_time_attribute(out, "at", md.at);
  append_time_attribute(out, "completed", md.completed);
  append_time_attribute(out, "from", md.from);
  append_time_attribute(out, "until", md.until);
  if (md.change) append_attribute(out, "change", change_type_name(*md.change));
  append_time_attribute(out, "datetime", md.datetime);
  if (!md.hash.empty()) append_attribute(out, "hash", md.hash.text());
  if (md.length) {
    out += " length=\"";
    append_number(out, *md.length);
    out += '"';
  }
  if (!md.type.empty()) append_attribute(out, "type", md.type);
  if (!md.encoding.empty()) append_attribute(out, "encoding", md.encoding);
  if (!md.path.empty()) append_attribute(out, "path", md.path);
  append_extra_attributes(out, md.extra);
  out += "/>";
}

}  // namespace

// Bytes that may need a reference, in text or in attribute values.
constexpr std::array<bool, 256> kMayEscape = [] {
  std::array<bool, 256> table{};
  for (const char c : {'&', '<', '>', '"', '\t', '\n', '\r'})
    table[static_cast<unsigned char>(c)] = true;
  return table;
}();

void append_escaped(std::string& out, std::string_view text, bool attribute) {
  std::size_t start = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (!kMayEscape[static_cast<unsigned char>(c)]) continue;
    std::string_view replacement;
    switch (c) {
      case '&':
        replacement = "&amp;";
        break;
      case '<':
        replacement = "&lt;";
        break;
      case '>':
        replacement = "&gt;";
        break;
      case '"':
        replacement = attribute ? "&quot;" : "";
        break;
      // Kept as references so that attribute-value normalisation cannot turn them into spaces.
      case '\t':
        replacement = attribute ? "&#9;" : "";
        break;
      case '\n':
        replacement = attribute ? "&#10;" : "";
        break;
      case '\r':
        replacement = "&#13;";
        break;
      default:
        break;
    }
    if (replacement.empty()) continue;
    out.append(text.substr(start, i - start));
    out.append(replacement);
    start = i + 1;
  }
  out.append(text.substr(start));
}

void append_link(std::string& out, const Link& link) {
  out += "<rs:ln";
  append_attribute(out, "rel", link.rel);
  append_attribute(out, "href", link.href);
  if (!link.type.empty()) append_attribute(out, "type", link.type);
  if (link.length) {
    out += " length=\"";
    append_number(out, *link.length);
    out += '"';
  }
  if (!link.hash.empty()) append_attribute(out, "hash", link.hash.text());
  append_time_attribute(out, "modified", link.modified);
  if (!link.path.empty()) append_attribute(out, "path", link.path);
  if (!link.encoding.empty()) append_attribute(out, "encoding", link.encoding);
  if (link.pri) {
    out += " pri=\"";
    append_number(out, *link.pri);
    out += '"';
  }
  append_extra_attributes(out, link.extra);
  out += "/>";
}

void append_root_start(std::string& out, const DocumentHeader& header) {
  out += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<";
  out += header.is_index() ? "sitemapindex" : "urlset";
  out += " xmlns=\"";
  out += kSitemapNamespace;
  out += "\" xmlns:rs=\"";
  out += kResourceSyncNamespace;
  out += '"';
  append_extra_attributes(out, header.extra_attributes);
  out += ">\n";
}

void append_header_children(std::string& out, const DocumentHeader& header) {
  if (header.has_md) {
    append_md(out, header.md);
    out += '\n';
  }
  for (const Link& link : header.links) {
    append_link(out, link);
    out += '\n';
  }
  for (const ExtraElement& e : header.extra_elements) {
    append_extra_element(out, e);
    out += '\n';
  }
}

void append_root_end(std::string& out, const DocumentHeader& header) {
  out += header.is_index() ? "</sitemapindex>\n" : "</urlset>\n";
}

void append_entry(std::string& out, const Entry& entry, bool index) {
  out += index ? "<sitemap" : "<url";
  append_extra_attributes(out, entry.extra_attributes);
  out += "><loc>";
  append_escaped(out, entry.loc, false);
  out += "</loc>";
  if (entry.lastmod) {
    out += "<lastmod>";
    append_w3c_datetime(out, *entry.lastmod);
    out += "</lastmod>";
  }
  if (entry.changefreq) {
    out += "<changefreq>";
    out += change_frequency_name(*entry.changefreq);
    out += "</changefreq>";
  }
  if (!entry.priority.empty()) {
    out += "<priority>";
    append_escaped(out, entry.priority, false);
    out += "</priority>";
  }
  if (entry.md) append_md(out, *entry.md);
  for (const Link& link : entry.links) append_link(out, link);
  for (const ExtraElement& e : entry.extra_elements) append_extra_element(out, e);
  out += index ? "</sitemap>\n" : "</url>\n";
}

std::optional<Timestamp> change_time(const Entry& entry) {
  return entry.md ? entry.md->datetime : std::nullopt;
}

}  // namespace detail

namespace {

// Documents whose entries must be in forward chronological order, and by which time.
std::optional<Timestamp> order_key(const Entry& entry, bool index) {
  if (index) return entry.md ? entry.md->from : std::nullopt;  // Change List Index (§12.2)
  return detail::change_time(entry);
}

bool must_be_ordered(const DocumentHeader& header) {
  const Capability c = header.capability();
  if (header.is_index()) return c == Capability::changelist;
  return c == Capability::changelist || c == Capability::changedump_manifest ||
         c == Capability::changelist_notification;
}

}  // namespace

DocumentWriter::DocumentWriter(Sink& sink) : sink_(sink) { buffer_.reserve(kFlushBytes + 4096); }

Result<void> DocumentWriter::begin(const DocumentHeader& header) {
  if (state_ != State::idle) return fail(errc::structure, "DocumentWriter::begin called twice");
  state_ = State::open;
  index_ = header.is_index();
  ordered_ = must_be_ordered(header);
  detail::append_root_start(buffer_, header);
  detail::append_header_children(buffer_, header);
  return {};
}

Result<void> DocumentWriter::add(const Entry& entry) {
  if (state_ != State::open) return fail(errc::structure, "DocumentWriter::add outside a document");
  if (ordered_) {
    const auto key = order_key(entry, index_);
    if (key && last_time_ && *key < *last_time_) {
      state_ = State::done;
      return fail(errc::structure, "entry " + entry.loc + " at " + format_w3c_datetime(*key) +
                                       " is older than the one before it (" +
                                       format_w3c_datetime(*last_time_) +
                                       "): change documents are in forward chronological order");
    }
    if (key) last_time_ = key;
  }
  detail::append_entry(buffer_, entry, index_);
  ++entries_;
  if (buffer_.size() >= kFlushBytes) return flush();
  return {};
}

Result<void> DocumentWriter::finish() {
  if (state_ != State::open)
    return fail(errc::structure, "DocumentWriter::finish outside a document");
  state_ = State::done;
  buffer_ += index_ ? "</sitemapindex>\n" : "</urlset>\n";
  return flush();
}

Result<void> DocumentWriter::flush() {
  if (buffer_.empty()) return {};
  auto r = sink_.write(buffer_);
  if (!r) {
    state_ = State::done;
    return r;
  }
  flushed_ += buffer_.size();
  buffer_.clear();
  return {};
}

Result<std::string> write_document(const Document& document) {
  return write_document(document.header, document.entries);
}

Result<std::string> write_document(const DocumentHeader& header, std::span<const Entry> entries) {
  std::string out;
  StringSink sink(out);
  DocumentWriter writer(sink);
  if (auto r = writer.begin(header); !r) return fail(r.error());
  for (const Entry& entry : entries) {
    if (auto r = writer.add(entry); !r) return fail(r.error());
  }
  if (auto r = writer.finish(); !r) return fail(r.error());
  return out;
}

Result<void> write_document_file(const Document& document, const std::string& path) {
  auto file = detail::AtomicFile::create(path);
  if (!file) return fail(file.error());
  DocumentWriter writer(*file);
  if (auto r = writer.begin(document.header); !r) return r;
  for (const Entry& entry : document.entries) {
    if (auto r = writer.add(entry); !r) return r;
  }
  if (auto r = writer.finish(); !r) return r;
  return file->commit();
}

}  // namespace shardsync::sitemap
