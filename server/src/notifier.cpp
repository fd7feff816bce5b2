#include "shardsync/server/notifier.hpp"

#include <algorithm>
#include <deque>

#include "shardsync/server/collection.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace shardsync::server {
namespace {

std::string collection_url(std::string_view base, std::string_view collection) {
  return std::string(base) + std::string(collection) + "/";
}

std::string capability_list_url(std::string_view base, std::string_view collection) {
  return collection_url(base, collection) + std::string(kCapabilityListName);
}

// What a document key ("/C/.resourcesync/changelist-00003.xml") is, for framework entries.
std::string_view capability_of_document(std::string_view name) {
  if (name.starts_with("resourcelist")) return "resourcelist";
  if (name.starts_with("changelist")) return "changelist";
  if (name == kCapabilityListName) return "capabilitylist";
  return {};
}

}  // namespace

std::string_view channel_name(Channel channel) {
  return channel == Channel::changelist ? "changelist-notification" : "framework-notification";
}

std::string topic_url(std::string_view base_url, std::string_view collection, Channel channel) {
  return collection_url(base_url, collection) + std::string(kDocumentsDirectory) + "/" +
         std::string(channel_name(channel));
}

std::string hub_url(std::string_view base_url) {
  return std::string(base_url) + std::string(kHubPath.substr(1));
}

std::optional<std::pair<std::string, Channel>> parse_topic_path(std::string_view path) {
  if (path.size() < 2 || path.front() != '/') return std::nullopt;
  const std::size_t slash = path.find('/', 1);
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view collection = path.substr(1, slash - 1);
  const std::string_view rest = path.substr(slash + 1);
  for (const Channel channel : {Channel::changelist, Channel::framework}) {
    if (rest.size() == kDocumentsDirectory.size() + 1 + channel_name(channel).size() &&
        rest.starts_with(kDocumentsDirectory) && rest[kDocumentsDirectory.size()] == '/' &&
        rest.ends_with(channel_name(channel))) {
      return std::pair{std::string(collection), channel};
    }
  }
  return std::nullopt;
}

Result<std::string> render_notification(Channel channel, const std::string& capability_list_url,
                                        const std::vector<sitemap::Entry>& entries) {
  sitemap::DocumentHeader header;
  header.has_md = true;
  header.md.capability = channel_name(channel);
  header.links.push_back(sitemap::make_link("up", capability_list_url));
  return sitemap::write_document(header, entries);
}

struct Notifier::Impl {
  NotifierOptions options;
  std::unique_ptr<ChangeLog> log;  // used under `mutex` only
  mutable std::mutex mutex;
  std::map<std::string, std::uint64_t> positions;  // collection -> last position notified
  // (collection, channel) -> the newest notifications, oldest first.
  std::map<std::pair<std::string, Channel>, std::deque<std::shared_ptr<const Notification>>>
      history;
  // Listeners are called under their own lock, so that once remove_listener() returned, its
  // listener is not running and will not run again.
  std::mutex listeners_mutex;
  std::map<std::uint64_t, Listener> listeners;
  std::uint64_t next_listener = 1;
  std::string base_url;  // of the latest Site

  std::shared_ptr<const Notification> make(const std::string& base, const std::string& collection,
                                           Channel channel, std::uint64_t since, std::uint64_t id,
                                           const std::vector<sitemap::Entry>& entries) {
    auto payload = render_notification(channel, capability_list_url(base, collection), entries);
    if (!payload) return nullptr;  // entries come from our own log: cannot happen in practice
    auto n = std::make_shared<Notification>();
    n->collection = collection;
    n->channel = channel;
    n->id = id;
    n->since = since;
    n->topic = topic_url(base, collection, channel);
    n->hub = hub_url(base);
    n->payload = std::move(*payload);
    return n;
  }

  // Change Notifications for changes (after, last] of a collection, max_entries each.
  Result<std::vector<std::shared_ptr<const Notification>>> changes_between(
      const std::string& base, const std::string& collection, std::uint64_t after,
      std::uint64_t last) {
    std::vector<std::shared_ptr<const Notification>> out;
    const std::uint64_t step = std::max<std::size_t>(options.max_entries, 1);
    const std::string url = collection_url(base, collection);
    for (std::uint64_t first = after + 1; first <= last; first += step) {
      const std::uint64_t end = std::min(last, first + step - 1);
      auto changes = log->changes(collection, first, end);
      if (!changes) return fail(changes.error());
      if (changes->empty()) continue;  // pruned
      std::vector<sitemap::Entry> entries;
      entries.reserve(changes->size());
      for (const Change& c : *changes) entries.push_back(change_entry(url, c));
      if (auto n = make(base, collection, Channel::changelist, first - 1, end, entries)) {
        out.push_back(std::move(n));
      }
    }
    return out;
  }

  // The capability documents of `collection` that differ between the two snapshots.
  std::shared_ptr<const Notification> framework(const Site& next, const Site& previous,
                                                const std::string& collection, std::uint64_t since,
                                                std::uint64_t id) {
    const std::string prefix = "/" + collection + "/";
    std::vector<sitemap::Entry> entries;
    const auto add = [&](const std::string& key, const ServedDocument& doc,
                         sitemap::ChangeType change) {
      const std::string_view name = std::string_view(key).substr(key.rfind('/') + 1);
      // changelist.xml may be the open list under a second name: list each document once,
      // under the name it is advertised by when that is the only one.
      sitemap::Entry e;
      e.loc = next.base_url + key.substr(1);
      e.md.emplace();
      e.md->capability = capability_of_document(name);
      e.md->change = change;
      e.md->datetime = sitemap::Timestamp::from_unix(doc.last_modified_s);
      entries.push_back(std::move(e));
    };
    for (const auto& [key, doc] : next.documents) {
      if (!key.starts_with(prefix)) continue;
      const auto old = previous.documents.find(key);
      if (old == previous.documents.end()) {
        add(key, *doc, sitemap::ChangeType::created);
      } else if (old->second->etag != doc->etag) {
        add(key, *doc, sitemap::ChangeType::updated);
      }
    }
    for (const auto& [key, doc] : previous.documents) {
      if (key.starts_with(prefix) && !next.documents.contains(key)) {
        add(key, *doc, sitemap::ChangeType::deleted);
      }
    }
    if (entries.empty()) return nullptr;
    std::sort(entries.begin(), entries.end(),
              [](const sitemap::Entry& a, const sitemap::Entry& b) { return a.loc < b.loc; });
    return make(next.base_url, collection, Channel::framework, since, id, entries);
  }

  void remember(const std::shared_ptr<const Notification>& n) {
    auto& kept = history[{n->collection, n->channel}];
    kept.push_back(n);
    while (kept.size() > std::max<std::size_t>(options.history, 1)) kept.pop_front();
  }
};

Notifier::Notifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Notifier::~Notifier() = default;

Result<std::unique_ptr<Notifier>> Notifier::open(NotifierOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->options = std::move(options);
  auto log = ChangeLog::open(impl->options.state_dir);
  if (!log) return fail(log.error());
  impl->log = std::move(*log);
  return std::unique_ptr<Notifier>(new Notifier(std::move(impl)));
}

void Notifier::site_rebuilt(const std::shared_ptr<const Site>& next, const Site* previous) {
  if (!next) return;
  std::vector<std::shared_ptr<const Notification>> out;
  {
    std::lock_guard lock(impl_->mutex);
    impl_->base_url = next->base_url;
    for (const auto& [collection, version] : next->versions) {
      const std::uint64_t last = version.first;
      auto [it, fresh] = impl_->positions.try_emplace(collection, last);
      if (fresh || previous == nullptr || last <= it->second) {
        it->second = std::max(it->second, last);
        continue;
      }
      const std::uint64_t after = it->second;
      it->second = last;
      auto changes = impl_->changes_between(next->base_url, collection, after, last);
      if (changes) {
        for (auto& n : *changes) {
          impl_->remember(n);
          out.push_back(std::move(n));
        }
      }
      if (auto n = impl_->framework(*next, *previous, collection, after, last)) {
        impl_->remember(n);
        out.push_back(std::move(n));
      }
    }
  }
  std::lock_guard lock(impl_->listeners_mutex);
  for (const auto& n : out) {
    for (const auto& [id, listener] : impl_->listeners) listener(n);
  }
}

std::uint64_t Notifier::add_listener(Listener listener) {
  std::lock_guard lock(impl_->listeners_mutex);
  const std::uint64_t id = impl_->next_listener++;
  impl_->listeners.emplace(id, std::move(listener));
  return id;
}

void Notifier::remove_listener(std::uint64_t id) {
  std::lock_guard lock(impl_->listeners_mutex);
  impl_->listeners.erase(id);
}

std::uint64_t Notifier::position(const std::string& collection) const {
  std::lock_guard lock(impl_->mutex);
  const auto it = impl_->positions.find(collection);
  return it == impl_->positions.end() ? 0 : it->second;
}

Result<std::vector<std::shared_ptr<const Notification>>> Notifier::replay(
    const std::string& collection, Channel channel, std::uint64_t after,
    std::size_t max_notifications) {
  std::lock_guard lock(impl_->mutex);
  std::vector<std::shared_ptr<const Notification>> out;
  const auto pos = impl_->positions.find(collection);
  if (pos == impl_->positions.end() || after >= pos->second) return out;
  const auto kept = impl_->history.find({collection, channel});
  // The history answers when it reaches back to `after` (or, for framework notifications,
  // which exist nowhere else, as far as it goes).
  const bool covered =
      kept != impl_->history.end() && !kept->second.empty() && kept->second.front()->since <= after;
  if (channel == Channel::framework || covered) {
    if (kept != impl_->history.end()) {
      for (const auto& n : kept->second) {
        if (n->id > after) out.push_back(n);
      }
    }
  } else {
    if (impl_->base_url.empty()) return out;
    // Far behind: only the newest changes (the destination's sync reads the rest from the
    // Change Lists anyway).
    const std::uint64_t span =
        max_notifications * std::max<std::size_t>(impl_->options.max_entries, 1);
    const std::uint64_t from = pos->second - after > span ? pos->second - span : after;
    auto rebuilt = impl_->changes_between(impl_->base_url, collection, from, pos->second);
    if (!rebuilt) return fail(rebuilt.error());
    out = std::move(*rebuilt);
  }
  if (out.size() > max_notifications) {
    out.erase(out.begin(), out.end() - static_cast<std::ptrdiff_t>(max_notifications));
  }
  return out;
}

}  // namespace shardsync::server
