#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "push_hub.hpp"
#include "shardsync/server/http_server.hpp"
#include "shardsync/server/notifier.hpp"
#include "shardsync/server/source.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using shardsync::test::TempDir;
using shardsync::test::write_file;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// ---- raw loopback HTTP, both directions ----

int connect_to(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

void send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads from `fd` until `done(received)` or the deadline; what was received.
std::string read_until(int fd, const std::function<bool(const std::string&)>& done,
                       std::chrono::milliseconds timeout) {
  std::string received;
  const auto deadline = Clock::now() + timeout;
  while (!done(received)) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= 0ms) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[16384];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    received.append(buf, static_cast<std::size_t>(n));
  }
  return received;
}

// A request with a complete head and Content-Length body.
bool complete_request(const std::string& data) {
  const auto end = data.find("\r\n\r\n");
  if (end == std::string::npos) return false;
  std::size_t length = 0;
  const auto cl = data.find("Content-Length: ");
  if (cl != std::string::npos && cl < end) length = std::stoul(data.substr(cl + 16));
  return data.size() >= end + 4 + length;
}

std::string header_of(const std::string& message, const std::string& name) {
  const auto end = message.find("\r\n\r\n");
  std::size_t pos = 0;
  while ((pos = message.find("\r\n", pos)) != std::string::npos && pos < end) {
    pos += 2;
    const auto colon = message.find(':', pos);
    if (colon == std::string::npos) break;
    std::string n = message.substr(pos, colon - pos);
    for (char& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (n == name) {
      auto value = message.substr(colon + 1, message.find("\r\n", colon) - colon - 1);
      while (!value.empty() && value.front() == ' ') value.erase(0, 1);
      return value;
    }
  }
  return {};
}

std::string query_value(const std::string& target, const std::string& name) {
  const auto at = target.find(name + "=");
  if (at == std::string::npos) return {};
  const auto start = at + name.size() + 1;
  return target.substr(start, target.find_first_of("& ", start) - start);
}

// A subscriber's callback endpoint: records every request; answers verification GETs by
// echoing the challenge (or not), POSTs with `post_status`.
class Callback {
 public:
  struct Request {
    std::string method, target, head, body;
  };

  Callback() {
    listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(listener_, 16) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~Callback() {
    stopping_ = true;
    ::shutdown(listener_, SHUT_RDWR);
    thread_.join();
    ::close(listener_);
  }

  std::string url(const std::string& path = "/cb") const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  std::atomic<bool> echo_challenge{true};
  std::atomic<int> post_status{200};

  // Waits until `count` requests matching `method` arrived; all of them.
  std::vector<Request> wait_for(const std::string& method, std::size_t count,
                                std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    arrived_.wait_for(lock, timeout, [&] { return matching(method).size() >= count; });
    return matching(method);
  }

 private:
  std::vector<Request> matching(const std::string& method) const {
    std::vector<Request> out;
    for (const Request& r : requests_) {
      if (r.method == method) out.push_back(r);
    }
    return out;
  }

  void serve() {
    while (!stopping_) {
      const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      const std::string data = read_until(fd, complete_request, 5s);
      Request r;
      r.method = data.substr(0, data.find(' '));
      const auto t = data.find(' ') + 1;
      r.target = data.substr(t, data.find(' ', t) - t);
      const auto end = data.find("\r\n\r\n");
      r.head = data.substr(0, end + 2);
      if (end != std::string::npos) r.body = data.substr(end + 4);
      std::string reply;
      if (r.method == "GET") {
        const std::string challenge = query_value(r.target, "hub.challenge");
        const std::string body = echo_challenge ? challenge : "nope";
        reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                "\r\nConnection: close\r\n\r\n" + body;
      } else {
        reply = "HTTP/1.1 " + std::to_string(post_status.load()) +
                " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      }
      send_all(fd, reply);
      ::close(fd);
      {
        std::lock_guard lock(mutex_);
        requests_.push_back(std::move(r));
      }
      arrived_.notify_all();
    }
  }

  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<Request> requests_;
};

// `shardsync serve --notify` in-process: a real Source over a temp directory, its notifier,
// and the HTTP server on a free loopback port.
class PushServer {
 public:
  explicit PushServer(PushOptions push = {}) {
    std::filesystem::create_directories(dir_ / "ckpt");
    SourceOptions so;
    so.collections.push_back({"ckpt", (dir_ / "ckpt").string()});
    so.state_dir = (dir_ / "state").string();
    so.rebuild_delay = 5ms;
    so.notifications = true;
    auto notifier = Notifier::open({so.state_dir});
    REQUIRE(notifier);
    notifier_ = std::move(*notifier);
    so.on_rebuild = [n = notifier_](const std::shared_ptr<const Site>& next, const Site* prev) {
      n->site_rebuilt(next, prev);
    };
    auto source = Source::open(so, metrics, {});
    REQUIRE(source);
    source_ = std::move(*source);
    HttpOptions http;
    http.notifier = notifier_;
    http.push = push;
    http.on_listening = [this](std::uint16_t port) {
      (void)source_->start("http://127.0.0.1:" + std::to_string(port) + "/");
    };
    server_ = std::make_unique<HttpServer>(
        http, [this] { return source_->site(); }, metrics,
        [this](std::string_view level, std::string_view message) {
          std::lock_guard lock(mutex_);
          log_.push_back(std::string(level) + " " + std::string(message));
        });
    thread_ = std::thread([this] { (void)server_->run(); });
    const auto deadline = Clock::now() + 10s;
    while (server_->port() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(2ms);
    REQUIRE(server_->port() != 0);
  }
  ~PushServer() {
    server_->stop();
    thread_.join();
    source_->stop();
  }

  std::uint16_t port() const { return server_->port(); }
  std::string base() const { return "http://127.0.0.1:" + std::to_string(port()) + "/"; }
  std::string topic() const { return topic_url(base(), "ckpt", Channel::changelist); }
  std::filesystem::path collection() const { return dir_ / "ckpt"; }
  bool logged(const std::string& text) {
    std::lock_guard lock(mutex_);
    for (const auto& line : log_) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }

  // One request on a fresh connection; the whole response (the server closes or sends a length).
  std::string request(const std::string& method, const std::string& target,
                      const std::string& body = {}, const std::string& extra = {}) {
    const int fd = connect_to(port());
    REQUIRE(fd >= 0);
    send_all(fd, method + " " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n" +
                     extra +
                     (body.empty() ? std::string()
                                   : "Content-Type: application/x-www-form-urlencoded\r\n"
                                     "Content-Length: " +
                                         std::to_string(body.size()) + "\r\n") +
                     "\r\n" + body);
    std::string reply = read_until(
        fd, [](const std::string&) { return false; }, 5s);
    ::close(fd);
    return reply;
  }

  std::string subscribe(const Callback& cb, const std::string& mode = "subscribe",
                        const std::string& secret = {}) {
    std::string form = "hub.mode=" + mode + "&hub.topic=" + topic() + "&hub.callback=" + cb.url() +
                       "&hub.lease_seconds=600";
    if (!secret.empty()) form += "&hub.secret=" + secret;
    return request("POST", "/.resourcesync/hub", form);
  }

  Metrics metrics;

 private:
  TempDir dir_;
  std::shared_ptr<Notifier> notifier_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> log_;
};

std::string hmac_sha256_hex(const std::string& key, const std::string& body) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(body.data()), body.size(), digest, &n);
  std::string out;
  char hex[3];
  for (unsigned i = 0; i < n; ++i) {
    std::snprintf(hex, sizeof hex, "%02x", digest[i]);
    out += hex;
  }
  return out;
}

bool wait_until(const std::function<bool()>& condition, std::chrono::milliseconds timeout = 10s) {
  const auto deadline = Clock::now() + timeout;
  while (!condition()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Subscribes `cb` and waits until the hub has verified it.
void subscribed(PushServer& server, Callback& cb, const std::string& secret = {}) {
  REQUIRE(server.subscribe(cb, "subscribe", secret).starts_with("HTTP/1.1 202"));
  REQUIRE(cb.wait_for("GET", 1).size() == 1);
  REQUIRE(wait_until([&] { return server.metrics.push_subscriptions.load() == 1; }));
}

}  // namespace

TEST_CASE("topic paths name a collection and a channel", "[server][push]") {
  const auto t = parse_topic_path("/ckpt/.resourcesync/changelist-notification");
  REQUIRE(t);
  CHECK(t->first == "ckpt");
  CHECK(t->second == Channel::changelist);
  CHECK(parse_topic_path("/ckpt/.resourcesync/framework-notification")->second ==
        Channel::framework);
  CHECK_FALSE(parse_topic_path("/ckpt/.resourcesync/changelist.xml"));
  CHECK_FALSE(parse_topic_path("/ckpt/x/.resourcesync/changelist-notification"));
  CHECK(topic_url("http://h/", "c", Channel::changelist) ==
        "http://h/c/.resourcesync/changelist-notification");
  CHECK(hub_url("http://h/") == "http://h/.resourcesync/hub");
}

TEST_CASE("hub forms are decoded and events are formatted line by line", "[server][push]") {
  const auto form = detail::parse_hub_form(
      "hub.mode=subscribe&hub.topic=http%3A%2F%2Fh%2Fc&hub.callback=http://x/a+b&"
      "hub.lease_seconds=30");
  REQUIRE(form);
  CHECK(form->mode == "subscribe");
  CHECK(form->topic == "http://h/c");
  CHECK(form->callback == "http://x/a b");
  CHECK(form->lease_seconds == 30u);
  CHECK_FALSE(detail::parse_hub_form("hub.mode=%zz"));
  CHECK_FALSE(detail::parse_hub_form("hub.lease_seconds=ten"));

  Notification n;
  n.id = 7;
  n.payload = "<a>\n<b/>\n</a>";
  CHECK(detail::format_event(n) ==
        "id: 7\nevent: changelist-notification\ndata: <a>\ndata: <b/>\ndata: </a>\n\n");
}

TEST_CASE("the Capability List advertises the channels and topics answer with Link headers",
          "[server][push]") {
  PushServer server;
  const std::string list = server.request("GET", "/ckpt/capabilitylist.xml");
  const std::string body = list.substr(list.find("\r\n\r\n") + 4);
  auto doc = shardsync::sitemap::parse_document(body);
  REQUIRE(doc);
  std::vector<std::string> found;
  for (const auto& e : doc->entries) {
    if (e.md->capability.ends_with("-notification"))
      found.push_back(e.md->capability + " " + e.loc);
  }
  CHECK(found ==
        std::vector<std::string>{
            "changelist-notification " + server.topic(),
            "framework-notification " + topic_url(server.base(), "ckpt", Channel::framework)});
  const std::string head = server.request("HEAD", "/ckpt/.resourcesync/changelist-notification");
  CHECK(head.starts_with("HTTP/1.1 200"));
  CHECK(header_of(head, "link") == "<" + server.base() + ".resourcesync/hub>; rel=\"hub\", <" +
                                       server.topic() + ">; rel=\"self\"");
  CHECK(server.request("GET", "/.resourcesync/hub").starts_with("HTTP/1.1 405"));
  CHECK(server.request("GET", "/nope/.resourcesync/changelist-notification")
            .starts_with("HTTP/1.1 404"));
}

TEST_CASE("a subscription is verified with a challenge and then receives signed notifications",
          "[server][push]") {
  PushServer server;
  Callback cb;
  subscribed(server, cb, "s3cret");
  const auto verification = cb.wait_for("GET", 1).front();
  CHECK(verification.target.starts_with("/cb?hub.mode=subscribe&hub.topic="));
  CHECK(query_value(verification.target, "hub.challenge").size() == 32);
  CHECK(query_value(verification.target, "hub.lease_seconds") == "600");

  write_file(server.collection() / "a.bin", "hello");
  const auto posts = cb.wait_for("POST", 1);
  REQUIRE(posts.size() == 1);
  const auto& post = posts.front();
  CHECK(header_of(post.head, "content-type") == "application/xml");
  CHECK(header_of(post.head, "link").find("rel=\"self\"") != std::string::npos);
  CHECK(header_of(post.head, "x-hub-signature") ==
        "sha256=" + hmac_sha256_hex("s3cret", post.body));
  auto doc = shardsync::sitemap::parse_document(post.body);
  REQUIRE(doc);
  CHECK(doc->header.md.capability == "changelist-notification");
  REQUIRE(doc->header.find_link("up"));
  CHECK(doc->header.find_link("up")->href == server.base() + "ckpt/capabilitylist.xml");
  REQUIRE(doc->entries.size() == 1);
  CHECK(doc->entries[0].loc == server.base() + "ckpt/a.bin");
  CHECK(doc->entries[0].md->change == shardsync::sitemap::ChangeType::created);
  CHECK(doc->entries[0].md->length == 5u);
  CHECK(doc->entries[0].lastmod.has_value());

  SECTION("unsubscribing stops deliveries") {
    REQUIRE(server.subscribe(cb, "unsubscribe").starts_with("HTTP/1.1 202"));
    REQUIRE(cb.wait_for("GET", 2).size() == 2);
    REQUIRE(wait_until([&] { return server.metrics.push_subscriptions.load() == 0; }));
    std::filesystem::remove(server.collection() / "a.bin");
    // The deletion is notified (the hub counts it) but nobody receives it.
    REQUIRE(wait_until([&] { return server.metrics.notifications.load() >= 3; }));
    std::this_thread::sleep_for(200ms);  // give a wrong delivery time to arrive
    CHECK(cb.wait_for("POST", 2, 0ms).size() == 1);
  }
}

TEST_CASE("a wrong echo of the challenge does not activate a subscription", "[server][push]") {
  PushServer server;
  Callback cb;
  cb.echo_challenge = false;
  REQUIRE(server.subscribe(cb).starts_with("HTTP/1.1 202"));
  REQUIRE(cb.wait_for("GET", 1).size() == 1);
  REQUIRE(wait_until([&] { return server.logged("not verified"); }));
  CHECK(server.metrics.push_subscriptions.load() == 0);
  write_file(server.collection() / "a.bin", "hello");
  REQUIRE(wait_until([&] { return server.metrics.notifications.load() >= 1; }));
  std::this_thread::sleep_for(200ms);
  CHECK(cb.wait_for("POST", 1, 0ms).empty());
}

TEST_CASE("hub requests are checked", "[server][push]") {
  PushServer server;
  Callback cb;
  const auto post = [&](const std::string& form) {
    return server.request("POST", "/.resourcesync/hub", form).substr(0, 12);
  };
  CHECK(post("hub.mode=subscribe&hub.topic=" + server.base() + "other&hub.callback=" + cb.url()) ==
        "HTTP/1.1 404");
  CHECK(post("hub.mode=publish&hub.topic=" + server.topic() + "&hub.callback=" + cb.url()) ==
        "HTTP/1.1 400");
  CHECK(post("hub.mode=subscribe&hub.topic=" + server.topic() + "&hub.callback=ftp://x/") ==
        "HTTP/1.1 400");
  // Callbacks elsewhere than loopback are refused at connection time by default.
  CHECK(post("hub.mode=subscribe&hub.topic=" + server.topic() +
             "&hub.callback=http://192.0.2.1/cb") == "HTTP/1.1 202");
  REQUIRE(wait_until([&] { return server.logged("not a loopback address"); }));
  CHECK(server.metrics.push_subscriptions.load() == 0);
}

TEST_CASE("a dead callback is retried, then dropped, without stalling the server",
          "[server][push]") {
  PushOptions push;
  push.max_attempts = 3;
  push.initial_backoff = 300ms;
  PushServer server(push);
  Callback cb;
  subscribed(server, cb);
  cb.post_status = 503;
  write_file(server.collection() / "a.bin", "hello");
  REQUIRE(cb.wait_for("POST", 1).size() == 1);
  // Between attempts the server answers at once.
  const auto start = Clock::now();
  CHECK(server.request("GET", "/ckpt/capabilitylist.xml").starts_with("HTTP/1.1 200"));
  CHECK(Clock::now() - start < 250ms);
  REQUIRE(wait_until([&] { return server.logged("dropping"); }));
  CHECK(cb.wait_for("POST", 3, 0ms).size() == 3);
  CHECK(server.metrics.push_subscriptions.load() == 0);
  CHECK(server.metrics.push_failures.load() == 1);
  write_file(server.collection() / "b.bin", "more");
  REQUIRE(wait_until([&] { return server.metrics.notifications.load() >= 4; }));
  std::this_thread::sleep_for(200ms);
  CHECK(cb.wait_for("POST", 4, 0ms).size() == 3);
}

TEST_CASE("an event stream receives changes and Last-Event-ID replays what was missed",
          "[server][push]") {
  PushServer server;
  const auto open_stream = [&](const std::string& last_event_id) {
    const int fd = connect_to(server.port());
    REQUIRE(fd >= 0);
    send_all(fd,
             "GET /ckpt/.resourcesync/changelist-notification HTTP/1.1\r\nHost: x\r\n"
             "Accept: text/event-stream\r\n" +
                 (last_event_id.empty() ? "" : "Last-Event-ID: " + last_event_id + "\r\n") +
                 "\r\n");
    return fd;
  };
  const int fd = open_stream("");
  const std::string head = read_until(
      fd, [](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }, 5s);
  REQUIRE(head.starts_with("HTTP/1.1 200"));
  CHECK(header_of(head, "content-type").starts_with("text/event-stream"));
  REQUIRE(wait_until([&] { return server.metrics.event_streams.load() == 1; }));

  write_file(server.collection() / "a.bin", "one");
  std::string events = read_until(
      fd, [](const std::string& s) { return s.find("</urlset>\n\n") != std::string::npos; }, 10s);
  CHECK(events.find("id: 1\nevent: changelist-notification\n") != std::string::npos);
  CHECK(events.find("data: <urlset") != std::string::npos);
  CHECK(events.find("ckpt/a.bin</loc>") != std::string::npos);
  ::close(fd);

  // Two changes while nobody listens; a reader back with Last-Event-ID: 1 gets both.
  write_file(server.collection() / "b.bin", "two");
  REQUIRE(wait_until([&] {
    return server.request("GET", "/ckpt/.resourcesync/changelist.xml").find("b.bin") !=
           std::string::npos;
  }));
  std::filesystem::remove(server.collection() / "a.bin");
  REQUIRE(wait_until([&] {
    return server.request("GET", "/ckpt/.resourcesync/changelist.xml").find("deleted") !=
           std::string::npos;
  }));
  const int again = open_stream("1");
  const std::string replayed = read_until(
      again,
      [](const std::string& s) {
        return s.find("id: 3\n") != std::string::npos &&
               s.rfind("</urlset>\n\n") > s.find("id: 3\n");
      },
      10s);
  ::close(again);
  CHECK(replayed.find("id: 1\n") == std::string::npos);
  CHECK(replayed.find("b.bin") != std::string::npos);
  CHECK(replayed.find("change=\"deleted\"") != std::string::npos);
  CHECK(replayed.find("id: 3\n") != std::string::npos);
}

TEST_CASE("event streams end on shutdown", "[server][push]") {
  auto server = std::make_unique<PushServer>();
  const int fd = connect_to(server->port());
  send_all(fd,
           "GET /ckpt/.resourcesync/framework-notification HTTP/1.1\r\nHost: x\r\n"
           "Accept: text/event-stream\r\n\r\n");
  REQUIRE(wait_until([&] { return server->metrics.event_streams.load() == 1; }));
  const auto start = Clock::now();
  server.reset();
  CHECK(Clock::now() - start < 2s);
  const std::string rest = read_until(
      fd, [](const std::string&) { return false; }, 2s);
  CHECK(rest.starts_with("HTTP/1.1 200"));
  ::close(fd);
}

TEST_CASE("event streams are bounded in number and in what a reader may leave unread",
          "[server][push]") {
  PushOptions push;
  push.max_streams = 1;
  push.max_stream_backlog = 64;  // less than one notification: the stream must go
  PushServer server(push);
  const std::string request =
      "GET /ckpt/.resourcesync/changelist-notification HTTP/1.1\r\nHost: x\r\n"
      "Accept: text/event-stream\r\n\r\n";
  const int first = connect_to(server.port());
  send_all(first, request);
  REQUIRE(wait_until([&] { return server.metrics.event_streams.load() == 1; }));
  const int second = connect_to(server.port());
  send_all(second, request);
  const std::string refused = read_until(
      second, [](const std::string&) { return false; }, 5s);
  ::close(second);
  CHECK(refused.starts_with("HTTP/1.1 503"));

  write_file(server.collection() / "a.bin", "hello");
  const std::string got = read_until(
      first, [](const std::string&) { return false; }, 10s);  // until the server closes
  ::close(first);
  CHECK(got.starts_with("HTTP/1.1 200"));
  CHECK(got.find("id: ") == std::string::npos);
  CHECK(server.logged("too slow"));
  CHECK(server.metrics.event_streams.load() == 0);
}

TEST_CASE("a long burst is split, and replays older than the history come from the change log",
          "[server][push]") {
  TempDir dir;
  auto log = ChangeLog::open(dir.path().string());
  REQUIRE(log);
  REQUIRE((*log)->ensure_collection("ckpt"));
  SiteOptions options;
  options.base_url = "http://h/";
  options.collections = {{"ckpt", (dir / "data").string()}};
  options.notifications = true;
  auto notifier = Notifier::open({dir.path().string(), 2, 1});  // 2 entries each, history 1
  REQUIRE(notifier);
  std::vector<std::shared_ptr<const Notification>> heard;
  (*notifier)->add_listener(
      [&](const std::shared_ptr<const Notification>& n) { heard.push_back(n); });

  auto first = build_site(**log, options);
  REQUIRE(first);
  (*notifier)->site_rebuilt(*first, nullptr);
  CHECK(heard.empty());  // the first build only notes the position
  for (int i = 0; i < 3; ++i) {
    ResourceState s;
    s.path = "f" + std::to_string(i);
    s.length = 1;
    s.sha256 = std::string(64, 'a');
    REQUIRE((*log)->record("ckpt", shardsync::sitemap::ChangeType::created, s));
  }
  auto second = build_site(**log, options, first->get());
  REQUIRE(second);
  (*notifier)->site_rebuilt(*second, first->get());
  REQUIRE(heard.size() == 3);  // changes 1-2, change 3, and the framework notification
  CHECK(heard[0]->channel == Channel::changelist);
  CHECK(heard[0]->since == 0);
  CHECK(heard[0]->id == 2);
  CHECK(heard[1]->since == 2);
  CHECK(heard[1]->id == 3);
  CHECK(heard[2]->channel == Channel::framework);
  CHECK(heard[2]->payload.find("capability=\"changelist\" change=\"updated\"") !=
        std::string::npos);
  CHECK((*notifier)->position("ckpt") == 3);

  // The history keeps only change 3's notification: from 0, the log has to answer.
  auto replayed = (*notifier)->replay("ckpt", Channel::changelist, 0);
  REQUIRE(replayed);
  REQUIRE(replayed->size() == 2);
  CHECK((*replayed)[0]->payload == heard[0]->payload);
  CHECK((*replayed)[1]->payload == heard[1]->payload);
  auto recent = (*notifier)->replay("ckpt", Channel::changelist, 2);
  REQUIRE(recent);
  REQUIRE(recent->size() == 1);
  CHECK((*recent)[0] == heard[1]);  // the very object from the history
  CHECK((*notifier)->replay("ckpt", Channel::changelist, 3)->empty());
}
