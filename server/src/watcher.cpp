#include "shardsync/server/watcher.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "shardsync/server/collection.hpp"
#include "shardsync/server/errc.hpp"

namespace shardsync::server {
namespace {

// File events that make a file worth re-checking, directory births and deaths, and the root
// going away. IN_CREATE of a file is not reported: the file is complete at its
// IN_CLOSE_WRITE (hard links, which have no close, are found by the periodic rescan).
// IN_EXCL_UNLINK: no events from files already unlinked but still open.
constexpr std::uint32_t kMask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                IN_CREATE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR |
                                IN_EXCL_UNLINK;
// Reads per poll(): enough for a burst, bounded so a storm cannot keep poll() from returning.
constexpr int kMaxReads = 16;

std::string join(const std::string& dir, std::string_view name) {
  return dir.empty() ? std::string(name) : dir + "/" + std::string(name);
}

// The events of one poll(). An event identical to an earlier one replaces it: check() looks
// at the file as it is by then, so only the last of them matters (a file closed many times,
// a checkpoint's shards each closed twice).
class Batch {
 public:
  void add(WatchEvent event) {
    std::string key(1, static_cast<char>((event.closed ? 1 : 0) | (event.removed ? 2 : 0) |
                                         (event.directory ? 4 : 0) | (event.rescan ? 8 : 0)));
    key += event.relative_path;
    const auto [it, inserted] = index_.try_emplace(std::move(key), events_.size());
    if (!inserted) {
      dropped_[it->second] = true;
      it->second = events_.size();
    }
    events_.push_back(std::move(event));
    dropped_.push_back(false);
  }

  std::vector<WatchEvent> take() {
    std::vector<WatchEvent> out;
    out.reserve(events_.size());
    for (std::size_t i = 0; i < events_.size(); ++i) {
      if (!dropped_[i]) out.push_back(std::move(events_[i]));
    }
    return out;
  }

 private:
  std::vector<WatchEvent> events_;
  std::vector<bool> dropped_;
  std::unordered_map<std::string, std::size_t> index_;
};

bool is_below(const std::string& path, const std::string& dir) {
  return dir.empty() ||
         (path.size() > dir.size() && path.starts_with(dir) && path[dir.size()] == '/');
}

}  // namespace

struct Watcher::Impl {
  int fd = -1;
  std::string root;
  std::unordered_map<int, std::string> dirs;  // watch descriptor -> directory ("" the root)
  std::deque<WatchEvent> pending;             // read, not yet returned (after a watch error)
  // inotify_event needs its alignment; records are padded so that each next one keeps it.
  alignas(inotify_event) char buffer[64 * 1024];

  ~Impl() {
    if (fd >= 0) ::close(fd);
  }

  std::string absolute(const std::string& rel) const {
    return rel.empty() ? root : root + "/" + rel;
  }

  // Watches the directory `rel` in `into` (wd -> path). Gone, or no longer a directory (a
  // symlink now): nothing to watch, no error.
  Result<void> add_watch(const std::string& rel, std::unordered_map<int, std::string>& into) {
    // The root may be a symlink the operator chose; nothing below it is followed.
    const std::uint32_t mask = rel.empty() ? kMask : kMask | IN_DONT_FOLLOW;
    const int wd = ::inotify_add_watch(fd, absolute(rel).c_str(), mask);
    if (wd < 0) {
      const int error = errno;
      if (error == ENOENT || error == ENOTDIR || error == ELOOP) return {};
      std::string detail = "cannot watch " + absolute(rel) + ": " + std::strerror(error);
      if (error == ENOSPC) detail += " (raise fs.inotify.max_user_watches)";
      return fail(errc::io_error, std::move(detail));
    }
    into[wd] = rel;
    return {};
  }

  // Watches `rel` and every directory below it. Each directory is watched before it is
  // listed, so a subdirectory created meanwhile is either listed or reported.
  Result<void> add_tree(const std::string& rel, std::unordered_map<int, std::string>& into) {
    if (auto r = add_watch(rel, into); !r) return r;
    const int dir = rel.empty() ? ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
                                : ::open(absolute(rel).c_str(),
                                         O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dir < 0) return {};  // gone or replaced: its parent's events say so
    DIR* stream = ::fdopendir(dir);
    if (!stream) {
      ::close(dir);
      return {};
    }
    std::vector<std::string> subdirs;
    while (const dirent* entry = ::readdir(stream)) {
      const std::string_view name = entry->d_name;
      if (name == "." || name == "..") continue;
      const std::string path = join(rel, name);
      // Nothing below the documents directory is published, so nothing there is watched.
      if (is_reserved_path(path)) continue;
      struct stat st {};
      if (::fstatat(::dirfd(stream), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISDIR(st.st_mode)) {
        subdirs.push_back(path);
      }
    }
    ::closedir(stream);
    for (const std::string& sub : subdirs) {
      if (auto r = add_tree(sub, into); !r) return r;
    }
    return {};
  }

  // Stops watching `rel` and what is below it (it was moved away or deleted; a directory moved
  // within the tree is watched again under its new name).
  void remove_tree(const std::string& rel) {
    for (auto it = dirs.begin(); it != dirs.end();) {
      if (it->second == rel || is_below(it->second, rel)) {
        ::inotify_rm_watch(fd, it->first);  // EINVAL when already gone: nothing to do
        it = dirs.erase(it);
      } else {
        ++it;
      }
    }
  }

  // After lost events the directory map may be stale in any way: rebuild it from the tree
  // and drop watches on directories no longer in it.
  Result<void> rewatch() {
    std::unordered_map<int, std::string> fresh;
    auto r = add_tree("", fresh);
    for (const auto& [wd, path] : dirs) {
      if (!fresh.contains(wd)) ::inotify_rm_watch(fd, wd);
    }
    dirs = std::move(fresh);
    return r;
  }

  // Turns one inotify record into events; a watch failure is returned after the events so far.
  Result<void> handle(const inotify_event& ev, std::string_view name, Batch& out, bool& rescan) {
    if (ev.mask & IN_Q_OVERFLOW) {
      rescan = true;
      return {};
    }
    const auto it = dirs.find(ev.wd);
    if (it == dirs.end()) return {};  // a watch removed before its last events were read
    const std::string dir = it->second;
    if (ev.mask & IN_IGNORED) {
      dirs.erase(it);
      if (dir.empty()) rescan = true;  // the root itself is no longer watched
      return {};
    }
    if (ev.mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
      // For a subdirectory its parent reported the delete or move already.
      if (dir.empty()) rescan = true;
      return {};
    }
    if (name.empty()) return {};
    const std::string path = join(dir, name);
    const bool is_dir = (ev.mask & IN_ISDIR) != 0;
    WatchEvent event;
    event.relative_path = path;
    event.directory = is_dir;
    if (ev.mask & (IN_MOVED_FROM | IN_DELETE)) {
      event.removed = true;
      if (is_dir) remove_tree(path);
      out.add(std::move(event));
      return {};
    }
    if (ev.mask & (IN_MOVED_TO | IN_CLOSE_WRITE)) {
      event.closed = true;  // moved in whole, or its writer closed it
    } else if (!(ev.mask & IN_CREATE) || !is_dir) {
      return {};  // a file or symlink created: its close (or the rescan) reports it
    }
    Result<void> watched;
    if (is_dir && !is_reserved_path(path)) {
      // Files may have appeared in it before its watch: the caller re-checks the whole
      // directory, which this event names.
      watched = add_tree(path, dirs);
    }
    out.add(std::move(event));
    return watched;
  }
};

Watcher::Watcher(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Watcher::~Watcher() = default;

Result<std::unique_ptr<Watcher>> Watcher::start(const std::string& directory) {
  auto impl = std::make_unique<Impl>();
  impl->root = directory;
  while (impl->root.size() > 1 && impl->root.back() == '/') impl->root.pop_back();
  impl->fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (impl->fd < 0) {
    return fail(errc::io_error, std::string("inotify_init1: ") + std::strerror(errno) +
                                    " (too many instances? see fs.inotify.max_user_instances)");
  }
  struct stat st {};
  if (::stat(impl->root.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail(errc::io_error, "cannot watch " + directory + ": not a directory");
  }
  if (auto r = impl->add_tree("", impl->dirs); !r) return fail(r.error());
  if (impl->dirs.empty()) return fail(errc::io_error, "cannot watch " + directory);
  return std::unique_ptr<Watcher>(new Watcher(std::move(impl)));
}

Result<std::vector<WatchEvent>> Watcher::poll(std::chrono::milliseconds timeout) {
  Impl& s = *impl_;
  Batch batch;
  const bool had_pending = !s.pending.empty();
  for (WatchEvent& e : s.pending) batch.add(std::move(e));
  s.pending.clear();
  if (!had_pending) {
    pollfd p{s.fd, POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready < 0 && errno != EINTR) {
      return fail(errc::io_error, std::string("poll on inotify: ") + std::strerror(errno));
    }
    if (ready <= 0) return batch.take();
  }

  bool rescan = false;
  std::optional<Error> error;
  for (int reads = 0; reads < kMaxReads; ++reads) {
    const ssize_t n = ::read(s.fd, s.buffer, sizeof s.buffer);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) {
        error = Error{make_error_code(errc::io_error),
                      std::string("reading inotify events: ") + std::strerror(errno)};
      }
      break;
    }
    std::size_t offset = 0;
    const auto size = static_cast<std::size_t>(n);
    while (offset + sizeof(inotify_event) <= size) {
      inotify_event ev;
      std::memcpy(&ev, s.buffer + offset, sizeof ev);
      const char* name = s.buffer + offset + sizeof ev;
      const std::string_view name_view(name, ::strnlen(name, ev.len));
      if (auto r = s.handle(ev, name_view, batch, rescan); !r && !error) error = r.error();
      offset += sizeof ev + ev.len;
    }
  }
  std::vector<WatchEvent> out = batch.take();
  if (rescan) {
    // A rescan covers every event, before and after: the caller scans once after this.
    out.clear();
    WatchEvent event;
    event.rescan = true;
    out.push_back(std::move(event));
    if (auto r = s.rewatch(); !r && !error) error = r.error();
  }
  if (error) {
    // The events are kept for the next call; this one reports what will go unwatched.
    s.pending.assign(std::make_move_iterator(out.begin()), std::make_move_iterator(out.end()));
    return fail(std::move(*error));
  }
  return out;
}

int Watcher::fd() const { return impl_->fd; }

}  // namespace shardsync::server
