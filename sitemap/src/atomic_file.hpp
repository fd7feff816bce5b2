#pragma once
// A file that appears under its final name only when complete: written to a temporary
// beside it, fsynced, renamed over the name, and the directory fsynced. Destroyed without
// commit(), it removes the temporary.

#include <cstdint>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::sitemap::detail {

class AtomicFile final : public Sink {
 public:
  [[nodiscard]] static Result<AtomicFile> create(std::string path);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile() override;

  // Appends at the end of what was written so far.
  Result<void> write(std::string_view bytes) override;
  // Overwrites bytes already written, at `offset` (used to fill reserved space).
  [[nodiscard]] Result<void> patch(std::uint64_t offset, std::string_view bytes);
  // fsync and close, keeping the temporary name; commit() later only renames.
  [[nodiscard]] Result<void> seal();
  // Renames the file into place. Without `sync_directory`, the caller fsyncs the directory
  // itself after a group of renames (one fsync covers them all).
  [[nodiscard]] Result<void> commit(bool sync_directory = true);
  // commit() under another final name.
  [[nodiscard]] Result<void> commit_as(const std::string& path, bool sync_directory = true);

  [[nodiscard]] std::uint64_t size() const { return size_; }
  [[nodiscard]] const std::string& path() const { return path_; }

 private:
  AtomicFile(int fd, std::string path, std::string temp_path)
      : fd_(fd), path_(std::move(path)), temp_path_(std::move(temp_path)) {}

  int fd_ = -1;
  std::string path_;
  std::string temp_path_;
  std::uint64_t size_ = 0;
};

// fsync of the directory holding `path`, so a rename in it survives a crash.
[[nodiscard]] Result<void> sync_parent_directory(const std::string& path);

}  // namespace shardsync::sitemap::detail
