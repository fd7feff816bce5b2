// The I/O half of the HTTP server: listener, sessions (plain and TLS), sendfile, shutdown.
// The only TU that includes Beast's I/O headers (15-19 s each to compile here); what to
// answer is decided by the socket-free handler in http_handler.cpp.

#include "shardsync/server/http_server.hpp"

#include <openssl/ssl.h>
#include <signal.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <exception>
#include <fstream>
#include <memory>
#include <optional>
#include <type_traits>
#include <unordered_set>

#include "http_handler.hpp"
#include "push_hub.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/server/notifier.hpp"

namespace shardsync::server {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = net::ssl;
using tcp = net::ip::tcp;
using boost::system::error_code;

constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);

using PlainStream = beast::tcp_stream;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Reads of a request's bytes; body chunks handed to an upload.
constexpr std::size_t kReadSize = 16 * 1024;
constexpr std::size_t kBodyChunk = 64 * 1024;
// Bodies up to this size go out with the header in one write.
constexpr std::uint64_t kInlineBody = 64 * 1024;
// Per write (and per sendfile call) of large bodies; the send timeout restarts for each.
constexpr std::uint64_t kSendChunk = 1 << 20;
// A session that sent this much without waiting lets the others run.
constexpr std::uint64_t kYieldEvery = 8 << 20;
// After answering and deciding to close: how long to wait for the client to finish sending
// (so that closing with unread bytes does not reset the connection and destroy our answer
// before the client read it), and how much to read meanwhile.
constexpr std::chrono::seconds kLingerTime{2};
constexpr std::size_t kLingerBytes = 1 << 20;

struct SessionEntry {
  bool busy = false;  // between a request's first byte and the end of its response
  tcp::socket* socket = nullptr;
};

struct ServerState {
  ServerState(HttpOptions o, std::function<std::shared_ptr<const Site>()> s, Metrics& m, LogSink l)
      : options(std::move(o)), site(std::move(s)), metrics(m), log(std::move(l)) {}

  HttpOptions options;
  std::function<std::shared_ptr<const Site>()> site;
  Metrics& metrics;
  LogSink log;

  net::io_context ioc{1};
  // Publishing commits (fsync, rename, fsync of the directory, the change log's transaction)
  // block for milliseconds: they run here, one at a time as before, so that the connections
  // on `ioc` keep being served meanwhile.
  net::thread_pool blocking{1};
  std::optional<tcp::acceptor> acceptor;
  std::optional<ssl::context> tls;
  std::optional<net::signal_set> signals;
  std::optional<net::steady_timer> grace;
  std::atomic<std::uint16_t> port{0};
  std::atomic<bool> ran{false};
  bool stopping = false;
  std::unordered_set<SessionEntry*> sessions;
  // The WebSub hub and event streams (when HttpOptions::notifier is set), and the id of the
  // notifier listener that posts notifications to it.
  std::unique_ptr<detail::PushHub> hub;
  std::uint64_t listener = 0;

  void say(std::string_view level, const std::string& message) const {
    if (log) log(level, message);
  }

  // On the io_context: stop accepting, close idle connections, give the busy ones
  // `shutdown_grace` to finish.
  void begin_shutdown() {
    if (stopping) return;
    stopping = true;
    say("info", "http: shutting down (" + std::to_string(sessions.size()) + " connections)");
    error_code ignored;
    if (acceptor) acceptor->close(ignored);
    if (signals) signals->cancel(ignored);
    if (hub) hub->shutdown();
    for (SessionEntry* s : sessions) {
      if (!s->busy) s->socket->cancel(ignored);
    }
    if (sessions.empty()) return;
    grace.emplace(ioc);
    grace->expires_after(options.shutdown_grace);
    grace->async_wait([this](error_code ec) {
      if (ec) return;
      say("warn",
          "http: grace period over, closing " + std::to_string(sessions.size()) + " connections");
      error_code e;
      for (SessionEntry* s : sessions) s->socket->close(e);
    });
  }

  void count_response(unsigned status, std::uint64_t header_bytes) {
    auto& counter = status < 300   ? metrics.responses_2xx
                    : status < 400 ? metrics.responses_3xx
                    : status < 500 ? metrics.responses_4xx
                                   : metrics.responses_5xx;
    counter.fetch_add(1, std::memory_order_relaxed);
    metrics.bytes_sent.fetch_add(header_bytes, std::memory_order_relaxed);
    if (status >= 500 && status != 503) metrics.errors.fetch_add(1, std::memory_order_relaxed);
  }
};

// Registers a session for shutdown and counts it as open.
class SessionGuard {
 public:
  SessionGuard(ServerState* server, SessionEntry* entry) : server_(server), entry_(entry) {
    server_->sessions.insert(entry_);
    server_->metrics.connections_open.fetch_add(1, std::memory_order_relaxed);
  }
  ~SessionGuard() {
    server_->sessions.erase(entry_);
    server_->metrics.connections_open.fetch_sub(1, std::memory_order_relaxed);
    if (server_->stopping && server_->sessions.empty() && server_->grace) server_->grace->cancel();
  }
  SessionGuard(const SessionGuard&) = delete;
  SessionGuard& operator=(const SessionGuard&) = delete;

 private:
  ServerState* server_;
  SessionEntry* entry_;
};

std::int64_t now_seconds() { return static_cast<std::int64_t>(std::time(nullptr)); }

bool routine(const error_code& ec) {
  return ec == net::error::eof || ec == net::error::operation_aborted ||
         ec == beast::error::timeout || ec == net::error::connection_reset ||
         ec == net::error::broken_pipe || ec == ssl::error::stream_truncated ||
         ec == net::error::bad_descriptor;
}

// The send timeout of a sendfile() loop. Beast's deadlines only cover tcp_stream's own
// operations, so the loop's waits for a writable socket get a watchdog instead: one timer for
// the whole response, re-armed from the last progress, that cancels the socket once
// `timeout` passed without a byte sent (nginx's send_timeout). One timer per response rather
// than one per wait: a 2 GiB download waits tens of thousands of times. The timer's handler
// shares this state, never the coroutine frame (which may be gone by then).
class SendWatchdog {
 public:
  SendWatchdog(tcp::socket& socket, std::chrono::steady_clock::duration timeout)
      : state_(std::make_shared<State>(socket, timeout)) {
    state_->last_progress = std::chrono::steady_clock::now();
    arm(state_);
  }
  ~SendWatchdog() {
    state_->done = true;
    state_->timer.cancel();
  }
  SendWatchdog(const SendWatchdog&) = delete;
  SendWatchdog& operator=(const SendWatchdog&) = delete;

  void progress() { state_->last_progress = std::chrono::steady_clock::now(); }
  [[nodiscard]] bool timed_out() const { return state_->timed_out; }

 private:
  struct State {
    State(tcp::socket& s, std::chrono::steady_clock::duration t)
        : socket(&s), timeout(t), timer(s.get_executor()) {}
    tcp::socket* socket;
    std::chrono::steady_clock::duration timeout;
    net::steady_timer timer;
    std::chrono::steady_clock::time_point last_progress;
    bool done = false;
    bool timed_out = false;
  };

  static void arm(const std::shared_ptr<State>& state) {
    state->timer.expires_at(state->last_progress + state->timeout);
    state->timer.async_wait([state](error_code ec) {
      if (ec || state->done) return;
      if (std::chrono::steady_clock::now() < state->last_progress + state->timeout) {
        arm(state);  // there was progress since: wait for the new deadline
        return;
      }
      state->timed_out = true;
      error_code ignored;
      state->socket->cancel(ignored);
    });
  }

  std::shared_ptr<State> state_;
};

// Whether the file still is what the response started with (size and mtime).
bool unchanged(const detail::ResponsePlan& plan) {
  struct stat st {};
  if (::fstat(plan.file.get(), &st) != 0) return false;
  const std::int64_t mtime =
      static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  return static_cast<std::uint64_t>(st.st_size) == plan.file_size && mtime == plan.file_mtime_ns;
}

// Runs a blocking call on the server's blocking pool; the awaiting session resumes on its
// own executor when it is done. A free function, not a capturing lambda coroutine (g++ 12).
template <class Fn>
net::awaitable<std::invoke_result_t<Fn&>> call_blocking(Fn fn) {
  co_return fn();
}

template <class Fn>
net::awaitable<std::invoke_result_t<Fn&>> off_thread(ServerState* server, Fn fn) {
  co_return co_await net::co_spawn(server->blocking, call_blocking(std::move(fn)),
                                   net::use_awaitable);
}

template <class Stream>
constexpr bool is_tls = std::is_same_v<Stream, TlsStream>;

template <class Stream>
class Connection {
 public:
  Connection(ServerState* server, Stream& stream) : server_(server), stream_(stream) {}

  beast::tcp_stream& lowest() { return beast::get_lowest_layer(stream_); }

  // Writes the buffers under one send deadline. False on any failure.
  template <class Buffers>
  net::awaitable<bool> write(const Buffers& buffers) {
    lowest().expires_after(server_->options.send_timeout);
    auto [ec, n] = co_await net::async_write(stream_, buffers, use_nothrow);
    if (ec) co_return false;
    co_return true;
  }

  // Sends the response; false when the connection must be dropped (failure, or the file
  // changed while it was sent: better a truncated body than bytes under the wrong ETag).
  net::awaitable<bool> send(detail::ResponsePlan& plan, bool keep_alive, unsigned version) {
    const std::string head = detail::serialize_head(plan, keep_alive, version);
    server_->count_response(plan.status, head.size());
    const bool bodiless = plan.status == 204 || plan.status == 304 || plan.status < 200;
    if (bodiless || !plan.send_body || plan.source == detail::BodySource::none) {
      co_return co_await write(net::buffer(head));
    }
    std::string_view bytes;
    std::string inline_file;
    switch (plan.source) {
      case detail::BodySource::text:
        bytes = plan.text;
        break;
      case detail::BodySource::document:
        bytes = plan.document_bytes;
        break;
      case detail::BodySource::file:
        if (plan.content_length > kInlineBody) co_return co_await send_file(plan, head);
        inline_file.resize(plan.content_length);
        if (!read_exactly(plan, inline_file.data(), plan.file_offset, inline_file.size())) {
          co_return false;
        }
        bytes = inline_file;
        break;
      case detail::BodySource::none:
        break;
    }
    if (bytes.size() <= kInlineBody) {
      const std::array<net::const_buffer, 2> both{net::buffer(head),
                                                  net::buffer(bytes.data(), bytes.size())};
      if (!co_await write(both)) co_return false;
      add_sent(bytes.size());
      co_return true;
    }
    if (!co_await write(net::buffer(head))) co_return false;
    while (!bytes.empty()) {
      const std::size_t n = std::min<std::size_t>(bytes.size(), kSendChunk);
      if (!co_await write(net::buffer(bytes.data(), n))) co_return false;
      add_sent(n);
      bytes.remove_prefix(n);
    }
    co_return true;
  }

  // The header, then the file: sendfile() on plain TCP, pread + write through TLS (or when
  // sendfile is off or refused by the file system).
  net::awaitable<bool> send_file(detail::ResponsePlan& plan, const std::string& head) {
    bool use_sendfile = !is_tls<Stream> && server_->options.sendfile;
    // With sendfile, the head goes out with MSG_MORE so that it shares its first segment with
    // the body (what nginx's tcp_nopush does) instead of leaving as a small packet of its own.
    std::size_t head_sent = 0;
    if (use_sendfile) {
      const ssize_t r = ::send(lowest().socket().native_handle(), head.data(), head.size(),
                               MSG_MORE | MSG_NOSIGNAL);
      if (r > 0) head_sent = static_cast<std::size_t>(r);
    }
    if (head_sent < head.size() &&
        !co_await write(net::buffer(head.data() + head_sent, head.size() - head_sent))) {
      co_return false;
    }
    auto offset = static_cast<off_t>(plan.file_offset);
    std::uint64_t left = plan.content_length;
    std::uint64_t since_yield = 0;
    bool checked = false;
    std::unique_ptr<char[]> chunk;
    std::optional<SendWatchdog> watchdog;
    if (use_sendfile) watchdog.emplace(lowest().socket(), server_->options.send_timeout);
    while (left > 0) {
      // Before the last chunk, check the file is the one we started with: publishing
      // replaces files by rename (our fd keeps the old inode), but an in-place writer
      // would splice new bytes under the old ETag.
      if (left <= kSendChunk && !checked && !plan.file_sealed) {
        checked = true;
        if (!unchanged(plan)) {
          server_->say("warn", "http: file changed while being sent; connection dropped");
          server_->metrics.errors.fetch_add(1, std::memory_order_relaxed);
          co_return false;
        }
      }
      const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(left, kSendChunk));
      std::size_t sent = 0;
      if (use_sendfile) {
        tcp::socket& socket = lowest().socket();
        const ssize_t r = ::sendfile(socket.native_handle(), plan.file.get(), &offset, n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          auto [ec] = co_await socket.async_wait(tcp::socket::wait_write, use_nothrow);
          if (ec || watchdog->timed_out()) co_return false;
          continue;
        }
        if (r < 0 && (errno == EINVAL || errno == ENOSYS)) {
          use_sendfile = false;  // this file system cannot: read and write instead
          continue;
        }
        if (r <= 0) co_return false;  // EPIPE, ECONNRESET; 0: the file shrank
        sent = static_cast<std::size_t>(r);
        watchdog->progress();
      } else {
        if (!chunk) chunk = std::make_unique<char[]>(kSendChunk);
        if (!read_exactly(plan, chunk.get(), static_cast<std::uint64_t>(offset), n)) {
          co_return false;
        }
        if (!co_await write(net::buffer(chunk.get(), n))) co_return false;
        offset += static_cast<off_t>(n);
        sent = n;
      }
      add_sent(sent);
      left -= sent;
      since_yield += sent;
      if (since_yield >= kYieldEvery) {
        since_yield = 0;
        co_await net::post(lowest().get_executor(), net::use_awaitable);
      }
    }
    co_return true;
  }

  void add_sent(std::uint64_t n) {
    server_->metrics.bytes_sent.fetch_add(n, std::memory_order_relaxed);
  }

  static bool read_exactly(const detail::ResponsePlan& plan, char* out, std::uint64_t offset,
                           std::size_t n) {
    while (n > 0) {
      const ssize_t r = ::pread(plan.file.get(), out, n, static_cast<off_t>(offset));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) return false;
      out += r;
      n -= static_cast<std::size_t>(r);
      offset += static_cast<std::uint64_t>(r);
    }
    return true;
  }

  // Closes after a response we chose to end the connection with: TLS close_notify, then
  // FIN, then read what the client still sends for a moment (a "lingering close").
  net::awaitable<void> close_gracefully() {
    auto& t = lowest();
    if constexpr (is_tls<Stream>) {
      t.expires_after(kLingerTime);
      auto [ec] = co_await stream_.async_shutdown(use_nothrow);
      if (ec == net::error::operation_aborted) co_return;
    }
    error_code ec;
    t.socket().shutdown(tcp::socket::shutdown_send, ec);
    if (ec) co_return;
    t.expires_after(kLingerTime);
    std::size_t drained = 0;
    char scratch[4096];
    while (drained < kLingerBytes) {
      auto [rec, n] = co_await t.async_read_some(net::buffer(scratch), use_nothrow);
      if (rec) break;
      drained += n;
    }
  }

 private:
  ServerState* server_;
  Stream& stream_;
};

// Joins every line of one field with ", " (only when there are several).
std::string_view field_value(const http::request<http::buffer_body>& request, http::field name,
                             std::string& storage) {
  const auto [first, last] = request.equal_range(name);
  if (first == last) return {};
  if (std::next(first) == last) return first->value();
  storage.clear();
  for (auto it = first; it != last; ++it) {
    if (!storage.empty()) storage += ", ";
    storage += std::string_view(it->value());
  }
  return storage;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

unsigned status_of(const Error& error) {
  if (error.code == errc::unsafe_path) return 403;
  if (error.code == errc::invalid_config) return 400;
  if (error.code == errc::already_exists) return 412;
  return 500;
}

// What a client is told of a failed publish: the detail of its own mistakes (403, 400), not
// of ours (a 500's detail names server paths; it goes to the log).
std::string public_text(const Error& error) {
  return status_of(error) == 500 ? std::string("publishing failed") : error.detail;
}

using RequestParser = http::request_parser<http::buffer_body>;

// Reads the next piece of a request body into `scratch`; its size, or nullopt on failure.
template <class Stream>
net::awaitable<std::optional<std::size_t>> read_body_chunk(Stream* stream,
                                                           beast::flat_buffer* buffer,
                                                           RequestParser* parser, char* scratch,
                                                           std::chrono::seconds timeout) {
  parser->get().body().data = scratch;
  parser->get().body().size = kBodyChunk;
  beast::get_lowest_layer(*stream).expires_after(timeout);
  auto [ec, n] = co_await http::async_read_some(*stream, *buffer, *parser, use_nothrow);
  if (ec == http::error::need_buffer) ec = {};
  if (ec) co_return std::nullopt;
  co_return kBodyChunk - parser->get().body().size;
}

// Form bodies of hub requests (WebSub's are a few hundred bytes).
constexpr std::size_t kMaxHubForm = 16 * 1024;

// Writes a topic's events to the connection as they come (Server-Sent Events), with a
// comment line when there has been nothing for the heartbeat interval, until the reader
// leaves, falls too far behind, or the server stops.
template <class Stream>
net::awaitable<void> stream_events(ServerState* server, Connection<Stream>* conn,
                                   detail::EventStreamRequest request) {
  const std::shared_ptr<detail::EventStream> events = server->hub->open_stream(request);
  if (!events) {
    detail::ResponsePlan busy = detail::text_response(503, "too many event streams", now_seconds());
    busy.headers.emplace_back("Retry-After", "5");
    busy.close = true;
    co_await conn->send(busy, false, 11);
    co_return;
  }
  static constexpr std::string_view kHeartbeat = ": keep-alive\n\n";
  const std::string head = detail::event_stream_head(request, now_seconds());
  server->count_response(200, head.size());
  bool ok = co_await conn->write(net::buffer(head));
  std::string out;
  while (ok && !server->stopping && !events->overflow) {
    if (server->hub->take(*events, out)) {
      ok = co_await conn->write(net::buffer(out));
      conn->add_sent(out.size());
      continue;
    }
    // No deadline while idle: the heartbeat's write has its own.
    conn->lowest().expires_never();
    events->wake.expires_after(server->options.push.heartbeat);
    auto [ec] = co_await events->wake.async_wait(use_nothrow);
    if (server->stopping) break;
    if (!ec) ok = co_await conn->write(net::buffer(kHeartbeat.data(), kHeartbeat.size()));
  }
  if (events->overflow) server->say("warn", "http: event stream reader too slow; closed");
  server->hub->close_stream(events);
}

// What ends a session's loop.
enum class Ending {
  quiet,     // the client left, timed out, or the server is stopping: just close
  graceful,  // we answered and chose to close: lingering close
};

template <class Stream>
net::awaitable<void> session(ServerState* server, Stream stream) {
  SessionEntry entry;
  entry.socket = &beast::get_lowest_layer(stream).socket();
  SessionGuard guard(server, &entry);
  Connection<Stream> conn(server, stream);
  beast::tcp_stream& lowest = conn.lowest();
  const HttpOptions& options = server->options;

  // The first request's header deadline runs from the accept, across the TLS handshake.
  lowest.expires_after(options.header_timeout);
  if constexpr (is_tls<Stream>) {
    auto [ec] = co_await stream.async_handshake(ssl::stream_base::server, use_nothrow);
    if (ec) co_return;  // plain HTTP on the TLS port, a scanner, a timeout: nothing to say
  }
  const std::size_t max_header = options.max_header_bytes;
  beast::flat_buffer buffer(max_header + kBodyChunk);
  Ending ending = Ending::quiet;
  bool first = true;
  std::string joined[8];
  std::unique_ptr<char[]> scratch;  // request bodies, allocated on the first one

  const auto reject = [](unsigned status, std::string text) {
    detail::ResponsePlan plan = detail::text_response(status, std::move(text), now_seconds());
    plan.close = true;
    return plan;
  };

  while (!server->stopping) {
    entry.busy = false;
    if (buffer.size() == 0) {
      if (!first) lowest.expires_after(options.idle_timeout);
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(kReadSize), use_nothrow);
      if (ec) break;
      buffer.commit(n);
    }
    entry.busy = true;
    if (!first) lowest.expires_after(options.header_timeout);
    first = false;
    // RFC 9112 §2.2: ignore empty lines before a request line (some clients send a CRLF
    // after a body).
    while (buffer.size() >= 2 &&
           std::string_view(static_cast<const char*>(buffer.data().data()), 2) == "\r\n") {
      buffer.consume(2);
    }

    // Read the whole header section before parsing: the size limit is ours, and the raw bytes
    // can be checked for what Beast 1.81 lets through (obs-fold).
    std::optional<detail::ResponsePlan> rejected;
    std::size_t header_end = std::string_view::npos;
    std::size_t scanned = 0;
    while (true) {
      const std::string_view data(static_cast<const char*>(buffer.data().data()), buffer.size());
      header_end = data.find("\r\n\r\n", scanned);
      if (header_end != std::string_view::npos) {
        header_end += 4;
        break;
      }
      scanned = data.size() >= 3 ? data.size() - 3 : 0;
      if (data.size() >= max_header) break;
      const std::size_t room = std::min(kReadSize, max_header - data.size());
      auto [ec, n] = co_await stream.async_read_some(buffer.prepare(room), use_nothrow);
      if (ec) {
        // Slowloris or a client that went away mid-header: no answer, just close.
        if (!routine(ec)) server->say("debug", "http: read failed: " + ec.message());
        co_return;
      }
      buffer.commit(n);
    }
    if (header_end == std::string_view::npos || header_end > max_header) {
      rejected = reject(431, "request header fields too large");
    } else if (detail::has_obs_fold(
                   std::string_view(static_cast<const char*>(buffer.data().data()), header_end))) {
      rejected = reject(400, "folded header lines are not accepted");
    }

    RequestParser parser;
    // Our own check above is the limit; Beast's is a backstop.
    parser.header_limit(
        static_cast<std::uint32_t>(std::min<std::size_t>(max_header + 4, UINT32_MAX)));
    parser.body_limit(boost::none);  // bodies are limited per method below
    if (!rejected) {
      // The header section is all in the buffer: this parses without reading.
      auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, use_nothrow);
      if (ec == http::error::header_limit) {
        rejected = reject(431, "request header fields too large");
      } else if (ec) {
        rejected = reject(400, "malformed request");
      }
    }
    server->metrics.requests.fetch_add(1, std::memory_order_relaxed);
    if (rejected) {
      if (co_await conn.send(*rejected, false, 11)) ending = Ending::graceful;
      break;
    }

    auto& request = parser.get();
    const std::string te =
        std::string(field_value(request, http::field::transfer_encoding, joined[0]));
    detail::Framing framing;
    framing.version = request.version();
    framing.host_fields = request.count(http::field::host);
    framing.has_content_length = request.count(http::field::content_length) > 0;
    framing.has_transfer_encoding = request.count(http::field::transfer_encoding) > 0;
    framing.transfer_encoding = te;
    if (const auto status = detail::check_framing(framing)) {
      detail::ResponsePlan plan = reject(*status, "bad message framing");
      if (co_await conn.send(plan, false, request.version())) ending = Ending::graceful;
      break;
    }

    detail::HttpRequest req;
    req.method = request.method_string();
    req.target = request.target();
    req.version = request.version();
    req.authorization = field_value(request, http::field::authorization, joined[1]);
    req.range = field_value(request, http::field::range, joined[2]);
    req.if_range = field_value(request, http::field::if_range, joined[3]);
    req.if_none_match = field_value(request, http::field::if_none_match, joined[4]);
    req.if_modified_since = field_value(request, http::field::if_modified_since, joined[5]);
    req.if_match = field_value(request, http::field::if_match, joined[6]);
    req.if_unmodified_since = request[http::field::if_unmodified_since];
    req.accept_encoding = field_value(request, http::field::accept_encoding, joined[7]);
    req.accept = request[http::field::accept];
    req.last_event_id = request["Last-Event-ID"];

    detail::HandlerContext context;
    context.options = &options;
    context.metrics = &server->metrics;
    context.now_s = now_seconds();
    const std::shared_ptr<const Site> site = server->site ? server->site() : nullptr;
    detail::ResponsePlan plan = detail::handle_request(req, site.get(), context);

    bool body_read = parser.is_done();
    if (!body_read && !scratch) scratch = std::make_unique<char[]>(kBodyChunk);

    if (plan.hub_form && server->hub && site) {
      // A subscription request: the form body (small), then the hub's answer.
      std::string form;
      bool lost = false;
      if (!parser.is_done() && iequals(request[http::field::expect], "100-continue")) {
        static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
        if (!co_await conn.write(net::buffer(kContinue.data(), kContinue.size()))) break;
      }
      while (!parser.is_done() && form.size() <= kMaxHubForm) {
        const std::optional<std::size_t> n = co_await read_body_chunk(
            &stream, &buffer, &parser, scratch.get(), options.body_timeout);
        if (!n) {
          lost = true;
          break;
        }
        form.append(scratch.get(), *n);
      }
      if (lost) break;
      if (form.size() > kMaxHubForm) {
        plan = reject(413, "request body too large");
      } else {
        plan = server->hub->handle_form(form, req.authorization, *site, now_seconds());
      }
      body_read = true;
    } else if (plan.publish && !plan.publish_remove) {
      // PUT: stream the body into the app's upload.
      plan.publish->length =
          parser.content_length() ? std::optional(*parser.content_length()) : std::nullopt;
      Result<std::unique_ptr<Upload>> upload = options.publish.put(*plan.publish);
      if (!upload || !*upload) {
        const unsigned status = upload ? 500 : status_of(upload.error());
        if (!upload && upload.error().code != errc::already_exists) {
          server->say("warn", "http: PUT refused: " + upload.error().describe());
        }
        plan = reject(status, upload ? "upload refused" : public_text(upload.error()));
        plan.close = !body_read;
      } else {
        if (!body_read && iequals(request[http::field::expect], "100-continue")) {
          static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
          if (!co_await conn.write(net::buffer(kContinue.data(), kContinue.size()))) break;
        }
        bool lost = false;     // the body did not arrive
        bool refused = false;  // the upload refused a piece
        while (!parser.is_done()) {
          const std::optional<std::size_t> n = co_await read_body_chunk(
              &stream, &buffer, &parser, scratch.get(), options.body_timeout);
          if (!n) {
            lost = true;
            break;
          }
          if (auto w = (*upload)->write(std::string_view(scratch.get(), *n)); !w) {
            server->say("warn", "http: upload failed: " + w.error().describe());
            plan = reject(status_of(w.error()), public_text(w.error()));
            refused = true;
            break;
          }
        }
        if (lost) break;  // the upload is dropped with its object
        if (!refused) {
          body_read = true;
          Upload* pending = upload->get();
          Result<PublishReply> reply =
              co_await off_thread(server, [pending] { return pending->commit(); });
          if (reply) {
            plan = detail::text_response(reply->status, reply->message, now_seconds());
          } else {
            // A lost create-only race is the caller's expected answer, not a fault.
            if (reply.error().code != errc::already_exists) {
              server->say("warn", "http: publish failed: " + reply.error().describe());
            }
            plan = reject(status_of(reply.error()), public_text(reply.error()));
            plan.close = false;
          }
        } else {
          plan.close = !parser.is_done();
        }
      }
    } else if (!body_read) {
      // A body nobody asked for (GET with a body, DELETE, a refused PUT): read and drop a
      // small one so the connection stays usable; refuse a large one and close.
      const auto declared = parser.content_length();
      const bool get_or_head = req.method == "GET" || req.method == "HEAD";
      std::uint64_t total = 0;
      bool too_large = declared && *declared > options.max_ignored_body;
      while (!too_large && !parser.is_done()) {
        const std::optional<std::size_t> n = co_await read_body_chunk(
            &stream, &buffer, &parser, scratch.get(), options.body_timeout);
        if (!n) co_return;
        total += *n;
        too_large = total > options.max_ignored_body;
      }
      if (too_large) {
        if (get_or_head || plan.publish) {
          plan = reject(413, "request body too large");
        } else {
          plan.close = true;  // keep the answer (405, 501), but the body stays unread
        }
      } else {
        body_read = true;
      }
    }
    if (plan.publish && plan.publish_remove && body_read) {
      const PublishRequest* removal = &*plan.publish;
      Result<PublishReply> reply = co_await off_thread(
          server, [&options, removal] { return options.publish.remove(*removal); });
      if (reply) {
        plan = detail::text_response(reply->status, reply->message, now_seconds());
      } else {
        server->say("warn", "http: delete failed: " + reply.error().describe());
        plan = reject(status_of(reply.error()), public_text(reply.error()));
        plan.close = false;
      }
    }
    if (plan.status == 500) server->say("error", "http: 500 for " + std::string(req.target));

    if (plan.event_stream && server->hub && body_read) {
      // The stream ends the connection; shutdown may close it at once.
      entry.busy = false;
      co_await stream_events(server, &conn, *plan.event_stream);
      break;
    }
    const bool keep_alive = parser.keep_alive() && !plan.close && !server->stopping;
    if (!co_await conn.send(plan, keep_alive, request.version())) break;
    if (!keep_alive) {
      ending = Ending::graceful;
      break;
    }
  }
  entry.busy = false;
  if (ending == Ending::graceful && !server->stopping) co_await conn.close_gracefully();
  error_code ignored;
  lowest.socket().shutdown(tcp::socket::shutdown_both, ignored);
  lowest.socket().close(ignored);
}

void report(ServerState* server, const char* what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    server->say("error", std::string("http: ") + what + " failed: " + ex.what());
  } catch (...) {
    server->say("error", std::string("http: ") + what + " failed");
  }
  server->metrics.errors.fetch_add(1, std::memory_order_relaxed);
}

// Past the connection limit: a fixed 503 if the socket takes it at once, then close.
void refuse(tcp::socket& socket) {
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
      "Retry-After: 1\r\nConnection: close\r\n\r\ntoo many now\n";
  error_code ec;
  socket.non_blocking(true, ec);
  socket.send(net::buffer(kBusy.data(), kBusy.size()), 0, ec);
  socket.shutdown(tcp::socket::shutdown_both, ec);
  socket.close(ec);
}

net::awaitable<void> listen(ServerState* server) {
  std::uint64_t refused_logged = 0;
  std::uint64_t failures_logged = 0;
  while (!server->stopping) {
    tcp::socket socket(net::make_strand(server->ioc));
    auto [ec] = co_await server->acceptor->async_accept(socket, use_nothrow);
    if (server->stopping || ec == net::error::operation_aborted) co_return;
    if (ec) {
      // EMFILE, ENFILE, ENOBUFS: back off a little rather than spin, then go on.
      ++failures_logged;
      if ((failures_logged & (failures_logged - 1)) == 0) {
        server->say("warn", "http: accept failed (" + std::to_string(failures_logged) +
                                " times so far): " + ec.message());
      }
      server->metrics.errors.fetch_add(1, std::memory_order_relaxed);
      net::steady_timer pause(server->ioc, std::chrono::milliseconds(100));
      co_await pause.async_wait(use_nothrow);
      continue;
    }
    if (server->sessions.size() >= server->options.max_connections) {
      server->metrics.connections_refused.fetch_add(1, std::memory_order_relaxed);
      // One line per power of two, so a flood does not flood the log.
      ++refused_logged;
      if ((refused_logged & (refused_logged - 1)) == 0) {
        server->say("warn", "http: connection limit reached; refused " +
                                std::to_string(refused_logged) + " so far");
      }
      refuse(socket);
      continue;
    }
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    const auto executor = socket.get_executor();
    if (server->tls) {
      net::co_spawn(executor, session(server, TlsStream(std::move(socket), *server->tls)),
                    [server](std::exception_ptr e) { report(server, "session", e); });
    } else {
      socket.native_non_blocking(true, ignored);  // for sendfile()
      net::co_spawn(executor, session(server, PlainStream(std::move(socket))),
                    [server](std::exception_ptr e) { report(server, "session", e); });
    }
  }
}

Result<void> write_port_file(const std::string& path, std::uint16_t port) {
  const std::string temp = path + ".tmp";
  {
    std::ofstream out(temp, std::ios::trunc);
    out << port << '\n';
    if (!out.flush()) return fail(errc::io_error, "cannot write port file " + temp);
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) {
    return fail(errc::io_error, "cannot rename port file to " + path);
  }
  return {};
}

}  // namespace

struct HttpServer::Impl {
  Impl(HttpOptions o, std::function<std::shared_ptr<const Site>()> s, Metrics& m, LogSink l)
      : state(std::move(o), std::move(s), m, std::move(l)) {}
  ServerState state;
};

HttpServer::HttpServer(HttpOptions options, std::function<std::shared_ptr<const Site>()> site,
                       Metrics& metrics, LogSink log)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(site), metrics, std::move(log))) {}

HttpServer::~HttpServer() = default;

std::uint16_t HttpServer::port() const { return impl_->state.port.load(); }

void HttpServer::stop() {
  ServerState* s = &impl_->state;
  net::post(s->ioc, [s] { s->begin_shutdown(); });
}

Result<void> HttpServer::run() {
  ServerState& s = impl_->state;
  if (s.ran.exchange(true)) return fail(errc::invalid_config, "HttpServer::run called twice");
  const HttpOptions& o = s.options;
  if (o.max_connections == 0 || o.max_header_bytes < 256) {
    return fail(errc::invalid_config, "max_connections must be > 0, max_header_bytes >= 256");
  }

  if (!o.tls_cert_file.empty() || !o.tls_key_file.empty()) {
    if (o.tls_cert_file.empty() || o.tls_key_file.empty()) {
      return fail(errc::invalid_config, "TLS needs both a certificate and a key file");
    }
    s.tls.emplace(ssl::context::tls_server);
    error_code ec;
    s.tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                           ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                           ssl::context::no_tlsv1_1 | ssl::context::single_dh_use,
                       ec);
    SSL_CTX* native = s.tls->native_handle();
    SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
    SSL_CTX_set_options(
        native, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (!ec) s.tls->use_certificate_chain_file(o.tls_cert_file, ec);
    if (ec)
      return fail(errc::invalid_config, "TLS certificate " + o.tls_cert_file + ": " + ec.message());
    s.tls->use_private_key_file(o.tls_key_file, ssl::context::pem, ec);
    if (ec) return fail(errc::invalid_config, "TLS key " + o.tls_key_file + ": " + ec.message());
  }

  // sendfile() to a socket whose peer left raises SIGPIPE (send() has MSG_NOSIGNAL, it has not).
  struct sigaction old {};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
    ::signal(SIGPIPE, SIG_IGN);
  }

  error_code ec;
  tcp::endpoint endpoint;
  const auto address = net::ip::make_address(o.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, o.port);
  } else {
    tcp::resolver resolver(s.ioc);
    const auto results = resolver.resolve(o.host, std::to_string(o.port), ec);
    if (ec || results.empty()) {
      return fail(errc::network, "cannot resolve " + o.host + ": " + ec.message());
    }
    endpoint = results.begin()->endpoint();
  }
  s.acceptor.emplace(s.ioc);
  s.acceptor->open(endpoint.protocol(), ec);
  if (!ec) s.acceptor->set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) s.acceptor->bind(endpoint, ec);
  if (!ec) s.acceptor->listen(net::socket_base::max_listen_connections, ec);
  const std::string where = o.host + ":" + std::to_string(o.port);
  if (ec) return fail(errc::network, "cannot listen on " + where + ": " + ec.message());
  const std::uint16_t bound = s.acceptor->local_endpoint(ec).port();
  if (ec) return fail(errc::network, "cannot read the bound port: " + ec.message());

  if (o.on_listening) o.on_listening(bound);
  if (!o.port_file.empty()) {
    if (auto r = write_port_file(o.port_file, bound); !r) return r;
  }
  s.signals.emplace(s.ioc, SIGINT, SIGTERM);
  s.signals->async_wait([&s](error_code wait_ec, int signal_number) {
    if (wait_ec) return;
    s.say("info", "http: signal " + std::to_string(signal_number) + " received");
    s.begin_shutdown();
  });
  // Once port() is known, signals are handled too.
  s.port.store(bound);
  if (o.notifier) {
    s.hub = std::make_unique<detail::PushHub>(s.ioc, o, s.metrics, s.log);
    // From the Source's thread to the server's: the hub is touched on the io_context only.
    detail::PushHub* hub = s.hub.get();
    net::io_context* ioc = &s.ioc;
    s.listener = o.notifier->add_listener([hub, ioc](const std::shared_ptr<const Notification>& n) {
      net::post(*ioc, [hub, n] { hub->publish(n); });
    });
  }
  s.say("info", std::string("http: listening on ") + (s.tls ? "https://" : "http://") + o.host +
                    ":" + std::to_string(bound));
  net::co_spawn(s.ioc, listen(&s), [&s](std::exception_ptr e) { report(&s, "listener", e); });
  s.ioc.run();
  if (o.notifier) o.notifier->remove_listener(s.listener);
  s.blocking.join();
  s.say("info", "http: stopped");
  return {};
}

}  // namespace shardsync::server
