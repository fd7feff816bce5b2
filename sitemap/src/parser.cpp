#include "shardsync/sitemap/parser.hpp"

#include <algorithm>
#include <cstring>
#include <pugixml.hpp>
#include <vector>

#include "element_reader.hpp"
#include "shardsync/sitemap/errc.hpp"
#include "xml_chars.hpp"

namespace shardsync::sitemap {
namespace {

constexpr std::size_t kReadBlock = 256 * 1024;

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);
         });
}

// Replays bytes already read (to sniff for gzip) before the rest of a source.
class PrefixedSource final : public ByteSource {
 public:
  PrefixedSource(std::string prefix, ByteSource& inner)
      : prefix_(std::move(prefix)), inner_(inner) {}
  Result<std::size_t> read(char* buffer, std::size_t size) override {
    if (offset_ < prefix_.size()) {
      const std::size_t n = std::min(size, prefix_.size() - offset_);
      std::memcpy(buffer, prefix_.data() + offset_, n);
      offset_ += n;
      return n;
    }
    return inner_.read(buffer, size);
  }

 private:
  std::string prefix_;
  std::size_t offset_ = 0;
  ByteSource& inner_;
};

// The parser's input buffer: like std::string, minus zero-filling the space a read fills.
class ByteBuffer {
 public:
  char* data() { return data_.get(); }
  const char* data() const { return data_.get(); }
  std::size_t size() const { return size_; }
  char& operator[](std::size_t i) { return data_[i]; }
  char operator[](std::size_t i) const { return data_[i]; }
  const char* begin() const { return data_.get(); }
  std::string_view view() const { return {data_.get(), size_}; }
  std::string substr(std::size_t at, std::size_t n) const {
    return std::string(view().substr(at, n));
  }

  // Room for `n` more bytes at the end; commit() what was written there.
  char* reserve_tail(std::size_t n) {
    if (size_ + n > capacity_) {
      const std::size_t capacity = std::max(size_ + n, capacity_ * 2);
      auto grown = std::make_unique_for_overwrite<char[]>(capacity);
      if (size_) std::memcpy(grown.get(), data_.get(), size_);
      data_ = std::move(grown);
      capacity_ = capacity;
    }
    return data_.get() + size_;
  }
  void commit(std::size_t n) { size_ += n; }
  void append(std::string_view bytes) {
    if (bytes.empty()) return;  // memcpy must not see the null of an empty buffer
    std::memcpy(reserve_tail(bytes.size()), bytes.data(), bytes.size());
    commit(bytes.size());
  }
  void erase_front(std::size_t n) {
    if (n == 0) return;
    if (n < size_) std::memmove(data_.get(), data_.get() + n, size_ - n);
    size_ -= n;
  }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t size_ = 0;
  std::size_t capacity_ = 0;
};

// Frames a document into its prolog, root start tag, batches of complete top-level children
// and epilog; pugixml parses each piece, ElementReader turns elements into model values.
// buf_ holds the unconsumed input; indexes into it stay valid until compact() runs, which
// only happens between batches.
class StreamParser {
 public:
  StreamParser(ByteSource& source, ParseHandler& handler, const ParseOptions& options)
      : source_(&source), handler_(handler), options_(options), limits_(options.limits) {}

  Result<ParseStats> run() {
    if (auto r = open(); !r) return fail(r.error());
    auto root_at = read_prolog();
    if (!root_at) return fail(root_at.error());
    auto content_at = read_root_tag(*root_at);
    if (!content_at) return fail(content_at.error());
    if (!root_self_closing_) {
      if (auto r = read_content(*content_at); !r) return fail(r.error());
      content_at = epilog_start_;
    }
    if (!header_delivered_) deliver_header();
    if (auto r = read_epilog(*content_at); !r) return fail(r.error());
    stats_.lines = line_at(buf_.size());
    return stats_;
  }

 private:
  // --- input -------------------------------------------------------------------------------

  Result<void> open() {
    std::string first(kReadBlock, '\0');
    auto n = source_->read(first.data(), first.size());
    if (!n) return fail(n.error());
    first.resize(*n);
    if (first.size() >= 2 && static_cast<unsigned char>(first[0]) == 0x1f &&
        static_cast<unsigned char>(first[1]) == 0x8b) {
      stats_.gzip = true;
      gzip_ = gzip_source(std::make_unique<PrefixedSource>(std::move(first), *source_),
                          limits_.max_document_bytes);
      source_ = gzip_.get();
      auto more = fill();
      if (!more) return fail(more.error());
    } else {
      if (auto r = append(first); !r) return fail(r.error());
    }
    return check_encoding_signature();
  }

  Result<void> check_encoding_signature() {
    const auto byte = [&](std::size_t i) {
      return i < buf_.size() ? static_cast<unsigned char>(buf_[i]) : 0x100u;
    };
    if (byte(0) == 0xEF && byte(1) == 0xBB && byte(2) == 0xBF) {
      bom_ = 3;
    } else if ((byte(0) == 0xFE && byte(1) == 0xFF) || (byte(0) == 0xFF && byte(1) == 0xFE) ||
               (byte(0) == 0x00 && byte(1) == 0x3C) || (byte(0) == 0x3C && byte(1) == 0x00) ||
               (byte(0) == 0x00 && byte(1) == 0x00)) {
      return fail(errc::unsupported_encoding, "line 1: UTF-16/UTF-32 input; only UTF-8 is read");
    }
    return validate_chars(false);
  }

  Result<void> append(std::string_view bytes) {
    stats_.bytes += bytes.size();
    if (stats_.bytes > limits_.max_document_bytes) {
      return fail(errc::limit_exceeded, "document is larger than " +
                                            std::to_string(limits_.max_document_bytes) + " bytes");
    }
    buf_.append(bytes);
    return {};
  }

  // Reads one more block; false at the end of the input.
  Result<bool> fill() {
    if (eof_) return false;
    auto n = source_->read(buf_.reserve_tail(kReadBlock), kReadBlock);
    if (!n) return fail(n.error());
    buf_.commit(*n);
    if (*n == 0) {
      eof_ = true;
      if (auto r = validate_chars(true); !r) return fail(r.error());
      return false;
    }
    stats_.bytes += *n;
    if (stats_.bytes > limits_.max_document_bytes) {
      return fail(errc::limit_exceeded, "document is larger than " +
                                            std::to_string(limits_.max_document_bytes) + " bytes");
    }
    if (auto r = validate_chars(false); !r) return fail(r.error());
    return true;
  }

  Result<void> validate_chars(bool at_end) {
    std::size_t valid = 0;
    const auto check = detail::check_xml_text(buf_.view().substr(validated_), valid);
    if (check == detail::CharCheck::invalid || (check == detail::CharCheck::incomplete && at_end)) {
      const std::size_t at = validated_ + valid;
      const std::string byte =
          at < buf_.size() ? " (byte 0x" + hex_byte(static_cast<unsigned char>(buf_[at])) + ")"
                           : "";
      return fail(errc::invalid_utf8,
                  where(at) + "invalid UTF-8 or a character XML forbids" + byte);
    }
    validated_ += valid;
    return {};
  }

  static std::string hex_byte(unsigned char c) {
    constexpr char kDigits[] = "0123456789abcdef";
    return {kDigits[c >> 4], kDigits[c & 15]};
  }

  // Makes at least `end` bytes available (only validated bytes count); false at the end.
  Result<bool> ensure(std::size_t end) {
    while (validated_ < end) {
      auto more = fill();
      if (!more) return fail(more.error());
      if (!*more) return validated_ >= end;
    }
    return true;
  }

  // Drops consumed bytes in front of `keep`; returns how far indexes moved.
  std::size_t compact(std::size_t keep) {
    // Moving the unread tail costs as much as it holds: do it rarely, or when it is empty.
    if (keep < (2u << 20) && keep != buf_.size()) return 0;
    line_at(keep);  // moves the line cursor to `keep` so no line count is lost
    buf_.erase_front(keep);
    validated_ -= keep;
    line_base_ = cursor_line_;
    cursor_offset_ = 0;
    return keep;
  }

  // --- positions and lines -------------------------------------------------------------------

  std::uint32_t line_at(std::size_t offset) {
    offset = std::min(offset, buf_.size());
    if (offset < cursor_offset_) {  // only on error paths: count from the buffer start
      return line_base_ + static_cast<std::uint32_t>(std::count(
                              buf_.begin(), buf_.begin() + static_cast<long>(offset), '\n'));
    }
    cursor_line_ +=
        static_cast<std::uint32_t>(std::count(buf_.begin() + static_cast<long>(cursor_offset_),
                                              buf_.begin() + static_cast<long>(offset), '\n'));
    cursor_offset_ = offset;
    return cursor_line_;
  }

  std::string where(std::size_t offset) { return "line " + std::to_string(line_at(offset)) + ": "; }

  template <typename... Parts>
  tl::unexpected<Error> error_at(errc code, std::size_t offset, Parts&&... parts) {
    std::string text = where(offset);
    (text.append(parts), ...);
    return fail(code, std::move(text));
  }

  bool starts_with_at(std::size_t at, std::string_view s) const {
    return buf_.view().substr(at, s.size()) == s;
  }

  // Finds `needle` at or after `from`, reading more as needed. Fails past `cap` (an index)
  // with limit_exceeded and at the end of input with truncated.
  Result<std::size_t> find(std::string_view needle, std::size_t from, std::size_t cap,
                           std::size_t item_start, const char* what) {
    std::size_t searched = from;
    for (;;) {
      const std::string_view hay = buf_.view().substr(0, validated_);
      const auto at = hay.find(needle, searched);
      if (at != std::string_view::npos && at + needle.size() <= cap) return at;
      if (validated_ >= cap) {
        return error_at(errc::limit_exceeded, item_start, what, " is longer than ",
                        std::to_string(cap - item_start), " bytes");
      }
      if (validated_ >= needle.size()) searched = std::max(from, validated_ - needle.size() + 1);
      auto more = fill();
      if (!more) return fail(more.error());
      if (!*more) return error_at(errc::truncated, item_start, "document ends inside ", what);
    }
  }

  // Index of the '>' closing the tag that starts at `start`, skipping quoted values.
  Result<std::size_t> tag_end(std::size_t start, std::size_t cap, const char* what) {
    std::size_t i = start + 1;
    char quote = 0;
    for (;;) {
      for (; i < validated_; ++i) {
        const char c = buf_[i];
        if (quote) {
          if (c == quote) quote = 0;
        } else if (c == '"' || c == '\'') {
          quote = c;
        } else if (c == '>') {
          if (i >= cap) break;
          return i;
        }
      }
      if (i >= cap) {
        return error_at(errc::limit_exceeded, start, what, " is longer than ",
                        std::to_string(cap - start), " bytes");
      }
      auto more = fill();
      if (!more) return fail(more.error());
      if (!*more) return error_at(errc::truncated, start, "document ends inside ", what);
    }
  }

  Result<void> check_references(std::size_t begin, std::size_t end) {
    if (!std::memchr(buf_.data() + begin, '&', end - begin)) return {};
    const auto bad = detail::find_bad_reference(buf_.view().substr(begin, end - begin));
    if (bad == std::string_view::npos) return {};
    const std::string_view ref = buf_.view().substr(begin + bad, 12);
    return error_at(errc::malformed_xml, begin + bad,
                    "undefined entity or invalid character reference near '",
                    std::string(ref.substr(0, ref.find_first_of(" \t\r\n<"))), "'");
  }

  // Skips XML whitespace from `at`; returns the index of the next other byte, or npos at EOF.
  // When nothing before `at` is needed any more (`disposable`), a long run of whitespace is
  // dropped from the buffer as it is read, so it cannot grow memory.
  Result<std::size_t> skip_space(std::size_t at, bool disposable) {
    for (;;) {
      while (at < validated_ && is_space(buf_[at])) ++at;
      if (at < validated_) return at;
      if (disposable) at -= compact(at);
      auto more = fill();
      if (!more) return fail(more.error());
      if (!*more) return std::string::npos;
    }
  }

  // Comments, processing instructions and markup declarations, wherever they appear.
  // Returns the index after the construct, or npos when `at` starts none of them.
  Result<std::size_t> skip_misc(std::size_t at, std::size_t cap, std::size_t item_start) {
    if (auto r = ensure(at + 2); !r) return fail(r.error());
    if (at + 1 < validated_ && buf_[at + 1] != '!' && buf_[at + 1] != '?') {
      return std::string::npos;  // a start or end tag: the common case
    }
    if (auto r = ensure(at + 9); !r) return fail(r.error());
    if (starts_with_at(at, "<!--")) {
      auto end = find("-->", at + 4, cap, item_start, "a comment");
      if (!end) return fail(end.error());
      return *end + 3;
    }
    if (starts_with_at(at, "<?")) {
      auto end = find("?>", at + 2, cap, item_start, "a processing instruction");
      if (!end) return fail(end.error());
      return *end + 2;
    }
    if (starts_with_at(at, "<!DOCTYPE") || starts_with_at(at, "<!ENTITY")) {
      return error_at(errc::doctype_refused, at,
                      "DOCTYPE and entity declarations are refused: sitemaps never need them");
    }
    if (starts_with_at(at, "<!") && !starts_with_at(at, "<![CDATA[")) {
      return error_at(errc::doctype_refused, at, "markup declarations are refused");
    }
    return std::string::npos;
  }

  // --- document parts --------------------------------------------------------------------------

  // Skips the XML declaration, comments and PIs; returns the index of the root's '<'.
  Result<std::size_t> read_prolog() {
    std::size_t at = bom_;
    if (auto r = ensure(at + 6); !r) return fail(r.error());
    if (starts_with_at(at, "<?xml") && at + 5 < validated_ && is_space(buf_[at + 5])) {
      auto end = find("?>", at + 5, at + 4096, at, "the XML declaration");
      if (!end) return fail(end.error());
      if (auto r = check_declaration(buf_.view().substr(at, *end - at), at); !r) {
        return fail(r.error());
      }
      at = *end + 2;
    }
    for (;;) {
      auto next = skip_space(at, true);
      if (!next) return fail(next.error());
      if (*next == std::string::npos) {
        return error_at(errc::truncated, buf_.size(), "no root element");
      }
      at = *next;
      if (buf_[at] != '<') return error_at(errc::malformed_xml, at, "text before the root element");
      auto after = skip_misc(at, at + limits_.max_root_tag_bytes, at);
      if (!after) return fail(after.error());
      if (*after == std::string::npos) break;
      if (starts_with_at(at, "<?xml")) {
        return error_at(errc::malformed_xml, at, "XML declaration not at the start");
      }
      at = *after;
    }
    if (starts_with_at(at, "<![CDATA["))
      return error_at(errc::malformed_xml, at, "CDATA before the root");
    return at;
  }

  Result<void> check_declaration(std::string_view decl, std::size_t at) {
    const auto key = decl.find("encoding");
    if (key == std::string_view::npos) return {};
    std::size_t i = key + 8;
    while (i < decl.size() && (is_space(decl[i]) || decl[i] == '=')) ++i;
    if (i >= decl.size() || (decl[i] != '"' && decl[i] != '\'')) {
      return error_at(errc::malformed_xml, at, "malformed encoding declaration");
    }
    const char quote = decl[i];
    const auto close = decl.find(quote, i + 1);
    if (close == std::string_view::npos) {
      return error_at(errc::malformed_xml, at, "malformed encoding declaration");
    }
    const std::string_view name = decl.substr(i + 1, close - i - 1);
    if (!iequals(name, "utf-8") && !iequals(name, "us-ascii")) {
      return error_at(errc::unsupported_encoding, at, "encoding '", std::string(name),
                      "' is not supported; sitemaps are UTF-8");
    }
    return {};
  }

  // Parses the root start tag; returns the index just after it.
  Result<std::size_t> read_root_tag(std::size_t at) {
    auto end = tag_end(at, at + limits_.max_root_tag_bytes, "the root start tag");
    if (!end) return fail(end.error());
    if (auto r = check_references(at, *end); !r) return fail(r.error());
    std::string text = buf_.substr(at, *end - at + 1);
    root_self_closing_ = buf_[*end - 1] == '/';
    std::size_t name_end = 1;
    while (name_end < text.size() && !is_space(text[name_end]) && text[name_end] != '/' &&
           text[name_end] != '>') {
      ++name_end;
    }
    root_qname_ = text.substr(1, name_end - 1);
    if (!root_self_closing_) text += "</" + root_qname_ + ">";

    const std::uint32_t line = line_at(at);
    pugi::xml_document doc;
    const auto parsed =
        doc.load_buffer(text.data(), text.size(), pugi::parse_default, pugi::encoding_utf8);
    if (!parsed) {
      return fail(errc::malformed_xml,
                  "line " + std::to_string(line) + ": root start tag: " + parsed.description());
    }
    auto header = reader_.read_root(doc.document_element(), line, header_);
    if (!header) return fail(header.error());
    // Entries usually carry the root's prefix: "</url" or "</sm:sitemap".
    const auto colon = root_qname_.find(':');
    entry_end_tag_ = "</" + (colon == std::string::npos ? "" : root_qname_.substr(0, colon + 1)) +
                     (header_.is_index() ? "sitemap" : "url");
    return *end + 1;
  }

  // Frames the root's children into batches until the root's end tag.
  Result<void> read_content(std::size_t at) {
    std::size_t batch_start = at;  // framed children not yet parsed: [batch_start, batch_end)
    std::size_t batch_end = at;
    for (;;) {
      // Whitespace between children; a long run is dropped once the batch before it is parsed.
      for (;;) {
        while (at < validated_ && is_space(buf_[at])) ++at;
        if (at < validated_) break;
        if (at - batch_end > options_.batch_bytes) {
          if (auto r = parse_batch(batch_start, batch_end); !r) return fail(r.error());
          at -= compact(at);
          batch_start = batch_end = at;
        }
        auto more = fill();
        if (!more) return fail(more.error());
        if (!*more) {
          return error_at(errc::truncated, buf_.size(), "document ends before </", root_qname_,
                          ">");
        }
      }
      if (buf_[at] != '<') {
        return error_at(errc::structure, at, "text directly inside <", root_qname_, ">");
      }
      if (auto r = ensure(at + 2); !r) return fail(r.error());
      if (starts_with_at(at, "</")) {
        if (auto r = parse_batch(batch_start, batch_end); !r) return fail(r.error());
        return read_root_end(at);
      }
      if (batch_start == batch_end) {
        batch_start = batch_end = at;
        auto cut = fast_batch_end(at);
        if (!cut) return fail(cut.error());
        if (*cut != std::string::npos) {
          auto parsed = parse_batch(at, *cut, true);
          if (!parsed) return fail(parsed.error());
          if (*parsed) {
            at = *cut;
            at -= compact(at);
            batch_start = batch_end = at;
            continue;
          }
        }
      }
      const std::size_t cap = at + limits_.max_entry_bytes;
      auto after = skip_misc(at, cap, at);
      if (!after) return fail(after.error());
      if (*after == std::string::npos) {
        if (starts_with_at(at, "<![CDATA[")) {
          return error_at(errc::structure, at, "text directly inside <", root_qname_, ">");
        }
        after = frame_element(at, cap);
        if (!after) return fail(after.error());
      }
      at = batch_end = *after;
      if (batch_end - batch_start >= options_.batch_bytes) {
        if (auto r = parse_batch(batch_start, batch_end); !r) return fail(r.error());
        at -= compact(at);
        batch_start = batch_end = at;
      }
    }
  }

  // Returns the index after the element starting at `start` (a '<' opening a start tag).
  Result<std::size_t> frame_element(std::size_t start, std::size_t cap) {
    std::uint32_t depth = 0;
    std::size_t at = start;
    for (;;) {
      // `at` is at a '<'.
      if (auto r = ensure(at + 9); !r) return fail(r.error());
      if (starts_with_at(at, "<![CDATA[")) {
        auto end = find("]]>", at + 9, cap, start, "an entry");
        if (!end) return fail(end.error());
        at = *end + 3;
      } else if (starts_with_at(at, "</")) {
        auto end = tag_end(at, cap, "an entry");
        if (!end) return fail(end.error());
        at = *end + 1;
        if (--depth == 0) return at;
      } else if (auto misc = skip_misc(at, cap, start); !misc) {
        return fail(misc.error());
      } else if (*misc != std::string::npos) {
        at = *misc;
      } else {
        auto end = tag_end(at, cap, "an entry");
        if (!end) return fail(end.error());
        if (auto r = check_references(at, *end); !r) return fail(r.error());
        const bool self_closing = buf_[*end - 1] == '/';
        at = *end + 1;
        if (self_closing) {
          if (depth == 0) return at;
        } else if (++depth + 1 > limits_.max_depth) {  // + 1: the root
          return error_at(errc::limit_exceeded, at,
                          "elements nested deeper than " + std::to_string(limits_.max_depth));
        }
      }
      auto next = find("<", at, cap, start, "an entry");
      if (!next) return fail(next.error());
      if (auto r = check_references(at, *next); !r) return fail(r.error());
      at = *next;
    }
  }

  // Parses the complete top-level children in [begin, end) and delivers them. With
  // `tentative` (a fast-path cut), a document pugixml rejects yields false instead of an error,
  // so that the caller can frame the same bytes exactly; pugixml then parses a copy.
  Result<bool> parse_batch(std::size_t begin, std::size_t end, bool tentative = false) {
    if (begin == end) return true;
    // Lines are counted first: parsing in place moves bytes around.
    line_map_.reset(line_at(begin));
    const char* const first = buf_.data() + begin;
    const char* const last = buf_.data() + end;
    for (const char* p = first;
         (p = static_cast<const char*>(std::memchr(p, '\n', static_cast<std::size_t>(last - p))));
         ++p) {
      line_map_.newlines.push_back(static_cast<std::uint32_t>(p - first));
    }
    const detail::LineMap& line_of = line_map_;

    pugi::xml_document doc;
    constexpr unsigned kOptions = pugi::parse_default | pugi::parse_fragment;
    char* text = buf_.data() + begin;
    if (tentative) {
      // A reused scratch copy: a fresh 256 KiB allocation per batch would be an mmap each time.
      scratch_.assign(first, end - begin);
      text = scratch_.data();
    }
    const auto parsed = doc.load_buffer_inplace(text, end - begin, kOptions, pugi::encoding_utf8);
    if (!parsed) {
      if (tentative) return false;
      return fail(errc::malformed_xml,
                  "line " + std::to_string(line_of(parsed.offset)) + ": " + parsed.description());
    }
    cursor_offset_ = end;
    cursor_line_ = line_map_.base + static_cast<std::uint32_t>(line_map_.newlines.size());
    for (pugi::xml_node node = doc.first_child(); node; node = node.next_sibling()) {
      if (node.type() != pugi::node_element) {
        if (node.type() == pugi::node_pcdata || node.type() == pugi::node_cdata) {
          return fail(errc::structure, "line " + std::to_string(line_of(node.offset_debug())) +
                                           ": text directly inside <" + root_qname_ + ">");
        }
        continue;
      }
      Entry entry;
      auto kind = reader_.read_root_child(node, line_of, header_, entry);
      if (!kind) return fail(kind.error());
      if (*kind == detail::RootChild::entry) {
        if (!header_delivered_) deliver_header();
        if (++stats_.entries > limits_.max_entries) {
          return fail(errc::limit_exceeded, "line " + std::to_string(entry.line) + ": more than " +
                                                std::to_string(limits_.max_entries) + " entries");
        }
        handler_.on_entry(std::move(entry));
      } else if (header_delivered_) {
        return fail(errc::structure, "line " + std::to_string(line_of(node.offset_debug())) +
                                         ": root <rs:md>/<rs:ln> after the first entry");
      }
    }
    return true;
  }

  // The fast path for the common case, a run of plain entries. In a window of the next
  // batch_bytes with no comment, CDATA, PI or declaration ("<!", "<?"), a batch can end after
  // the last entry end tag: pugixml then checks everything exact framing would (a wrong cut
  // leaves an element open, which pugixml reports, and the caller frames exactly instead).
  // Returns the end of the batch, or npos when the window does not qualify.
  Result<std::size_t> fast_batch_end(std::size_t at) {
    if (entry_end_tag_.empty() || limits_.max_entry_bytes < options_.batch_bytes) {
      return std::string::npos;
    }
    if (auto r = ensure(at + options_.batch_bytes); !r) return fail(r.error());
    const std::string_view window(buf_.data() + at,
                                  std::min<std::size_t>(validated_ - at, options_.batch_bytes));
    for (std::size_t lt = window.find('<'); lt != std::string_view::npos && lt + 1 < window.size();
         lt = window.find('<', lt + 1)) {
      if (window[lt + 1] == '!' || window[lt + 1] == '?') return std::string::npos;
    }
    for (std::size_t tag = window.rfind(entry_end_tag_); tag != std::string_view::npos && tag > 0;
         tag = window.rfind(entry_end_tag_, tag - 1)) {
      std::size_t i = tag + entry_end_tag_.size();
      while (i < window.size() && is_space(window[i])) ++i;
      if (i < window.size() && window[i] == '>') {  // not "</urlset>" or "</url-ext>"
        const std::size_t end = at + i + 1;
        if (auto r = check_references(at, end); !r) return fail(r.error());
        return end;
      }
    }
    return std::string::npos;
  }

  Result<void> read_root_end(std::size_t at) {
    auto end = tag_end(at, at + 1024, "the root end tag");
    if (!end) return fail(end.error());
    std::string_view name = buf_.view().substr(at + 2, *end - at - 2);
    while (!name.empty() && is_space(name.back())) name.remove_suffix(1);
    if (name != root_qname_) {
      return error_at(errc::malformed_xml, at, "end tag </", std::string(name),
                      "> does not match <", root_qname_, ">");
    }
    epilog_start_ = *end + 1;
    return {};
  }

  Result<void> read_epilog(std::size_t at) {
    for (;;) {
      auto next = skip_space(at, true);
      if (!next) return fail(next.error());
      if (*next == std::string::npos) return {};
      at = *next;
      if (buf_[at] != '<') return error_at(errc::malformed_xml, at, "text after the root element");
      auto after = skip_misc(at, at + limits_.max_entry_bytes, at);
      if (!after) return fail(after.error());
      if (*after == std::string::npos) {
        return error_at(errc::multiple_roots, at, "a second root element; a document has one");
      }
      at = *after;
      at -= compact(at);
    }
  }

  void deliver_header() {
    header_delivered_ = true;
    handler_.on_header(header_);
  }

  ByteSource* source_;
  ParseHandler& handler_;
  const ParseOptions& options_;
  const ParseLimits& limits_;
  std::unique_ptr<ByteSource> gzip_;
  detail::ElementReader reader_{options_.limits};

  ByteBuffer buf_;
  std::size_t validated_ = 0;  // bytes of buf_ checked for UTF-8 and forbidden characters
  std::size_t bom_ = 0;
  bool eof_ = false;

  std::uint32_t line_base_ = 1;  // line number at buf_[0]
  std::size_t cursor_offset_ = 0;
  std::uint32_t cursor_line_ = 1;
  detail::LineMap line_map_;

  std::string root_qname_;
  std::string entry_end_tag_;
  std::string scratch_;  // what pugixml parses on the fast path
  bool root_self_closing_ = false;
  std::size_t epilog_start_ = 0;
  DocumentHeader header_;
  bool header_delivered_ = false;
  ParseStats stats_;
};

class CollectingHandler final : public ParseHandler {
 public:
  explicit CollectingHandler(Document& document) : document_(document) {}
  void on_header(const DocumentHeader& header) override { document_.header = header; }
  void on_entry(Entry&& entry) override { document_.entries.push_back(std::move(entry)); }

 private:
  Document& document_;
};

}  // namespace

Result<ParseStats> parse_stream(ByteSource& source, ParseHandler& handler,
                                const ParseOptions& options) {
  return StreamParser(source, handler, options).run();
}

Result<Document> parse_document(std::string_view bytes, const ParseOptions& options) {
  auto source = memory_source(bytes);
  Document document;
  CollectingHandler handler(document);
  if (auto r = parse_stream(*source, handler, options); !r) return fail(r.error());
  return document;
}

Result<Document> parse_file(const std::string& path, const ParseOptions& options) {
  auto source = file_source(path);
  if (!source) return fail(source.error());
  Document document;
  CollectingHandler handler(document);
  if (auto r = parse_stream(**source, handler, options); !r) {
    return fail(r.error().code, path + ": " + r.error().detail);
  }
  return document;
}

}  // namespace shardsync::sitemap
