#pragma once
// Change Notification and Framework Notification (the OAI ResourceSync notification specs):
// after each rebuild of the Site, one notification per channel of every collection whose log
// moved. The Notifier renders the payloads, keeps a bounded history for reconnecting
// readers, and hands each notification to its listeners (the HTTP server's hub and event
// streams). It knows no sockets.
//
// URL layout, for base URL B and a collection C (beside site.hpp's):
//   B C/.resourcesync/changelist-notification   Change Notification topic (GET: Link headers;
//                                               Accept: text/event-stream: the SSE stream)
//   B C/.resourcesync/framework-notification    Framework Notification topic
//   B .resourcesync/hub                         the WebSub hub (form POST)
//
// Event ids are log positions: the number of the collection's last change a notification
// brings a destination to (strictly increasing per collection).

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/change_log.hpp"
#include "shardsync/server/site.hpp"

namespace shardsync::server {

enum class Channel { changelist, framework };

// "changelist-notification" / "framework-notification": the capability, and the topic's name.
[[nodiscard]] std::string_view channel_name(Channel channel);
// B C/.resourcesync/<channel name>
[[nodiscard]] std::string topic_url(std::string_view base_url, std::string_view collection,
                                    Channel channel);
// B .resourcesync/hub
[[nodiscard]] std::string hub_url(std::string_view base_url);
inline constexpr std::string_view kHubPath = "/.resourcesync/hub";
// The collection and channel of a decoded topic path ("/C/.resourcesync/changelist-notification").
[[nodiscard]] std::optional<std::pair<std::string, Channel>> parse_topic_path(
    std::string_view path);

struct Notification {
  std::string collection;
  Channel channel = Channel::changelist;
  std::uint64_t id = 0;     // the log position it brings the destination to
  std::uint64_t since = 0;  // the log position it starts from (it covers (since, id])
  std::string topic;        // the topic URL
  std::string hub;          // the hub URL
  std::string payload;      // the <urlset> document
};

struct NotifierOptions {
  std::string state_dir;  // the change log, read through the notifier's own connection
  // Entries per notification: a longer burst goes out as several, in order.
  std::size_t max_entries = 1000;
  // Notifications kept per channel of a collection for readers that reconnect (Change
  // Notifications older than that are rebuilt from the change log).
  std::size_t history = 64;
};

class Notifier {
 public:
  using Listener = std::function<void(const std::shared_ptr<const Notification>&)>;

  // Opens its own connection to the change log. Fails as ChangeLog::open does.
  [[nodiscard]] static Result<std::unique_ptr<Notifier>> open(NotifierOptions options);
  ~Notifier();

  // After a rebuild (the Source's thread): notifies what moved since `previous` (nullptr on
  // the first build: nothing is sent, positions are noted). Listeners are called on this
  // thread, outside the notifier's lock; they must return quickly (post, don't work).
  void site_rebuilt(const std::shared_ptr<const Site>& next, const Site* previous);

  // Any thread. Listeners added later see only later notifications.
  std::uint64_t add_listener(Listener listener);
  void remove_listener(std::uint64_t id);

  // The notifications of `collection`'s `channel` after log position `after`, oldest first,
  // as far as they are known: the history, else (Change Notifications) the change log, at
  // most `max_notifications` of them (the newest). Any thread; reads SQLite when the history
  // does not reach back far enough.
  [[nodiscard]] Result<std::vector<std::shared_ptr<const Notification>>> replay(
      const std::string& collection, Channel channel, std::uint64_t after,
      std::size_t max_notifications = 16);

  // The last log position notified for `collection` (0 before the first build).
  [[nodiscard]] std::uint64_t position(const std::string& collection) const;

 private:
  struct Impl;
  explicit Notifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Renders a notification payload: `<urlset>` with `<rs:ln rel="up" href=capability_list>`,
// `<rs:md capability=channel_name(channel)>` and `entries`.
[[nodiscard]] Result<std::string> render_notification(Channel channel,
                                                      const std::string& capability_list_url,
                                                      const std::vector<sitemap::Entry>& entries);

}  // namespace shardsync::server
