#include "dump_builder.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "dump_catalog_file.hpp"
#include "dump_documents.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::server::detail {
namespace {

namespace fs = std::filesystem;
using sitemap::Capability;
using sitemap::DocumentHeader;
using sitemap::Entry;
using sitemap::Timestamp;

constexpr std::uint64_t kSitemapEntries = 50'000;
constexpr std::uint64_t kManifestBase = 1024;  // XML declaration, root element and header

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// "2026-11-24T23:18:36.5Z" -> "20261124T231836.5Z": a file-name-safe `at`.
std::string compact(std::int64_t ns) {
  std::string text = sitemap::format_w3c_datetime(Timestamp::from_unix_ns(ns));
  std::erase_if(text, [](char c) { return c == '-' || c == ':'; });
  return text;
}

std::string numbered(std::string_view stem, std::uint64_t number, std::string_view suffix) {
  char digits[32];
  std::snprintf(digits, sizeof digits, "-%05llu", static_cast<unsigned long long>(number));
  return std::string(stem) + digits + std::string(suffix);
}

void remove_file(const std::string& directory, const std::string& name) {
  ::unlink((directory + "/" + name).c_str());
}

void remove_package(const std::string& directory, const DumpPackage& package) {
  remove_file(directory, package.zip.name);
  remove_file(directory, package.manifest.name);
}

// Writes a package and its manifest copy; the copy is the very bytes put into the package.
Result<DumpPackage> write_with_manifest(const std::string& directory, const std::string& zip_name,
                                        const std::string& manifest_name,
                                        const std::string& manifest, std::int64_t manifest_ns,
                                        const std::vector<PackItem>& items, const PackHook& hook) {
  DumpPackage package;
  auto zip = write_package(directory, zip_name, manifest, manifest_ns, items, hook);
  if (!zip) return fail(zip.error());
  package.zip = std::move(*zip);
  auto copy = write_dump_file(directory, manifest_name, manifest);
  if (!copy) {
    remove_file(directory, zip_name);
    return fail(copy.error());
  }
  package.manifest = std::move(*copy);
  return package;
}

}  // namespace

std::string DumpTarget::capability_list_url() const {
  return collection_url() + std::string(kCapabilityListName);
}

Result<ResourceDump> build_resource_dump(const DumpTarget& target,
                                         const ChangeLog::Snapshot& snapshot,
                                         const DumpOptions& options, const PackHook& hook) {
  ResourceDump dump;
  dump.at_ns = snapshot.info.last_datetime_ns;
  dump.stem = compact(dump.at_ns);
  const std::string collection_url = target.collection_url();
  const std::uint64_t max_entries = std::max<std::uint64_t>(options.package_entries, 1);

  // Split in path order: a package closes before a file that would take it past the size.
  std::vector<std::pair<std::size_t, std::size_t>> parts;  // [first, end) of the snapshot
  std::uint64_t bytes = kManifestBase;
  std::size_t first = 0;
  for (std::size_t i = 0; i < snapshot.resources.size(); ++i) {
    const ResourceState& r = snapshot.resources[i];
    const std::uint64_t cost = r.length + package_overhead(r.path) + 400 + 3 * r.path.size();
    if (i > first && (bytes + cost > options.package_size || i - first >= max_entries)) {
      parts.emplace_back(first, i);
      first = i;
      bytes = kManifestBase;
    }
    bytes += cost;
  }
  parts.emplace_back(first, snapshot.resources.size());  // an empty collection: one package

  const auto abandon = [&](Error error) {
    for (const DumpPackage& p : dump.packages) remove_package(target.directory, p);
    return tl::unexpected<Error>(std::move(error));
  };
  DocumentHeader header = sitemap::make_snapshot_header(Capability::resourcedump_manifest,
                                                        Timestamp::from_unix_ns(dump.at_ns),
                                                        target.capability_list_url());
  for (std::size_t part = 0; part < parts.size(); ++part) {
    std::vector<Entry> entries;
    std::vector<PackItem> items;
    for (std::size_t i = parts[part].first; i < parts[part].second; ++i) {
      const ResourceState& r = snapshot.resources[i];
      Entry e = resource_entry(collection_url, r);
      e.md->path = "/" + r.path;
      entries.push_back(std::move(e));
      items.push_back(PackItem{r.path, target.collection.directory, r});
    }
    auto manifest = sitemap::write_document(header, entries);
    if (!manifest) return abandon(manifest.error());
    const std::string zip_name = numbered(dump.stem, part + 1, ".zip");
    auto package = write_with_manifest(target.directory, zip_name,
                                       numbered(dump.stem, part + 1, "-manifest.xml"), *manifest,
                                       dump.at_ns, items, hook);
    if (!package) return abandon(package.error());
    dump.packages.push_back(std::move(*package));
  }

  // The Resource List at the same `at`, for the Resource List Archive (one document only).
  if (snapshot.resources.size() <= kSitemapEntries) {
    std::vector<Entry> entries;
    entries.reserve(snapshot.resources.size());
    for (const ResourceState& r : snapshot.resources) {
      entries.push_back(resource_entry(collection_url, r));
    }
    auto list = sitemap::write_document(
        sitemap::make_snapshot_header(Capability::resourcelist, Timestamp::from_unix_ns(dump.at_ns),
                                      target.capability_list_url()),
        entries);
    if (!list) return abandon(list.error());
    auto file = write_dump_file(target.directory, dump.stem + "-resourcelist.xml", *list);
    if (!file) return abandon(file.error());
    dump.resource_list = std::move(*file);
  }
  dump.completed_ns = now_ns();
  return dump;
}

Result<ChangeDump> build_change_dump(const DumpTarget& target, std::uint64_t list,
                                     std::int64_t from_ns, const std::vector<Change>& changes,
                                     const PackHook& hook) {
  ChangeDump dump;
  dump.list = list;
  dump.from_ns = from_ns;
  dump.until_ns = changes.empty() ? from_ns : changes.back().datetime_ns;
  const std::string collection_url = target.collection_url();
  std::vector<Entry> entries;
  std::vector<PackItem> items;
  for (const Change& change : changes) {
    // The Change List's entry, plus where the change's bitstream sits in the package.
    Entry e = change_entry(collection_url, change);
    if (change.change != sitemap::ChangeType::deleted) {
      // One bitstream per change: a file changed twice in the list appears at two paths.
      const std::string entry_name = "changes/" + std::to_string(change.number) + "/" + change.path;
      e.md->path = "/" + entry_name;
      ResourceState expected = change.state;
      expected.path = change.path;
      items.push_back(PackItem{entry_name, target.collection.directory, std::move(expected)});
    }
    entries.push_back(std::move(e));
  }
  auto manifest = sitemap::write_document(
      sitemap::make_change_header(
          Capability::changedump_manifest, Timestamp::from_unix_ns(dump.from_ns),
          Timestamp::from_unix_ns(dump.until_ns), target.capability_list_url()),
      entries);
  if (!manifest) return fail(manifest.error());
  auto package = write_with_manifest(target.directory, numbered("changes", list, ".zip"),
                                     numbered("changes", list, "-manifest.xml"), *manifest,
                                     dump.until_ns, items, hook);
  if (!package) return fail(package.error());
  dump.package = std::move(*package);
  return dump;
}

void remove_files(const std::string& directory, const ResourceDump& dump) {
  for (const DumpPackage& p : dump.packages) remove_package(directory, p);
  if (dump.resource_list) remove_file(directory, dump.resource_list->name);
}

void remove_files(const std::string& directory, const ChangeDump& dump) {
  remove_package(directory, dump.package);
}

// ---- DumpBuilder ----

DumpBuilder::DumpBuilder(DumpBuilderOptions options) : options_(std::move(options)) {}

DumpBuilder::~DumpBuilder() { stop(); }

Result<std::unique_ptr<DumpBuilder>> DumpBuilder::open(DumpBuilderOptions options) {
  if (options.base_url.empty() || options.base_url.back() != '/') {
    return fail(errc::invalid_config, "base URL must end in '/': " + options.base_url);
  }
  if (options.list_entries == 0) return fail(errc::invalid_config, "list_entries is 0");
  if (options.dumps.package_size == 0) return fail(errc::invalid_config, "package size is 0");
  std::unique_ptr<DumpBuilder> builder(new DumpBuilder(std::move(options)));
  auto log = ChangeLog::open(builder->options_.state_dir);
  if (!log) return fail(log.error());
  builder->log_ = std::move(*log);
  auto catalog = std::make_shared<DumpCatalog>();
  for (const Collection& c : builder->options_.collections) {
    const fs::path dir = fs::path(builder->options_.state_dir) / "dumps" / c.name;
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) return fail(errc::io_error, "cannot create " + dir.string() + ": " + ec.message());
    auto saved = builder->load(dir.string());
    if (!saved) return fail(saved.error());
    auto info = builder->log_->collection(c.name);
    if (!info) return fail(info.error());
    CollectionState state;
    state.target = DumpTarget{c, builder->options_.base_url, dir.string()};
    state.lists_done = std::move(saved->lists_done);
    // The newest saved dump is still current when the log has not moved since.
    const auto& dumps = saved->dumps.resource_dumps;
    if (!dumps.empty() && dumps.back().at_ns == info->last_datetime_ns) {
      state.dumped = info->last_change;
    }
    builder->states_.push_back(std::move(state));
    (*catalog)[c.name] = std::make_shared<CollectionDumps>(std::move(saved->dumps));
  }
  builder->catalog_ = std::move(catalog);
  return builder;
}

Result<SavedDumps> DumpBuilder::load(const std::string& directory) const {
  std::size_t dropped = 0;
  auto saved = load_dumps(directory, dropped);
  if (!saved) {
    // Only dumps are lost: set the file aside for a person and start afresh.
    say("warn", saved.error().describe() + "; set aside as " + std::string(kCatalogFileName) +
                    ".bad, dumps are built afresh");
    const std::string path = directory + "/" + std::string(kCatalogFileName);
    std::error_code ec;
    fs::rename(path, path + ".bad", ec);
    if (ec) return fail(errc::io_error, "cannot set aside " + path + ": " + ec.message());
    saved = load_dumps(directory, dropped);
    if (!saved) return fail(saved.error());
  }
  if (dropped > 0) {
    say("warn", directory + ": " + std::to_string(dropped) +
                    " saved dump(s) had missing or truncated files and were dropped");
  }
  return saved;
}

void DumpBuilder::start() {
  thread_ = std::thread([this] { run(); });
}

void DumpBuilder::stop() {
  stopping_ = true;
  notify();
  if (thread_.joinable()) thread_.join();
}

void DumpBuilder::notify() {
  {
    std::lock_guard lock(wake_mutex_);
    woken_ = true;
  }
  wake_.notify_one();
}

std::shared_ptr<const DumpCatalog> DumpBuilder::catalog() const {
  std::lock_guard lock(catalog_mutex_);
  return catalog_;
}

void DumpBuilder::say(std::string_view level, const std::string& message) const {
  if (options_.log) options_.log(level, message);
}

void DumpBuilder::run() {
  while (!stopping_) {
    {
      std::unique_lock lock(wake_mutex_);
      wake_.wait_for(lock, std::chrono::milliseconds(250), [this] { return woken_; });
      woken_ = false;
    }
    if (stopping_) break;
    if (auto r = run_once(); !r) say("error", "dumps: " + r.error().describe());
  }
}

Result<bool> DumpBuilder::run_once(bool ignore_delay) {
  bool changed = false;
  // Stopping cancels the package being written (at its next file).
  const PackHook hook = [this](const PackItem& item) {
    return !stopping_ && (!options_.hook || options_.hook(item));
  };
  for (CollectionState& state : states_) {
    if (stopping_) break;
    const std::string& name = state.target.collection.name;
    auto info = log_->collection(name);
    if (!info) return fail(info.error());
    const std::shared_ptr<const CollectionDumps> current = catalog()->at(name);
    CollectionDumps next = *current;
    std::vector<ResourceDump> dropped;
    std::vector<ChangeDump> dropped_changes;
    bool moved = false;
    const std::size_t lists_before = state.lists_done.size();

    // Change dumps: one per closed Change List; those pruned from the log go with them.
    const std::uint64_t n = options_.list_entries;
    const std::uint64_t first_list = (info->first_retained - 1) / n + 1;
    const std::uint64_t open_list = info->last_change / n + 1;
    while (!next.change_dumps.empty() && next.change_dumps.front().list < first_list) {
      dropped_changes.push_back(std::move(next.change_dumps.front()));
      next.change_dumps.erase(next.change_dumps.begin());
      moved = true;
    }
    for (std::uint64_t k = first_list; k < open_list && !stopping_; ++k) {
      if (state.lists_done.contains(k)) continue;
      // The list's `from` is the `until` of the list before it (the Site's rule).
      const std::uint64_t first = (k - 1) * n + 1;
      auto changes = log_->changes(name, k == first_list ? first : first - 1, k * n);
      if (!changes) return fail(changes.error());
      std::int64_t from_ns = info->earliest_from_ns;
      if (k != first_list && !changes->empty()) {
        from_ns = changes->front().datetime_ns;
        changes->erase(changes->begin());
      }
      auto dump = build_change_dump(state.target, k, from_ns, *changes, hook);
      if (!dump) {
        if (dump.error().code != make_error_code(errc::changed_while_read)) {
          // I/O (or stopping): this list and the ones after it are tried on the next pass.
          say("warn", "change dump " + name + " list " + std::to_string(k) + ": " +
                          dump.error().describe());
          break;
        }
        say("warn", "change dump " + name + " list " + std::to_string(k) +
                        " omitted: a file in it has changed again since it was logged (" +
                        dump.error().detail + ")");
      } else {
        next.change_dumps.push_back(std::move(*dump));
        moved = true;
        say("info", "change dump " + name + " list " + std::to_string(k) + " built");
      }
      state.lists_done.insert(k);
    }

    // A Resource Dump once the collection has moved and then been quiet for the delay.
    const auto steady_now = std::chrono::steady_clock::now();
    const bool quiet =
        ignore_delay ||
        now_ns() - info->last_datetime_ns >=
            std::chrono::duration_cast<std::chrono::nanoseconds>(options_.dumps.delay).count();
    if (state.dumped != info->last_change && quiet && steady_now >= state.retry_after &&
        !stopping_) {
      auto snapshot = log_->snapshot(name);
      if (!snapshot) return fail(snapshot.error());
      auto dump = build_resource_dump(state.target, *snapshot, options_.dumps, hook);
      if (!dump) {
        state.retry_after = steady_now + options_.dumps.delay;
        say("warn",
            "resource dump " + name + " abandoned, retrying later: " + dump.error().describe());
      } else {
        say("info", "resource dump " + name + " at " + dump->stem + ": " +
                        std::to_string(dump->packages.size()) + " package(s), " +
                        std::to_string(snapshot->resources.size()) + " files");
        state.dumped = snapshot->info.last_change;
        next.resource_dumps.push_back(std::move(*dump));
        const std::size_t keep = std::max<std::size_t>(options_.dumps.keep, 1);
        while (next.resource_dumps.size() > keep) {
          dropped.push_back(std::move(next.resource_dumps.front()));
          next.resource_dumps.erase(next.resource_dumps.begin());
        }
        moved = true;
      }
    }
    if (!moved && state.lists_done.size() == lists_before) continue;
    // Saved before the Site serves it and before replaced files go: a restart finds only
    // complete files listed.
    if (auto r = save_dumps(next.directory, SavedDumps{next, state.lists_done}); !r) {
      say("warn",
          "dumps of " + name + " not saved (rebuilt after a restart): " + r.error().describe());
    }
    if (!moved) continue;

    {
      std::lock_guard lock(catalog_mutex_);
      auto catalog = std::make_shared<DumpCatalog>(*catalog_);
      (*catalog)[name] = std::make_shared<const CollectionDumps>(std::move(next));
      catalog_ = std::move(catalog);
    }
    if (options_.on_publish) options_.on_publish();
    // The Site no longer lists them: readers holding them open keep reading (unlink).
    for (const ResourceDump& d : dropped) remove_files(current->directory, d);
    for (const ChangeDump& d : dropped_changes) remove_files(current->directory, d);
    changed = true;
  }
  return changed;
}

}  // namespace shardsync::server::detail
