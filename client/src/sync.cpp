#include "shardsync/client/sync.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <unordered_map>
#include <unordered_set>

#include "dump_sync.hpp"
#include "shardsync/client/change_plan.hpp"
#include "shardsync/client/dest_root.hpp"
#include "shardsync/client/discovery.hpp"
#include "shardsync/client/document_client.hpp"
#include "shardsync/client/downloader.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/client/local_path.hpp"
#include "shardsync/client/sync_state.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace shardsync::client {
namespace {

using sitemap::Capability;
using sitemap::ChangeType;
using sitemap::DocumentType;
using sitemap::Entry;
using sitemap::HashAlgorithm;
using sitemap::Timestamp;

// The strongest algorithm an entry's hash attribute offers with a well-formed digest.
std::optional<HashAlgorithm> strongest(const sitemap::HashList& hashes) {
  for (const auto algorithm : {HashAlgorithm::sha256, HashAlgorithm::sha1, HashAlgorithm::md5}) {
    if (sitemap::is_valid_hex_digest(algorithm, hashes.get(algorithm))) return algorithm;
  }
  return std::nullopt;
}

std::int64_t to_ns(const Timestamp& t) {
  return t.seconds * 1'000'000'000 + static_cast<std::int64_t>(t.nanos);
}

// A resource the run wants to have, as listed.
struct Wanted {
  std::string path;
  std::vector<std::string> urls;  // primary, then `duplicate` mirrors by `pri`
  std::optional<std::uint64_t> length;
  sitemap::HashList hashes;
  std::optional<Timestamp> lastmod;
};

std::vector<std::string> urls_of(const std::string& primary, const Entry& entry) {
  std::vector<const sitemap::Link*> mirrors;
  for (const auto& link : entry.links) {
    if (link.rel == "duplicate" && !origin_of(link.href).empty()) mirrors.push_back(&link);
  }
  std::stable_sort(mirrors.begin(), mirrors.end(), [](const auto* a, const auto* b) {
    return a->pri.value_or(1'000'000) < b->pri.value_or(1'000'000);
  });
  std::vector<std::string> urls{primary};
  for (const auto* link : mirrors) urls.push_back(link->href);
  return urls;
}

class Engine {
 public:
  explicit Engine(const SyncOptions& options)
      : options_(options),
        docs_(DocumentClientOptions{.bearer_token = options.bearer_token,
                                    .max_attempts = options.max_attempts,
                                    .initial_backoff_ms = options.initial_backoff_ms,
                                    .low_speed_seconds = options.low_speed_seconds,
                                    .ca_file = options.ca_file,
                                    .log = options.log}) {}

  Result<SyncReport> sync(const std::function<void(const SyncProgress&)>& progress);
  Result<AuditReport> audit();

 private:
  void log(const std::string& line) const {
    if (options_.log) options_.log(line);
  }
  Result<void> discover_and_map();
  // Takes the document URLs a run with the same SOURCE and --collection found before.
  bool restore_endpoints(const SyncState& state);
  void remember_endpoints(SyncState& state) const;
  // A state for this source that has not synced anything yet.
  SyncState fresh_state() const;
  Result<void> make_mapper();
  // One attempt at the run, with endpoints_ set.
  Result<void> run_once(const std::optional<SyncState>& state);
  // Reads the Resource List (or every part of its index) into `fn`; returns its `at`.
  Result<std::optional<Timestamp>> read_resource_list(
      const std::function<void(const std::string& url, const Entry&)>& fn);
  // What the change documents were when read (for the next run's conditional GETs).
  struct ChangeValidators {
    bool unchanged = false;  // 304s: nothing new since `previous`
    std::string etag;
    bool is_index = false;
    std::string open_url, open_etag;
  };
  // The changes after `cursor`, or a reason to re-baseline in `rebaseline`. With `previous`
  // (the state of the last run), documents whose ETag did not change are not read again.
  Result<ReducedChanges> read_changes(const std::optional<Timestamp>& cursor,
                                      std::string& rebaseline, const SyncState* previous,
                                      ChangeValidators& validators);
  // A document of one of `types` on the source's host; absent when `etag` still holds.
  Result<ConditionalDocument> get_document_if_changed(const std::string& url,
                                                      std::initializer_list<DocumentType> types,
                                                      const std::string& etag);
  Result<sitemap::Document> get_document(const std::string& url,
                                         std::initializer_list<DocumentType> types);

  Result<void> baseline();
  // The two ways to bring DEST to the source's snapshot; both add what they list to `listed`
  // and return the snapshot's `at`.
  Result<std::optional<Timestamp>> list_baseline(std::unordered_set<std::string>& listed);
  Result<std::optional<Timestamp>> dump_baseline(std::unordered_set<std::string>& listed);
  detail::DumpContext dump_context(std::unordered_set<std::string>& listed);
  // A `deleted` change from a Change Dump package: made with --delete (regular files only).
  void apply_dump_deletion(const UnpackedEntry& e);
  [[nodiscard]] bool use_dump() const {
    return options_.via_dump && !endpoints_.resource_dump_url.empty();
  }
  // Whether a baseline is possible at all.
  [[nodiscard]] bool has_snapshot() const {
    return !endpoints_.resource_list_url.empty() || use_dump();
  }
  // False (and report_.rebaseline_reason set) when the source cannot bring DEST forward.
  Result<bool> incremental(const SyncState& state);
  // Whether the local file already is the listed resource (size, then mtime = lastmod, then
  // the digest when those differ); sets the mtime when only it differed.
  Result<bool> is_current(const Wanted& wanted);
  Result<std::string> local_digest(const std::string& path, HashAlgorithm algorithm);
  // Downloads what is not current yet; failures go into the report.
  void fetch_all(const std::vector<Wanted>& wanted);
  // Deletes local files (regular files only), unless more than --max-delete.
  void delete_all(const std::vector<std::string>& paths);
  // The resource an entry lists, or nullopt (failure recorded) when its URL cannot be mapped
  // or aliases a path already wanted.
  std::optional<Wanted> want(const std::string& document_url, const Entry& entry);
  void record_failure(std::string url, std::string path, Error error);
  // Saves the state; a failure to is an error only when the run itself had none.
  Result<void> save_state(const SyncState& state);
  void report_progress();

  const SyncOptions& options_;
  DocumentClient docs_;
  SetEndpoints endpoints_;
  std::optional<PathMapper> mapper_;
  std::optional<DestRoot> root_;
  std::optional<StateStore> store_;
  std::function<void(const SyncProgress&)> progress_;
  SyncProgress progress_state_;
  SyncReport report_;
  std::unordered_set<std::string> collision_keys_;
};

Result<void> Engine::discover_and_map() {
  auto endpoints = discover(docs_, options_.source, options_.collection);
  if (!endpoints) return fail(endpoints.error());
  endpoints_ = std::move(*endpoints);
  return make_mapper();
}

bool Engine::restore_endpoints(const SyncState& state) {
  if (state.source_argument != options_.source ||
      state.collection_argument != options_.collection || state.base_url.empty() ||
      (state.resource_list_url.empty() && state.change_list_url.empty())) {
    return false;
  }
  endpoints_ = SetEndpoints{};
  endpoints_.name = state.set_name;
  endpoints_.base_url = state.base_url;
  endpoints_.resource_list_url = state.resource_list_url;
  endpoints_.change_list_url = state.change_list_url;
  if (state.source != state.resource_list_url && state.source != state.change_list_url) {
    endpoints_.capability_list_url = state.source;
  }
  return endpoints_.identity() == state.source && make_mapper().has_value();
}

SyncState Engine::fresh_state() const {
  SyncState state;
  remember_endpoints(state);
  return state;
}

void Engine::remember_endpoints(SyncState& state) const {
  state.source = endpoints_.identity();
  state.source_argument = options_.source;
  state.collection_argument = options_.collection;
  state.set_name = endpoints_.name;
  state.base_url = endpoints_.base_url;
  state.resource_list_url = endpoints_.resource_list_url;
  state.change_list_url = endpoints_.change_list_url;
}

Result<void> Engine::make_mapper() {
  std::vector<PathMapping> mappings{{endpoints_.base_url, ""}};
  for (const auto& [prefix, dir] : options_.maps) mappings.push_back({prefix, dir});
  auto mapper = PathMapper::create(std::move(mappings));
  if (!mapper) return fail(mapper.error());
  mapper_.emplace(std::move(*mapper));
  return {};
}

Result<ConditionalDocument> Engine::get_document_if_changed(
    const std::string& url, std::initializer_list<DocumentType> types, const std::string& etag) {
  if (origin_of(url) != origin_of(endpoints_.identity())) {
    return fail(errc::outside_source, "document " + url + " is not on the source's host");
  }
  auto got = docs_.get_document_if_changed(url, etag);
  if (!got || !got->document) return got;
  const DocumentType type = got->document->type();
  if (std::find(types.begin(), types.end(), type) == types.end()) {
    return fail(errc::bad_document,
                url + ": unexpected " + std::string(sitemap::document_type_name(type)));
  }
  return got;
}

Result<sitemap::Document> Engine::get_document(const std::string& url,
                                               std::initializer_list<DocumentType> types) {
  auto got = get_document_if_changed(url, types, {});
  if (!got) return fail(got.error());
  return std::move(*got->document);
}

Result<std::optional<Timestamp>> Engine::read_resource_list(
    const std::function<void(const std::string&, const Entry&)>& fn) {
  const std::string& url = endpoints_.resource_list_url;
  auto doc = get_document(url, {DocumentType::resource_list, DocumentType::resource_list_index});
  if (!doc) return fail(doc.error());
  const std::optional<Timestamp> at = doc->header.md.at;
  if (doc->type() == DocumentType::resource_list) {
    for (const auto& entry : doc->entries) fn(url, entry);
    return at;
  }
  for (const auto& part : doc->entries) {
    const std::string part_url = resolve_url(url, part.loc);
    auto list = get_document(part_url, {DocumentType::resource_list});
    if (!list) return fail(list.error());
    for (const auto& entry : list->entries) fn(part_url, entry);
  }
  return at;
}

Result<ReducedChanges> Engine::read_changes(const std::optional<Timestamp>& cursor,
                                            std::string& rebaseline, const SyncState* previous,
                                            ChangeValidators& validators) {
  const std::string& url = endpoints_.change_list_url;
  const std::initializer_list<DocumentType> top_types{DocumentType::change_list,
                                                      DocumentType::change_list_index};
  // A no-op costs one or two conditional GETs: the documents read last, unchanged (304).
  const bool known =
      previous && previous->change_list_url == url && !previous->change_list_etag.empty();
  auto top = get_document_if_changed(url, top_types, known ? previous->change_list_etag : "");
  if (!top) return fail(top.error());
  if (!top->document) {
    if (!previous->change_list_is_index) {
      validators.unchanged = true;
      return ReducedChanges{};
    }
    if (!previous->open_list_url.empty() && !previous->open_list_etag.empty()) {
      auto open = get_document_if_changed(previous->open_list_url, {DocumentType::change_list},
                                          previous->open_list_etag);
      if (!open) return fail(open.error());
      if (!open->document) {
        validators.unchanged = true;
        return ReducedChanges{};
      }
    }
    top = get_document_if_changed(url, top_types, "");
    if (!top) return fail(top.error());
  }
  const sitemap::Document* doc = &*top->document;
  validators.etag = top->etag;
  validators.is_index = doc->type() == DocumentType::change_list_index;
  std::vector<MappedChange> changes;
  std::vector<ResourceFailure> unmapped;
  const auto collect = [&](const std::string& list_url, const sitemap::Document& list) {
    for (const auto& entry : list.entries) {
      const std::string loc = resolve_url(list_url, entry.loc);
      auto path = mapper_->local_path(loc);
      if (!path) {
        unmapped.push_back({loc, "", path.error()});
        continue;
      }
      ++report_.listed;
      if (!entry.md || !entry.md->change) {
        unmapped.push_back({loc, *path,
                            Error{make_error_code(errc::bad_document),
                                  list_url + " line " + std::to_string(entry.line) +
                                      ": a change without a change type"}});
        continue;
      }
      changes.push_back({std::move(*path), entry});
    }
  };
  if (doc->type() == DocumentType::change_list) {
    ListSelection selection = select_change_lists(
        {{url, doc->header.md.from, doc->header.md.until}}, doc->header.md.from, cursor);
    if (!selection.rebaseline_reason.empty()) {
      rebaseline = selection.rebaseline_reason;
      return ReducedChanges{};
    }
    collect(url, *doc);
  } else {
    std::vector<ChangeListRef> refs;
    for (const auto& entry : doc->entries) {
      const auto& md = entry.md;
      refs.push_back({resolve_url(url, entry.loc), md ? md->from : std::nullopt,
                      md ? md->until : std::nullopt});
    }
    ListSelection selection = select_change_lists(std::move(refs), doc->header.md.from, cursor);
    if (!selection.rebaseline_reason.empty()) {
      rebaseline = selection.rebaseline_reason;
      return ReducedChanges{};
    }
    for (const auto& list_url : selection.urls) {
      auto list = get_document_if_changed(list_url, {DocumentType::change_list}, "");
      if (!list) return fail(list.error());
      collect(list_url, *list->document);
      validators.open_url = list_url;  // the last one read is the open one
      validators.open_etag = list->etag;
    }
  }
  ReducedChanges reduced = reduce_changes(std::move(changes), cursor);
  for (auto& failure : unmapped) {
    record_failure(std::move(failure.url), std::move(failure.path), std::move(failure.error));
  }
  return reduced;
}

Result<void> Engine::save_state(const SyncState& state) {
  auto saved = store_->save(state);
  if (saved || report_.failures.empty()) return saved;
  // The previous state stays (the rename is atomic) and it is the right one after a run with
  // failures: nothing it records has moved forward. A full disk must not hide the report.
  log("state not saved: " + saved.error().describe());
  return {};
}

void Engine::record_failure(std::string url, std::string path, Error error) {
  log("failed " + (path.empty() ? url : path) + ": " + error.describe());
  report_.failures.push_back({std::move(url), std::move(path), std::move(error)});
}

void Engine::report_progress() {
  if (progress_) progress_(progress_state_);
}

std::optional<Wanted> Engine::want(const std::string& document_url, const Entry& entry) {
  const std::string url = resolve_url(document_url, entry.loc);
  auto path = mapper_->local_path(url);
  if (!path) {
    record_failure(url, "", path.error());
    return std::nullopt;
  }
  if (!collision_keys_.insert(collision_key(*path)).second) {
    record_failure(url, *path,
                   Error{make_error_code(errc::path_collision),
                         *path + " is also the local path of another listed resource"});
    return std::nullopt;
  }
  Wanted wanted{*path, urls_of(url, entry), std::nullopt, {}, entry.lastmod};
  if (entry.md) {
    wanted.length = entry.md->length;
    wanted.hashes = entry.md->hash;
  }
  if (!strongest(wanted.hashes)) ++report_.unverified;
  return wanted;
}

Result<std::string> Engine::local_digest(const std::string& path, HashAlgorithm algorithm) {
  auto fd = root_->open_read(path);
  if (!fd) return fail(fd.error());
  const UniqueFd file(*fd);
  sitemap::Hasher hasher({algorithm});
  std::string buffer(1 << 20, '\0');
  for (;;) {
    const ssize_t n = ::read(file.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(errc::io_error, path + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    hasher.update(std::string_view(buffer.data(), static_cast<std::size_t>(n)));
  }
  return std::string(hasher.finish().get(algorithm));
}

Result<bool> Engine::is_current(const Wanted& wanted) {
  auto local = root_->stat_file(wanted.path);
  if (!local) return fail(local.error());
  if (!*local) return false;
  const LocalFile& file = **local;
  if (wanted.length && file.size != *wanted.length) return false;
  if (wanted.lastmod && file.mtime_ns == to_ns(*wanted.lastmod)) return true;
  const auto algorithm = strongest(wanted.hashes);
  if (!algorithm) return !wanted.lastmod && wanted.length.has_value();
  auto digest = local_digest(wanted.path, *algorithm);
  if (!digest) return fail(digest.error());
  if (*digest != wanted.hashes.get(*algorithm)) return false;
  if (wanted.lastmod) {
    // Same bytes, other mtime (a copy made by other means): adopt the listed lastmod so the
    // next run's quick check needs no read.
    auto parent = root_->parent_of(wanted.path, false);
    if (parent) {
      const std::int64_t ns = to_ns(*wanted.lastmod);
      const timespec times[2] = {{ns / 1'000'000'000, ns % 1'000'000'000},
                                 {ns / 1'000'000'000, ns % 1'000'000'000}};
      ::utimensat(parent->dir_fd, parent->leaf.c_str(), times, AT_SYMLINK_NOFOLLOW);
    }
  }
  return true;
}

void Engine::fetch_all(const std::vector<Wanted>& wanted) {
  std::vector<const Wanted*> needed;
  for (const auto& w : wanted) {
    auto current = is_current(w);
    if (!current) {
      record_failure(w.urls.front(), w.path, current.error());
    } else if (*current) {
      ++report_.up_to_date;
    } else {
      needed.push_back(&w);
      ++progress_state_.files_total;
      progress_state_.bytes_total += w.length.value_or(0);
    }
  }
  if (needed.empty()) return;
  report_progress();
  Downloader downloader(DownloaderOptions{.parallel = options_.parallel,
                                          .bearer_token = options_.bearer_token,
                                          .max_attempts = options_.max_attempts,
                                          .initial_backoff_ms = options_.initial_backoff_ms,
                                          .low_speed_seconds = options_.low_speed_seconds,
                                          .ca_file = options_.ca_file,
                                          .log = options_.log});
  std::size_t next = 0;
  std::unordered_map<std::uint64_t, std::shared_ptr<const UniqueFd>> open_dirs;
  const auto next_job = [&]() -> std::optional<DownloadJob> {
    while (next < needed.size()) {
      const Wanted& w = *needed[next];
      const std::uint64_t id = next++;
      auto parent = root_->parent_of(w.path, true);
      if (!parent) {
        record_failure(w.urls.front(), w.path, parent.error());
        ++progress_state_.files_done;
        continue;
      }
      DownloadJob job{id, w.urls, parent->dir_fd, parent->leaf, w.length, w.hashes, w.lastmod};
      open_dirs.emplace(id, std::move(parent->dir));  // keeps dir_fd open until on_done
      return job;
    }
    return std::nullopt;
  };
  const auto on_done = [&](DownloadResult&& result) {
    const Wanted& w = *needed[result.id];
    open_dirs.erase(result.id);
    ++progress_state_.files_done;
    if (result.outcome) {
      ++report_.fetched;
      report_.bytes_resumed += result.outcome->resumed_from;
      log("fetched " + w.path + " (" + std::to_string(result.outcome->length) + " bytes" +
          (result.outcome->resumed_from
               ? ", resumed at " + std::to_string(result.outcome->resumed_from)
               : std::string()) +
          ")");
    } else {
      record_failure(w.urls.front(), w.path, result.outcome.error());
    }
    report_progress();
  };
  const auto on_bytes = [&](std::uint64_t bytes) {
    report_.bytes_fetched += bytes;
    progress_state_.bytes_done += bytes;
    report_progress();
  };
  downloader.run(next_job, on_done, on_bytes);
}

void Engine::delete_all(const std::vector<std::string>& paths) {
  if (paths.empty()) return;
  if (options_.max_delete && paths.size() > *options_.max_delete) {
    report_.deletes_skipped += paths.size();
    report_.delete_refusal = std::to_string(paths.size()) + " deletions needed, more than " +
                             "--max-delete " + std::to_string(*options_.max_delete) + ": none made";
    log(report_.delete_refusal);
    return;
  }
  for (const auto& path : paths) {
    auto removed = root_->remove_file(path);
    if (removed) {
      ++report_.deleted;
      log("deleted " + path);
    } else {
      record_failure("", path, removed.error());
    }
  }
}

Result<std::optional<Timestamp>> Engine::list_baseline(std::unordered_set<std::string>& listed) {
  if (options_.via_dump) log("the source offers no resource dump: baseline from its resource list");
  std::vector<Wanted> wanted;
  auto at = read_resource_list([&](const std::string& url, const Entry& entry) {
    ++report_.listed;
    if (auto w = want(url, entry)) {
      listed.insert(w->path);
      wanted.push_back(std::move(*w));
    }
  });
  if (!at) return fail(at.error());
  fetch_all(wanted);
  return at;
}

detail::DumpContext Engine::dump_context(std::unordered_set<std::string>& listed) {
  detail::DumpContext context{
      .options = options_,
      .root = *root_,
      .mapper = *mapper_,
      .get_document =
          [this](const std::string& url, std::initializer_list<DocumentType> types) {
            return get_document(url, types);
          },
      .get_bytes = [this](const std::string& url) -> Result<std::string> {
        if (origin_of(url) != origin_of(endpoints_.identity())) {
          return fail(errc::outside_source, "document " + url + " is not on the source's host");
        }
        auto got = docs_.get(url);
        if (!got) return fail(got.error());
        if (got->status >= 400) {
          return fail(errc::http_status, url + ": HTTP " + std::to_string(got->status));
        }
        return std::move(got->body);
      },
      .hooks = {},
      .on_package_bytes =
          [this](std::uint64_t bytes) {
            report_.bytes_fetched += bytes;
            progress_state_.bytes_done += bytes;
            report_progress();
          },
      .on_package_listed = [this](std::uint64_t bytes) { progress_state_.bytes_total += bytes; },
      .on_entry =
          [&](const UnpackedEntry& e, const Entry& entry) {
            ++report_.listed;
            ++progress_state_.files_total;
            ++progress_state_.files_done;
            if (!e.path.empty()) listed.insert(e.path);
            if (e.outcome == UnpackedEntry::Outcome::deleted_change) {
              apply_dump_deletion(e);
              return;
            }
            if (e.outcome == UnpackedEntry::Outcome::failed) {
              record_failure(e.url, e.path, *e.error);
            } else if (e.outcome == UnpackedEntry::Outcome::current) {
              ++report_.up_to_date;
            } else {
              ++report_.fetched;  // per file: counted, not logged (as for fetches)
            }
            if (e.outcome != UnpackedEntry::Outcome::failed &&
                !(entry.md && strongest(entry.md->hash))) {
              ++report_.unverified;
            }
            report_progress();
          },
      .on_package_failed = [this](const std::string& url,
                                  Error error) { record_failure(url, "", std::move(error)); },
      .log = options_.log};
  context.hooks.claim = [this](const std::string& path) -> std::optional<Error> {
    if (collision_keys_.insert(collision_key(path)).second) return std::nullopt;
    return Error{make_error_code(errc::path_collision),
                 path + " is also the local path of another listed resource"};
  };
  context.hooks.is_current = [this](const std::string& path, const Entry& entry) {
    Wanted w{path, {}, entry.md->length, entry.md->hash, entry.lastmod};
    return is_current(w);
  };
  return context;
}

void Engine::apply_dump_deletion(const UnpackedEntry& e) {
  auto local = root_->stat_file(e.path);
  if (!local) return record_failure(e.url, e.path, local.error());
  if (!*local) return;
  if (!options_.delete_files) {
    ++report_.deletes_skipped;
    return;
  }
  auto removed = root_->remove_file(e.path);
  if (!removed) return record_failure(e.url, e.path, removed.error());
  ++report_.deleted;
  log("deleted " + e.path);
}

Result<std::optional<Timestamp>> Engine::dump_baseline(std::unordered_set<std::string>& listed) {
  const detail::DumpContext context = dump_context(listed);
  log("baseline from the resource dump " + endpoints_.resource_dump_url);
  auto dumped = detail::baseline_from_dump(context, endpoints_.resource_dump_url);
  if (!dumped) return fail(dumped.error());
  return dumped->at;
}

Result<void> Engine::baseline() {
  report_.mode = SyncMode::baseline;
  std::unordered_set<std::string> listed;
  auto at = use_dump() ? dump_baseline(listed) : list_baseline(listed);
  if (!at) return fail(at.error());

  std::vector<std::string> extra;
  std::uint64_t local_files = 0;
  auto walked = root_->walk([&](const std::string& path, const LocalFile&) {
    ++local_files;
    if (!listed.contains(path)) extra.push_back(path);
  });
  if (!walked) return fail(walked.error());
  std::sort(extra.begin(), extra.end());
  if (!options_.delete_files) {
    report_.deletes_skipped += extra.size();
  } else if (!report_.failures.empty()) {
    // rsync's rule: after any error, deleting could remove what only looks extra.
    report_.deletes_skipped += extra.size();
    if (!extra.empty()) {
      log("not deleting " + std::to_string(extra.size()) + " files: some resources failed");
    }
  } else if (!options_.max_delete && extra.size() > 1 && extra.size() * 2 > local_files) {
    // A listing that drops most of the mirror is likelier a broken source (an empty or
    // truncated list) than a real mass deletion: make the user say how many is fine.
    report_.deletes_skipped += extra.size();
    report_.delete_refusal = std::to_string(extra.size()) + " of " + std::to_string(local_files) +
                             " local files are no longer listed: none deleted (give --max-delete N "
                             "to allow that many)";
    log(report_.delete_refusal);
  } else {
    delete_all(extra);
  }

  SyncState state = fresh_state();
  state.baseline_complete = report_.failures.empty();
  state.baseline_at = *at;
  if (state.baseline_complete) state.cursor = *at;
  return save_state(state);
}

Result<bool> Engine::incremental(const SyncState& state) {
  report_.mode = SyncMode::incremental;
  // Change Dump packages first (the source may keep only recent Change Lists), then the
  // Change Lists from where the packages end.
  std::optional<Timestamp> cursor = state.cursor;
  bool dumped = false;
  if (options_.via_dump && !endpoints_.change_dump_url.empty()) {
    std::unordered_set<std::string> listed;
    auto applied =
        detail::changes_from_dump(dump_context(listed), endpoints_.change_dump_url, cursor);
    if (!applied) return fail(applied.error());
    if (!report_.failures.empty()) return true;  // the cursor stays; a rerun retries
    if (applied->newest && (!cursor || *applied->newest > *cursor)) {
      log("applied " + std::to_string(applied->packages) + " change dump packages up to " +
          sitemap::format_w3c_datetime(*applied->newest));
      cursor = applied->newest;
      dumped = true;
    }
  }
  std::string rebaseline;
  ChangeValidators validators;
  // After packages moved the cursor, the Change Lists are read whole (no conditional GETs).
  auto changes = read_changes(cursor, rebaseline, dumped ? nullptr : &state, validators);
  if (!changes) return fail(changes.error());
  if (!rebaseline.empty()) {
    report_.rebaseline_reason = rebaseline;
    return false;
  }
  if (validators.unchanged) return true;  // nothing new: the state stays as it is
  std::vector<std::string> deletions;
  std::vector<Wanted> wanted;
  for (auto& change : changes->changes) {
    if (change.entry.md->change == ChangeType::deleted) {
      auto local = root_->stat_file(change.path);
      if (!local) {
        record_failure(resolve_url(endpoints_.change_list_url, change.entry.loc), change.path,
                       local.error());
      } else if (*local) {
        deletions.push_back(change.path);
      }
      continue;
    }
    if (auto w = want(endpoints_.change_list_url, change.entry)) wanted.push_back(std::move(*w));
  }
  // Deletions first: a path deleted and then created as a directory ("a" → "a/b") needs it.
  if (options_.delete_files) {
    delete_all(deletions);
  } else {
    report_.deletes_skipped += deletions.size();
  }
  fetch_all(wanted);
  if (report_.failures.empty()) {
    SyncState next = state;
    remember_endpoints(next);
    if (dumped) next.cursor = cursor;
    if (changes->newest && (!next.cursor || *changes->newest > *next.cursor)) {
      next.cursor = changes->newest;
    }
    next.change_list_etag = validators.etag;
    next.change_list_is_index = validators.is_index;
    next.open_list_url = validators.open_url;
    next.open_list_etag = validators.open_etag;
    auto saved = save_state(next);
    if (!saved) return fail(saved.error());
  }
  return true;
}

Result<SyncReport> Engine::sync(const std::function<void(const SyncProgress&)>& progress) {
  const auto started = std::chrono::steady_clock::now();
  progress_ = progress;
  auto root = DestRoot::open(options_.dest);
  if (!root) return fail(root.error());
  root_.emplace(std::move(*root));
  auto store = StateStore::open(root_->root_fd());
  if (!store) return fail(store.error());
  store_.emplace(std::move(*store));
  auto loaded = store_->load();
  if (!loaded) return fail(loaded.error());
  const std::optional<SyncState>& state = *loaded;

  // The saved state does not keep the dump URLs: --via-dump reads the Capability List again.
  const bool from_state =
      !options_.force_baseline && !options_.via_dump && state && restore_endpoints(*state);
  if (!from_state) {
    if (auto mapped = discover_and_map(); !mapped) return fail(mapped.error());
  }
  auto ran = run_once(state);
  const auto stale = [](const Error& e) {
    return e.code == errc::http_status || e.code == errc::bad_document ||
           e.code == errc::outside_source;
  };
  if (!ran && from_state && stale(ran.error())) {
    // The source moved its documents since the last run: find them again.
    log("the documents found last time are gone (" + ran.error().describe() +
        "): discovering again");
    report_ = SyncReport{};
    collision_keys_.clear();
    if (auto mapped = discover_and_map(); !mapped) return fail(mapped.error());
    ran = run_once(state);
  }
  if (!ran) return fail(ran.error());
  report_.set_name = endpoints_.name;
  report_.documents = docs_.requests();
  report_.document_bytes = docs_.bytes_received();
  report_.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return std::move(report_);
}

Result<void> Engine::run_once(const std::optional<SyncState>& state) {
  if (state && state->source != endpoints_.identity() && !options_.force_baseline) {
    return fail(errc::source_changed, options_.dest + " mirrors " + state->source + ", not " +
                                          endpoints_.identity() +
                                          " (use --baseline to mirror the new source)");
  }
  const bool same_source = state && state->source == endpoints_.identity();
  bool done = false;
  if (!options_.force_baseline && !endpoints_.change_list_url.empty() &&
      (!has_snapshot() || (same_source && state->baseline_complete))) {
    SyncState from = same_source ? *state : fresh_state();
    auto applied = incremental(from);
    if (!applied) return fail(applied.error());
    done = *applied;
    if (!done) {
      if (!has_snapshot()) {
        return fail(errc::not_retained, report_.rebaseline_reason +
                                            "; the source offers no resource list to re-baseline");
      }
      log("re-baselining: " + report_.rebaseline_reason);
    }
  }
  if (!done) {
    if (!has_snapshot()) {
      return fail(errc::discovery_failed, "the source offers no resource list");
    }
    if (!same_source) {
      // Remember the new source before touching files, so a killed run is not mistaken for
      // a mirror of the old one.
      auto saved = store_->save(fresh_state());
      if (!saved) return fail(saved.error());
    }
    const std::string reason = report_.rebaseline_reason;
    report_.failures.clear();
    if (auto ran = baseline(); !ran) return fail(ran.error());
    report_.rebaseline_reason = reason;
  }
  return {};
}

Result<AuditReport> Engine::audit() {
  const auto started = std::chrono::steady_clock::now();
  struct stat st {};
  if (::stat(options_.dest.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return fail(errc::io_error, options_.dest + " is not a directory");
  }
  auto root = DestRoot::open(options_.dest);
  if (!root) return fail(root.error());
  root_.emplace(std::move(*root));
  if (auto mapped = discover_and_map(); !mapped) return fail(mapped.error());
  if (endpoints_.resource_list_url.empty()) {
    return fail(errc::discovery_failed, "the source offers no resource list to audit against");
  }
  AuditReport audit;
  audit.set_name = endpoints_.name;
  // The expected state: the Resource List, then the changes after its `at`.
  std::map<std::string, Wanted> expected;
  auto at = read_resource_list([&](const std::string& url, const Entry& entry) {
    if (auto w = want(url, entry)) expected[w->path] = std::move(*w);
  });
  if (!at) return fail(at.error());
  if (!endpoints_.change_list_url.empty() && *at) {
    std::string rebaseline;
    ChangeValidators validators;
    auto changes = read_changes(*at, rebaseline, nullptr, validators);
    if (!changes) return fail(changes.error());
    for (auto& change : changes->changes) {
      if (change.entry.md->change == ChangeType::deleted) {
        expected.erase(change.path);
        continue;
      }
      collision_keys_.erase(collision_key(change.path));
      if (auto w = want(endpoints_.change_list_url, change.entry)) {
        expected[w->path] = std::move(*w);
      }
    }
  }
  for (auto& failure : report_.failures) {
    audit.differences.push_back(
        {AuditDifference::Kind::unsafe, failure.path, failure.url, failure.error.describe()});
  }
  audit.listed = expected.size();
  for (const auto& [path, w] : expected) {
    const auto differ = [&](AuditDifference::Kind kind, std::string detail) {
      audit.differences.push_back({kind, path, w.urls.front(), std::move(detail)});
    };
    auto local = root_->stat_file(path);
    if (!local) {
      differ(AuditDifference::Kind::unsafe, local.error().describe());
      continue;
    }
    if (!*local) {
      differ(AuditDifference::Kind::missing, "not in the destination");
      continue;
    }
    if (w.length && (*local)->size != *w.length) {
      differ(AuditDifference::Kind::length,
             std::to_string((*local)->size) + " bytes, listed " + std::to_string(*w.length));
      continue;
    }
    if (const auto algorithm = strongest(w.hashes)) {
      auto digest = local_digest(path, *algorithm);
      if (!digest) {
        differ(AuditDifference::Kind::unsafe, digest.error().describe());
        continue;
      }
      if (*digest != w.hashes.get(*algorithm)) {
        differ(AuditDifference::Kind::hash, std::string(sitemap::algorithm_name(*algorithm)) + " " +
                                                *digest + ", listed " +
                                                std::string(w.hashes.get(*algorithm)));
        continue;
      }
    }
    ++audit.matched;
  }
  auto walked = root_->walk([&](const std::string& path, const LocalFile&) {
    if (!expected.contains(path)) {
      audit.differences.push_back({AuditDifference::Kind::extra, path, "", "not at the source"});
    }
  });
  if (!walked) return fail(walked.error());
  audit.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return audit;
}

}  // namespace

const char* audit_kind_name(AuditDifference::Kind kind) {
  switch (kind) {
    case AuditDifference::Kind::missing:
      return "missing";
    case AuditDifference::Kind::length:
      return "length";
    case AuditDifference::Kind::hash:
      return "hash";
    case AuditDifference::Kind::extra:
      return "extra";
    case AuditDifference::Kind::unsafe:
      return "unsafe";
  }
  return "unknown";
}

Result<SyncReport> sync(const SyncOptions& options,
                        const std::function<void(const SyncProgress&)>& progress) {
  Engine engine(options);
  return engine.sync(progress);
}

Result<AuditReport> audit(const SyncOptions& options) {
  Engine engine(options);
  return engine.audit();
}

}  // namespace shardsync::client
