#include "shardsync/client/dump_package.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <unordered_set>

#include "committer.hpp"
#include "shardsync/client/discovery.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/sitemap/parser.hpp"

namespace shardsync::client {
namespace {

using sitemap::Entry;
using sitemap::HashAlgorithm;

constexpr const char* kManifestName = "manifest.xml";
constexpr std::size_t kReadChunk = 256 * 1024;
// Temp files waiting for the committer; each holds its file and directory fds.
// Entries up to this size are extracted into memory and created by the committer (in
// batches, one syncfs each), so this thread never waits on a file creation (≈300 µs each on
// this VM's ext4): 20,000 × 16 KiB took longer via a dump than via 20,000 GETs before.
constexpr std::uint64_t kHeldEntryBytes = 1 << 20;
// Commits in flight; with held entries at most kMaxPendingCommits × kHeldEntryBytes in memory.
constexpr std::size_t kMaxPendingCommits = 64;

struct ZipCloser {
  void operator()(zip_t* zip) const { zip_discard(zip); }
};
struct ZipFileCloser {
  void operator()(zip_file_t* file) const { zip_fclose(file); }
};
using ZipPtr = std::unique_ptr<zip_t, ZipCloser>;
using ZipFilePtr = std::unique_ptr<zip_file_t, ZipFileCloser>;

tl::unexpected<Error> package_error(const UnpackOptions& options, const std::string& what) {
  return fail(errc::bad_package, options.package_url + ": " + what);
}

Error entry_error(errc code, std::string detail) {
  return Error{make_error_code(code), std::move(detail)};
}

std::optional<HashAlgorithm> strongest(const sitemap::HashList& hashes) {
  for (const auto algorithm : {HashAlgorithm::sha256, HashAlgorithm::sha1, HashAlgorithm::md5}) {
    if (sitemap::is_valid_hex_digest(algorithm, hashes.get(algorithm))) return algorithm;
  }
  return std::nullopt;
}

// Opens the package with libzip's strict checks; every name must be unique (a duplicate
// makes `path` ambiguous, and parsers disagree on which copy wins).
Result<ZipPtr> open_zip(int zip_fd, const UnpackOptions& options) {
  const int fd = ::fcntl(zip_fd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return fail(detail::os_error(errno, options.package_url + ": dup"));
  int error = 0;
  ZipPtr zip(zip_fdopen(fd, ZIP_CHECKCONS | ZIP_RDONLY, &error));
  if (!zip) {
    ::close(fd);
    zip_error_t ze;
    zip_error_init_with_code(&ze, error);
    std::string message = zip_error_strerror(&ze);
    zip_error_fini(&ze);
    return package_error(options, "not a consistent ZIP: " + message);
  }
  const zip_int64_t count = zip_get_num_entries(zip.get(), 0);
  std::unordered_set<std::string> names;
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(zip.get(), static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (!name) return package_error(options, "unreadable entry name");
    if (!names.insert(name).second) {
      return package_error(options, std::string("the entry name '") + name + "' occurs twice");
    }
  }
  return zip;
}

// Why entry `index` is not a regular file, or empty when it is.
std::string non_regular_reason(zip_t* zip, zip_uint64_t index, const char* name) {
  const std::string_view n(name);
  if (!n.empty() && n.back() == '/') return "a directory";
  zip_uint8_t opsys = 0;
  zip_uint32_t attributes = 0;
  if (zip_file_get_external_attributes(zip, index, 0, &opsys, &attributes) != 0) {
    return "unreadable attributes";
  }
  if (attributes & 0x10u) return "a directory (MS-DOS attribute)";
  if (opsys == ZIP_OPSYS_UNIX) {
    const mode_t mode = static_cast<mode_t>(attributes >> 16);
    if ((mode & S_IFMT) != 0 && !S_ISREG(mode)) {
      return S_ISLNK(mode) ? "a symbolic link" : S_ISDIR(mode) ? "a directory" : "not a file";
    }
  }
  zip_stat_t st;
  if (zip_stat_index(zip, index, 0, &st) != 0) return "unreadable";
  if ((st.valid & ZIP_STAT_ENCRYPTION_METHOD) && st.encryption_method != ZIP_EM_NONE) {
    return "encrypted";
  }
  return {};
}

// Reads the whole of entry `index` (at most `cap` bytes; more is an error).
Result<std::string> read_small(zip_t* zip, zip_uint64_t index, std::uint64_t cap,
                               const std::string& what) {
  ZipFilePtr file(zip_fopen_index(zip, index, 0));
  if (!file) return fail(errc::bad_package, what + ": " + zip_strerror(zip));
  std::string out;
  std::string buffer(kReadChunk, '\0');
  for (;;) {
    const zip_int64_t n = zip_fread(file.get(), buffer.data(), buffer.size());
    if (n < 0) return fail(errc::bad_package, what + ": " + zip_file_strerror(file.get()));
    if (n == 0) break;
    out.append(buffer.data(), static_cast<std::size_t>(n));
    if (out.size() > cap) {
      return fail(errc::bad_package, what + " is over " + std::to_string(cap) + " bytes");
    }
  }
  return out;
}

Result<sitemap::Document> read_manifest(zip_t* zip, const UnpackOptions& options) {
  const zip_int64_t index = zip_name_locate(zip, kManifestName, ZIP_FL_ENC_RAW);
  if (index < 0) return package_error(options, "no manifest.xml at the top level");
  const auto at = static_cast<zip_uint64_t>(index);
  if (const std::string why = non_regular_reason(zip, at, kManifestName); !why.empty()) {
    return package_error(options, "manifest.xml is " + why);
  }
  zip_stat_t st;
  if (zip_stat_index(zip, at, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
      st.size > options.max_manifest_bytes) {
    return package_error(
        options, "manifest.xml is over " + std::to_string(options.max_manifest_bytes) + " bytes");
  }
  auto bytes =
      read_small(zip, at, options.max_manifest_bytes, options.package_url + ": manifest.xml");
  if (!bytes) return fail(bytes.error());
  auto manifest = sitemap::parse_document(*bytes);
  if (!manifest) {
    return package_error(options, "manifest.xml: " + manifest.error().detail);
  }
  if (manifest->header.is_index() || manifest->header.capability() != options.manifest_capability) {
    return package_error(
        options, "manifest.xml is a " + std::string(sitemap::document_type_name(manifest->type())) +
                     ", not a " +
                     std::string(sitemap::capability_name(options.manifest_capability)));
  }
  if (options.manifest_copy && *options.manifest_copy != *bytes) {
    auto copy = sitemap::parse_document(*options.manifest_copy);
    if (!copy || !(*copy == *manifest)) {
      return package_error(options, "manifest.xml differs from the advertised contents copy");
    }
  }
  return manifest;
}

// A temp file beside the target: a reserved name (never a resource's, skipped by walks),
// derived from the leaf so a rerun after a crash reuses rather than piles up names.
std::string temp_name_for(const std::string& leaf) {
  sitemap::Hasher hasher({HashAlgorithm::sha256});
  hasher.update(leaf);
  return ".shardsync-unzip-" +
         std::string(hasher.finish().get(HashAlgorithm::sha256).substr(0, 16));
}

// Created afresh (a leftover is unlinked first: O_TRUNC on a file with another hard link
// would change that file too), never through a symlink.
Result<UniqueFd> create_temp(int dir_fd, const std::string& name) {
  if (::unlinkat(dir_fd, name.c_str(), 0) != 0 && errno != ENOENT) {
    return fail(detail::os_error(errno, name + ": unlink"));
  }
  UniqueFd fd(
      ::openat(dir_fd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
  if (!fd) return fail(detail::os_error(errno, name + ": create"));
  return fd;
}

Result<void> write_all(int fd, const char* data, std::size_t size, const std::string& what) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(detail::os_error(errno, what + ": write"));
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return {};
}

class Unpacker {
 public:
  Unpacker(zip_t* zip, const UnpackOptions& options, DestRoot& root, const PathMapper& mapper,
           const UnpackHooks& hooks)
      : zip_(zip),
        options_(options),
        root_(root),
        mapper_(mapper),
        hooks_(hooks),
        committer_(options.commit_threads, [this] { wake(); }) {}

  Result<UnpackReport> run(sitemap::Document manifest);

 private:
  struct Pending {
    std::size_t entry = 0;  // index in report_.entries
    DestRoot::Parent parent;
    std::string temp_name;
  };

  void wake() {
    std::lock_guard lock(wake_mutex_);
    woken_ = true;
    wake_cv_.notify_one();
  }
  void unpack_entry(const Entry& entry, std::size_t index);
  // Inflates the entry into a temp file and hands it to the committer; an error leaves
  // nothing behind.
  std::optional<Error> extract(const Entry& entry, const std::string& path, UnpackedEntry& result);
  // Collects finished commits; with `wait_for_all`, until none is pending.
  void collect(bool wait_for_all);

  zip_t* zip_;
  const UnpackOptions& options_;
  DestRoot& root_;
  const PathMapper& mapper_;
  const UnpackHooks& hooks_;
  UnpackReport report_;
  const bool change_dump_ =
      options_.manifest_capability == sitemap::Capability::changedump_manifest;
  std::map<std::string, std::size_t> last_change_;  // path -> its last entry (Change Dumps)
  std::map<std::uint64_t, Pending> pending_;
  std::uint64_t next_token_ = 0;
  std::mutex wake_mutex_;
  std::condition_variable wake_cv_;
  bool woken_ = false;
  detail::Committer committer_;  // last: its threads stop before the members above go
};

Result<UnpackReport> Unpacker::run(sitemap::Document manifest) {
  if (change_dump_) {
    for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
      auto path = mapper_.local_path(resolve_url(options_.package_url, manifest.entries[i].loc));
      if (path) last_change_[*path] = i;
    }
  }
  std::unordered_set<std::string> named;
  for (std::size_t i = 0; i < manifest.entries.size(); ++i) {
    const Entry& entry = manifest.entries[i];
    if (entry.md && !entry.md->path.empty()) {
      const std::string& p = entry.md->path;
      named.insert(p.front() == '/' ? p.substr(1) : p);
    }
    unpack_entry(entry, i);
    if (pending_.size() >= kMaxPendingCommits) collect(false);
  }
  collect(true);
  if (auto error = committer_.sync_dirs()) {
    // The renames may not survive a crash: not extracted as far as the caller is concerned.
    for (auto& e : report_.entries) {
      if (e.outcome == UnpackedEntry::Outcome::extracted) {
        e.outcome = UnpackedEntry::Outcome::failed;
        e.error = *error;
      }
    }
  }
  const zip_int64_t count = zip_get_num_entries(zip_, 0);
  for (zip_int64_t i = 0; i < count; ++i) {
    const char* name = zip_get_name(zip_, static_cast<zip_uint64_t>(i), ZIP_FL_ENC_RAW);
    if (name && std::string_view(name) != kManifestName && !named.contains(name)) {
      ++report_.ignored_zip_entries;
    }
  }
  report_.manifest = std::move(manifest);
  return std::move(report_);
}

void Unpacker::unpack_entry(const Entry& entry, std::size_t index) {
  UnpackedEntry result;
  result.index = index;
  result.url = resolve_url(options_.package_url, entry.loc);
  auto path = mapper_.local_path(result.url);
  if (!path) {
    if (!hooks_.select || hooks_.select(index, "", entry)) {
      result.error = path.error();
      report_.entries.push_back(std::move(result));
    }
    return;
  }
  result.path = *path;
  // A Change Dump may change one resource several times: only its last change matters.
  if (change_dump_ && last_change_[result.path] != index) return;
  if (hooks_.select && !hooks_.select(index, result.path, entry)) return;
  const std::size_t slot = report_.entries.size();
  report_.entries.push_back(std::move(result));
  UnpackedEntry& r = report_.entries[slot];
  const auto failed = [&](Error error) {
    r.outcome = UnpackedEntry::Outcome::failed;
    r.error = std::move(error);
  };
  if (hooks_.claim) {
    if (auto refused = hooks_.claim(r.path)) return failed(std::move(*refused));
  }
  if (change_dump_ && entry.md && entry.md->change == sitemap::ChangeType::deleted) {
    r.outcome = UnpackedEntry::Outcome::deleted_change;
    return;
  }
  if (!entry.md || entry.md->path.empty()) {
    return failed(entry_error(errc::bad_document, options_.package_url + ": manifest line " +
                                                      std::to_string(entry.line) +
                                                      ": no rs:md path for " + r.url));
  }
  if (hooks_.is_current) {
    auto current = hooks_.is_current(r.path, entry);
    if (!current) return failed(current.error());
    if (*current) {
      r.outcome = UnpackedEntry::Outcome::current;
      return;
    }
  }
  if (auto error = extract(entry, r.path, r)) failed(std::move(*error));
}

std::optional<Error> Unpacker::extract(const Entry& entry, const std::string& path,
                                       UnpackedEntry& result) {
  const std::string& md_path = entry.md->path;
  const std::string name = md_path.front() == '/' ? md_path.substr(1) : md_path;
  const std::string what = options_.package_url + " entry '" + name + "'";
  const zip_int64_t located = zip_name_locate(zip_, name.c_str(), ZIP_FL_ENC_RAW);
  if (located < 0 || name == kManifestName) {
    return entry_error(errc::bad_package, what + " named by the manifest is not in the package");
  }
  const auto index = static_cast<zip_uint64_t>(located);
  if (const std::string why = non_regular_reason(zip_, index, name.c_str()); !why.empty()) {
    return entry_error(errc::bad_package, what + " is " + why + ", not a regular file");
  }
  zip_stat_t st;
  if (zip_stat_index(zip_, index, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE)) {
    return entry_error(errc::bad_package, what + ": no size");
  }
  // The cap: the manifest's length, which the ZIP's own size must agree with.
  const std::uint64_t length = entry.md->length.value_or(st.size);
  if (st.size != length) {
    return entry_error(errc::length_mismatch, what + " is " + std::to_string(st.size) +
                                                  " bytes in the ZIP, " + std::to_string(length) +
                                                  " in the manifest");
  }
  const auto algorithm = strongest(entry.md->hash);
  auto parent = root_.parent_of(path, true);
  if (!parent) return parent.error();
  const std::string temp = temp_name_for(parent->leaf);
  // A small entry stays in memory until verified; the committer creates its file.
  const bool held = length <= kHeldEntryBytes;
  std::string body;
  UniqueFd file;
  if (held) {
    body.reserve(static_cast<std::size_t>(length));
  } else {
    auto created = create_temp(parent->dir_fd, temp);
    if (!created) return created.error();
    file = std::move(*created);
  }
  const auto discard = [&](Error error) {
    if (file) ::unlinkat(parent->dir_fd, temp.c_str(), 0);
    return std::optional<Error>(std::move(error));
  };

  ZipFilePtr zf(zip_fopen_index(zip_, index, 0));
  if (!zf) return discard(entry_error(errc::bad_package, what + ": " + zip_strerror(zip_)));
  sitemap::Hasher hasher({algorithm.value_or(HashAlgorithm::sha256)});
  std::string buffer(kReadChunk, '\0');
  std::uint64_t written = 0;
  for (;;) {
    // One byte past the cap is enough to know the entry lies about its size.
    const std::uint64_t room = length - written + 1;
    const auto want = static_cast<zip_uint64_t>(std::min<std::uint64_t>(buffer.size(), room));
    const zip_int64_t n = zip_fread(zf.get(), buffer.data(), want);
    if (n < 0) {
      return discard(entry_error(errc::bad_package, what + ": " + zip_file_strerror(zf.get())));
    }
    if (n == 0) break;
    const auto got = static_cast<std::size_t>(n);
    if (written + got > length) {
      return discard(entry_error(
          errc::length_mismatch,
          what + " inflates to more than its " + std::to_string(length) + " bytes: stopped there"));
    }
    hasher.update(std::string_view(buffer.data(), got));
    if (held) {
      body.append(buffer.data(), got);
    } else if (auto wrote = write_all(file.get(), buffer.data(), got, path + " (temp)"); !wrote) {
      return discard(wrote.error());
    }
    written += got;
    if (hooks_.on_bytes) hooks_.on_bytes(got);
  }
  if (written != length) {
    return discard(entry_error(
        errc::length_mismatch,
        what + " holds " + std::to_string(written) + " bytes, listed " + std::to_string(length)));
  }
  if (algorithm) {
    const std::string digest(hasher.finish().get(*algorithm));
    if (digest != entry.md->hash.get(*algorithm)) {
      return discard(entry_error(errc::hash_mismatch,
                                 what + ": " + std::string(sitemap::algorithm_name(*algorithm)) +
                                     " " + digest + ", listed " +
                                     std::string(entry.md->hash.get(*algorithm))));
    }
    result.verified = true;
  }
  result.bytes = written;

  detail::CommitJob job;
  job.token = next_token_++;
  job.file = std::move(file);
  job.body = std::move(body);
  job.dir_fd = parent->dir_fd;
  job.temp_name = temp;
  job.leaf = parent->leaf;
  if (entry.lastmod) {
    job.mtime = timespec{entry.lastmod->seconds, static_cast<long>(entry.lastmod->nanos)};
  }
  pending_.emplace(job.token, Pending{static_cast<std::size_t>(&result - report_.entries.data()),
                                      std::move(*parent), temp});
  committer_.submit(std::move(job));
  return std::nullopt;
}

void Unpacker::collect(bool wait_for_all) {
  for (;;) {
    for (auto& done : committer_.take_done()) {
      auto it = pending_.find(done.token);
      if (it == pending_.end()) continue;
      UnpackedEntry& e = report_.entries[it->second.entry];
      if (done.renamed && !done.error) {
        e.outcome = UnpackedEntry::Outcome::extracted;
      } else {
        e.outcome = UnpackedEntry::Outcome::failed;
        e.error = done.error.value_or(entry_error(errc::io_error, e.path + ": not committed"));
        if (!done.renamed) ::unlinkat(it->second.parent.dir_fd, it->second.temp_name.c_str(), 0);
      }
      pending_.erase(it);
    }
    if (pending_.empty() || (!wait_for_all && pending_.size() < kMaxPendingCommits)) return;
    std::unique_lock lock(wake_mutex_);
    wake_cv_.wait_for(lock, std::chrono::milliseconds(50), [&] { return woken_; });
    woken_ = false;
  }
}

}  // namespace

Result<UnpackReport> unpack_package(int zip_fd, const UnpackOptions& options, DestRoot& root,
                                    const PathMapper& mapper, const UnpackHooks& hooks) {
  auto zip = open_zip(zip_fd, options);
  if (!zip) return fail(zip.error());
  auto manifest = read_manifest(zip->get(), options);
  if (!manifest) return fail(manifest.error());
  Unpacker unpacker(zip->get(), options, root, mapper, hooks);
  return unpacker.run(std::move(*manifest));
}

}  // namespace shardsync::client
