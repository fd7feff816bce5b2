#include "push_hub.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <charconv>
#include <chrono>
#include <map>
#include <unordered_set>

#include "shardsync/server/collection.hpp"

namespace shardsync::server::detail {
namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;
using boost::system::error_code;
using Clock = std::chrono::steady_clock;

constexpr auto use_nothrow = net::as_tuple(net::use_awaitable);
// WebSub: a secret is at most 200 bytes. Callback answers beyond 64 KiB are not read.
constexpr std::size_t kMaxSecret = 200;
constexpr std::uint32_t kMaxCallbackBody = 64 * 1024;

std::string hex(const unsigned char* bytes, std::size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    out += kDigits[bytes[i] >> 4];
    out += kDigits[bytes[i] & 15];
  }
  return out;
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::optional<std::string> form_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%') {
      if (i + 2 >= s.size()) return std::nullopt;
      const int hi = hex_value(s[i + 1]), lo = hex_value(s[i + 2]);
      if (hi < 0 || lo < 0) return std::nullopt;
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string form_encode(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      const unsigned char b[1] = {u};
      out += '%';
      std::string h = hex(b, 1);
      for (char& x : h) x = static_cast<char>(std::toupper(static_cast<unsigned char>(x)));
      out += h;
    }
  }
  return out;
}

std::string random_challenge() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    // Never seen on Linux (getrandom); a predictable challenge would still be echoed only by
    // the callback that received it.
    for (unsigned char& b : bytes)
      b = static_cast<unsigned char>(Clock::now().time_since_epoch().count());
  }
  return hex(bytes, sizeof bytes);
}

// http://host[:port]/path?query, split for a request. https is refused (no client TLS here).
struct CallbackUrl {
  std::string host;
  std::string port = "80";
  std::string target = "/";
};

std::optional<CallbackUrl> parse_callback(std::string_view url) {
  constexpr std::string_view kScheme = "http://";
  if (url.size() <= kScheme.size() || url.size() > 2048) return std::nullopt;
  for (std::size_t i = 0; i < kScheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(url[i])) != kScheme[i]) return std::nullopt;
  }
  url.remove_prefix(kScheme.size());
  for (const char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return std::nullopt;
  }
  const std::size_t path = url.find_first_of("/?#");
  std::string_view authority = url.substr(0, path);
  CallbackUrl out;
  if (path != std::string_view::npos) {
    std::string_view rest = url.substr(path);
    rest = rest.substr(0, rest.find('#'));
    out.target = rest.starts_with('/') ? std::string(rest) : "/" + std::string(rest);
  }
  if (authority.find('@') != std::string_view::npos || authority.empty()) return std::nullopt;
  if (authority.front() == '[') {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    authority.remove_prefix(close + 1);
    if (!authority.empty() && authority.front() != ':') return std::nullopt;
  } else {
    const std::size_t colon = authority.find(':');
    out.host = std::string(authority.substr(0, colon));
    authority.remove_prefix(colon == std::string_view::npos ? authority.size() : colon);
  }
  if (!authority.empty()) {
    authority.remove_prefix(1);  // ':'
    unsigned port = 0;
    const auto [end, ec] =
        std::from_chars(authority.data(), authority.data() + authority.size(), port);
    if (ec != std::errc() || end != authority.data() + authority.size() || port == 0 ||
        port > 65535) {
      return std::nullopt;
    }
    out.port = std::to_string(port);
  }
  if (out.host.empty()) return std::nullopt;
  return out;
}

bool lower_equal(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

ResponsePlan answer(unsigned status, std::string text, std::int64_t now_s) {
  return text_response(status, std::move(text), now_s);
}

struct Subscription {
  std::string topic, callback, secret;
  CallbackUrl url;
  Clock::time_point expires;
  std::deque<std::shared_ptr<const Notification>> pending;
  bool delivering = false;
  bool removed = false;
};

struct CallResult {
  unsigned status = 0;  // 0: no answer
  std::string body;
  std::string error;
};

}  // namespace

struct PushHub::Impl {
  Impl(net::io_context& i, const HttpOptions& o, Metrics& m, LogSink l)
      : ioc(i),
        options(o.push),
        read_tokens(o.read_tokens),
        notifier(o.notifier),
        metrics(m),
        log(std::move(l)) {}

  net::io_context& ioc;
  PushOptions options;
  std::map<std::string, std::string> read_tokens;
  std::shared_ptr<Notifier> notifier;
  Metrics& metrics;
  LogSink log;
  bool stopping = false;
  // (topic, callback) -> subscription; `verifying` counts intents being checked.
  std::map<std::pair<std::string, std::string>, std::shared_ptr<Subscription>> subscriptions;
  std::size_t verifying = 0;
  std::unordered_set<std::shared_ptr<EventStream>> streams;
  // What shutdown() must interrupt: calls in flight and backoff waits.
  std::unordered_set<beast::tcp_stream*> calls;
  std::unordered_set<net::steady_timer*> waits;

  void say(std::string_view level, const std::string& message) const {
    if (log) log(level, message);
  }

  bool host_allowed(const std::string& host) const {
    for (const std::string& allowed : options.allowed_callback_hosts) {
      if (allowed == "*" || lower_equal(allowed, host)) return true;
    }
    return options.allowed_callback_hosts.empty();  // then: loopback, checked on connect
  }

  void count_subscriptions() {
    metrics.push_subscriptions.store(subscriptions.size(), std::memory_order_relaxed);
  }
};

namespace {

using ImplPtr = std::shared_ptr<PushHub::Impl>;

// Registers an object shutdown() must reach while a coroutine awaits on it.
template <class T>
class Tracked {
 public:
  Tracked(std::unordered_set<T*>& set, T* object) : set_(set), object_(object) {
    set_.insert(object_);
  }
  ~Tracked() { set_.erase(object_); }
  Tracked(const Tracked&) = delete;
  Tracked& operator=(const Tracked&) = delete;

 private:
  std::unordered_set<T*>& set_;
  T* object_;
};

// One HTTP/1.1 request to a callback (a fresh connection, closed after), under
// callback_timeout for the whole exchange.
net::awaitable<CallResult> call(ImplPtr hub, CallbackUrl url, http::verb method,
                                std::vector<std::pair<std::string, std::string>> headers,
                                std::string body) {
  CallResult result;
  const bool loopback_only = hub->options.allowed_callback_hosts.empty();
  tcp::resolver resolver(hub->ioc);
  auto [rec, endpoints] = co_await resolver.async_resolve(url.host, url.port, use_nothrow);
  if (hub->stopping) co_return result;
  if (rec) {
    result.error = "cannot resolve " + url.host + ": " + rec.message();
    co_return result;
  }
  std::vector<tcp::endpoint> allowed;
  for (const auto& entry : endpoints) {
    if (!loopback_only || entry.endpoint().address().is_loopback()) {
      allowed.push_back(entry.endpoint());
    }
  }
  if (allowed.empty()) {
    result.error = url.host + " is not a loopback address (see --push-allow-host)";
    co_return result;
  }
  beast::tcp_stream stream(hub->ioc);
  Tracked<beast::tcp_stream> tracked(hub->calls, &stream);
  stream.expires_after(hub->options.callback_timeout);
  auto [cec, endpoint] = co_await stream.async_connect(allowed, use_nothrow);
  if (cec) {
    result.error = "cannot connect to " + url.host + ":" + url.port + ": " + cec.message();
    co_return result;
  }
  http::request<http::string_body> request(method, url.target, 11);
  request.set(http::field::host, url.port == "80" ? url.host : url.host + ":" + url.port);
  request.set(http::field::user_agent, "shardsync-hub");
  request.set(http::field::connection, "close");
  for (const auto& [name, value] : headers) request.set(name, value);
  if (method == http::verb::post) {
    request.body() = std::move(body);
    request.prepare_payload();
  }
  auto [wec, written] = co_await http::async_write(stream, request, use_nothrow);
  if (wec) {
    result.error = "cannot send to " + url.host + ": " + wec.message();
    co_return result;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(kMaxCallbackBody);
  auto [rdec, read] = co_await http::async_read(stream, buffer, parser, use_nothrow);
  if (rdec) {
    result.error = "no answer from " + url.host + ": " + rdec.message();
    co_return result;
  }
  result.status = parser.get().result_int();
  result.body = std::move(parser.get().body());
  error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  co_return result;
}

// Waits `delay` unless shutdown() comes first (then false).
net::awaitable<bool> pause(ImplPtr hub, std::chrono::milliseconds delay) {
  net::steady_timer timer(hub->ioc, delay);
  Tracked<net::steady_timer> tracked(hub->waits, &timer);
  co_await timer.async_wait(use_nothrow);
  co_return !hub->stopping;
}

// WebSub intent verification: GET callback?hub.mode=…&hub.topic=…&hub.challenge=…; only a
// 2xx whose body is the challenge confirms it.
net::awaitable<void> verify(ImplPtr hub, std::string mode, std::shared_ptr<Subscription> intent,
                            std::chrono::seconds lease) {
  const std::string challenge = random_challenge();
  CallbackUrl url = intent->url;
  url.target += url.target.find('?') == std::string::npos ? '?' : '&';
  url.target += "hub.mode=" + mode + "&hub.topic=" + form_encode(intent->topic) +
                "&hub.challenge=" + challenge;
  if (mode == "subscribe") url.target += "&hub.lease_seconds=" + std::to_string(lease.count());
  CallResult r = co_await call(hub, url, http::verb::get, {}, {});
  --hub->verifying;
  if (hub->stopping) co_return;
  std::string_view echoed = r.body;
  while (!echoed.empty() && (echoed.back() == '\n' || echoed.back() == '\r'))
    echoed.remove_suffix(1);
  if (r.status < 200 || r.status > 299 || echoed != challenge) {
    hub->say("warn", "hub: " + mode + " of " + intent->callback + " to " + intent->topic +
                         " not verified (" +
                         (r.status ? "status " + std::to_string(r.status) +
                                         (r.status < 300 ? ", challenge not echoed" : "")
                                   : r.error) +
                         ")");
    co_return;
  }
  const auto key = std::pair{intent->topic, intent->callback};
  if (mode == "unsubscribe") {
    if (auto it = hub->subscriptions.find(key); it != hub->subscriptions.end()) {
      it->second->removed = true;
      hub->subscriptions.erase(it);
    }
    hub->say("info", "hub: " + intent->callback + " unsubscribed from " + intent->topic);
  } else {
    intent->expires = Clock::now() + lease;
    if (auto it = hub->subscriptions.find(key); it != hub->subscriptions.end()) {
      // A renewal: keep what waits for delivery, take the new lease and secret.
      it->second->expires = intent->expires;
      it->second->secret = intent->secret;
    } else {
      hub->subscriptions.emplace(key, intent);
    }
    hub->say("info", "hub: " + intent->callback + " subscribed to " + intent->topic + " for " +
                         std::to_string(lease.count()) + " s");
  }
  hub->count_subscriptions();
}

// Delivers a subscriber's pending notifications in order, each with retries; a subscriber
// that never answers is dropped.
net::awaitable<void> deliver(ImplPtr hub, std::shared_ptr<Subscription> sub) {
  sub->delivering = true;
  while (!sub->pending.empty() && !sub->removed && !hub->stopping) {
    const std::shared_ptr<const Notification> n = sub->pending.front();
    std::vector<std::pair<std::string, std::string>> headers{
        {"Content-Type", "application/xml"},
        {"Link", "<" + n->hub + ">; rel=\"hub\", <" + n->topic + ">; rel=\"self\""}};
    if (!sub->secret.empty())
      headers.emplace_back("X-Hub-Signature", hub_signature(sub->secret, n->payload));
    std::chrono::milliseconds backoff = hub->options.initial_backoff;
    bool delivered = false;
    std::string why;
    for (int attempt = 1; attempt <= std::max(hub->options.max_attempts, 1); ++attempt) {
      CallResult r = co_await call(hub, sub->url, http::verb::post, headers, n->payload);
      if (hub->stopping || sub->removed) break;
      if (r.status >= 200 && r.status <= 299) {
        delivered = true;
        break;
      }
      why = r.status ? "status " + std::to_string(r.status) : r.error;
      if (attempt < hub->options.max_attempts) {
        if (!co_await pause(hub, backoff)) break;
        backoff *= 2;
      }
    }
    if (hub->stopping || sub->removed) break;
    if (!delivered) {
      hub->metrics.push_failures.fetch_add(1, std::memory_order_relaxed);
      hub->say("warn", "hub: dropping " + sub->callback + " (subscribed to " + sub->topic +
                           "): delivery failed " + std::to_string(hub->options.max_attempts) +
                           " times (" + why + ")");
      sub->removed = true;
      hub->subscriptions.erase({sub->topic, sub->callback});
      hub->count_subscriptions();
      break;
    }
    hub->metrics.push_deliveries.fetch_add(1, std::memory_order_relaxed);
    if (!sub->pending.empty() && sub->pending.front() == n) sub->pending.pop_front();
  }
  sub->delivering = false;
}

void report(const ImplPtr& hub, const char* what, std::exception_ptr e) {
  if (!e) return;
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    hub->say("error", std::string("hub: ") + what + " failed: " + ex.what());
  } catch (...) {
    hub->say("error", std::string("hub: ") + what + " failed");
  }
  hub->metrics.errors.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

std::string format_event(const Notification& n) {
  std::string out =
      "id: " + std::to_string(n.id) + "\nevent: " + std::string(channel_name(n.channel)) + "\n";
  std::string_view payload = n.payload;
  while (!payload.empty()) {
    const std::size_t nl = payload.find('\n');
    std::string_view line = payload.substr(0, nl);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    out += "data: ";
    out += line;
    out += '\n';
    if (nl == std::string_view::npos) break;
    payload.remove_prefix(nl + 1);
  }
  out += '\n';
  return out;
}

std::string event_stream_head(const EventStreamRequest& request, std::int64_t now_s) {
  return "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
         "Cache-Control: no-store\r\nX-Accel-Buffering: no\r\nConnection: close\r\n"
         "Link: <" +
         request.hub + ">; rel=\"hub\", <" + request.topic +
         ">; rel=\"self\"\r\nDate: " + http_date(now_s) + "\r\n\r\n";
}

std::optional<HubForm> parse_hub_form(std::string_view body) {
  HubForm form;
  while (!body.empty()) {
    const std::size_t amp = body.find('&');
    const std::string_view pair = body.substr(0, amp);
    body.remove_prefix(amp == std::string_view::npos ? body.size() : amp + 1);
    if (pair.empty()) continue;
    const std::size_t eq = pair.find('=');
    auto name = form_decode(pair.substr(0, eq));
    auto value =
        form_decode(eq == std::string_view::npos ? std::string_view() : pair.substr(eq + 1));
    if (!name || !value) return std::nullopt;
    if (*name == "hub.mode") {
      form.mode = std::move(*value);
    } else if (*name == "hub.topic") {
      form.topic = std::move(*value);
    } else if (*name == "hub.callback") {
      form.callback = std::move(*value);
    } else if (*name == "hub.secret") {
      form.secret = std::move(*value);
    } else if (*name == "hub.lease_seconds") {
      std::uint64_t lease = 0;
      const auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), lease);
      if (ec != std::errc() || end != value->data() + value->size()) return std::nullopt;
      form.lease_seconds = lease;
    }
  }
  return form;
}

std::string hub_signature(std::string_view secret, std::string_view body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &length);
  return "sha256=" + hex(digest, length);
}

PushHub::PushHub(net::io_context& ioc, const HttpOptions& options, Metrics& metrics, LogSink log)
    : impl_(std::make_shared<Impl>(ioc, options, metrics, std::move(log))) {}

PushHub::~PushHub() = default;

void PushHub::publish(const std::shared_ptr<const Notification>& n) {
  Impl& hub = *impl_;
  if (hub.stopping) return;
  hub.metrics.notifications.fetch_add(1, std::memory_order_relaxed);
  const auto now = Clock::now();
  for (auto it = hub.subscriptions.begin(); it != hub.subscriptions.end();) {
    const std::shared_ptr<Subscription> sub = it->second;
    if (sub->expires <= now) {
      hub.say("info", "hub: lease of " + sub->callback + " on " + sub->topic + " expired");
      sub->removed = true;
      it = hub.subscriptions.erase(it);
      continue;
    }
    ++it;
    if (sub->topic != n->topic) continue;
    sub->pending.push_back(n);
    while (sub->pending.size() > std::max<std::size_t>(hub.options.max_pending, 1)) {
      sub->pending.pop_front();
    }
    if (!sub->delivering) {
      sub->delivering = true;
      net::co_spawn(hub.ioc, deliver(impl_, sub),
                    [hub = impl_](std::exception_ptr e) { report(hub, "delivery", e); });
    }
  }
  hub.count_subscriptions();
  for (const auto& stream : hub.streams) {
    if (stream->collection != n->collection || stream->channel != n->channel) continue;
    if (n->id <= stream->enqueued_id || stream->overflow) continue;
    stream->queue.push_back(n);
    stream->queued_bytes += n->payload.size();
    stream->enqueued_id = n->id;
    if (stream->queued_bytes > hub.options.max_stream_backlog) {
      stream->overflow = true;
      stream->queue.clear();
    }
    stream->wake.cancel();
  }
}

ResponsePlan PushHub::handle_form(std::string_view body, std::string_view authorization,
                                  const Site& site, std::int64_t now_s) {
  Impl& hub = *impl_;
  const auto form = parse_hub_form(body);
  if (!form) return answer(400, "malformed form body", now_s);
  if (form->mode != "subscribe" && form->mode != "unsubscribe") {
    return answer(400, "hub.mode must be subscribe or unsubscribe", now_s);
  }
  // The topic: one of this server's channels.
  if (!form->topic.starts_with(site.base_url)) return answer(404, "unknown hub.topic", now_s);
  const auto topic = parse_topic_path("/" + form->topic.substr(site.base_url.size()));
  const bool known =
      topic && std::any_of(site.collections.begin(), site.collections.end(),
                           [&](const Collection& c) { return c.name == topic->first; });
  if (!known) return answer(404, "unknown hub.topic", now_s);
  // A protected collection's changes go only to who may read them.
  if (const auto token = hub.read_tokens.find(topic->first);
      token != hub.read_tokens.end() && !token->second.empty() &&
      !bearer_matches(authorization, token->second)) {
    return answer(403, "this topic needs the collection's read token", now_s);
  }
  auto url = parse_callback(form->callback);
  if (!url) return answer(400, "hub.callback must be an absolute http:// URL", now_s);
  if (!hub.host_allowed(url->host)) {
    return answer(403, "callback host " + url->host + " is not allowed (--push-allow-host)", now_s);
  }
  if (form->secret.size() > kMaxSecret)
    return answer(400, "hub.secret is longer than 200 bytes", now_s);
  const bool exists = hub.subscriptions.contains({form->topic, form->callback});
  if (form->mode == "subscribe" && !exists &&
      hub.subscriptions.size() + hub.verifying >= hub.options.max_subscriptions) {
    ResponsePlan busy = answer(503, "too many subscriptions", now_s);
    busy.headers.emplace_back("Retry-After", "60");
    return busy;
  }
  auto intent = std::make_shared<Subscription>();
  intent->topic = form->topic;
  intent->callback = form->callback;
  intent->secret = form->secret;
  intent->url = std::move(*url);
  std::chrono::seconds lease = hub.options.default_lease;
  if (form->lease_seconds) {
    lease = std::chrono::seconds(
        std::min<std::uint64_t>(std::max<std::uint64_t>(*form->lease_seconds, 1),
                                static_cast<std::uint64_t>(hub.options.max_lease.count())));
  }
  ++hub.verifying;
  net::co_spawn(hub.ioc, verify(impl_, form->mode, std::move(intent), lease),
                [hub = impl_](std::exception_ptr e) { report(hub, "verification", e); });
  return answer(202, "accepted; verifying intent", now_s);
}

std::shared_ptr<EventStream> PushHub::open_stream(const EventStreamRequest& request) {
  Impl& hub = *impl_;
  if (hub.stopping || hub.streams.size() >= hub.options.max_streams) return nullptr;
  auto stream = std::make_shared<EventStream>(hub.ioc);
  stream->collection = request.collection;
  stream->channel = request.channel;
  stream->enqueued_id = request.last_event_id;
  if (request.last_event_id > 0 && hub.notifier) {
    // What the reader missed while away; later events come through publish() (the replay
    // and them are told apart by id).
    auto missed = hub.notifier->replay(request.collection, request.channel, request.last_event_id,
                                       hub.options.max_replay);
    if (!missed) {
      hub.say("warn", "hub: replay for " + request.topic + ": " + missed.error().describe());
    } else {
      for (auto& n : *missed) {
        stream->queue.push_back(n);
        stream->queued_bytes += n->payload.size();
        stream->enqueued_id = std::max(stream->enqueued_id, n->id);
      }
    }
  }
  hub.streams.insert(stream);
  hub.metrics.event_streams.store(hub.streams.size(), std::memory_order_relaxed);
  return stream;
}

void PushHub::close_stream(const std::shared_ptr<EventStream>& stream) {
  impl_->streams.erase(stream);
  impl_->metrics.event_streams.store(impl_->streams.size(), std::memory_order_relaxed);
}

bool PushHub::take(EventStream& stream, std::string& out) {
  out.clear();
  for (const auto& n : stream.queue) out += format_event(*n);
  stream.queue.clear();
  stream.queued_bytes = 0;
  return !out.empty();
}

void PushHub::shutdown() {
  Impl& hub = *impl_;
  if (hub.stopping) return;
  hub.stopping = true;
  error_code ignored;
  for (beast::tcp_stream* call : hub.calls) call->socket().close(ignored);
  for (net::steady_timer* wait : hub.waits) wait->cancel();
  for (const auto& stream : hub.streams) stream->wake.cancel();
}

}  // namespace shardsync::server::detail
