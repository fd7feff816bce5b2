#include "shardsync/server/source.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "dump_builder.hpp"
#include "publisher.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/server/watcher.hpp"

namespace shardsync::server {

struct Source::Impl {
  SourceOptions options;
  Metrics& metrics;
  LogSink log;
  std::unique_ptr<ChangeLog> change_log;
  std::vector<Scanner> scanners;
  std::vector<std::unique_ptr<Watcher>> watchers;
  SiteOptions site_options;
  std::atomic<std::shared_ptr<const Site>> site;
  std::unique_ptr<detail::DumpBuilder> dumps;  // with options.dumps.enabled, after start()

  std::mutex mutex;  // one refresh at a time (the worker, or a caller of refresh())
  std::thread worker;
  std::atomic<bool> stopping{false};
  std::chrono::steady_clock::time_point next_rescan;
  bool dirty = false;
  int wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);  // a publish asks for a rebuild

  Impl(SourceOptions o, Metrics& m, LogSink l)
      : options(std::move(o)), metrics(m), log(std::move(l)) {}
  ~Impl() {
    if (wake_fd >= 0) ::close(wake_fd);
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  void wake() const {
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto n = ::write(wake_fd, &one, sizeof one);
  }

  // A file already in place (PUT, DELETE) enters the log; called from the HTTP thread.
  Result<std::optional<Change>> record(const std::string& collection, sitemap::ChangeType change,
                                       const ResourceState& state, const FileKey& key) {
    std::lock_guard lock(mutex);
    auto recorded = change_log->record(collection, change, state);
    if (!recorded) return recorded;
    if (change != sitemap::ChangeType::deleted) {
      // The watcher will see the rename too: the cache spares it a second hashing.
      if (auto r = change_log->cache_hashes(key, state.sha256, state.md5); !r)
        return fail(r.error());
    }
    if (*recorded) {
      ++metrics.changes;
      dirty = true;
      wake();
    }
    return recorded;
  }

  void say(std::string_view level, const std::string& message) const {
    if (log) log(level, message);
  }

  void count(const ScanStats& stats) {
    const std::uint64_t changed = stats.created + stats.updated + stats.deleted;
    metrics.changes += changed;
    metrics.hash_cache_hits += stats.cache_hits;
    metrics.files_hashed += stats.hashed;
    if (changed) dirty = true;
    // Files whose writers could not be asked about get another look once they have had time
    // to settle (a file known to be open for writing is published by its close event).
    if (stats.settling) {
      const auto soon = std::chrono::steady_clock::now() +
                        std::chrono::nanoseconds(options.scan.settle_ns) +
                        std::chrono::milliseconds(200);
      next_rescan = std::min(next_rescan, soon);
    }
  }

  Result<void> scan_all() {
    for (std::size_t i = 0; i < scanners.size(); ++i) {
      auto stats = scanners[i].scan();
      if (!stats) return fail(stats.error());
      count(*stats);
      say("info",
          "scan " + options.collections[i].name + ": " + std::to_string(stats->files) + " files, " +
              std::to_string(stats->hashed) + " hashed, " + std::to_string(stats->cache_hits) +
              " from the hash cache, " + std::to_string(stats->created) + " created, " +
              std::to_string(stats->updated) + " updated, " + std::to_string(stats->deleted) +
              " deleted, " + std::to_string(stats->unsettled) + " still being written");
    }
    next_rescan = std::min(next_rescan, std::chrono::steady_clock::now() + options.rescan_interval);
    return {};
  }

  // Applies whatever the watchers have queued (without waiting).
  Result<void> drain_events() {
    for (std::size_t i = 0; i < watchers.size(); ++i) {
      auto events = watchers[i]->poll(std::chrono::milliseconds(0));
      if (!events) return fail(events.error());
      for (const WatchEvent& event : *events) {
        if (event.rescan) {
          say("warn", "watch " + options.collections[i].name + ": events lost, rescanning");
          auto stats = scanners[i].scan();
          if (!stats) return fail(stats.error());
          count(*stats);
          continue;
        }
        auto stats = scanners[i].check(event.relative_path, event.closed);
        if (!stats) {
          say("warn", "check " + options.collections[i].name + "/" + event.relative_path + ": " +
                          stats.error().describe());
          continue;
        }
        count(*stats);
      }
    }
    return {};
  }

  Result<void> rebuild() {
    if (options.retention) {
      const auto keep_from =
          std::chrono::duration_cast<std::chrono::nanoseconds>(
              std::chrono::system_clock::now().time_since_epoch() - *options.retention)
              .count();
      for (const Collection& c : options.collections) {
        if (auto r = change_log->prune(c.name, keep_from, options.list_entries); !r) return r;
      }
    }
    const std::shared_ptr<const Site> previous = site.load();
    if (dumps) site_options.dumps = dumps->catalog();
    auto next = build_site(*change_log, site_options, previous.get());
    if (!next) return fail(next.error());
    site.store(*next);
    dirty = false;
    if (options.on_rebuild) options.on_rebuild(*next, previous.get());
    if (dumps) dumps->notify();
    return {};
  }

  Result<void> refresh() {
    std::lock_guard lock(mutex);
    if (auto r = drain_events(); !r) return r;
    if (std::chrono::steady_clock::now() >= next_rescan) {
      next_rescan = std::chrono::steady_clock::time_point::max();
      if (auto r = scan_all(); !r) return r;
      if (options.retention) dirty = true;  // time to prune what fell out of retention
    }
    if (dirty) return rebuild();
    return {};
  }

  // Lets a burst of events (a checkpoint of many shards) arrive before rebuilding: applies
  // events as they come until the watchers stay quiet for kQuiet, for rebuild_delay at most.
  // A lone file is thus published kQuiet after its close, not rebuild_delay after (push
  // notifications make that latency visible).
  void settle(std::vector<pollfd>& fds) {
    static constexpr std::chrono::milliseconds kQuiet{3};
    const auto deadline = std::chrono::steady_clock::now() + options.rebuild_delay;
    while (!stopping) {
      std::uint64_t wakes = 0;
      [[maybe_unused]] const auto n = ::read(wake_fd, &wakes, sizeof wakes);
      {
        std::lock_guard lock(mutex);
        if (auto r = drain_events(); !r) {
          ++metrics.errors;
          say("error", "refresh: " + r.error().describe());
        }
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left <= std::chrono::milliseconds(0)) return;
      if (::poll(fds.data(), fds.size(), static_cast<int>(std::min(left, kQuiet).count())) <= 0) {
        return;
      }
    }
  }

  void run() {
    std::vector<pollfd> fds;
    for (const auto& w : watchers) fds.push_back(pollfd{w->fd(), POLLIN, 0});
    fds.push_back(pollfd{wake_fd, POLLIN, 0});
    while (!stopping) {
      const auto wait = std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(
                                       next_rescan - std::chrono::steady_clock::now()),
                                   std::chrono::milliseconds(0), std::chrono::milliseconds(250));
      const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(wait.count()));
      if (stopping) break;
      if (ready > 0) settle(fds);
      if (ready > 0 || std::chrono::steady_clock::now() >= next_rescan) {
        if (auto r = refresh(); !r) {
          ++metrics.errors;
          say("error", "refresh: " + r.error().describe());
        }
      }
    }
  }
};

Source::Source(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Source::~Source() { stop(); }

Result<std::unique_ptr<Source>> Source::open(SourceOptions options, Metrics& metrics, LogSink log) {
  if (options.collections.empty()) return fail(errc::invalid_config, "no collection to serve");
  auto impl = std::make_unique<Impl>(std::move(options), metrics, std::move(log));
  auto change_log = ChangeLog::open(impl->options.state_dir);
  if (!change_log) return fail(change_log.error());
  impl->change_log = std::move(*change_log);
  for (const Collection& c : impl->options.collections) {
    if (auto r = impl->change_log->ensure_collection(c.name); !r) return fail(r.error());
    // Watch before scanning, so nothing written during the scan goes unnoticed.
    auto watcher = Watcher::start(c.directory);
    if (!watcher) return fail(watcher.error());
    impl->watchers.push_back(std::move(*watcher));
    impl->scanners.emplace_back(c, *impl->change_log, impl->options.scan, impl->log);
  }
  impl->next_rescan = std::chrono::steady_clock::time_point::max();
  if (auto r = impl->scan_all(); !r) return fail(r.error());
  return std::unique_ptr<Source>(new Source(std::move(impl)));
}

Result<void> Source::start(const std::string& base_url) {
  Impl& s = *impl_;
  s.site_options.base_url = base_url;
  s.site_options.collections = s.options.collections;
  s.site_options.list_entries = s.options.list_entries;
  s.site_options.notifications = s.options.notifications;
  s.site_options.archives = s.options.dumps.enabled;
  if (s.options.dumps.enabled) {
    detail::DumpBuilderOptions o;
    o.dumps = s.options.dumps;
    o.state_dir = s.options.state_dir;
    o.collections = s.options.collections;
    o.base_url = base_url;
    o.list_entries = s.options.list_entries;
    o.log = s.log;
    // A new dump is served before the builder deletes the one it replaces.
    o.on_publish = [&s] {
      std::lock_guard lock(s.mutex);
      if (auto r = s.rebuild(); !r) {
        ++s.metrics.errors;
        s.say("error", "rebuild after a dump: " + r.error().describe());
      }
    };
    auto builder = detail::DumpBuilder::open(std::move(o));
    if (!builder) return fail(builder.error());
    s.dumps = std::move(*builder);
  }
  {
    std::lock_guard lock(s.mutex);
    if (auto r = s.rebuild(); !r) return r;
  }
  s.worker = std::thread([&s] { s.run(); });
  if (s.dumps) s.dumps->start();
  return {};
}

void Source::stop() {
  if (!impl_) return;
  impl_->stopping = true;
  if (impl_->dumps) impl_->dumps->stop();  // its on_publish uses the rest
  if (impl_->worker.joinable()) impl_->worker.join();
}

std::shared_ptr<const Site> Source::site() const { return impl_->site.load(); }

Result<void> Source::refresh() { return impl_->refresh(); }

PublishHooks Source::publish_hooks() {
  Impl* impl = impl_.get();
  return detail::make_publish_hooks(
      impl->options.collections,
      [impl](const std::string& collection, sitemap::ChangeType change, const ResourceState& state,
             const FileKey& key) { return impl->record(collection, change, state, key); },
      [impl](const FileKey& key, const std::string& sha256, const std::string& md5) {
        std::lock_guard lock(impl->mutex);
        return impl->change_log->cache_hashes(key, sha256, md5);
      });
}

}  // namespace shardsync::server
