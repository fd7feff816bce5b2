#include "dump_sync.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "committer.hpp"
#include "shardsync/client/change_plan.hpp"
#include "shardsync/client/discovery.hpp"
#include "shardsync/client/downloader.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace shardsync::client::detail {
namespace {

using sitemap::DocumentType;
using sitemap::Entry;

constexpr const char* kStateDir = ".shardsync";
constexpr const char* kDumpDir = "dumps";

struct PackageRef {
  std::string url;
  std::optional<sitemap::Timestamp> from, until;  // Change Dump packages
  std::optional<std::uint64_t> length;
  sitemap::HashList hashes;
  std::string contents_url;  // the advertised manifest copy, or empty
};

// DEST/.shardsync/dumps, made when missing, never through a symlink.
Result<UniqueFd> open_dump_dir(int root_fd) {
  UniqueFd state(::openat(root_fd, kStateDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!state) return fail(os_error(errno, std::string(kStateDir) + ": open"));
  if (::mkdirat(state.get(), kDumpDir, 0700) != 0 && errno != EEXIST) {
    return fail(os_error(errno, std::string(kStateDir) + "/" + kDumpDir + ": mkdir"));
  }
  UniqueFd dir(::openat(state.get(), kDumpDir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return fail(os_error(errno, std::string(kStateDir) + "/" + kDumpDir + ": open"));
  return dir;
}

// A package's file name in the dump directory: from its URL, so a rerun resumes it.
std::string package_file_name(const std::string& url) {
  sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256});
  hasher.update(url);
  return "package-" +
         std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256).substr(0, 16)) + ".zip";
}

PackageRef package_of(const std::string& dump_url, const Entry& entry) {
  PackageRef ref;
  ref.url = resolve_url(dump_url, entry.loc);
  if (entry.md) {
    ref.length = entry.md->length;
    ref.hashes = entry.md->hash;
    ref.from = entry.md->from;
    ref.until = entry.md->until;
  }
  if (const sitemap::Link* contents = entry.find_link("contents")) {
    ref.contents_url = resolve_url(dump_url, contents->href);
  }
  return ref;
}

class DumpRun {
 public:
  DumpRun(const DumpContext& context, UniqueFd dir, sitemap::Capability manifest_capability,
          UnpackHooks hooks)
      : context_(context),
        dir_(std::move(dir)),
        capability_(manifest_capability),
        hooks_(std::move(hooks)) {}

  // Fetches then unpacks the packages in order, `parallel` at a time; with `stop_on_failure`
  // none after the first that fails. False when a package or one of its entries failed.
  bool run(const std::vector<PackageRef>& packages, DumpBaseline& result,
           bool stop_on_failure = false);

 private:
  void log(const std::string& line) const {
    if (context_.log) context_.log(line);
  }
  bool unpack_one(const PackageRef& package, const std::string& file, DumpBaseline& result);

  const DumpContext& context_;
  UniqueFd dir_;
  sitemap::Capability capability_;
  UnpackHooks hooks_;
};

bool DumpRun::run(const std::vector<PackageRef>& packages, DumpBaseline& result,
                  bool stop_on_failure) {
  bool all = true;
  const auto& o = context_.options;
  const std::size_t batch = static_cast<std::size_t>(std::max(1, o.parallel));
  for (std::size_t first = 0; first < packages.size(); first += batch) {
    const std::size_t end = std::min(packages.size(), first + batch);
    std::vector<bool> fetched(end - first, false);
    Downloader downloader(DownloaderOptions{.parallel = o.parallel,
                                            .bearer_token = o.bearer_token,
                                            .max_attempts = o.max_attempts,
                                            .initial_backoff_ms = o.initial_backoff_ms,
                                            .low_speed_seconds = o.low_speed_seconds,
                                            .direct_io = false,  // unpacked right away
                                            .durable = false,    // then removed
                                            .ca_file = o.ca_file,
                                            .log = o.log});
    std::size_t next = first;
    const auto next_job = [&]() -> std::optional<DownloadJob> {
      if (next == end) return std::nullopt;
      const PackageRef& p = packages[next];
      return DownloadJob{next++,   {p.url},  dir_.get(),  package_file_name(p.url),
                         p.length, p.hashes, std::nullopt};
    };
    const auto on_done = [&](DownloadResult&& done) {
      if (done.outcome) {
        fetched[done.id - first] = true;
      } else if (context_.on_package_failed) {
        context_.on_package_failed(packages[done.id].url, done.outcome.error());
      }
    };
    const auto on_bytes = [&](std::uint64_t bytes) {
      if (context_.on_package_bytes) context_.on_package_bytes(bytes);
    };
    try {
      downloader.run(next_job, on_done, on_bytes);
    } catch (const std::system_error& e) {
      // A failed directory fsync: the packages are read now, so only their durability
      // suffered, and they are removed after unpacking anyway.
      log(std::string("dump directory not synced: ") + e.what());
    }
    for (std::size_t i = first; i < end; ++i) {
      const std::string file = package_file_name(packages[i].url);
      if (all || !stop_on_failure) {
        all = (fetched[i - first] && unpack_one(packages[i], file, result)) && all;
      }
      ::unlinkat(dir_.get(), file.c_str(), 0);
    }
    if (!all && stop_on_failure) break;
  }
  return all;
}

bool DumpRun::unpack_one(const PackageRef& package, const std::string& file, DumpBaseline& result) {
  const auto refused = [&](Error error) {
    if (context_.on_package_failed) context_.on_package_failed(package.url, std::move(error));
    return false;
  };
  UniqueFd fd(::openat(dir_.get(), file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) return refused(os_error(errno, package.url + ": " + file));
  // libzip reads every local header first (ZIP_CHECKCONS), then each entry: one sequential
  // read-ahead instead of thousands of small reads from the disk if the cache lost it.
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_WILLNEED);
  UnpackOptions options;
  options.package_url = package.url;
  options.manifest_capability = capability_;
  if (!package.contents_url.empty()) {
    auto copy = context_.get_bytes(package.contents_url);
    if (!copy) return refused(copy.error());
    options.manifest_copy = std::move(*copy);
  }
  auto report = unpack_package(fd.get(), options, context_.root, context_.mapper, hooks_);
  if (!report) return refused(report.error());
  ++result.packages;
  if (report->ignored_zip_entries) {
    log(package.url + ": " + std::to_string(report->ignored_zip_entries) +
        " entries not in its manifest were not extracted");
  }
  bool ok = true;
  for (const auto& entry : report->entries) {
    if (!entry.path.empty()) result.listed.push_back(entry.path);
    if (entry.outcome == UnpackedEntry::Outcome::failed) ok = false;
    if (context_.on_entry) context_.on_entry(entry, report->manifest.entries[entry.index]);
  }
  return ok;
}

}  // namespace

Result<DumpBaseline> baseline_from_dump(const DumpContext& context, const std::string& url) {
  auto doc =
      context.get_document(url, {DocumentType::resource_dump, DocumentType::resource_dump_index});
  if (!doc) return fail(doc.error());
  DumpBaseline result;
  result.at = doc->header.md.at;
  std::vector<PackageRef> packages;
  if (doc->type() == DocumentType::resource_dump) {
    for (const auto& entry : doc->entries) packages.push_back(package_of(url, entry));
  } else {
    for (const auto& part : doc->entries) {
      const std::string part_url = resolve_url(url, part.loc);
      auto dump = context.get_document(part_url, {DocumentType::resource_dump});
      if (!dump) return fail(dump.error());
      if (!result.at) result.at = dump->header.md.at;
      for (const auto& entry : dump->entries) packages.push_back(package_of(part_url, entry));
    }
  }
  // Packages may sit on another host (a CDN): what they can write is decided by their
  // manifests' <loc> values, which the PathMapper confines to the source's base.
  for (const auto& p : packages) {
    if (context.on_package_listed) context.on_package_listed(p.length.value_or(0));
  }
  auto dir = open_dump_dir(context.root.root_fd());
  if (!dir) return fail(dir.error());
  DumpRun run(context, std::move(*dir), sitemap::Capability::resourcedump_manifest, context.hooks);
  run.run(packages, result);
  return result;
}

Result<DumpChanges> changes_from_dump(const DumpContext& context, const std::string& url,
                                      const std::optional<sitemap::Timestamp>& cursor) {
  auto doc =
      context.get_document(url, {DocumentType::change_dump, DocumentType::change_dump_index});
  if (!doc) return fail(doc.error());
  std::vector<PackageRef> packages;
  const auto add = [&](const std::string& dump_url, const sitemap::Document& dump) {
    for (const auto& entry : dump.entries) {
      PackageRef ref = package_of(dump_url, entry);
      // Closed before the cursor: every change in it is applied already (boundaries are
      // inclusive, as for Change Lists).
      if (cursor && ref.until && *ref.until < *cursor) continue;
      packages.push_back(std::move(ref));
    }
  };
  if (doc->type() == DocumentType::change_dump) {
    add(url, *doc);
  } else {
    for (const auto& part : doc->entries) {
      const auto& md = part.md;
      if (cursor && md && md->until && *md->until < *cursor) continue;
      const std::string part_url = resolve_url(url, part.loc);
      auto dump = context.get_document(part_url, {DocumentType::change_dump});
      if (!dump) return fail(dump.error());
      add(part_url, *dump);
    }
  }
  std::stable_sort(packages.begin(), packages.end(), [](const auto& a, const auto& b) {
    return a.from.value_or(sitemap::Timestamp{}) < b.from.value_or(sitemap::Timestamp{});
  });
  for (const auto& p : packages) {
    if (context.on_package_listed) context.on_package_listed(p.length.value_or(0));
  }
  DumpChanges changes;
  if (packages.empty()) return changes;
  auto dir = open_dump_dir(context.root.root_fd());
  if (!dir) return fail(dir.error());
  std::optional<sitemap::Timestamp> newest;
  UnpackHooks hooks = context.hooks;
  hooks.claim = nullptr;  // one path may change in several packages
  hooks.select = [&](std::size_t, const std::string&, const Entry& entry) {
    const auto when = change_time(entry);
    if (when && (!newest || *when > *newest)) newest = *when;
    return !cursor || !when || *when >= *cursor;
  };
  DumpRun run(context, std::move(*dir), sitemap::Capability::changedump_manifest, std::move(hooks));
  DumpBaseline applied;
  // After a failure nothing is recorded as applied: the caller sees the failures.
  if (!run.run(packages, applied, true)) return changes;
  changes.packages = applied.packages;
  changes.newest = newest;
  for (const auto& p : packages) {
    if (p.until && (!changes.newest || *p.until > *changes.newest)) changes.newest = p.until;
  }
  return changes;
}

}  // namespace shardsync::client::detail
