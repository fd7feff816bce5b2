#pragma once
// shardsync's HTTP/1.1 server (Boost.Beast, one io_context, C++20 coroutines): serves the
// current Site snapshot, GET and HEAD, with ranges, conditional requests, compression of
// documents, optional TLS and bearer tokens, limits and timeouts against slow or hostile
// clients, a connection cap, /metrics, and a graceful shutdown.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/server/scanner.hpp"
#include "shardsync/server/site.hpp"

namespace shardsync::server {

// Publishing over HTTP (PUT and DELETE of /<collection>/<path>), wired by the app. The server
// does the HTTP part: the write token (none configured: 403; missing: 401; wrong: 403), the
// path checks every request gets, reserved paths (403), unknown collections (404), and the
// body (read under body_timeout, `Expect: 100-continue` honoured). A method whose hook is
// empty gets 405. Every call below runs on the server thread, between network reads: keep
// each one short (a chunk written to a temp file; the fsync in commit() only).
// Errors from the hooks are answered 403 for errc::unsafe_path, 400 for errc::invalid_config,
// 412 for errc::already_exists (all with the error's detail as the body), else 500 "publishing
// failed" (the detail goes to the log only).
struct PublishRequest {
  std::string collection;
  std::string path;                     // relative, decoded and checked; '/'-separated
  std::optional<std::uint64_t> length;  // PUT: the Content-Length, if the body is not chunked
  // PUT with `If-None-Match: *`: create the file only if the path does not exist, atomically
  // (of concurrent creators exactly one succeeds); otherwise errc::already_exists (412).
  bool create_only = false;
};

struct PublishReply {
  unsigned status = 204;  // e.g. 201 created, 204 updated or deleted, 404 nothing to delete
  std::string message;    // short text/plain body (may be empty)
};

// One PUT in progress: the body in order through write(), then commit() once it arrived whole.
// Destroyed without commit() (client gone, timeout, an error from write()): the upload is
// dropped and nothing is published.
class Upload {
 public:
  virtual ~Upload() = default;
  // An error ends the request (the rest of the body is not read; the connection closes).
  [[nodiscard]] virtual Result<void> write(std::string_view bytes) = 0;
  // Makes the file durable and publishes it (fsync, rename, log the change).
  [[nodiscard]] virtual Result<PublishReply> commit() = 0;
};

struct PublishHooks {
  // PUT: starts an upload. An error is answered before the body is read, and the connection
  // closes.
  std::function<Result<std::unique_ptr<Upload>>(const PublishRequest&)> put;
  // DELETE: removes the file and logs the change.
  std::function<Result<PublishReply>(const PublishRequest&)> remove;
};

class Notifier;

// Push notifications (notifier.hpp for the URL layout): the WebSub hub and the event streams.
// Subscriptions live in memory only: a restarted server has none, and subscribers renew
// (WebSub leases expire anyway).
struct PushOptions {
  // Hosts (as written in callback URLs) the hub may connect to; "*" allows any. Empty: only
  // callbacks whose host resolves to loopback addresses, so that a subscriber cannot make
  // the server probe the networks it can reach.
  std::vector<std::string> allowed_callback_hosts;
  std::size_t max_subscriptions = 64;
  std::chrono::seconds default_lease{24 * 3600};
  std::chrono::seconds max_lease{7 * 24 * 3600};
  // Delivery: attempts per notification, the first backoff (doubled after each failure),
  // the time one request to a callback may take, and how many notifications wait per
  // subscriber (past that the oldest are dropped).
  int max_attempts = 4;
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::seconds callback_timeout{10};
  std::size_t max_pending = 64;
  // Event streams (text/event-stream on a topic): how many at once, the comment line sent
  // when there is nothing else, and the bytes queued for one slow reader before its stream
  // is closed (it reconnects with Last-Event-ID and catches up from the change log).
  std::size_t max_streams = 256;
  std::chrono::seconds heartbeat{15};
  std::size_t max_stream_backlog = 1 << 20;
  // Events replayed to a reader that reconnects with Last-Event-ID.
  std::size_t max_replay = 16;
};

struct HttpOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  // 0: any free port
  std::string port_file;   // receives the bound port once connections are accepted
  std::size_t max_connections = 1024;
  std::chrono::seconds header_timeout{10};  // to receive a request's headers
  std::chrono::seconds body_timeout{60};    // between chunks of a request body
  std::chrono::seconds send_timeout{60};    // between chunks of a response
  std::chrono::seconds idle_timeout{30};    // keep-alive between requests
  std::size_t max_header_bytes = 16 * 1024;
  std::string tls_cert_file;  // PEM; both set: HTTPS only
  std::string tls_key_file;
  std::string write_token;  // bearer token for PUT/DELETE; empty: writes refused
  std::map<std::string, std::string> read_tokens;  // collection -> bearer token for reads
  // Called once the socket is bound (with the actual port), before the port file is written
  // and before the first connection is accepted: the app builds its Site there when the base
  // URL depends on the port.
  std::function<void(std::uint16_t port)> on_listening;
  // On stop() or SIGINT/SIGTERM: how long responses in flight may take to finish before their
  // connections are closed.
  std::chrono::seconds shutdown_grace{30};
  // Longest request body accepted (and discarded) on GET and HEAD; longer: 413 and close.
  std::size_t max_ignored_body = 8 * 1024;
  // Plain HTTP sends files with sendfile(2); false: pread + write (as through TLS), e.g. for
  // file systems whose sendfile is slow or missing (nginx's `sendfile off`).
  bool sendfile = true;
  // PUT/DELETE; empty: both get 405.
  PublishHooks publish;
  // Change and Framework Notification (topics, hub, event streams); null: none served.
  std::shared_ptr<Notifier> notifier;
  PushOptions push;
};

// Counters shown at /metrics (Prometheus text format). Updated from any thread.
struct Metrics {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> responses_2xx{0}, responses_3xx{0}, responses_4xx{0}, responses_5xx{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> connections_open{0}, connections_refused{0};
  std::atomic<std::uint64_t> changes{0};
  std::atomic<std::uint64_t> hash_cache_hits{0}, files_hashed{0};
  std::atomic<std::uint64_t> errors{0};
  std::atomic<std::uint64_t> notifications{0}, push_deliveries{0}, push_failures{0};
  std::atomic<std::uint64_t> push_subscriptions{0}, event_streams{0};
};

class HttpServer {
 public:
  // `site` returns the current snapshot; it is called once per request, from the server
  // thread, and must be cheap (an atomic shared_ptr load).
  HttpServer(HttpOptions options, std::function<std::shared_ptr<const Site>()> site,
             Metrics& metrics, LogSink log);
  ~HttpServer();

  // Binds, writes the port file, serves until stop() or SIGINT/SIGTERM; then stops
  // accepting, closes idle keep-alive connections, lets in-flight responses finish (up to
  // shutdown_grace) and returns. Runs everything on the calling thread; call it once.
  // Fails (errc::network, errc::invalid_config) when it cannot bind or load the TLS files.
  // Sets SIGPIPE to SIG_IGN if it was SIG_DFL (sendfile() on a socket whose peer left
  // raises it).
  [[nodiscard]] Result<void> run();
  // Thread-safe, idempotent, and may come before run() (which then returns once bound): the
  // same graceful shutdown as SIGTERM; run() returns once it is done.
  void stop();
  // The bound port (after run() has started accepting; 0 before).
  [[nodiscard]] std::uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::server
