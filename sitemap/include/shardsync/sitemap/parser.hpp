#pragma once
// A streaming, namespace-aware, hardened reader for ResourceSync documents.
//
// Memory stays bounded whatever the document size: the input is framed into batches of
// complete top-level entries, each batch parsed by pugixml and handed over as values, then
// freed. Refused with an error naming the line: DOCTYPE and other markup declarations,
// invalid UTF-8 and characters XML forbids, undefined entity and bad character references,
// several roots, duplicate attributes, nesting, size, entry-count and attribute-count limits,
// a document cut short, and values that do not parse (datetimes, lengths, change types).
// Unknown attributes and elements in foreign namespaces are kept, never fatal.
// gzip-compressed input is recognised by its magic bytes and inflated on the fly.

#include <cstdint>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/byte_source.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::sitemap {

struct ParseLimits {
  // Bytes of XML after decompression. Sitemaps allow 50 MB (52,428,800); the slack lets a
  // validator report an oversized document instead of failing to read it.
  std::uint64_t max_document_bytes = 64ull << 20;
  // <url>/<sitemap> entries. Sitemaps allow 50,000; same slack as above.
  std::uint64_t max_entries = 100'000;
  // Element nesting, root included. ResourceSync needs 4; extensions get some room.
  std::uint32_t max_depth = 32;
  // Bytes of one top-level child of the root (one entry with its links).
  std::uint32_t max_entry_bytes = 1u << 20;
  // Bytes of the root start tag with its namespace declarations.
  std::uint32_t max_root_tag_bytes = 64u << 10;
  // Attributes on one element.
  std::uint32_t max_attributes = 64;
};

struct ParseOptions {
  ParseLimits limits;
  // Entries are parsed in batches of about this many bytes (the memory/speed trade-off).
  std::uint32_t batch_bytes = 256u << 10;
};

// What a stream parse saw, returned on success.
struct ParseStats {
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;  // XML bytes (after decompression)
  std::uint32_t lines = 0;
  bool gzip = false;
};

// Receives a document piece by piece. on_header() is called exactly once, before the first
// on_entry(); entries arrive in document order. Called on the parsing thread.
class ParseHandler {
 public:
  virtual ~ParseHandler() = default;
  virtual void on_header(const DocumentHeader& header) = 0;
  virtual void on_entry(Entry&& entry) = 0;
};

// Parses the whole source into `handler`. On error nothing more is delivered; what was
// already delivered must be discarded by a caller that needs all-or-nothing.
// Error details read "line N: what was wrong".
[[nodiscard]] Result<ParseStats> parse_stream(ByteSource& source, ParseHandler& handler,
                                              const ParseOptions& options = {});

// Convenience forms that collect the document in memory.
[[nodiscard]] Result<Document> parse_document(std::string_view bytes,
                                              const ParseOptions& options = {});
[[nodiscard]] Result<Document> parse_file(const std::string& path,
                                          const ParseOptions& options = {});

}  // namespace shardsync::sitemap
