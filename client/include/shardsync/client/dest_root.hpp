#pragma once
// The destination root (DEST): every file-system operation of the client goes through here, by
// file descriptor relative to a directory fd held open for the whole run, never by path
// string, so nothing can be created, replaced or removed outside DEST — not through `..`, not
// through a symlink planted before or during the run (RELIABILITY.md §1.1 U10–U14, U17).
//
// Paths given here are relative paths that PathMapper produced ("a/b.bin"); one that is
// absolute, has an empty, "." or ".." component, a NUL, or a reserved name (is_reserved_name)
// is errc::unsafe_path before any I/O. Each call resolves its path afresh from the root fd —
// look-ups with openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), creation (and look-ups where
// openat2 is unavailable) with a per-component O_NOFOLLOW walk and mkdirat — so a directory
// swapped for a symlink between calls is refused, not followed. A component that exists as a
// symlink or as a non-directory is an error (errc::unsafe_path), never followed or replaced.
// New directories are fsynced into their parent. ENOSPC/EDQUOT are errc::disk_full; other
// failures errc::io_error.
// Not thread-safe: one thread (the sync loop) uses a DestRoot.

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::client {

// What lstat says about a regular file (nullopt from stat_file when absent).
struct LocalFile {
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;  // since the epoch
  std::uint64_t inode = 0;
  std::uint64_t links = 1;
};

class DestRoot {
 public:
  // Opens (creating it, and its parents, when missing) the directory `path` as the root.
  [[nodiscard]] static Result<DestRoot> open(const std::string& path);

  DestRoot(DestRoot&&) noexcept;
  DestRoot& operator=(DestRoot&&) noexcept;
  ~DestRoot();

  // The root directory's fd (owned; -1 after a move).
  [[nodiscard]] int root_fd() const { return root_ ? root_->get() : -1; }
  [[nodiscard]] const std::string& path() const { return path_; }

  // The directory holding `relative_path`'s leaf (creating directories when `create` is true),
  // plus the leaf name. Lifetime rule: `dir_fd` stays open for as long as `dir` (this Parent,
  // or any copy of `dir`) lives, whatever DestRoot does meanwhile, even after the DestRoot is
  // destroyed; so keep the Parent beside a download job that borrows `dir_fd`. Parents of one
  // directory share one fd while DestRoot's cache holds it (at most kMaxCachedDirs, then the
  // cache is dropped; Parents still held keep theirs), so hold only as many Parents as
  // transfers in flight to bound open fds. A missing directory with `create` false is
  // std::errc::no_such_file_or_directory.
  struct Parent {
    int dir_fd = -1;                      // valid while `dir` lives
    std::string leaf;                     // one component, never reserved
    std::shared_ptr<const UniqueFd> dir;  // owns dir_fd (shared with the cache)
  };
  static constexpr std::size_t kMaxCachedDirs = 256;
  [[nodiscard]] Result<Parent> parent_of(std::string_view relative_path, bool create);

  // lstat of the leaf: nullopt when absent; errc::unsafe_path when it is not a regular file
  // (directory, symlink, device) or a parent is not a plain directory.
  [[nodiscard]] Result<std::optional<LocalFile>> stat_file(std::string_view relative_path);

  // Opens an existing regular file for reading (O_NOFOLLOW; a FIFO or device is refused before
  // it is opened), for hashing local copies. The caller owns (closes) the fd. Absent:
  // std::errc::no_such_file_or_directory.
  [[nodiscard]] Result<int> open_read(std::string_view relative_path);

  // Removes a regular file (never a directory or through a symlink; those are
  // errc::unsafe_path), then removes the parent directories this left empty, up to but never
  // including the root (best effort: a directory that cannot be removed ends the pruning, not
  // the call). Absent already: success.
  [[nodiscard]] Result<void> remove_file(std::string_view relative_path);

  // Calls fn(relative_path, file) for every regular file beneath the root, in byte order of
  // names per directory, skipping the client's reserved names (is_reserved_name) at any level
  // and never following symlinks; directories nested deeper than kMaxWalkDepth (deeper than
  // any mapped path) are not entered, which bounds the fds held open.
  [[nodiscard]] Result<void> walk(
      const std::function<void(const std::string&, const LocalFile&)>& fn);
  static constexpr int kMaxWalkDepth = 64;

 private:
  struct CachedDir {
    std::shared_ptr<const UniqueFd> fd;
    dev_t dev = 0;
    ino_t ino = 0;
  };

  DestRoot(std::shared_ptr<const UniqueFd> root, std::string path);
  // The fd of directory `dir` ("" = root), resolved afresh from the root and then shared with
  // the cache when it is the same directory; nullptr when absent and !create.
  Result<std::shared_ptr<const UniqueFd>> open_dir(std::string_view dir, bool create);
  // Drops `dir` and everything beneath it from the cache (after pruning removed it).
  void forget_dir(std::string_view dir);

  std::shared_ptr<const UniqueFd> root_;
  std::string path_;
  // relative dir -> fd, "" excluded; only shares fds, never trusted without re-resolving.
  std::map<std::string, CachedDir, std::less<>> dir_fds_;
};

}  // namespace shardsync::client
