#pragma once
// Streaming writer for ResourceSync documents: constant memory for any number of entries.
// Output is UTF-8 XML, one entry per line, datetimes in UTC "Z" form.

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::sitemap {

// Where a writer's bytes go.
class Sink {
 public:
  virtual ~Sink() = default;
  [[nodiscard]] virtual Result<void> write(std::string_view bytes) = 0;
};

// Appends to a string the caller owns.
class StringSink final : public Sink {
 public:
  explicit StringSink(std::string& out) : out_(out) {}
  Result<void> write(std::string_view bytes) override {
    out_.append(bytes);
    return {};
  }

 private:
  std::string& out_;
};

// Serialises one document. Call begin(), add() per entry, then finish(); any error leaves the
// writer failed. Entries of change documents (Change List, Change Dump Manifest, Change
// Notification) must come in forward chronological order by `datetime`: an entry that goes
// back in time is refused (§12.1). <lastmod> is the resource's own time and is not ordered.
// Not thread-safe.
class DocumentWriter {
 public:
  explicit DocumentWriter(Sink& sink);

  [[nodiscard]] Result<void> begin(const DocumentHeader& header);
  [[nodiscard]] Result<void> add(const Entry& entry);
  [[nodiscard]] Result<void> finish();

  [[nodiscard]] std::uint64_t entries() const { return entries_; }
  // Bytes handed to the sink so far plus those still buffered.
  [[nodiscard]] std::uint64_t bytes() const { return flushed_ + buffer_.size(); }

 private:
  Result<void> flush();

  Sink& sink_;
  std::string buffer_;
  std::uint64_t flushed_ = 0;
  std::uint64_t entries_ = 0;
  bool ordered_ = false;  // this document's entries must not go back in time
  bool index_ = false;
  std::optional<Timestamp> last_time_;
  enum class State { idle, open, done } state_ = State::idle;
};

// Writes a whole document to a string.
[[nodiscard]] Result<std::string> write_document(const Document& document);
[[nodiscard]] Result<std::string> write_document(const DocumentHeader& header,
                                                 std::span<const Entry> entries);

// Writes a whole document to `path` atomically: a temporary file beside it, fsync, rename,
// fsync of the directory. A reader never sees a half-written document under `path`.
[[nodiscard]] Result<void> write_document_file(const Document& document, const std::string& path);

// Building blocks the split writer shares; exposed for it and for tests.
namespace detail {
// The XML declaration and root start tag with namespace declarations.
void append_root_start(std::string& out, const DocumentHeader& header);
// Root <rs:md> and <rs:ln> children and foreign root elements, one per line.
void append_header_children(std::string& out, const DocumentHeader& header);
void append_root_end(std::string& out, const DocumentHeader& header);
// One <url>/<sitemap> line.
void append_entry(std::string& out, const Entry& entry, bool index);
void append_link(std::string& out, const Link& link);
void append_escaped(std::string& out, std::string_view text, bool attribute);
// The time an entry of a change document is ordered by: its change datetime.
std::optional<Timestamp> change_time(const Entry& entry);
}  // namespace detail

}  // namespace shardsync::sitemap
