#pragma once
// Turns pugixml elements of a sitemap into model values: resolves namespace prefixes (pugixml
// compares QNames, not namespaces), checks attributes, parses typed values. Private to the
// parser; no pugixml type leaves src/.

#include <cstdint>
#include <pugixml.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"
#include "shardsync/sitemap/parser.hpp"

namespace shardsync::sitemap::detail {

// Maps an offset inside a parsed batch to a line number.
// Lookups come in document order, so a cursor moves forward instead of searching.
struct LineMap {
  std::uint32_t base = 1;               // line of the batch's first byte
  std::vector<std::uint32_t> newlines;  // offsets of '\n' in the batch, ascending
  mutable std::size_t cursor = 0;       // newlines before the last offset looked up
  mutable std::uint32_t cursor_offset = 0;

  void reset(std::uint32_t first_line) {
    base = first_line;
    newlines.clear();
    cursor = 0;
    cursor_offset = 0;
  }
  std::uint32_t operator()(std::ptrdiff_t offset) const;
};

enum class RootChild { header, entry };

class ElementReader {
 public:
  explicit ElementReader(const ParseLimits& limits) : limits_(limits) {}

  // Reads the root element (parsed on its own, without children): its namespace
  // declarations become the scope for everything below, its foreign attributes go to the
  // header. Fails unless it is <urlset> or <sitemapindex> in the Sitemap namespace.
  [[nodiscard]] Result<void> read_root(pugi::xml_node root, std::uint32_t line,
                                       DocumentHeader& header);

  // Reads one child of the root: <rs:md>, <rs:ln> and foreign elements into `header`,
  // an entry into `entry`. Says which it was.
  [[nodiscard]] Result<RootChild> read_root_child(pugi::xml_node node, const LineMap& lines,
                                                  DocumentHeader& header, Entry& entry);

 private:
  enum class Ns : std::uint8_t { none, sitemap, rs, xml, other };
  struct Binding {
    std::string prefix;
    std::string uri;
    Ns ns;
  };
  struct Name {
    Ns ns;
    std::string_view uri;
    std::string_view local;
    std::string_view prefix;
  };

  Result<void> push_declarations(pugi::xml_node node, std::uint32_t line);
  Result<Name> resolve(std::string_view qname, bool attribute, std::uint32_t line) const;
  Result<void> check_attributes(pugi::xml_node node, std::uint32_t line) const;

  Result<void> read_entry(pugi::xml_node node, const LineMap& lines, std::uint32_t line,
                          Entry& entry);
  Result<void> read_md(pugi::xml_node node, std::uint32_t line, Metadata& md);
  Result<void> read_ln(pugi::xml_node node, std::uint32_t line, Link& link);
  // `depth` counts the root as 1.
  Result<ExtraElement> read_extra(pugi::xml_node node, const Name& name, std::uint32_t line,
                                  std::uint32_t depth);
  Result<ExtraAttribute> extra_attribute(const Name& name, std::string_view value);
  Result<std::string> element_text(pugi::xml_node node, std::string_view what, std::uint32_t line);
  // Skips foreign children of <rs:md>/<rs:ln>; refuses Sitemap/ResourceSync ones.
  Result<void> check_no_children(pugi::xml_node node, std::string_view what, std::uint32_t line);

  const ParseLimits& limits_;
  std::vector<Binding> scope_;
};

}  // namespace shardsync::sitemap::detail
