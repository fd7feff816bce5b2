#pragma once
// Server-Sent Events (the WHATWG EventSource wire format) over libcurl: a parser, and a
// reader that holds one streaming GET open on its own thread and hands each event over.

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "shardsync/result.hpp"

namespace shardsync::client::detail {

struct SseEvent {
  std::string id;  // the last `id:` seen (it persists across events, as in EventSource)
  std::string type = "message";
  std::string data;  // `data:` lines joined with '\n'
};

// Incremental parser: feed() any slices of the stream; `on_event` runs per complete event.
// Comment lines (heartbeats) are skipped. A line longer than max_line makes feed() false.
class SseParser {
 public:
  explicit SseParser(std::function<void(const SseEvent&)> on_event, std::size_t max_line = 1 << 20)
      : on_event_(std::move(on_event)), max_line_(max_line) {}
  [[nodiscard]] bool feed(std::string_view bytes);

 private:
  void line(std::string_view text);
  std::function<void(const SseEvent&)> on_event_;
  std::size_t max_line_;
  std::string partial_;
  bool saw_cr_ = false;
  std::string last_id_;
  SseEvent event_;
  bool has_data_ = false;
};

struct EventSourceOptions {
  std::string url;
  std::string last_event_id;  // sent as Last-Event-ID when not empty
  std::string bearer_token;
  std::string ca_file;
  int connect_timeout_ms = 5'000;
  // No byte (event or heartbeat) for this long: the connection is taken for dead.
  int idle_timeout_s = 45;
};

struct EventSourceHooks {
  std::function<void()> on_open;  // 200 with the headers in: the stream is up
  std::function<void(const SseEvent&)> on_event;
  // Polled about once a second and on every read: true aborts the stream.
  std::function<bool()> should_stop;
};

// Holds one GET open until the server ends it, it fails, or should_stop() says so; returns
// how it ended (errc::transfer_failed / errc::http_status), or nothing when stopped. Blocks
// the calling thread. The last event id seen is left in `last_event_id`.
[[nodiscard]] Result<void> read_event_stream(const EventSourceOptions& options,
                                             const EventSourceHooks& hooks,
                                             std::string& last_event_id);

}  // namespace shardsync::client::detail
