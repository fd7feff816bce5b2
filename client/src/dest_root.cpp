#include "shardsync/client/dest_root.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <filesystem>
#include <utility>
#include <vector>

#include "shardsync/client/errc.hpp"
#include "shardsync/client/local_path.hpp"

namespace shardsync::client {
namespace {

constexpr std::size_t kMaxPathBytes = 4096;

Error errno_error(int err, std::string_view what, std::string_view path) {
  errc code = errc::io_error;
  if (err == ENOSPC || err == EDQUOT) {
    code = errc::disk_full;
  } else if (err == ELOOP || err == ENOTDIR || err == EXDEV) {
    // What RESOLVE_NO_SYMLINKS / O_NOFOLLOW / RESOLVE_BENEATH answer for a symlink, a file
    // where a directory should be, or an escape.
    code = errc::unsafe_path;
  }
  return Error{make_error_code(code), std::string(what) + " " + std::string(path) + ": " +
                                          std::generic_category().message(err)};
}

std::vector<std::string_view> split_components(std::string_view path) {
  std::vector<std::string_view> parts;
  for (std::size_t start = 0;;) {
    const std::size_t end = path.find('/', start);
    parts.push_back(path.substr(start, end == std::string_view::npos ? end : end - start));
    if (end == std::string_view::npos) return parts;
    start = end + 1;
  }
}

// Defence in depth: DestRoot takes PathMapper's output, but refuses on its own anything that
// could leave the root or touch the client's files, whoever the caller is (U17).
Result<void> check_relative(std::string_view path) {
  if (path.empty() || path.front() == '/') {
    return fail(errc::unsafe_path, "not a relative path");
  }
  if (path.size() > kMaxPathBytes) return fail(errc::unsafe_path, "path over 4096 bytes");
  for (const std::string_view part : split_components(path)) {
    if (part.empty() || part == "." || part == ".." || part.find('\0') != std::string_view::npos) {
      return fail(errc::unsafe_path, "empty, dot or NUL component in a local path");
    }
    if (is_reserved_name(part)) return fail(errc::unsafe_path, "reserved name in a local path");
  }
  return {};
}

// ("a/b", "c") for "a/b/c"; ("", "c") for "c".
std::pair<std::string_view, std::string_view> split_leaf(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {std::string_view{}, path};
  return {path.substr(0, slash), path.substr(slash + 1)};
}

LocalFile to_local(const struct stat& st) {
  LocalFile file;
  file.size = static_cast<std::uint64_t>(st.st_size);
  file.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                  static_cast<std::int64_t>(st.st_mtim.tv_nsec);
  file.inode = static_cast<std::uint64_t>(st.st_ino);
  file.links = static_cast<std::uint64_t>(st.st_nlink);
  return file;
}

// Set once openat2 turns out to be missing (kernel < 5.6) or filtered (seccomp): then every
// look-up takes the per-component walk, which is as strict, only slower.
std::atomic<bool> g_openat2_unavailable{false};

// openat2 with the kernel doing the confinement: no symlink anywhere in `dir`, no escape.
// Returns the fd, or -1 with errno set (ENOSYS when openat2 cannot be used at all).
int open_beneath(int root_fd, const std::string& dir) {
  if (g_openat2_unavailable.load(std::memory_order_relaxed)) {
    errno = ENOSYS;
    return -1;
  }
  open_how how{};
  how.flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  for (int attempt = 0; attempt < 8; ++attempt) {
    // EAGAIN: a concurrent rename made the kernel unsure the walk stayed beneath; just retry.
    const long fd = ::syscall(SYS_openat2, root_fd, dir.c_str(), &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno != EAGAIN && errno != EINTR) break;
  }
  if (errno == ENOSYS || errno == EPERM || errno == E2BIG) {
    g_openat2_unavailable.store(true, std::memory_order_relaxed);
    errno = ENOSYS;
  }
  return -1;
}

// Opens `dir` one component at a time, each relative to the fd of the one before and with
// O_NOFOLLOW, creating missing components when `create` is true. An invalid UniqueFd means
// "absent" (only when !create).
Result<UniqueFd> walk_open(int root_fd, std::string_view dir, bool create) {
  UniqueFd current;
  int at = root_fd;
  for (const std::string_view part_view : split_components(dir)) {
    const std::string part(part_view);
    const auto open_part = [&] {
      return ::openat(at, part.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    };
    int fd = open_part();
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(at, part.c_str(), 0755) == 0) {
        // The new entry is durable before anything is renamed into it.
        if (::fsync(at) != 0) return fail(errno_error(errno, "fsync directory of", dir));
      } else if (errno != EEXIST) {
        return fail(errno_error(errno, "mkdir", dir));
      }
      fd = open_part();
    }
    if (fd < 0) {
      if (errno == ENOENT && !create) return UniqueFd{};
      return fail(errno_error(errno, "open directory", dir));
    }
    current = UniqueFd(fd);
    at = fd;
  }
  return current;
}

Result<void> walk_dir(UniqueFd dir_fd, const std::string& prefix, int depth,
                      const std::function<void(const std::string&, const LocalFile&)>& fn) {
  const auto where = prefix.empty() ? std::string(".") : prefix;
  DIR* raw = ::fdopendir(dir_fd.get());
  if (!raw) return fail(errno_error(errno, "read directory", where));
  dir_fd.release();  // the DIR owns it now
  const std::unique_ptr<DIR, int (*)(DIR*)> dir(raw, &::closedir);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* entry = ::readdir(dir.get())) {
    const std::string_view name = entry->d_name;
    if (name == "." || name == ".." || is_reserved_name(name)) continue;
    names.emplace_back(name);
  }
  if (errno != 0) return fail(errno_error(errno, "read directory", where));
  std::sort(names.begin(), names.end());
  const int fd = ::dirfd(dir.get());
  for (const std::string& name : names) {
    const std::string relative = prefix.empty() ? name : prefix + "/" + name;
    struct stat st {};
    if (::fstatat(fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) continue;  // removed while we listed
      return fail(errno_error(errno, "stat", relative));
    }
    if (S_ISREG(st.st_mode)) {
      fn(relative, to_local(st));
    } else if (S_ISDIR(st.st_mode) && depth + 1 < DestRoot::kMaxWalkDepth) {
      const int child = ::openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0) {
        // Swapped for a symlink or a file, or removed, since the fstatat: not ours to list.
        if (errno == ELOOP || errno == ENOTDIR || errno == ENOENT) continue;
        return fail(errno_error(errno, "open directory", relative));
      }
      if (auto ok = walk_dir(UniqueFd(child), relative, depth + 1, fn); !ok) return ok;
    }
  }
  return {};
}

}  // namespace

DestRoot::DestRoot(std::shared_ptr<const UniqueFd> root, std::string path)
    : root_(std::move(root)), path_(std::move(path)) {}

DestRoot::DestRoot(DestRoot&&) noexcept = default;
DestRoot& DestRoot::operator=(DestRoot&&) noexcept = default;
DestRoot::~DestRoot() = default;

Result<DestRoot> DestRoot::open(const std::string& path) {
  if (path.empty()) return fail(errc::invalid_options, "empty destination path");
  const auto open_root = [&] { return ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); };
  int fd = open_root();
  if (fd < 0 && errno == ENOENT) {
    std::error_code ec;
    std::filesystem::create_directories(path, ec);
    if (ec && ec != std::errc::file_exists && ec != std::errc::not_a_directory) {
      return fail(errno_error(ec.value(), "create destination", path));
    }
    fd = open_root();
  }
  if (fd < 0) {
    // The user's own path (or a parent of it) is a file: a usage error, not an attack.
    if (errno == ENOTDIR || errno == EEXIST || errno == ENOENT) {
      return fail(errc::invalid_options, "destination is not a directory: " + path);
    }
    return fail(errno_error(errno, "open destination", path));
  }
  return DestRoot(std::make_shared<const UniqueFd>(fd), path);
}

Result<std::shared_ptr<const UniqueFd>> DestRoot::open_dir(std::string_view dir, bool create) {
  if (!root_) return fail(errc::io_error, "DestRoot used after a move");
  if (dir.empty()) return root_;
  const std::string key(dir);
  UniqueFd fresh;
  // Creating needs the walk (mkdirat per level); a look-up takes openat2 when it can.
  const int fd = create ? -1 : open_beneath(root_->get(), key);
  if (fd >= 0) {
    fresh = UniqueFd(fd);
  } else if (create || errno == ENOSYS) {
    auto walked = walk_open(root_->get(), dir, create);
    if (!walked) return fail(std::move(walked.error()));
    if (!walked->valid()) return std::shared_ptr<const UniqueFd>{};
    fresh = std::move(*walked);
  } else if (errno == ENOENT) {
    return std::shared_ptr<const UniqueFd>{};
  } else {
    return fail(errno_error(errno, "open directory", dir));
  }
  struct stat st {};
  if (::fstat(fresh.get(), &st) != 0) return fail(errno_error(errno, "stat directory", dir));
  // Share the cached fd only while it is still the directory at this path; otherwise the
  // directory was replaced or removed since, and the fresh fd is the truth.
  if (const auto it = dir_fds_.find(key);
      it != dir_fds_.end() && it->second.dev == st.st_dev && it->second.ino == st.st_ino) {
    return it->second.fd;
  }
  auto shared = std::make_shared<const UniqueFd>(std::move(fresh));
  if (dir_fds_.size() >= kMaxCachedDirs && !dir_fds_.contains(key)) {
    dir_fds_.clear();  // handed-out Parents keep their own references
  }
  dir_fds_[key] = CachedDir{shared, st.st_dev, st.st_ino};
  return shared;
}

void DestRoot::forget_dir(std::string_view dir) {
  std::erase_if(dir_fds_, [&](const auto& entry) {
    const std::string_view key = entry.first;
    return key == dir ||
           (key.size() > dir.size() && key.starts_with(dir) && key[dir.size()] == '/');
  });
}

Result<DestRoot::Parent> DestRoot::parent_of(std::string_view relative_path, bool create) {
  if (auto ok = check_relative(relative_path); !ok) return fail(std::move(ok.error()));
  const auto [dir, leaf] = split_leaf(relative_path);
  auto fd = open_dir(dir, create);
  if (!fd) return fail(std::move(fd.error()));
  if (!*fd) {
    return fail(std::errc::no_such_file_or_directory, "no directory " + std::string(dir));
  }
  return Parent{(*fd)->get(), std::string(leaf), std::move(*fd)};
}

Result<std::optional<LocalFile>> DestRoot::stat_file(std::string_view relative_path) {
  if (auto ok = check_relative(relative_path); !ok) return fail(std::move(ok.error()));
  const auto [dir, leaf] = split_leaf(relative_path);
  auto fd = open_dir(dir, false);
  if (!fd) return fail(std::move(fd.error()));
  if (!*fd) return std::optional<LocalFile>{};
  struct stat st {};
  if (::fstatat((*fd)->get(), std::string(leaf).c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::optional<LocalFile>{};
    return fail(errno_error(errno, "stat", relative_path));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(errc::unsafe_path, "not a regular file: " + std::string(relative_path));
  }
  return std::optional<LocalFile>{to_local(st)};
}

Result<int> DestRoot::open_read(std::string_view relative_path) {
  auto parent = parent_of(relative_path, false);
  if (!parent) return fail(std::move(parent.error()));
  const std::string leaf = parent->leaf;
  struct stat before {};
  if (::fstatat(parent->dir_fd, leaf.c_str(), &before, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT)
      return fail(std::errc::no_such_file_or_directory, std::string(relative_path));
    return fail(errno_error(errno, "stat", relative_path));
  }
  // Refused before open: opening a FIFO blocks, opening a device can act on it.
  if (!S_ISREG(before.st_mode)) {
    return fail(errc::unsafe_path, "not a regular file: " + std::string(relative_path));
  }
  // O_NONBLOCK so that a FIFO swapped in since the fstatat cannot hang us; fstat then
  // confirms it is the same regular file.
  UniqueFd fd(::openat(parent->dir_fd, leaf.c_str(),
                       O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) return fail(errno_error(errno, "open", relative_path));
  struct stat after {};
  if (::fstat(fd.get(), &after) != 0) return fail(errno_error(errno, "stat", relative_path));
  if (!S_ISREG(after.st_mode) || after.st_ino != before.st_ino || after.st_dev != before.st_dev) {
    return fail(errc::unsafe_path, "file replaced while opening: " + std::string(relative_path));
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0) {
    return fail(errno_error(errno, "fcntl", relative_path));
  }
  return fd.release();
}

Result<void> DestRoot::remove_file(std::string_view relative_path) {
  if (auto ok = check_relative(relative_path); !ok) return fail(std::move(ok.error()));
  const auto [dir, leaf_view] = split_leaf(relative_path);
  auto fd = open_dir(dir, false);
  if (!fd) return fail(std::move(fd.error()));
  if (!*fd) return {};
  const std::string leaf(leaf_view);
  struct stat st {};
  if (::fstatat((*fd)->get(), leaf.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return {};
    return fail(errno_error(errno, "stat", relative_path));
  }
  if (!S_ISREG(st.st_mode)) {
    return fail(errc::unsafe_path, "not a regular file: " + std::string(relative_path));
  }
  // Flags 0: unlinkat never removes a directory, and on a symlink swapped in since the
  // fstatat it removes the link, not its target.
  if (::unlinkat((*fd)->get(), leaf.c_str(), 0) != 0 && errno != ENOENT) {
    return fail(errno_error(errno, "remove", relative_path));
  }
  // Prune the directories this emptied: rmdir fails on a non-empty directory (and on a
  // symlink), so nothing but empty directories beneath the root can go.
  for (std::string_view current = dir; !current.empty();) {
    const auto [parent, name] = split_leaf(current);
    auto parent_fd = open_dir(parent, false);
    if (!parent_fd || !*parent_fd) break;
    if (::unlinkat((*parent_fd)->get(), std::string(name).c_str(), AT_REMOVEDIR) != 0) break;
    forget_dir(current);
    current = parent;
  }
  return {};
}

Result<void> DestRoot::walk(const std::function<void(const std::string&, const LocalFile&)>& fn) {
  if (!root_) return fail(errc::io_error, "DestRoot used after a move");
  // A fresh open file description: reading a dup of the root fd would move its offset.
  UniqueFd fd(::openat(root_->get(), ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return fail(errno_error(errno, "open", path_));
  return walk_dir(std::move(fd), "", 0, fn);
}

}  // namespace shardsync::client
