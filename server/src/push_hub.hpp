#pragma once
// The push side of `shardsync serve` on the server's io_context: the WebSub hub (form POST
// subscribe/unsubscribe, intent verification by GET, signed deliveries by POST, retries,
// leases) and the event streams' queues. Outgoing HTTP is Boost.Beast on the same
// io_context, every call under a deadline, so a slow or dead callback delays only its own
// deliveries. Included by http_server.cpp and push_hub.cpp only (it pulls in Asio).
//
// Everything here runs on the io_context's thread (one thread; the notifier's listener
// posts notifications there).

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>

#include "http_handler.hpp"
#include "shardsync/server/notifier.hpp"

namespace shardsync::server::detail {

// One reader of a topic's event stream: what waits to be written, and the timer its writer
// sleeps on (cancelled to wake it).
struct EventStream {
  explicit EventStream(boost::asio::io_context& ioc) : wake(ioc) {}
  std::string collection;
  Channel channel = Channel::changelist;
  std::deque<std::shared_ptr<const Notification>> queue;
  std::size_t queued_bytes = 0;
  std::uint64_t enqueued_id = 0;  // the newest id queued (or given as Last-Event-ID)
  bool overflow = false;          // the reader fell too far behind: close the stream
  boost::asio::steady_timer wake;
};

// One notification as a Server-Sent Event: `id:` the log position, `event:` the channel,
// one `data:` line per payload line, an empty line.
[[nodiscard]] std::string format_event(const Notification& notification);

// The response head of an event stream (no length: the body ends with the connection).
[[nodiscard]] std::string event_stream_head(const EventStreamRequest& request, std::int64_t now_s);

// hub.* fields of an application/x-www-form-urlencoded body; nullopt when malformed.
struct HubForm {
  std::string mode, topic, callback, secret;
  std::optional<std::uint64_t> lease_seconds;
};
[[nodiscard]] std::optional<HubForm> parse_hub_form(std::string_view body);

// X-Hub-Signature value: "sha256=" + hex HMAC-SHA256 of `body` under `secret`.
[[nodiscard]] std::string hub_signature(std::string_view secret, std::string_view body);

class PushHub {
 public:
  PushHub(boost::asio::io_context& ioc, const HttpOptions& options, Metrics& metrics, LogSink log);
  ~PushHub();
  PushHub(const PushHub&) = delete;
  PushHub& operator=(const PushHub&) = delete;

  // A new notification: queued for the subscribers of its topic and the streams of its
  // channel.
  void publish(const std::shared_ptr<const Notification>& notification);

  // A POST to the hub: 202 (verification follows), or 4xx/5xx with the reason.
  [[nodiscard]] ResponsePlan handle_form(std::string_view body, std::string_view authorization,
                                         const Site& site, std::int64_t now_s);

  // A new event stream (nullptr past max_streams), with the events after `last_event_id`
  // already queued.
  [[nodiscard]] std::shared_ptr<EventStream> open_stream(const EventStreamRequest& request);
  void close_stream(const std::shared_ptr<EventStream>& stream);
  // Moves the stream's queued events, formatted, into `out`; false when none.
  bool take(EventStream& stream, std::string& out);

  // Stops deliveries and verifications in flight and wakes every stream; the io_context
  // runs out of work once they have unwound.
  void shutdown();

  struct Impl;  // push_hub.cpp; its coroutines share it

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace shardsync::server::detail
