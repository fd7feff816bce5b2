#include "element_reader.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "shardsync/sitemap/errc.hpp"

namespace shardsync::sitemap::detail {
namespace {

constexpr std::string_view kXmlNamespace = "http://www.w3.org/XML/1998/namespace";

std::string at_line(std::uint32_t line) { return "line " + std::to_string(line) + ": "; }

tl::unexpected<Error> value_error(std::uint32_t line, std::string_view what, std::string_view value,
                                  std::string_view expected) {
  std::string shown(value.substr(0, 80));
  return fail(errc::invalid_value, at_line(line) + std::string(what) + " '" + shown + "' is not " +
                                       std::string(expected));
}

std::string_view trim(std::string_view s) {
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// Strict decimal: digits only (no sign, space, exponent or hex), no overflow.
template <typename T>
bool parse_decimal(std::string_view text, T& out) {
  if (text.empty() || text.size() > 20) return false;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size() && text.front() != '-' &&
         text.front() != '+';
}

Result<Timestamp> datetime_value(std::string_view text, std::string_view what, std::uint32_t line) {
  if (auto t = parse_w3c_datetime(text)) return *t;
  return value_error(line, what, text, "a W3C datetime");
}

bool is_xmlns(const char* name) {
  return name[0] == 'x' && std::strncmp(name, "xmlns", 5) == 0 &&
         (name[5] == '\0' || (name[5] == ':' && name[6] != '\0'));
}

}  // namespace

std::uint32_t LineMap::operator()(std::ptrdiff_t offset) const {
  if (offset < 0) return base;
  const auto off = static_cast<std::uint32_t>(offset);
  if (off < cursor_offset) {
    cursor = static_cast<std::size_t>(std::upper_bound(newlines.begin(), newlines.end(), off) -
                                      newlines.begin());
  } else {
    while (cursor < newlines.size() && newlines[cursor] < off) ++cursor;
  }
  cursor_offset = off;
  return base + static_cast<std::uint32_t>(cursor);
}

Result<void> ElementReader::push_declarations(pugi::xml_node node, std::uint32_t line) {
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    if (!is_xmlns(a.name())) continue;
    const std::string_view name = a.name();
    std::string prefix(name.size() > 5 ? name.substr(6) : std::string_view{});
    const std::string_view uri = a.value();
    if (prefix == "xmlns" || (prefix == "xml" && uri != kXmlNamespace)) {
      return fail(errc::malformed_xml, at_line(line) + "reserved prefix '" + prefix + "' rebound");
    }
    if (!prefix.empty() && uri.empty()) {
      return fail(errc::malformed_xml,
                  at_line(line) + "prefix '" + prefix + "' bound to no namespace");
    }
    Ns ns = Ns::other;
    if (uri.empty()) {
      ns = Ns::none;
    } else if (uri == kSitemapNamespace) {
      ns = Ns::sitemap;
    } else if (uri == kResourceSyncNamespace) {
      ns = Ns::rs;
    } else if (uri == kXmlNamespace) {
      ns = Ns::xml;
    }
    scope_.push_back(Binding{std::move(prefix), std::string(uri), ns});
  }
  return {};
}

Result<ElementReader::Name> ElementReader::resolve(std::string_view qname, bool attribute,
                                                   std::uint32_t line) const {
  const auto colon = qname.find(':');
  if (colon == std::string_view::npos) {
    if (attribute) return Name{Ns::none, {}, qname, {}};
    for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
      if (it->prefix.empty()) return Name{it->ns, it->uri, qname, {}};
    }
    return Name{Ns::none, {}, qname, {}};
  }
  const std::string_view prefix = qname.substr(0, colon);
  const std::string_view local = qname.substr(colon + 1);
  if (local.empty() || local.find(':') != std::string_view::npos) {
    return fail(errc::malformed_xml, at_line(line) + "malformed name '" + std::string(qname) + "'");
  }
  if (prefix == "xml") return Name{Ns::xml, kXmlNamespace, local, prefix};
  for (auto it = scope_.rbegin(); it != scope_.rend(); ++it) {
    if (it->prefix == prefix) return Name{it->ns, it->uri, local, prefix};
  }
  return fail(errc::malformed_xml,
              at_line(line) + "namespace prefix '" + std::string(prefix) + "' is not declared");
}

// pugixml accepts an attribute twice; XML (and Namespaces in XML) do not.
Result<void> ElementReader::check_attributes(pugi::xml_node node, std::uint32_t line) const {
  std::uint32_t count = 0;
  std::uint32_t prefixed = 0;
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    if (++count > limits_.max_attributes) {
      return fail(errc::limit_exceeded, at_line(line) + "more than " +
                                            std::to_string(limits_.max_attributes) +
                                            " attributes on <" + node.name() + ">");
    }
    const char* name = a.name();
    if (std::strchr(name, ':') && !is_xmlns(name)) ++prefixed;
    for (pugi::xml_attribute b = a.next_attribute(); b; b = b.next_attribute()) {
      if (std::strcmp(name, b.name()) == 0) {
        return fail(errc::duplicate_attribute, at_line(line) + "attribute '" + name +
                                                   "' appears twice on <" + node.name() + ">");
      }
    }
  }
  // Two prefixes for one namespace can still name the same attribute.
  if (prefixed > 1) {
    for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
      if (is_xmlns(a.name()) || std::string_view(a.name()).find(':') == std::string_view::npos) {
        continue;
      }
      auto na = resolve(a.name(), true, line);
      if (!na) return fail(na.error());
      if (na->prefix.empty()) continue;
      for (pugi::xml_attribute b = a.next_attribute(); b; b = b.next_attribute()) {
        if (is_xmlns(b.name())) continue;
        auto nb = resolve(b.name(), true, line);
        if (!nb) return fail(nb.error());
        if (!nb->prefix.empty() && nb->uri == na->uri && nb->local == na->local) {
          return fail(errc::duplicate_attribute, at_line(line) + "attributes '" + a.name() +
                                                     "' and '" + b.name() + "' are the same");
        }
      }
    }
  }
  return {};
}

Result<void> ElementReader::read_root(pugi::xml_node root, std::uint32_t line,
                                      DocumentHeader& header) {
  scope_.clear();
  if (auto r = push_declarations(root, line); !r) return r;
  if (auto r = check_attributes(root, line); !r) return r;
  auto name = resolve(root.name(), false, line);
  if (!name) return fail(name.error());
  header.line = line;
  if (name->ns == Ns::sitemap && name->local == "urlset") {
    header.root = RootKind::urlset;
  } else if (name->ns == Ns::sitemap && name->local == "sitemapindex") {
    header.root = RootKind::sitemapindex;
  } else {
    return fail(errc::not_a_sitemap, at_line(line) + "root element <" + root.name() +
                                         "> in namespace '" + std::string(name->uri) +
                                         "' is not <urlset> or <sitemapindex> in " +
                                         std::string(kSitemapNamespace));
  }
  for (pugi::xml_attribute a = root.first_attribute(); a; a = a.next_attribute()) {
    if (is_xmlns(a.name())) continue;
    auto attr_name = resolve(a.name(), true, line);
    if (!attr_name) return fail(attr_name.error());
    auto extra = extra_attribute(*attr_name, a.value());
    if (!extra) return fail(extra.error());
    header.extra_attributes.push_back(std::move(*extra));
  }
  return {};
}

Result<RootChild> ElementReader::read_root_child(pugi::xml_node node, const LineMap& lines,
                                                 DocumentHeader& header, Entry& entry) {
  const std::uint32_t line = lines(node.offset_debug());
  const std::size_t scope_size = scope_.size();
  struct PopScope {
    std::vector<Binding>& scope;
    std::size_t size;
    ~PopScope() { scope.resize(size); }
  } pop{scope_, scope_size};

  if (node.first_attribute()) {
    if (auto r = push_declarations(node, line); !r) return fail(r.error());
    if (auto r = check_attributes(node, line); !r) return fail(r.error());
  }
  auto name = resolve(node.name(), false, line);
  if (!name) return fail(name.error());
  const std::string_view entry_name = header.is_index() ? "sitemap" : "url";
  switch (name->ns) {
    case Ns::sitemap:
      if (name->local == entry_name) {
        if (auto r = read_entry(node, lines, line, entry); !r) return fail(r.error());
        return RootChild::entry;
      }
      return fail(errc::structure, at_line(line) + "<" + node.name() + "> is not allowed in <" +
                                       (header.is_index() ? "sitemapindex" : "urlset") + ">");
    case Ns::rs:
      if (name->local == "md") {
        if (header.has_md) {
          return fail(errc::structure, at_line(line) + "a second <rs:md> on the root");
        }
        header.has_md = true;
        if (auto r = read_md(node, line, header.md); !r) return fail(r.error());
        return RootChild::header;
      }
      if (name->local == "ln") {
        Link link;
        if (auto r = read_ln(node, line, link); !r) return fail(r.error());
        header.links.push_back(std::move(link));
        return RootChild::header;
      }
      return fail(errc::structure,
                  at_line(line) + "unknown ResourceSync element <" + node.name() + ">");
    case Ns::none:
    case Ns::xml:
    case Ns::other: {
      auto extra = read_extra(node, *name, line, 2);
      if (!extra) return fail(extra.error());
      header.extra_elements.push_back(std::move(*extra));
      return RootChild::header;
    }
  }
  return RootChild::header;
}

Result<void> ElementReader::read_entry(pugi::xml_node node, const LineMap& lines,
                                       std::uint32_t line, Entry& entry) {
  entry.line = line;
  bool has_loc = false, has_lastmod = false, has_changefreq = false, has_priority = false;
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    if (is_xmlns(a.name())) continue;
    auto name = resolve(a.name(), true, line);
    if (!name) return fail(name.error());
    if (name->ns == Ns::none) {
      return fail(errc::structure, at_line(line) + "unexpected attribute '" + a.name() + "' on <" +
                                       node.name() + ">");
    }
    auto extra = extra_attribute(*name, a.value());
    if (!extra) return fail(extra.error());
    entry.extra_attributes.push_back(std::move(*extra));
  }
  for (pugi::xml_node child = node.first_child(); child; child = child.next_sibling()) {
    if (child.type() != pugi::node_element) {
      if ((child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) &&
          !trim(child.value()).empty()) {
        return fail(errc::structure, at_line(lines(child.offset_debug())) +
                                         "text directly inside <" + node.name() + ">");
      }
      continue;
    }
    const std::uint32_t child_line = lines(child.offset_debug());
    const std::size_t scope_size = scope_.size();
    if (child.first_attribute()) {
      if (auto r = push_declarations(child, child_line); !r) return r;
      if (auto r = check_attributes(child, child_line); !r) return r;
    }
    auto name = resolve(child.name(), false, child_line);
    if (!name) return fail(name.error());
    const auto once = [&](bool& seen) -> Result<void> {
      if (seen) {
        return fail(errc::structure,
                    at_line(child_line) + "a second <" + child.name() + "> in one entry");
      }
      seen = true;
      return {};
    };
    Result<void> step;
    if (name->ns == Ns::sitemap) {
      if (name->local == "loc") {
        step = once(has_loc);
        if (step) {
          auto text = element_text(child, "<loc>", child_line);
          if (!text) return fail(text.error());
          entry.loc = std::move(*text);
        }
      } else if (name->local == "lastmod") {
        step = once(has_lastmod);
        if (step) {
          auto text = element_text(child, "<lastmod>", child_line);
          if (!text) return fail(text.error());
          auto t = datetime_value(*text, "<lastmod>", child_line);
          if (!t) return fail(t.error());
          entry.lastmod = *t;
        }
      } else if (name->local == "changefreq") {
        step = once(has_changefreq);
        if (step) {
          auto text = element_text(child, "<changefreq>", child_line);
          if (!text) return fail(text.error());
          entry.changefreq = change_frequency_from_name(*text);
          if (!entry.changefreq) {
            return value_error(child_line, "<changefreq>", *text,
                               "always, hourly, daily, weekly, monthly, yearly or never");
          }
        }
      } else if (name->local == "priority") {
        step = once(has_priority);
        if (step) {
          auto text = element_text(child, "<priority>", child_line);
          if (!text) return fail(text.error());
          entry.priority = std::move(*text);
        }
      } else {
        step = fail(errc::structure,
                    at_line(child_line) + "<" + child.name() + "> is not allowed in an entry");
      }
    } else if (name->ns == Ns::rs && name->local == "md") {
      if (entry.md) {
        step = fail(errc::structure, at_line(child_line) + "a second <rs:md> in one entry");
      } else {
        entry.md.emplace();
        step = read_md(child, child_line, *entry.md);
      }
    } else if (name->ns == Ns::rs && name->local == "ln") {
      entry.links.emplace_back();
      step = read_ln(child, child_line, entry.links.back());
    } else if (name->ns == Ns::rs) {
      step = fail(errc::structure,
                  at_line(child_line) + "unknown ResourceSync element <" + child.name() + ">");
    } else {
      auto extra = read_extra(child, *name, child_line, 3);
      if (!extra) return fail(extra.error());
      entry.extra_elements.push_back(std::move(*extra));
    }
    scope_.resize(scope_size);
    if (!step) return step;
  }
  return {};
}

Result<void> ElementReader::read_md(pugi::xml_node node, std::uint32_t line, Metadata& md) {
  md.line = line;
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    const std::string_view qname = a.name();
    if (is_xmlns(a.name())) continue;
    const std::string_view value = a.value();
    if (qname.find(':') == std::string_view::npos) {
      // ResourceSync's own attributes carry no prefix (§7).
      if (qname == "hash") {
        md.hash = HashList::from_attribute(value);
        continue;
      }
      if (qname == "length") {
        std::uint64_t n = 0;
        if (!parse_decimal(value, n)) {
          return value_error(line, "length", value, "a non-negative decimal integer");
        }
        md.length = n;
        continue;
      }
      if (qname == "type") {
        md.type = value;
        continue;
      }
      if (qname == "capability") {
        md.capability = value;
        continue;
      }
      if (qname == "change") {
        md.change = change_type_from_name(value);
        if (!md.change) return value_error(line, "change", value, "created, updated or deleted");
        continue;
      }
      if (qname == "path") {
        md.path = value;
        continue;
      }
      if (qname == "encoding") {
        md.encoding = value;
        continue;
      }
      std::optional<Timestamp>* slot = nullptr;
      if (qname == "datetime") {
        slot = &md.datetime;
      } else if (qname == "at") {
        slot = &md.at;
      } else if (qname == "completed") {
        slot = &md.completed;
      } else if (qname == "from") {
        slot = &md.from;
      } else if (qname == "until") {
        slot = &md.until;
      }
      if (slot) {
        auto t = datetime_value(value, qname, line);
        if (!t) return fail(t.error());
        *slot = *t;
        continue;
      }
    }
    auto name = resolve(qname, true, line);
    if (!name) return fail(name.error());
    auto extra = extra_attribute(*name, value);
    if (!extra) return fail(extra.error());
    md.extra.push_back(std::move(*extra));
  }
  return check_no_children(node, "<rs:md>", line);
}

Result<void> ElementReader::read_ln(pugi::xml_node node, std::uint32_t line, Link& link) {
  link.line = line;
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    const std::string_view qname = a.name();
    if (is_xmlns(a.name())) continue;
    const std::string_view value = a.value();
    if (qname.find(':') == std::string_view::npos) {
      if (qname == "rel") {
        link.rel = value;
        continue;
      }
      if (qname == "href") {
        link.href = value;
        continue;
      }
      if (qname == "type") {
        link.type = value;
        continue;
      }
      if (qname == "length") {
        std::uint64_t n = 0;
        if (!parse_decimal(value, n)) {
          return value_error(line, "length", value, "a non-negative decimal integer");
        }
        link.length = n;
        continue;
      }
      if (qname == "hash") {
        link.hash = HashList::from_attribute(value);
        continue;
      }
      if (qname == "modified") {
        auto t = datetime_value(value, "modified", line);
        if (!t) return fail(t.error());
        link.modified = *t;
        continue;
      }
      if (qname == "path") {
        link.path = value;
        continue;
      }
      if (qname == "encoding") {
        link.encoding = value;
        continue;
      }
      if (qname == "pri") {
        std::uint32_t n = 0;
        if (!parse_decimal(value, n)) return value_error(line, "pri", value, "an integer");
        link.pri = n;
        continue;
      }
    }
    auto name = resolve(qname, true, line);
    if (!name) return fail(name.error());
    auto extra = extra_attribute(*name, value);
    if (!extra) return fail(extra.error());
    link.extra.push_back(std::move(*extra));
  }
  return check_no_children(node, "<rs:ln>", line);
}

Result<void> ElementReader::check_no_children(pugi::xml_node node, std::string_view what,
                                              std::uint32_t line) {
  for (pugi::xml_node child = node.first_child(); child; child = child.next_sibling()) {
    if (child.type() != pugi::node_element) continue;
    const std::size_t scope_size = scope_.size();
    if (auto r = push_declarations(child, line); !r) return r;
    auto name = resolve(child.name(), false, line);
    scope_.resize(scope_size);
    if (!name) return fail(name.error());
    if (name->ns == Ns::sitemap || name->ns == Ns::rs) {
      return fail(errc::structure,
                  at_line(line) + "<" + child.name() + "> inside " + std::string(what));
    }
  }
  return {};
}

Result<ExtraAttribute> ElementReader::extra_attribute(const Name& name, std::string_view value) {
  return ExtraAttribute{std::string(name.uri), std::string(name.local), std::string(value),
                        std::string(name.prefix)};
}

Result<ExtraElement> ElementReader::read_extra(pugi::xml_node node, const Name& name,
                                               std::uint32_t line, std::uint32_t depth) {
  // The framer bounds nesting only on its exact path; this recursion checks it always.
  if (depth > limits_.max_depth) {
    return fail(errc::limit_exceeded,
                at_line(line) + "elements nested deeper than " + std::to_string(limits_.max_depth));
  }
  ExtraElement extra{
      std::string(name.uri), std::string(name.local), std::string(name.prefix), {}, {}, {}};
  for (pugi::xml_attribute a = node.first_attribute(); a; a = a.next_attribute()) {
    if (is_xmlns(a.name())) continue;
    auto attr_name = resolve(a.name(), true, line);
    if (!attr_name) return fail(attr_name.error());
    auto attr = extra_attribute(*attr_name, a.value());
    if (!attr) return fail(attr.error());
    extra.attributes.push_back(std::move(*attr));
  }
  for (pugi::xml_node child = node.first_child(); child; child = child.next_sibling()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) {
      extra.text += child.value();
      continue;
    }
    if (child.type() != pugi::node_element) continue;
    const std::size_t scope_size = scope_.size();
    if (auto r = push_declarations(child, line); !r) return fail(r.error());
    if (auto r = check_attributes(child, line); !r) return fail(r.error());
    auto child_name = resolve(child.name(), false, line);
    if (!child_name) return fail(child_name.error());
    auto converted = read_extra(child, *child_name, line, depth + 1);
    scope_.resize(scope_size);
    if (!converted) return fail(converted.error());
    extra.children.push_back(std::move(*converted));
  }
  return extra;
}

Result<std::string> ElementReader::element_text(pugi::xml_node node, std::string_view what,
                                                std::uint32_t line) {
  // The common case is one text node: no concatenation needed.
  pugi::xml_node first = node.first_child();
  if (first && !first.next_sibling() &&
      (first.type() == pugi::node_pcdata || first.type() == pugi::node_cdata)) {
    return std::string(trim(first.value()));
  }
  std::string text;
  for (pugi::xml_node child = node.first_child(); child; child = child.next_sibling()) {
    if (child.type() == pugi::node_pcdata || child.type() == pugi::node_cdata) {
      text += child.value();
    } else if (child.type() == pugi::node_element) {
      return fail(errc::structure,
                  at_line(line) + "element <" + child.name() + "> inside " + std::string(what));
    }
  }
  return std::string(trim(text));
}

}  // namespace shardsync::sitemap::detail
