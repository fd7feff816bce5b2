#include "shardsync/sitemap/split_writer.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

#include "atomic_file.hpp"
#include "shardsync/sitemap/errc.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::sitemap {
namespace {

constexpr std::size_t kFlushBytes = 256 * 1024;
// ` until="YYYY-MM-DDThh:mm:ss.nnnnnnnnnZ"` at its longest.
constexpr std::size_t kUntilReserve = 39;

std::string part_name(const std::string& name, std::uint64_t number) {
  char suffix[32];
  std::snprintf(suffix, sizeof suffix, "-%05llu.xml", static_cast<unsigned long long>(number));
  return name + suffix;
}

std::string index_link_text(const std::string& href) {
  std::string text;
  detail::append_link(text, make_link("index", href));
  return text;
}

}  // namespace

struct SplitWriter::State {
  SplitWriterOptions options;
  DocumentHeader header;
  bool change = false;  // a change document: parts carry from/until
  std::string index_url;

  struct Part {
    detail::AtomicFile file;
    std::uint64_t entries = 0;
    std::uint64_t until_offset = 0;  // reserved space in <rs:md> (change documents)
    std::uint64_t index_offset = 0;  // reserved space for the index link (first part)
    Timestamp from;
    std::optional<Timestamp> last_time;
  };
  std::vector<Part> parts;  // closed and sealed, plus the open one at the back
  std::string buffer;
  std::string scratch;
  std::uint64_t entries = 0;
  std::uint64_t bytes = 0;
  std::optional<Timestamp> last_time;
  bool failed = false;

  std::string path_of(const std::string& file) const { return options.directory + "/" + file; }

  Result<void> flush() {
    if (buffer.empty()) return {};
    auto r = parts.back().file.write(buffer);
    buffer.clear();
    return r;
  }

  std::uint64_t open_bytes() const { return parts.back().file.size() + buffer.size(); }

  Result<void> open_part(Timestamp from) {
    const std::uint64_t number = parts.size() + 1;
    auto file = detail::AtomicFile::create(path_of(part_name(options.name, number)));
    if (!file) return fail(file.error());
    parts.push_back(Part{std::move(*file), 0, 0, 0, from, std::nullopt});
    Part& part = parts.back();

    DocumentHeader part_header = header;
    part_header.md.until.reset();
    if (change) part_header.md.from = from;
    std::erase_if(part_header.links, [](const Link& l) { return l.rel == "index"; });

    detail::append_root_start(buffer, part_header);
    DocumentHeader md_only;
    md_only.has_md = true;
    md_only.md = part_header.md;
    detail::append_header_children(buffer, md_only);
    if (change) {
      // Room for `until`, filled in when the part closes (whitespace is allowed in a tag).
      const std::size_t close = buffer.rfind("/>");
      buffer.insert(close, kUntilReserve, ' ');
      part.until_offset = part.file.size() + close;
    }
    part_header.has_md = false;
    detail::append_header_children(buffer, part_header);
    const std::string link = index_link_text(index_url);
    if (number == 1) {
      // Whether there will be an index is known only when a second part is needed.
      part.index_offset = part.file.size() + buffer.size();
      buffer.append(link.size(), ' ');
    } else {
      buffer += link;
    }
    buffer += '\n';
    return flush();
  }

  Result<void> close_part(bool last) {
    Part& part = parts.back();
    buffer += "</urlset>\n";
    if (auto r = flush(); !r) return r;
    if (change) {
      std::optional<Timestamp> until = last ? header.md.until : part.last_time;
      if (!last && !until) until = part.from;
      if (until) {
        std::string text = " until=\"";
        append_w3c_datetime(text, *until);
        text += '"';
        if (auto r = part.file.patch(part.until_offset, text); !r) return r;
      }
    }
    if (parts.size() == 2) {
      // A second part exists: the first one gets its link to the index.
      if (auto r = parts.front().file.patch(parts.front().index_offset, index_link_text(index_url));
          !r) {
        return r;
      }
      if (auto r = parts.front().file.seal(); !r) return r;
    }
    bytes += part.file.size();
    if (parts.size() > 1) return part.file.seal();  // the first waits for its index link
    return {};
  }

  Result<void> write_index() {
    DocumentHeader index_header = header;
    index_header.root = RootKind::sitemapindex;
    std::erase_if(index_header.links, [](const Link& l) { return l.rel == "index"; });
    auto file = detail::AtomicFile::create(path_of(options.name + ".xml"));
    if (!file) return fail(file.error());
    DocumentWriter writer(*file);
    if (auto r = writer.begin(index_header); !r) return r;
    for (std::size_t i = 0; i < parts.size(); ++i) {
      Entry entry;
      entry.loc = options.base_url + part_name(options.name, i + 1);
      entry.md.emplace();
      if (change) {
        entry.md->from = parts[i].from;
        entry.md->until = i + 1 < parts.size() ? (parts[i].last_time ? parts[i].last_time
                                                                     : std::optional(parts[i].from))
                                               : header.md.until;
      } else {
        entry.md->at = header.md.at;
        entry.md->completed = header.md.completed;
      }
      if (auto r = writer.add(entry); !r) return r;
    }
    if (auto r = writer.finish(); !r) return r;
    bytes += file->size();
    // Parts first, then the index that names them: a reader never follows a dangling <loc>.
    // The index's directory fsync makes all the renames durable.
    for (std::size_t i = 0; i < parts.size(); ++i) {
      if (auto r = parts[i].file.commit(/*sync_directory=*/false); !r) return r;
    }
    return file->commit();
  }

  // Parts beyond the current count belong to an earlier, longer list: nothing names them now.
  void remove_stale_parts(std::uint64_t first_stale) {
    for (std::uint64_t n = first_stale;; ++n) {
      const std::string path = path_of(part_name(options.name, n));
      if (::unlink(path.c_str()) != 0) break;
    }
  }
};

SplitWriter::SplitWriter(SplitWriterOptions options) : state_(std::make_unique<State>()) {
  state_->options = std::move(options);
}

SplitWriter::~SplitWriter() = default;

Result<void> SplitWriter::begin(const DocumentHeader& header) {
  State& s = *state_;
  if (!s.parts.empty()) return fail(errc::structure, "SplitWriter::begin called twice");
  if (header.is_index())
    return fail(errc::structure, "SplitWriter writes lists; give a <urlset> header");
  if (s.options.base_url.empty() || s.options.base_url.back() != '/') {
    return fail(errc::structure, "SplitWriter needs a base_url ending in '/'");
  }
  if (s.options.max_entries == 0) return fail(errc::structure, "SplitWriter max_entries is 0");
  s.header = header;
  s.change = is_change_capability(header.capability());
  if (s.change && !header.md.from) {
    return fail(errc::structure, "a change document needs `from` to be split");
  }
  s.index_url = s.options.base_url + s.options.name + ".xml";
  s.buffer.reserve(kFlushBytes + 4096);
  return s.open_part(header.md.from.value_or(Timestamp{}));
}

Result<void> SplitWriter::add(const Entry& entry) {
  State& s = *state_;
  if (s.parts.empty() || s.failed) return fail(errc::structure, "SplitWriter::add outside a list");
  const std::optional<Timestamp> time = s.change ? detail::change_time(entry) : std::nullopt;
  if (time && s.last_time && *time < *s.last_time) {
    s.failed = true;
    return fail(errc::structure, "entry " + entry.loc + " at " + format_w3c_datetime(*time) +
                                     " is older than the one before it: change documents are "
                                     "in forward chronological order");
  }
  s.scratch.clear();
  detail::append_entry(s.scratch, entry, false);
  constexpr std::size_t kFooter = sizeof("</urlset>\n") - 1;
  State::Part* part = &s.parts.back();
  if (part->entries > 0 && (part->entries >= s.options.max_entries ||
                            s.open_bytes() + s.scratch.size() + kFooter > s.options.max_bytes)) {
    if (auto r = s.close_part(false); !r) {
      s.failed = true;
      return r;
    }
    const Timestamp next_from = part->last_time.value_or(part->from);
    if (auto r = s.open_part(next_from); !r) {
      s.failed = true;
      return r;
    }
    part = &s.parts.back();
  }
  s.buffer += s.scratch;
  ++part->entries;
  ++s.entries;
  if (time) {
    part->last_time = time;
    s.last_time = time;
  }
  if (s.buffer.size() >= kFlushBytes) {
    if (auto r = s.flush(); !r) {
      s.failed = true;
      return r;
    }
  }
  return {};
}

Result<SplitResult> SplitWriter::finish() {
  State& s = *state_;
  if (s.parts.empty() || s.failed)
    return fail(errc::structure, "SplitWriter::finish outside a list");
  s.failed = true;  // whatever happens next, this writer is done
  if (auto r = s.close_part(true); !r) return fail(r.error());
  SplitResult result;
  result.document_path = s.path_of(s.options.name + ".xml");
  result.entries = s.entries;
  if (s.parts.size() == 1) {
    if (auto r = s.parts.front().file.commit_as(result.document_path); !r) return fail(r.error());
    s.remove_stale_parts(1);
  } else {
    if (auto r = s.write_index(); !r) return fail(r.error());
    s.remove_stale_parts(s.parts.size() + 1);
    result.indexed = true;
    for (std::size_t i = 0; i < s.parts.size(); ++i) {
      result.parts.push_back(s.path_of(part_name(s.options.name, i + 1)));
    }
  }
  result.bytes = s.bytes;
  return result;
}

}  // namespace shardsync::sitemap
