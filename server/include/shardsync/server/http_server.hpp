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
#include <string>

#include "shardsync/result.hpp"
#include "shardsync/server/scanner.hpp"
#include "shardsync/server/site.hpp"

namespace shardsync::server {

struct HttpOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;            // 0: any free port
  std::string port_file;             // receives the bound port once connections are accepted
  std::size_t max_connections = 1024;
  std::chrono::seconds header_timeout{10};  // to receive a request's headers
  std::chrono::seconds body_timeout{60};    // between chunks of a request body
  std::chrono::seconds send_timeout{60};    // between chunks of a response
  std::chrono::seconds idle_timeout{30};    // keep-alive between requests
  std::size_t max_header_bytes = 16 * 1024;
  std::string tls_cert_file;         // PEM; both set: HTTPS only
  std::string tls_key_file;
  std::string write_token;           // bearer token for PUT/DELETE; empty: writes refused
  std::map<std::string, std::string> read_tokens;  // collection -> bearer token for reads
};

// Counters shown at /metrics (Prometheus text format). Updated from any thread.
struct Metrics {
  std::atomic<std::uint64_t> requests{0};
  std::atomic<std::uint64_t> responses_2xx{0}, responses_3xx{0}, responses_4xx{0},
      responses_5xx{0};
  std::atomic<std::uint64_t> bytes_sent{0};
  std::atomic<std::uint64_t> connections_open{0}, connections_refused{0};
  std::atomic<std::uint64_t> changes{0};
  std::atomic<std::uint64_t> hash_cache_hits{0}, files_hashed{0};
  std::atomic<std::uint64_t> errors{0};
};

class HttpServer {
 public:
  // `site` returns the current snapshot; it is called once per request, from the server
  // thread, and must be cheap (an atomic shared_ptr load).
  HttpServer(HttpOptions options, std::function<std::shared_ptr<const Site>()> site,
             Metrics& metrics, LogSink log);
  ~HttpServer();

  // Binds, writes the port file, serves until stop() or SIGINT/SIGTERM; then stops
  // accepting, lets in-flight responses finish (up to a grace period) and returns.
  [[nodiscard]] Result<void> run();
  // Thread-safe; run() returns soon after.
  void stop();
  // The bound port (after run() has started accepting; 0 before).
  [[nodiscard]] std::uint16_t port() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::server
