#include "shardsync/server/http_server.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include "http_test_site.hpp"
#include "shardsync/server/errc.hpp"

using namespace shardsync::server;
using shardsync::test::TestSite;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

struct CurlGlobal {
  CurlGlobal() { curl_global_init(CURL_GLOBAL_ALL); }
  ~CurlGlobal() { curl_global_cleanup(); }
};
const CurlGlobal curl_global;

// A server running run() on its own thread, over a snapshot the test can swap.
class Running {
 public:
  Running(HttpOptions options, std::shared_ptr<const Site> site) : site_(std::move(site)) {
    server_ = std::make_unique<HttpServer>(
        std::move(options),
        [this] {
          std::lock_guard lock(mutex_);
          return site_;
        },
        metrics,
        [this](std::string_view level, std::string_view message) {
          std::lock_guard lock(mutex_);
          log_.push_back(std::string(level) + " " + std::string(message));
        });
    thread_ = std::thread([this] {
      result_ = server_->run();
      finished_ = true;
    });
    const auto deadline = Clock::now() + 10s;
    while (server_->port() == 0 && Clock::now() < deadline && !done()) {
      std::this_thread::sleep_for(5ms);
    }
    if (server_->port() == 0) stop();  // a joinable thread must not outlive a failed REQUIRE
    REQUIRE(server_->port() != 0);
  }
  ~Running() { stop(); }

  // stop() and wait for run() to return; how long that took.
  std::chrono::milliseconds stop() {
    const auto start = Clock::now();
    if (thread_.joinable()) {
      server_->stop();
      thread_.join();
    }
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  }
  bool done() const { return finished_.load(); }

  void set_site(std::shared_ptr<const Site> site) {
    std::lock_guard lock(mutex_);
    site_ = std::move(site);
  }
  std::uint16_t port() const { return server_->port(); }
  std::string url(const std::string& path, const std::string& scheme = "http") const {
    return scheme + "://127.0.0.1:" + std::to_string(port()) + path;
  }
  const shardsync::Result<void>& result() const { return result_; }
  std::vector<std::string> log() {
    std::lock_guard lock(mutex_);
    return log_;
  }

  Metrics metrics;

 private:
  std::mutex mutex_;
  std::shared_ptr<const Site> site_;
  std::vector<std::string> log_;
  std::unique_ptr<HttpServer> server_;
  shardsync::Result<void> result_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

// ---- libcurl ----

struct Call {
  std::string method = "GET";
  std::vector<std::string> headers = {};
  std::string cainfo = {};  // https: trust this certificate
  curl_off_t max_recv_speed = 0;
  std::optional<std::string> upload =
      std::nullopt;  // PUT body (streamed, Expect: 100-continue past 1 MiB)
  long timeout_ms = 20'000;
  std::atomic<std::uint64_t>* received = nullptr;  // progress, for shutdown tests
};

struct Reply {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::map<std::string, std::string> headers;  // lower-case names, of the final response
  std::string body;
  std::string error;
};

struct Transfer {
  Reply* reply;
  const Call* call;
  std::string_view upload;
};

std::size_t on_body(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  t->reply->body.append(data, size * n);
  if (t->call->received) *t->call->received += size * n;
  return size * n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  std::string line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.starts_with("HTTP/")) {
    t->reply->headers.clear();
  } else if (const auto colon = line.find(':'); colon != std::string::npos) {
    std::string name = line.substr(0, colon);
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    std::size_t start = colon + 1;
    while (start < line.size() && line[start] == ' ') ++start;
    t->reply->headers[name] = line.substr(start);
  }
  return size * n;
}

std::size_t on_read(char* out, std::size_t size, std::size_t n, void* user) {
  auto* t = static_cast<Transfer*>(user);
  const std::size_t k = std::min(size * n, t->upload.size());
  std::memcpy(out, t->upload.data(), k);
  t->upload.remove_prefix(k);
  return k;
}

Reply fetch(const std::string& url, const Call& call = {}) {
  Reply reply;
  Transfer transfer{&reply, &call, {}};
  CURL* curl = curl_easy_init();
  REQUIRE(curl);
  char error[CURL_ERROR_SIZE] = {};
  curl_slist* list = nullptr;
  for (const std::string& h : call.headers) list = curl_slist_append(list, h.c_str());
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(curl, CURLOPT_HEADERDATA, &transfer);
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, call.timeout_ms);
  curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
  if (call.method == "HEAD") {
    curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
  } else if (call.upload) {
    transfer.upload = *call.upload;
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_read);
    curl_easy_setopt(curl, CURLOPT_READDATA, &transfer);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(call.upload->size()));
  } else if (call.method != "GET") {
    curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, call.method.c_str());
  }
  if (!call.cainfo.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, call.cainfo.c_str());
  if (call.max_recv_speed) {
    curl_easy_setopt(curl, CURLOPT_MAX_RECV_SPEED_LARGE, call.max_recv_speed);
  }
  reply.code = curl_easy_perform(curl);
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply.status);
  reply.error = error;
  curl_slist_free_all(list);
  curl_easy_cleanup(curl);
  return reply;
}

// ---- raw sockets ----

// `receive_buffer` > 0: a small SO_RCVBUF, set before connecting (after, it would shrink a
// window already advertised and stall the connection).
int connect_to(std::uint16_t port, int receive_buffer = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  if (receive_buffer > 0) {
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  return fd;
}

void send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the server may close first: what it answered is what counts
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

struct RawReply {
  std::string data;
  bool closed = false;  // EOF or reset seen
};

// Reads until the peer closes or `timeout` passes.
RawReply read_until_closed(int fd, std::chrono::milliseconds timeout) {
  RawReply r;
  const auto deadline = Clock::now() + timeout;
  char buf[65536];
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      r.closed = true;
      break;
    }
    r.data.append(buf, static_cast<std::size_t>(n));
  }
  return r;
}

RawReply exchange(std::uint16_t port, std::string_view request,
                  std::chrono::milliseconds timeout = 5000ms) {
  const int fd = connect_to(port);
  send_all(fd, request);
  RawReply r = read_until_closed(fd, timeout);
  ::close(fd);
  return r;
}

std::size_t count(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t i = haystack.find(needle); i != std::string_view::npos;
       i = haystack.find(needle, i + 1)) {
    ++n;
  }
  return n;
}

std::string pattern_bytes(std::size_t size) {
  std::string s(size, '\0');
  std::uint32_t x = 2463534242u;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xff);
  }
  return s;
}

HttpOptions fast_options() {
  HttpOptions o;
  o.header_timeout = 1s;
  o.idle_timeout = 1s;
  o.body_timeout = 2s;
  o.send_timeout = 5s;
  o.shutdown_grace = 10s;
  return o;
}

struct Fixture {
  TestSite site;
  std::string small = "small file contents\n";
  std::string large = pattern_bytes(16 << 20);
  Fixture() {
    site.add_standard_documents();
    site.add_file("a.bin", small, "application/x-test");
    site.add_file("dir/large.bin", large);
  }
};

}  // namespace

TEST_CASE("documents and resources over loopback", "[http][server]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const auto& doc = *f.site.site().documents.at("/ckpt/.resourcesync/resourcelist.xml");

  SECTION("a document, in each coding") {
    Reply r = fetch(server.url("/ckpt/.resourcesync/resourcelist.xml"));
    CHECK(r.status == 200);
    CHECK(r.body == doc.body);
    CHECK(r.headers["content-type"] == "application/xml");
    CHECK(r.headers["content-length"] == std::to_string(doc.body.size()));
    CHECK(r.headers["vary"] == "Accept-Encoding");
    CHECK(r.headers["cache-control"] == "no-cache");
    CHECK(r.headers.count("date") == 1);
    r = fetch(server.url("/ckpt/.resourcesync/resourcelist.xml"),
              {.headers = {"Accept-Encoding: gzip, zstd"}});
    CHECK(r.headers["content-encoding"] == "zstd");
    CHECK(r.body == doc.zstd);
    r = fetch(server.url("/ckpt/.resourcesync/resourcelist.xml"),
              {.headers = {"Accept-Encoding: gzip"}});
    CHECK(r.headers["content-encoding"] == "gzip");
    CHECK(r.body == doc.gzip);
    r = fetch(server.url("/.well-known/resourcesync"));
    CHECK(r.status == 200);
    r = fetch(server.url("/ckpt/.resourcesync/changelist-00001.xml"));
    CHECK(r.headers["cache-control"] == "max-age=31536000, immutable");
  }
  SECTION("a resource") {
    Reply r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Accept-Encoding: gzip, zstd"}});
    CHECK(r.status == 200);
    CHECK(r.body == f.small);
    CHECK(r.headers["content-type"] == "application/x-test");
    CHECK(r.headers["content-length"] == std::to_string(f.small.size()));
    CHECK(r.headers.count("content-encoding") == 0);
    CHECK(r.headers["etag"] == f.site.site().resources.at("ckpt/a.bin").etag);
    CHECK(r.headers["link"] ==
          "<http://127.0.0.1:8080/ckpt/capabilitylist.xml>; rel=\"resourcesync\"");
    CHECK(r.headers["accept-ranges"] == "bytes");
    CHECK(r.headers.count("last-modified") == 1);
  }
  SECTION("HEAD") {
    Reply r = fetch(server.url("/ckpt/dir/large.bin"), {.method = "HEAD"});
    CHECK(r.status == 200);
    CHECK(r.body.empty());
    CHECK(r.headers["content-length"] == std::to_string(f.large.size()));
  }
  SECTION("a large file whole and in part (sendfile)") {
    Reply r = fetch(server.url("/ckpt/dir/large.bin"));
    CHECK(r.status == 200);
    CHECK(r.body.size() == f.large.size());
    CHECK(r.body == f.large);
    r = fetch(server.url("/ckpt/dir/large.bin"), {.headers = {"Range: bytes=5000000-9999999"}});
    CHECK(r.status == 206);
    CHECK(r.headers["content-range"] == "bytes 5000000-9999999/" + std::to_string(f.large.size()));
    CHECK(r.body == f.large.substr(5000000, 5000000));
  }
  SECTION("ranges, If-Range and conditional requests") {
    const std::string etag = f.site.site().resources.at("ckpt/a.bin").etag;
    Reply r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=6-9"}});
    CHECK(r.status == 206);
    CHECK(r.body == "file");
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=-5"}});
    CHECK(r.body == "ents\n");
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=0-1,3-4"}});
    CHECK(r.status == 200);
    CHECK(r.body == f.small);
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=1000-"}});
    CHECK(r.status == 416);
    CHECK(r.headers["content-range"] == "bytes */" + std::to_string(f.small.size()));
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=6-9", "If-Range: " + etag}});
    CHECK(r.status == 206);
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Range: bytes=6-9", "If-Range: \"old\""}});
    CHECK(r.status == 200);
    CHECK(r.body == f.small);
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"If-None-Match: " + etag}});
    CHECK(r.status == 304);
    CHECK(r.body.empty());
    CHECK(r.headers["etag"] == etag);
    const std::string last_modified = fetch(server.url("/ckpt/a.bin")).headers["last-modified"];
    r = fetch(server.url("/ckpt/a.bin"), {.headers = {"If-Modified-Since: " + last_modified}});
    CHECK(r.status == 304);
    r = fetch(server.url("/ckpt/a.bin"),
              {.headers = {"Range: bytes=6-9", "If-Range: " + last_modified}});
    CHECK(r.status == 206);
  }
  SECTION("errors and /metrics") {
    CHECK(fetch(server.url("/ckpt/none.bin")).status == 404);
    CHECK(fetch(server.url("/ckpt/a.bin"), {.method = "POST"}).status == 405);
    CHECK(fetch(server.url("/ckpt/a.bin"), {.method = "PUT"}).status == 405);
    CHECK(fetch(server.url("/ckpt/a.bin"), {.method = "DELETE"}).status == 405);
    const Reply m = fetch(server.url("/metrics"));
    CHECK(m.status == 200);
    CHECK(m.body.find("shardsync_http_requests_total 5\n") != std::string::npos);
    CHECK(m.body.find("shardsync_http_responses_total{code=\"4xx\"} 4\n") != std::string::npos);
    CHECK(m.body.find("shardsync_http_connections_open ") != std::string::npos);
    CHECK(server.metrics.bytes_sent.load() > 0);
  }
}

TEST_CASE("with sendfile off, files go out through pread and write", "[http][server]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.sendfile = false;
  Running server(options, f.site.snapshot());
  Reply r = fetch(server.url("/ckpt/dir/large.bin"));
  CHECK(r.status == 200);
  CHECK(r.body == f.large);
  r = fetch(server.url("/ckpt/dir/large.bin"), {.headers = {"Range: bytes=-3000000"}});
  CHECK(r.status == 206);
  CHECK(r.body == f.large.substr(f.large.size() - 3000000));
}

TEST_CASE("a snapshot swapped in is served from the next request", "[http][server]") {
  Fixture f;
  Running server(fast_options(), nullptr);
  CHECK(fetch(server.url("/ckpt/a.bin")).status == 503);
  server.set_site(f.site.snapshot());
  CHECK(fetch(server.url("/ckpt/a.bin")).status == 200);
}

TEST_CASE("framing attacks get 400 and a closed connection", "[http][server][hardening]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const std::string smuggled = "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n\r\n";
  using Row = std::pair<const char*, std::string>;
  const auto [name, request] = GENERATE_COPY(values<Row>({
      {"TE not ending in chunked (the body would be the next request)",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n" + smuggled},
      {"TE chunked, identity",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n" +
           smuggled},
      {"TE chunked then Content-Length",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: "
       "5\r\n\r\n0\r\n\r\n" +
           smuggled},
      {"Content-Length then TE chunked",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n" +
           smuggled},
      {"TE gzip with Content-Length",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Length: "
       "5\r\n\r\nhello" +
           smuggled},
      {"chunked in HTTP/1.0",
       "GET /ckpt/a.bin HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
           smuggled},
      {"no Host in HTTP/1.1", "GET /ckpt/a.bin HTTP/1.1\r\n\r\n" + smuggled},
      {"two Host fields", "GET /ckpt/a.bin HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n" + smuggled},
      {"obs-fold", "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nX-A: b\r\n c\r\n\r\n" + smuggled},
      {"HTTP/1.2", "GET /ckpt/a.bin HTTP/1.2\r\nHost: x\r\n\r\n" + smuggled},
      {"space before colon", "GET /ckpt/a.bin HTTP/1.1\r\nHost : x\r\n\r\n" + smuggled},
      {"bad Content-Length", "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\n"},
      {"chunk size overflow in a GET body",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "100000000000000000000\r\nx\r\n0\r\n\r\n" +
           smuggled},
      {"chunk size 0_2e in a GET body",
       "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0_2e\r\n\r\n" +
           smuggled},
  }));
  CAPTURE(name);
  const RawReply r = exchange(server.port(), request);
  CHECK(r.data.starts_with("HTTP/1.1 400 "));
  CHECK(r.data.find("Connection: close\r\n") != std::string::npos);
  CHECK(count(r.data, "HTTP/1.1 ") == 1);  // the smuggled request was never answered
  CHECK(r.closed);
}

TEST_CASE("other transfer codings before chunked are not implemented",
          "[http][server][hardening]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const RawReply r = exchange(server.port(),
                              "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, "
                              "chunked\r\n\r\n0\r\n\r\n");
  CHECK(r.data.starts_with("HTTP/1.1 501 "));
  CHECK(r.closed);
}

TEST_CASE("oversized headers and bodies are refused and the connection closed",
          "[http][server][hardening]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.max_header_bytes = 4096;
  Running server(options, f.site.snapshot());

  SECTION("a header section over max_header_bytes") {
    const std::string request =
        "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(5000, 'a') + "\r\n\r\n";
    const RawReply r = exchange(server.port(), request);
    CHECK(r.data.starts_with("HTTP/1.1 431 "));
    CHECK(r.closed);
  }
  SECTION("many small header lines over the limit") {
    std::string request = "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 1000; ++i) request += "X-" + std::to_string(i) + ": y\r\n";
    const RawReply r = exchange(server.port(), request + "\r\n");
    CHECK(r.data.starts_with("HTTP/1.1 431 "));
    CHECK(r.closed);
  }
  SECTION("a GET body over the small limit, declared") {
    const std::string request =
        "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
        std::string(100000, 'b');
    const RawReply r = exchange(server.port(), request);
    CHECK(r.data.starts_with("HTTP/1.1 413 "));
    CHECK(r.closed);
  }
  SECTION("a chunked GET body over the small limit") {
    std::string request =
        "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 20; ++i) request += "400\r\n" + std::string(1024, 'c') + "\r\n";
    const RawReply r = exchange(server.port(), request + "0\r\n\r\n");
    CHECK(r.data.starts_with("HTTP/1.1 413 "));
    CHECK(r.closed);
  }
  SECTION("a small GET body is read and dropped; the connection stays usable") {
    const RawReply r = exchange(server.port(),
                                "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
                                "helloGET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nConnection: "
                                "close\r\n\r\n");
    CHECK(count(r.data, "HTTP/1.1 200 OK\r\n") == 2);
    CHECK(count(r.data, f.small) == 2);
    CHECK(r.closed);
  }
}

TEST_CASE("pipelined requests are answered in order", "[http][server]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  std::string request;
  for (int i = 0; i < 10; ++i) request += "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n\r\n";
  // An HTTP/1.0 client asking to keep the connection, after a stray empty line.
  request += "\r\nGET /ckpt/a.bin HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
  request += "HEAD /ckpt/none HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
  const RawReply r = exchange(server.port(), request);
  CHECK(count(r.data, "HTTP/1.1 200 OK\r\n") == 11);
  CHECK(count(r.data, "Connection: keep-alive\r\n") == 1);
  CHECK(r.data.find("HTTP/1.1 404 Not Found\r\n") != std::string::npos);
  CHECK(r.data.ends_with("\r\n\r\n"));  // HEAD: no body
  CHECK(r.closed);
}

TEST_CASE("encoded traversal and odd targets over the wire", "[http][server][hardening]") {
  Fixture f;
  shardsync::test::write_file(f.site.root() / "secret.txt", "top secret");
  Running server(fast_options(), f.site.snapshot());
  const std::string target =
      GENERATE(as<std::string>{}, "/../secret.txt", "/ckpt/../secret.txt",
               "/ckpt/%2e%2e/secret.txt", "/ckpt/%2E%2E%2Fsecret.txt",
               "/ckpt/a/..%2f..%2fsecret.txt", "/ckpt/a.bin%00", "/ckpt/%5c..%5csecret.txt",
               "/ckpt//a.bin", "/ckpt/./a.bin", "/ckpt/foo%", "/ckpt\\..\\secret.txt");
  CAPTURE(target);
  const RawReply r = exchange(
      server.port(), "GET " + target + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(r.data.starts_with("HTTP/1.1 400 "));
  CHECK(r.data.find("top secret") == std::string::npos);
}

TEST_CASE("methods Beast does not know are not implemented", "[http][server][hardening]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const RawReply r =
      exchange(server.port(), "get /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK(r.data.starts_with("HTTP/1.1 501 "));
}

TEST_CASE("symlinks out of the collection are never served", "[http][server][hardening]") {
  Fixture f;
  shardsync::test::write_file(f.site.root() / "secret.txt", "top secret");
  std::filesystem::create_symlink(f.site.root() / "secret.txt", f.site.collection_dir() / "leak");
  std::filesystem::create_symlink(f.site.root(), f.site.collection_dir() / "up");
  f.site.publish("leak");
  f.site.publish("up/secret.txt");
  Running server(fast_options(), f.site.snapshot());
  for (const char* path : {"/ckpt/leak", "/ckpt/up/secret.txt"}) {
    const Reply r = fetch(server.url(path));
    CHECK(r.status == 404);
    CHECK(r.body.find("top secret") == std::string::npos);
  }
}

TEST_CASE("a file changed after the snapshot gets 503 and Retry-After", "[http][server]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  CHECK(fetch(server.url("/ckpt/a.bin")).status == 200);
  shardsync::test::write_file(f.site.collection_dir() / "a.bin", "new contents, other hash");
  Reply r = fetch(server.url("/ckpt/a.bin"));
  CHECK(r.status == 503);
  CHECK(r.headers["retry-after"] == "1");
  CHECK(r.body.find("new contents") == std::string::npos);
}

TEST_CASE("a file modified while being sent is cut short, not spliced", "[http][server]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  std::atomic<std::uint64_t> received{0};
  auto download = std::async(std::launch::async, [&] {
    return fetch(server.url("/ckpt/dir/large.bin"),
                 {.max_recv_speed = 8 << 20, .received = &received});
  });
  const auto deadline = Clock::now() + 5s;
  while (received < (1u << 20) && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  // An in-place write: same inode, new mtime (the open fd sees it).
  const auto file = f.site.collection_dir() / "dir/large.bin";
  std::filesystem::last_write_time(file, std::filesystem::last_write_time(file) + 5s);
  const Reply r = download.get();
  CHECK(r.code != CURLE_OK);
  CHECK(r.body.size() < f.large.size());
}

TEST_CASE("slowloris: a header that never ends is cut at header_timeout",
          "[http][server][hardening]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const int fd = connect_to(server.port());
  send_all(fd, "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n");
  const auto start = Clock::now();
  RawReply r;
  for (int i = 0; i < 40 && !r.closed; ++i) {
    send_all(fd, "X-" + std::to_string(i) + ": y\r\n");
    r = read_until_closed(fd, 100ms);
  }
  const auto took = Clock::now() - start;
  ::close(fd);
  CHECK(r.closed);
  CHECK(r.data.empty());
  CHECK(took < 2500ms);
}

TEST_CASE("a body that stops arriving is cut at body_timeout", "[http][server][hardening]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.body_timeout = 1s;
  Running server(options, f.site.snapshot());
  const int fd = connect_to(server.port());
  send_all(fd, "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nab");
  const auto start = Clock::now();
  const RawReply r = read_until_closed(fd, 5000ms);
  ::close(fd);
  CHECK(r.closed);
  CHECK(r.data.empty());
  CHECK(Clock::now() - start < 3000ms);
}

TEST_CASE("a client that stops reading is cut at send_timeout", "[http][server][hardening]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.send_timeout = 1s;
  options.sendfile = GENERATE(true, false);
  CAPTURE(options.sendfile);
  Running server(options, f.site.snapshot());
  const int fd = connect_to(server.port(), 4096);
  send_all(fd, "GET /ckpt/dir/large.bin HTTP/1.1\r\nHost: x\r\n\r\n");
  std::this_thread::sleep_for(2500ms);  // read nothing: the server's buffers fill up
  const RawReply r = read_until_closed(fd, 5000ms);
  ::close(fd);
  CAPTURE(r.data.size());
  CHECK(r.closed);
  CHECK(r.data.starts_with("HTTP/1.1 200 OK"));
  CHECK(r.data.size() < f.large.size());
}

TEST_CASE("an idle keep-alive connection is closed after idle_timeout", "[http][server]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  const int fd = connect_to(server.port());
  send_all(fd, "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto start = Clock::now();
  const RawReply r = read_until_closed(fd, 5000ms);
  ::close(fd);
  CHECK(r.data.starts_with("HTTP/1.1 200 OK"));
  CHECK(r.closed);
  CHECK(Clock::now() - start >= 900ms);
  CHECK(Clock::now() - start < 3000ms);
}

TEST_CASE("connections past max_connections get 503 and are closed", "[http][server][hardening]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.max_connections = 2;
  options.header_timeout = 10s;
  Running server(options, f.site.snapshot());
  const int a = connect_to(server.port());
  const int b = connect_to(server.port());
  std::this_thread::sleep_for(200ms);
  const RawReply refused = exchange(server.port(), "", 3000ms);
  CHECK(refused.data.starts_with("HTTP/1.1 503 "));
  CHECK(refused.closed);
  CHECK(server.metrics.connections_refused.load() == 1);
  CHECK(server.metrics.connections_open.load() == 2);
  ::close(a);
  std::this_thread::sleep_for(200ms);
  CHECK(fetch(server.url("/ckpt/a.bin")).status == 200);
  ::close(b);
}

TEST_CASE("read tokens over the wire", "[http][server]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.read_tokens["ckpt"] = "t0ken";
  Running server(options, f.site.snapshot());
  Reply r = fetch(server.url("/ckpt/a.bin"));
  CHECK(r.status == 401);
  CHECK(r.headers["www-authenticate"] == "Bearer realm=\"shardsync\"");
  CHECK(fetch(server.url("/ckpt/a.bin"), {.headers = {"Authorization: Bearer nope"}}).status ==
        403);
  r = fetch(server.url("/ckpt/a.bin"), {.headers = {"Authorization: Bearer t0ken"}});
  CHECK(r.status == 200);
  CHECK(r.body == f.small);
}

namespace {

struct MemoryUpload final : Upload {
  MemoryUpload(std::map<std::string, std::string>* store, std::string key)
      : store_(store), key_(std::move(key)) {}
  shardsync::Result<void> write(std::string_view bytes) override {
    data_ += bytes;
    return {};
  }
  shardsync::Result<PublishReply> commit() override {
    const bool existed = store_->count(key_) > 0;
    (*store_)[key_] = data_;
    return PublishReply{existed ? 204u : 201u, existed ? "" : "created"};
  }
  std::map<std::string, std::string>* store_;
  std::string key_;
  std::string data_;
};

struct FailingUpload final : Upload {
  shardsync::Result<void> write(std::string_view) override {
    return shardsync::fail(errc::io_error, "/srv/private/tmp.123: No space left on device");
  }
  shardsync::Result<PublishReply> commit() override { return PublishReply{}; }
};

}  // namespace

TEST_CASE("PUT and DELETE go through the publish hooks", "[http][server]") {
  Fixture f;
  HttpOptions options = fast_options();
  std::map<std::string, std::string> store;
  std::vector<std::optional<std::uint64_t>> lengths;
  options.write_token = "w";
  options.publish.put = [&](const PublishRequest& r) -> shardsync::Result<std::unique_ptr<Upload>> {
    lengths.push_back(r.length);
    if (r.path == "refused.bin") return shardsync::fail(errc::unsafe_path, "refused by policy");
    if (r.path == "full.bin") return std::make_unique<FailingUpload>();
    return std::make_unique<MemoryUpload>(&store, r.collection + "/" + r.path);
  };
  options.publish.remove = [&](const PublishRequest& r) -> shardsync::Result<PublishReply> {
    return PublishReply{store.erase(r.collection + "/" + r.path) ? 204u : 404u, ""};
  };
  Running server(options, f.site.snapshot());
  const std::string body = pattern_bytes(3 << 20);  // past 1 MiB: curl sends Expect
  Reply r = fetch(server.url("/ckpt/new/x.bin"), {.upload = body});
  CHECK(r.status == 401);
  CHECK(store.empty());
  r = fetch(server.url("/ckpt/new/x.bin"),
            {.headers = {"Authorization: Bearer w"}, .upload = body});
  CHECK(r.status == 201);
  CHECK(r.body == "created\n");
  REQUIRE(store.count("ckpt/new/x.bin") == 1);
  CHECK(store["ckpt/new/x.bin"] == body);
  CHECK(lengths.back() == body.size());
  r = fetch(server.url("/ckpt/capabilitylist.xml"),
            {.headers = {"Authorization: Bearer w"}, .upload = "x"});
  CHECK(r.status == 403);
  // Chunked: no length known in advance.
  r = fetch(server.url("/ckpt/chunked.bin"),
            {.headers = {"Authorization: Bearer w", "Transfer-Encoding: chunked"}, .upload = body});
  CHECK(r.status == 201);
  CHECK(store["ckpt/chunked.bin"] == body);
  CHECK_FALSE(lengths.back());
  store.erase("ckpt/chunked.bin");
  // The hooks' errors: a refusal's detail is shown, a server failure's is not.
  r = fetch(server.url("/ckpt/refused.bin"),
            {.headers = {"Authorization: Bearer w"}, .upload = "x"});
  CHECK(r.status == 403);
  CHECK(r.body == "refused by policy\n");
  r = fetch(server.url("/ckpt/full.bin"), {.headers = {"Authorization: Bearer w"}, .upload = "x"});
  CHECK(r.status == 500);
  CHECK(r.body == "publishing failed\n");
  CHECK(store.count("ckpt/full.bin") == 0);
  r = fetch(server.url("/ckpt/new/x.bin"),
            {.method = "DELETE", .headers = {"Authorization: Bearer w"}});
  CHECK(r.status == 204);
  CHECK(r.body.empty());
  CHECK(store.empty());
  r = fetch(server.url("/ckpt/new/x.bin"),
            {.method = "DELETE", .headers = {"Authorization: Bearer w"}});
  CHECK(r.status == 404);
  // A 204 has no body: the next response on the connection starts right after its head.
  store["ckpt/gone.bin"] = "x";
  const RawReply raw = exchange(server.port(),
                                "DELETE /ckpt/gone.bin HTTP/1.1\r\nHost: x\r\nAuthorization: "
                                "Bearer w\r\n\r\nGET /ckpt/a.bin HTTP/1.1\r\nHost: "
                                "x\r\nConnection: close\r\n\r\n");
  CHECK(raw.data.starts_with("HTTP/1.1 204 No Content\r\n"));
  CHECK(raw.data.find("\r\n\r\nHTTP/1.1 200 OK\r\n") != std::string::npos);
}

TEST_CASE("TLS: HTTPS with a self-signed certificate", "[http][server][tls]") {
  Fixture f;
  const auto cert = f.site.root() / "cert.pem";
  const auto key = f.site.root() / "key.pem";
  const std::string command =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout " +
      key.string() + " -out " + cert.string() +
      " -days 2 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1,DNS:localhost "
      ">/dev/null 2>&1";
  if (std::system(command.c_str()) != 0) {
    WARN("openssl CLI unavailable: TLS test skipped");
    return;
  }
  HttpOptions options = fast_options();
  options.tls_cert_file = cert.string();
  options.tls_key_file = key.string();
  Running server(options, f.site.snapshot());

  SECTION("small and large files, ranges") {
    Reply r = fetch(server.url("/ckpt/a.bin", "https"), {.cainfo = cert.string()});
    CHECK(r.code == CURLE_OK);
    CHECK(r.status == 200);
    CHECK(r.body == f.small);
    r = fetch(server.url("/ckpt/dir/large.bin", "https"), {.cainfo = cert.string()});
    CHECK(r.status == 200);
    CHECK(r.body == f.large);
    r = fetch(server.url("/ckpt/dir/large.bin", "https"),
              {.headers = {"Range: bytes=1000000-"}, .cainfo = cert.string()});
    CHECK(r.status == 206);
    CHECK(r.body == f.large.substr(1000000));
  }
  SECTION("an untrusted certificate fails the client") {
    const Reply r = fetch(server.url("/ckpt/a.bin", "https"));
    CHECK(r.code != CURLE_OK);
  }
  SECTION("plain HTTP on the TLS port is closed without an HTTP answer") {
    const RawReply r = exchange(server.port(), "GET /ckpt/a.bin HTTP/1.1\r\nHost: x\r\n\r\n");
    CHECK(r.closed);
    CHECK(r.data.find("HTTP/1.1") == std::string::npos);
  }
  SECTION("a handshake that never comes is cut at header_timeout") {
    const int fd = connect_to(server.port());
    const RawReply r = read_until_closed(fd, 5000ms);
    ::close(fd);
    CHECK(r.closed);
  }
}

TEST_CASE("run() reports what keeps it from starting", "[http][server]") {
  Metrics metrics;
  SECTION("a certificate without a key") {
    HttpOptions options;
    options.tls_cert_file = "/nonexistent.pem";
    HttpServer server(options, [] { return std::shared_ptr<const Site>(); }, metrics, {});
    CHECK_FALSE(server.run());
  }
  SECTION("unreadable TLS files") {
    HttpOptions options;
    options.tls_cert_file = "/nonexistent.pem";
    options.tls_key_file = "/nonexistent.key";
    HttpServer server(options, [] { return std::shared_ptr<const Site>(); }, metrics, {});
    const auto r = server.run();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::invalid_config);
  }
  SECTION("a port in use") {
    Fixture f;
    Running first(fast_options(), f.site.snapshot());
    HttpOptions options;
    options.port = first.port();
    HttpServer server(options, [] { return std::shared_ptr<const Site>(); }, metrics, {});
    const auto r = server.run();
    REQUIRE_FALSE(r);
    CHECK(r.error().code == errc::network);
  }
}

TEST_CASE("stop() before run(): run() binds and returns", "[http][server][shutdown]") {
  Metrics metrics;
  HttpServer server(fast_options(), [] { return std::shared_ptr<const Site>(); }, metrics, {});
  server.stop();
  const auto start = Clock::now();
  CHECK(server.run());
  CHECK(Clock::now() - start < 1000ms);
}

TEST_CASE("the port file and on_listening get the bound port", "[http][server]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.port_file = (f.site.root() / "port").string();
  std::atomic<std::uint16_t> seen{0};
  options.on_listening = [&](std::uint16_t port) { seen = port; };
  Running server(options, f.site.snapshot());
  CHECK(seen.load() == server.port());
  CHECK(shardsync::test::read_file(options.port_file) == std::to_string(server.port()) + "\n");
}

TEST_CASE("graceful shutdown: in-flight downloads finish, idle connections close",
          "[http][server][shutdown]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  std::atomic<std::uint64_t> received{0};
  // About 2 s at 8 MiB/s: stop() arrives in the middle.
  auto download = std::async(std::launch::async, [&] {
    return fetch(server.url("/ckpt/dir/large.bin"),
                 {.max_recv_speed = 8 << 20, .received = &received});
  });
  const int idle = connect_to(server.port());
  const auto deadline = Clock::now() + 5s;
  while (received < (1u << 20) && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  REQUIRE(received < f.large.size());

  auto stopped = std::async(std::launch::async, [&] { return server.stop(); });
  const auto stop_start = Clock::now();
  const RawReply r = read_until_closed(idle, 2000ms);
  ::close(idle);
  CHECK(r.closed);
  CHECK(Clock::now() - stop_start < 1000ms);
  // New connections are refused once the acceptor is closed.
  std::this_thread::sleep_for(100ms);
  const int fresh = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(::connect(fresh, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0);
  ::close(fresh);

  const Reply done = download.get();
  CHECK(done.code == CURLE_OK);
  CHECK(done.status == 200);
  CHECK(done.body.size() == f.large.size());
  CHECK(done.body == f.large);
  stopped.get();
  CHECK(server.result());
}

TEST_CASE("graceful shutdown: past shutdown_grace, slow downloads are cut",
          "[http][server][shutdown]") {
  Fixture f;
  HttpOptions options = fast_options();
  options.shutdown_grace = 1s;
  Running server(options, f.site.snapshot());
  std::atomic<std::uint64_t> received{0};
  auto download = std::async(std::launch::async, [&] {
    return fetch(server.url("/ckpt/dir/large.bin"),
                 {.max_recv_speed = 2 << 20, .received = &received});
  });
  const auto deadline = Clock::now() + 5s;
  while (received == 0 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  const auto took = server.stop();
  CHECK(took >= 900ms);
  CHECK(took < 3000ms);
  const Reply done = download.get();
  CHECK(done.code != CURLE_OK);
  CHECK(done.body.size() < f.large.size());
  const auto log = server.log();
  CHECK(std::any_of(log.begin(), log.end(), [](const std::string& line) {
    return line.find("grace period over") != std::string::npos;
  }));
}

TEST_CASE("SIGTERM stops the server like stop()", "[http][server][shutdown]") {
  Fixture f;
  Running server(fast_options(), f.site.snapshot());
  CHECK(fetch(server.url("/ckpt/a.bin")).status == 200);
  ::raise(SIGTERM);
  const auto deadline = Clock::now() + 5s;
  while (!server.done() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  CHECK(server.done());
  CHECK(server.result());
}

namespace {

// A commit that takes as long as a slow fsync on a busy disk.
struct SlowUpload final : Upload {
  explicit SlowUpload(std::atomic<bool>* committing) : committing_(committing) {}
  shardsync::Result<void> write(std::string_view) override { return {}; }
  shardsync::Result<PublishReply> commit() override {
    committing_->store(true);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    return PublishReply{201u, "created"};
  }
  std::atomic<bool>* committing_;
};

}  // namespace

TEST_CASE("a slow publish commit does not stall other connections", "[http][server]") {
  Fixture f;
  HttpOptions options = fast_options();
  std::atomic<bool> committing{false};
  options.write_token = "w";
  options.publish.put = [&](const PublishRequest&) -> shardsync::Result<std::unique_ptr<Upload>> {
    return std::make_unique<SlowUpload>(&committing);
  };
  Running server(options, f.site.snapshot());
  std::thread put([&] {
    const Reply r = fetch(server.url("/ckpt/slow.bin"),
                          {.headers = {"Authorization: Bearer w"}, .upload = "x"});
    CHECK(r.status == 201);
  });
  while (!committing.load()) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  const auto started = std::chrono::steady_clock::now();
  const Reply r = fetch(server.url("/ckpt/a.bin"));
  const auto waited = std::chrono::steady_clock::now() - started;
  CHECK(r.status == 200);
  CHECK(waited < std::chrono::milliseconds(700));
  put.join();
}
