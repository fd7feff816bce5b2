#include "shardsync/server/scanner.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <utility>

#include "shardsync/server/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::server {
namespace {

// Records are written in transactions of this many operations, so a first scan of 100,000
// files is a few commits (each an fsync) without holding the write lock or memory for all.
constexpr std::size_t kBatchOperations = 5'000;
// ...or after hashing this much, so hours of hashing are not lost to a crash.
constexpr std::uint64_t kBatchBytes = std::uint64_t{1} << 30;
// Digests of a file modified less than this long before hashing began are not cached: with
// coarse file-system timestamps, a same-size rewrite right after could keep the same
// (size, mtime) key and be served stale digests ("racy git"). Such a file is hashed again at
// a later scan and cached then.
constexpr std::int64_t kRacyNs = 1'000'000'000;
// Directory levels followed below the collection; each holds a descriptor open.
constexpr int kMaxDepth = 128;

constexpr const char* kInvalidUtf8 = "name is not valid UTF-8";
constexpr const char* kControl = "name contains a control character";

std::int64_t wall_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t ns_of(const struct timespec& t) {
  return static_cast<std::int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec;
}

FileKey key_of(const struct stat& st) {
  return FileKey{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino),
                 static_cast<std::uint64_t>(st.st_size), ns_of(st.st_mtim)};
}

bool same_key(const FileKey& a, const FileKey& b) {
  return a.device == b.device && a.inode == b.inode && a.size == b.size && a.mtime_ns == b.mtime_ns;
}

// Decodes one UTF-8 sequence at `i` (advancing it); false for an invalid one (overlong,
// surrogate, past U+10FFFF, truncated), leaving `i` alone.
bool next_code_point(std::string_view s, std::size_t& i, std::uint32_t& cp) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = 1;
  std::uint32_t min = 0;
  if (c < 0x80) {
    cp = c;
  } else if ((c & 0xe0) == 0xc0) {
    len = 2, cp = c & 0x1fu, min = 0x80;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3, cp = c & 0x0fu, min = 0x800;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4, cp = c & 0x07u, min = 0x10000;
  } else {
    return false;
  }
  if (s.size() - i < len) return false;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xc0) != 0x80) return false;
    cp = (cp << 6) | (b & 0x3fu);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return false;
  i += len;
  return true;
}

bool is_control(std::uint32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f); }

// Why one path component cannot be published, or nullptr when it can. Control characters
// and backslashes break log lines, URLs and other operating systems' clients.
const char* name_problem(std::string_view name) {
  for (std::size_t i = 0; i < name.size();) {
    std::uint32_t cp = 0;
    if (!next_code_point(name, i, cp)) return kInvalidUtf8;
    if (is_control(cp)) return kControl;
    if (cp == '\\') return "name contains a backslash";
  }
  return nullptr;
}

// A path as it may appear in a log line: control characters and bytes that are not UTF-8
// as \xNN.
std::string printable(std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t start = i;
    std::uint32_t cp = 0;
    if (next_code_point(s, i, cp) && !is_control(cp) && cp != '\\') {
      out.append(s.substr(start, i - start));
      continue;
    }
    if (i == start) i = start + 1;  // an invalid byte: escape it alone
    for (std::size_t k = start; k < i; ++k) {
      const auto b = static_cast<unsigned char>(s[k]);
      out += "\\x";
      out += kHex[b >> 4];
      out += kHex[b & 15];
    }
  }
  return out;
}

// The media type a client gets for a file, by its extension (case-insensitive). Checkpoint
// and shard formats have no registered type and are application/octet-stream.
std::string media_type(std::string_view path) {
  static constexpr std::array<std::pair<std::string_view, std::string_view>, 18> kTypes{{
      {"csv", "text/csv"},
      {"gz", "application/gzip"},
      {"htm", "text/html"},
      {"html", "text/html"},
      {"jpeg", "image/jpeg"},
      {"jpg", "image/jpeg"},
      {"json", "application/json"},
      {"jsonl", "application/jsonl"},
      {"md", "text/markdown"},
      {"parquet", "application/vnd.apache.parquet"},
      {"png", "image/png"},
      {"tar", "application/x-tar"},
      {"txt", "text/plain"},
      {"xml", "application/xml"},
      {"yaml", "application/yaml"},
      {"yml", "application/yaml"},
      {"zip", "application/zip"},
      {"zst", "application/zstd"},
  }};
  const std::size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::size_t dot = name.rfind('.');
  if (dot != std::string_view::npos && dot > 0 && dot + 1 < name.size()) {
    std::string ext(name.substr(dot + 1));
    for (char& c : ext) {
      if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    }
    for (const auto& [e, type] : kTypes) {
      if (e == ext) return std::string(type);
    }
  }
  return "application/octet-stream";
}

using shardsync::UniqueFd;

int open_dir_at(int parent, const char* name) {
  return ::openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

// A second descriptor of the directory `fd` with its own position (dup() would share it).
Result<int> reopen_dir(int fd) {
  const int again = ::openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (again < 0) {
    return fail(errc::io_error, std::string("cannot reopen a directory: ") + std::strerror(errno));
  }
  return again;
}

// errno values that mean "not there, or not a directory any more" rather than a fault.
bool is_gone(int error) { return error == ENOENT || error == ENOTDIR || error == ELOOP; }

std::vector<std::string> split_path(std::string_view path) {
  std::vector<std::string> parts;
  std::size_t start = 0;
  for (;;) {
    const std::size_t slash = path.find('/', start);
    parts.emplace_back(path.substr(start, slash - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return parts;
}

struct Digests {
  std::string sha256;
  std::string md5;
};

}  // namespace

struct Scanner::Run {
  Scanner& self;
  ScanStats stats;
  UniqueFd root;
  std::int64_t started_ns = wall_now_ns();
  std::vector<char> buffer;

  // What the log holds for the part being reconciled, ordered by path, and which of those
  // the walk found.
  std::vector<ResourceState> known;
  std::vector<bool> seen;

  std::vector<std::pair<FileKey, Digests>> cache_writes;
  std::vector<std::pair<sitemap::ChangeType, ResourceState>> records;
  std::uint64_t bytes_since_flush = 0;

  // Set for the first scan, which runs before the server takes requests: upload temp files
  // found then were left by a server killed mid-upload (see entry()).
  bool sweep_uploads = false;

  explicit Run(Scanner& s) : self(s) {}

  void say(std::string_view level, const std::string& message) const {
    if (self.sink_) self.sink_(level, message);
  }

  void refuse(const std::string& rel, std::string_view reason) {
    ++stats.refused;
    say("warn",
        "refused " + self.collection_.name + "/" + printable(rel) + ": " + std::string(reason));
  }

  void cannot(std::string_view what, const std::string& rel, int error) {
    say("warn", std::string(what) + " " + self.collection_.name + "/" + printable(rel) + ": " +
                    std::strerror(error) + "; keeping its published state");
  }

  Result<void> open_root() {
    root = UniqueFd(::open(self.collection_.directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!root) {
      return fail(errc::io_error, "cannot open collection directory " + self.collection_.directory +
                                      ": " + std::strerror(errno));
    }
    return {};
  }

  // The known entry for `rel`, or known.size().
  std::size_t find_known(const std::string& rel) const {
    const auto it =
        std::lower_bound(known.begin(), known.end(), rel,
                         [](const ResourceState& s, const std::string& p) { return s.path < p; });
    if (it == known.end() || it->path != rel) return known.size();
    return static_cast<std::size_t>(it - known.begin());
  }

  void mark_seen(const std::string& rel) {
    if (const std::size_t i = find_known(rel); i < known.size()) seen[i] = true;
  }

  // Keeps everything known below `prefix` as it is (a directory that could not be read).
  void mark_seen_under(const std::string& prefix) {
    if (prefix.empty()) {  // the collection directory itself
      seen.assign(known.size(), true);
      return;
    }
    const std::string low = prefix + "/";
    auto it =
        std::lower_bound(known.begin(), known.end(), low,
                         [](const ResourceState& s, const std::string& p) { return s.path < p; });
    for (; it != known.end() && it->path.starts_with(low); ++it) {
      seen[static_cast<std::size_t>(it - known.begin())] = true;
    }
  }

  Result<void> flush() {
    if (cache_writes.empty() && records.empty()) return {};
    ScanStats counted;
    auto r = self.log_.batch([&]() -> Result<void> {
      for (const auto& [key, digests] : cache_writes) {
        if (auto w = self.log_.cache_hashes(key, digests.sha256, digests.md5); !w) return w;
      }
      for (const auto& [change, state] : records) {
        auto c = self.log_.record(self.collection_.name, change, state);
        if (!c) return fail(c.error());
        if (!*c) continue;
        switch ((*c)->change) {
          case sitemap::ChangeType::created:
            ++counted.created;
            break;
          case sitemap::ChangeType::updated:
            ++counted.updated;
            break;
          case sitemap::ChangeType::deleted:
            ++counted.deleted;
            break;
        }
      }
      return {};
    });
    if (!r) return r;
    stats.created += counted.created;
    stats.updated += counted.updated;
    stats.deleted += counted.deleted;
    cache_writes.clear();
    records.clear();
    bytes_since_flush = 0;
    return {};
  }

  void delete_later(std::string path) {
    ResourceState state;
    state.path = std::move(path);
    records.emplace_back(sitemap::ChangeType::deleted, std::move(state));
  }

  Result<void> maybe_flush() {
    if (cache_writes.size() + records.size() >= kBatchOperations ||
        bytes_since_flush >= kBatchBytes) {
      return flush();
    }
    return {};
  }

  enum class WriteState { none, writing, unknown };

  // A read lease is granted only while no one has the file open for writing (fcntl(2),
  // F_SETLEASE); it is dropped at once. Leases need the file's owner (or CAP_LEASE) and a
  // local file system: anything else is `unknown`.
  static WriteState open_for_writing(int dir, const char* name) {
    const int fd = ::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) return WriteState::unknown;
    WriteState state = WriteState::unknown;
    if (::fcntl(fd, F_SETLEASE, F_RDLCK) == 0) {
      ::fcntl(fd, F_SETLEASE, F_UNLCK);
      state = WriteState::none;
    } else if (errno == EAGAIN) {
      state = WriteState::writing;
    }
    ::close(fd);
    return state;
  }

  // Whether a file may be published now: its writer closed it, or it has been left alone for
  // settle_ns (by its mtime, or by our own steady clock when the mtime is recent or ahead).
  bool settled(const std::string& rel, const struct stat& st, bool closed) {
    const std::int64_t settle = self.options_.settle_ns;
    if (closed || settle <= 0 || ns_of(st.st_mtim) <= started_ns - settle) {
      if (!self.unsettled_.empty()) self.unsettled_.erase(rel);
      return true;
    }
    const FileKey key = key_of(st);
    const std::int64_t ctime = ns_of(st.st_ctim);
    const auto now = std::chrono::steady_clock::now();
    auto [it, inserted] = self.unsettled_.try_emplace(rel, Unsettled{key, ctime, now, self.scans_});
    Unsettled& u = it->second;
    u.scan = self.scans_;
    if (inserted || !same_key(u.key, key) || u.ctime_ns != ctime) {
      u = Unsettled{key, ctime, now, self.scans_};
      return false;
    }
    if (now - u.since < std::chrono::nanoseconds(settle)) return false;
    self.unsettled_.erase(it);
    return true;
  }

  // Hashes the file `name` in `dir`, which fstatat() described as `before`. nullopt: it
  // changed or went away while read, so its digests would describe no version of it.
  Result<std::optional<Digests>> hash(int dir, const char* name, const struct stat& before) {
    // O_NONBLOCK: if the name now is a FIFO, open must not wait for a writer.
    UniqueFd fd(::openat(dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd) {
      if (is_gone(errno)) return std::optional<Digests>();
      return fail(errc::io_error, std::string("open: ") + std::strerror(errno));
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) ||
        !same_key(key_of(st), key_of(before))) {
      return std::optional<Digests>();
    }
    ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    buffer.resize(std::max<std::size_t>(self.options_.read_block, 4096));
    sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256, sitemap::HashAlgorithm::md5});
    std::uint64_t total = 0;
    for (;;) {
      const ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return fail(errc::io_error, std::string("read: ") + std::strerror(errno));
      }
      if (n == 0) break;
      hasher.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
      total += static_cast<std::uint64_t>(n);
    }
    struct stat after {};
    if (::fstat(fd.get(), &after) != 0 || !same_key(key_of(after), key_of(before)) ||
        ns_of(after.st_ctim) != ns_of(before.st_ctim) ||
        total != static_cast<std::uint64_t>(before.st_size)) {
      return std::optional<Digests>();
    }
    const sitemap::HashList list = hasher.finish();
    return Digests{std::string(list.get(sitemap::HashAlgorithm::sha256)),
                   std::string(list.get(sitemap::HashAlgorithm::md5))};
  }

  // A regular file found at `rel` (`name` in `dir`).
  Result<void> file(int dir, const char* name, const std::string& rel, const struct stat& st,
                    bool closed) {
    ++stats.files;
    mark_seen(rel);
    // A file still exactly as it was published (length and mtime) was settled then; without
    // this, a file whose mtime lies ahead of a stepped-back clock would flap as unsettled.
    const std::size_t known_at = find_known(rel);
    const bool as_published = known_at < known.size() &&
                              known[known_at].length == static_cast<std::uint64_t>(st.st_size) &&
                              known[known_at].mtime_ns == ns_of(st.st_mtim);
    // Whether anyone has the file open for writing, asked of the kernel; only when it cannot
    // tell does the time-based settle rule decide (a writer can pause longer than any delay).
    const WriteState writers = as_published               ? WriteState::none
                               : self.options_.use_leases ? open_for_writing(dir, name)
                                                          : WriteState::unknown;
    if (writers == WriteState::writing) {
      ++stats.unsettled;  // its close event publishes it
      return {};
    }
    if (writers == WriteState::unknown && !settled(rel, st, closed || as_published)) {
      ++stats.unsettled;
      ++stats.settling;
      return {};
    }
    if (writers == WriteState::none && !self.unsettled_.empty()) self.unsettled_.erase(rel);
    const FileKey key = key_of(st);
    Digests digests;
    auto cached = self.log_.cached_hashes(key);
    if (!cached) return fail(cached.error());
    if (*cached) {
      ++stats.cache_hits;
      digests = Digests{std::move((*cached)->first), std::move((*cached)->second)};
    } else {
      const std::int64_t hash_started = wall_now_ns();
      auto hashed = hash(dir, name, st);
      if (!hashed) {
        say("warn", "cannot hash " + self.collection_.name + "/" + printable(rel) + ": " +
                        hashed.error().detail + "; keeping its published state");
        return {};
      }
      if (!*hashed) {
        // Changed under us: not published this time; its close event or a later scan will.
        ++stats.unsettled;
        return {};
      }
      ++stats.hashed;
      stats.bytes_hashed += key.size;
      bytes_since_flush += key.size;
      digests = std::move(**hashed);
      if (hash_started - key.mtime_ns >= kRacyNs) cache_writes.emplace_back(key, digests);
    }
    ResourceState state{
        rel,          key.size,       std::move(digests.sha256), std::move(digests.md5),
        key.mtime_ns, media_type(rel)};
    if (known_at < known.size()) {
      const ResourceState& old = known[known_at];
      if (old.sha256 == state.sha256 && old.md5 == state.md5 && old.length == state.length &&
          old.mtime_ns == state.mtime_ns) {
        return maybe_flush();
      }
    }
    // record() decides between created and updated by the log's current state.
    records.emplace_back(sitemap::ChangeType::updated, std::move(state));
    return maybe_flush();
  }

  // Publishes what is below the open directory `dir` (owned here), whose path is `prefix`.
  Result<void> walk(int dir, const std::string& prefix, int depth, bool closed) {
    DIR* stream = ::fdopendir(dir);
    if (!stream) {
      const int error = errno;
      ::close(dir);
      cannot("cannot list", prefix, error);
      mark_seen_under(prefix);
      return {};
    }
    std::vector<std::string> names;
    errno = 0;
    while (const dirent* entry = ::readdir(stream)) {
      const std::string_view n = entry->d_name;
      if (n != "." && n != "..") names.emplace_back(n);
      errno = 0;
    }
    if (errno != 0) {
      const int error = errno;
      ::closedir(stream);
      cannot("cannot list", prefix, error);
      mark_seen_under(prefix);
      return {};
    }
    // Sorted, so a first scan records changes in a stable order.
    std::sort(names.begin(), names.end());
    const int fd = ::dirfd(stream);
    Result<void> result;
    for (const std::string& name : names) {
      result = entry(fd, name, prefix.empty() ? name : prefix + "/" + name, depth, closed);
      if (!result) break;
    }
    ::closedir(stream);
    return result;
  }

  Result<void> entry(int dir, const std::string& name, const std::string& rel, int depth,
                     bool closed) {
    if (is_upload_temp(name)) {
      // An upload in progress is published on commit. One a killed server left behind never
      // will be: the first scan removes it, unless some process still has it open to write.
      if (sweep_uploads && open_for_writing(dir, name.c_str()) == WriteState::none &&
          ::unlinkat(dir, name.c_str(), 0) == 0) {
        say("info", "removed an abandoned upload " + self.collection_.name + "/" + printable(rel));
      }
      return {};
    }
    if (const char* problem = name_problem(name)) {
      refuse(rel, problem);
      return {};
    }
    if (is_reserved_path(rel)) {
      refuse(rel, "reserved name");
      return {};
    }
    struct stat st {};
    if (::fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) {
        cannot("cannot stat", rel, errno);
        mark_seen(rel);
        mark_seen_under(rel);
      }
      return {};  // removed since it was listed
    }
    if (S_ISLNK(st.st_mode)) {
      refuse(rel, "symbolic link");
      return {};
    }
    if (S_ISREG(st.st_mode)) return file(dir, name.c_str(), rel, st, closed);
    if (!S_ISDIR(st.st_mode)) {
      refuse(rel, "not a regular file or directory");
      return {};
    }
    if (depth + 1 >= kMaxDepth) {
      refuse(rel, "directory nested too deeply");
      return {};
    }
    const int sub = open_dir_at(dir, name.c_str());
    if (sub < 0) {
      if (!is_gone(errno)) {
        cannot("cannot open", rel, errno);
        mark_seen_under(rel);
      }
      return {};
    }
    return walk(sub, rel, depth + 1, closed);
  }

  // Whether `rel` is, right now, a regular file reached without following a symlink.
  bool exists_as_file(const std::string& rel) const {
    const std::vector<std::string> parts = split_path(rel);
    UniqueFd dir;
    int at = root.get();
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      dir = UniqueFd(open_dir_at(at, parts[i].c_str()));
      if (!dir) return !is_gone(errno);  // unsure: do not delete on a transient fault
      at = dir.get();
    }
    struct stat st {};
    if (::fstatat(at, parts.back().c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return errno != ENOENT;
    return S_ISREG(st.st_mode);
  }

  // Reconciles the directory `dir` (owned here) at `prefix` with `known`, what the log holds
  // below it: publishes what is there, deletes what is not.
  Result<void> reconcile(int dir, const std::string& prefix, std::vector<ResourceState> state,
                         bool closed) {
    known = std::move(state);
    seen.assign(known.size(), false);
    const int depth = prefix.empty() ? 0 : static_cast<int>(split_path(prefix).size());
    if (auto r = walk(dir, prefix, depth, closed); !r) return r;
    for (std::size_t i = 0; i < known.size(); ++i) {
      // Checked again: a file created after the walk passed its directory is for its own
      // event or the next scan, not a delete.
      if (seen[i] || exists_as_file(known[i].path)) continue;
      delete_later(known[i].path);
      if (auto r = maybe_flush(); !r) return r;
    }
    return flush();
  }

  // Records `rel`, and everything the log has below it, as deleted.
  Result<void> gone(const std::string& rel) {
    auto current = self.log_.resource(self.collection_.name, rel);
    if (!current) return fail(current.error());
    if (*current) delete_later(rel);
    auto below = self.log_.resources_under(self.collection_.name, rel);
    if (!below) return fail(below.error());
    for (ResourceState& s : *below) {
      delete_later(std::move(s.path));
      if (auto r = maybe_flush(); !r) return r;
    }
    return flush();
  }

  Result<void> check(const std::string& rel, bool closed) {
    if (is_upload_temp(rel)) return {};  // an upload in progress: published on commit
    if (auto r = open_root(); !r) return r;
    if (rel.empty()) {
      auto all = self.log_.resources_under(self.collection_.name, "");
      if (!all) return fail(all.error());
      auto dir = reopen_dir(root.get());
      if (!dir) return fail(dir.error());
      return reconcile(*dir, "", std::move(*all), closed);
    }
    const std::vector<std::string> parts = split_path(rel);
    for (const std::string& part : parts) {
      if (part.empty() || part == "." || part == "..") {
        return fail(errc::unsafe_path,
                    "not a relative path inside the collection: " + printable(rel));
      }
    }
    for (const std::string& part : parts) {
      if (const char* problem = name_problem(part)) {
        refuse(rel, problem);
        return {};
      }
    }
    if (is_reserved_path(rel)) {
      refuse(rel, "reserved name");
      return {};
    }

    UniqueFd parent;
    int at = root.get();
    for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
      parent = UniqueFd(open_dir_at(at, parts[i].c_str()));
      if (!parent) {
        if (is_gone(errno)) return gone(rel);
        return fail(errc::io_error, "cannot open " + self.collection_.name + "/" + printable(rel) +
                                        ": " + std::strerror(errno));
      }
      at = parent.get();
    }
    const std::string& name = parts.back();
    struct stat st {};
    if (::fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno == ENOENT) return gone(rel);
      return fail(errc::io_error, "cannot stat " + self.collection_.name + "/" + printable(rel) +
                                      ": " + std::strerror(errno));
    }
    if (S_ISLNK(st.st_mode)) {
      refuse(rel, "symbolic link");
      return gone(rel);
    }
    if (S_ISDIR(st.st_mode)) {
      // A file that became a directory is deleted; what is below is published.
      auto current = self.log_.resource(self.collection_.name, rel);
      if (!current) return fail(current.error());
      if (*current) delete_later(rel);
      auto below = self.log_.resources_under(self.collection_.name, rel);
      if (!below) return fail(below.error());
      const int dir = open_dir_at(at, name.c_str());
      if (dir < 0) {
        if (is_gone(errno)) return gone(rel);
        return fail(errc::io_error, "cannot open " + self.collection_.name + "/" + printable(rel) +
                                        ": " + std::strerror(errno));
      }
      return reconcile(dir, rel, std::move(*below), closed);
    }
    if (!S_ISREG(st.st_mode)) {
      refuse(rel, "not a regular file or directory");
      return gone(rel);
    }
    // A directory that became a file takes what was below it along.
    auto below = self.log_.resources_under(self.collection_.name, rel);
    if (!below) return fail(below.error());
    for (ResourceState& s : *below) {
      delete_later(std::move(s.path));
    }
    auto current = self.log_.resource(self.collection_.name, rel);
    if (!current) return fail(current.error());
    if (*current) known.push_back(std::move(**current));
    seen.assign(known.size(), false);
    if (auto r = file(at, name.c_str(), rel, st, closed); !r) return r;
    return flush();
  }
};

Scanner::Scanner(Collection collection, ChangeLog& log, ScanOptions options, LogSink sink)
    : collection_(std::move(collection)), log_(log), options_(options), sink_(std::move(sink)) {}

Result<ScanStats> Scanner::scan() {
  ++scans_;
  Run run(*this);
  run.sweep_uploads = scans_ == 1;
  if (auto r = run.open_root(); !r) return fail(r.error());
  // The log's state is read before the walk: a file published by someone else after the
  // walk passed its directory is then neither in the snapshot nor deleted.
  auto snapshot = log_.snapshot(collection_.name);
  if (!snapshot) return fail(snapshot.error());
  auto dir = reopen_dir(run.root.get());
  if (!dir) return fail(dir.error());
  if (auto r = run.reconcile(*dir, "", std::move(snapshot->resources), false); !r) {
    return fail(r.error());
  }
  // Files that vanished while unsettled are forgotten.
  std::erase_if(unsettled_, [this](const auto& entry) { return entry.second.scan != scans_; });
  return run.stats;
}

std::string media_type_of(std::string_view path) { return media_type(path); }

Result<ScanStats> Scanner::check(const std::string& relative_path, bool closed) {
  Run run(*this);
  if (auto r = run.check(relative_path, closed); !r) return fail(r.error());
  return run.stats;
}

}  // namespace shardsync::server
