// PUT with `If-None-Match: *` (create only): the publisher's atomic create, and the same over
// the wire through a real Source and HttpServer on loopback.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include "publisher.hpp"
#include "shardsync/server/errc.hpp"
#include "shardsync/server/http_server.hpp"
#include "shardsync/server/source.hpp"
#include "test_paths.hpp"

using namespace shardsync::server;
using shardsync::test::read_file;
using shardsync::test::TempDir;
using shardsync::test::write_file;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A real Source over a temp collection "runs" behind an HttpServer with write token "w".
class PublishingServer {
 public:
  PublishingServer() {
    std::filesystem::create_directories(dir_ / "runs");
    SourceOptions so;
    so.collections.push_back({"runs", (dir_ / "runs").string()});
    so.state_dir = (dir_ / "state").string();
    so.rebuild_delay = 5ms;
    auto source = Source::open(so, metrics_, {});
    REQUIRE(source);
    source_ = std::move(*source);
    HttpOptions http;
    http.write_token = "w";
    http.publish = source_->publish_hooks();
    http.on_listening = [this](std::uint16_t port) {
      (void)source_->start("http://127.0.0.1:" + std::to_string(port) + "/");
    };
    server_ = std::make_unique<HttpServer>(
        http, [this] { return source_->site(); }, metrics_,
        [](std::string_view, std::string_view) {});
    thread_ = std::thread([this] { (void)server_->run(); });
    const auto deadline = Clock::now() + 10s;
    while (server_->port() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(2ms);
    REQUIRE(server_->port() != 0);
    // Publishing needs the first snapshot (503 before).
    while (!source_->site() && Clock::now() < deadline) std::this_thread::sleep_for(2ms);
    REQUIRE(source_->site());
  }
  ~PublishingServer() {
    server_->stop();
    thread_.join();
    source_->stop();
  }
  std::uint16_t port() const { return server_->port(); }
  std::filesystem::path collection() const { return dir_ / "runs"; }

 private:
  TempDir dir_;
  Metrics metrics_;
  std::unique_ptr<Source> source_;
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
};

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
    REQUIRE(n > 0);
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// The status code of the response on `fd` (Connection: close), or 0 on none in 5 s.
int read_status(int fd) {
  std::string data;
  char chunk[4096];
  const auto deadline = Clock::now() + 5s;
  while (Clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n <= 0) break;
    data.append(chunk, static_cast<std::size_t>(n));
  }
  if (!data.starts_with("HTTP/1.1 ") || data.size() < 12) return 0;
  return std::stoi(data.substr(9, 3));
}

std::string put_head(const std::string& target, std::size_t length, bool create_only) {
  return "PUT " + target +
         " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nAuthorization: Bearer w\r\n" +
         (create_only ? "If-None-Match: *\r\n" : "") + "Content-Length: " + std::to_string(length) +
         "\r\n\r\n";
}

int put(std::uint16_t port, const std::string& target, const std::string& body, bool create_only) {
  const int fd = connect_to(port);
  REQUIRE(fd >= 0);
  send_all(fd, put_head(target, body.size(), create_only) + body);
  const int status = read_status(fd);
  ::close(fd);
  return status;
}

}  // namespace

TEST_CASE("create-only uploads racing past put(): exactly one commit wins", "[server][publish]") {
  TempDir dir;
  std::filesystem::create_directories(dir / "c");
  int recorded = 0;
  const PublishHooks hooks = detail::make_publish_hooks(
      {{"c", (dir / "c").string()}},
      [&](const std::string&, shardsync::sitemap::ChangeType, const ResourceState&,
          const FileKey&) -> shardsync::Result<std::optional<Change>> {
        ++recorded;
        return std::nullopt;
      });
  PublishRequest request{"c", "frag/0/commit.json", std::nullopt};
  request.create_only = true;
  // Both creators pass put()'s early check: the file does not exist yet.
  auto first = hooks.put(request);
  auto second = hooks.put(request);
  REQUIRE(first);
  REQUIRE(second);
  REQUIRE((*first)->write("first"));
  REQUIRE((*second)->write("second"));
  auto won = (*second)->commit();
  auto lost = (*first)->commit();
  REQUIRE(won);
  CHECK(won->status == 201u);
  REQUIRE_FALSE(lost);
  CHECK(lost.error().code == errc::already_exists);
  CHECK(read_file(dir / "c/frag/0/commit.json") == "second");
  CHECK(recorded == 1);
  first->reset();
  second->reset();
  // No temp file is left behind by either.
  int entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "c/frag/0")) {
    (void)e;
    ++entries;
  }
  CHECK(entries == 1);
  // Once it exists, put() refuses before any body is read.
  auto late = hooks.put(request);
  REQUIRE_FALSE(late);
  CHECK(late.error().code == errc::already_exists);
  // A plain PUT still replaces.
  request.create_only = false;
  auto replace = hooks.put(request);
  REQUIRE(replace);
  REQUIRE((*replace)->write("third"));
  auto replaced = (*replace)->commit();
  REQUIRE(replaced);
  CHECK(replaced->status == 204u);
  CHECK(read_file(dir / "c/frag/0/commit.json") == "third");
}

TEST_CASE("PUT with If-None-Match: * answers 412 when the path exists", "[server][publish]") {
  PublishingServer server;
  CHECK(put(server.port(), "/runs/r1/commit.json", "mine", true) == 201);
  CHECK(read_file(server.collection() / "r1/commit.json") == "mine");
  CHECK(put(server.port(), "/runs/r1/commit.json", "yours", true) == 412);
  CHECK(read_file(server.collection() / "r1/commit.json") == "mine");
  // A file placed beside the server (not published through it) counts as existing too.
  write_file(server.collection() / "r1/placed.json", "placed");
  CHECK(put(server.port(), "/runs/r1/placed.json", "over", true) == 412);
  CHECK(put(server.port(), "/runs/r1/placed.json", "over", false) == 204);
  CHECK(read_file(server.collection() / "r1/placed.json") == "over");
}

TEST_CASE("two creators racing over the wire: one 201, one 412, the winner's bytes",
          "[server][publish]") {
  PublishingServer server;
  const std::string a(64 << 10, 'a');
  const std::string b(64 << 10, 'b');
  const std::string target = "/runs/r1/frag/0/00000001/commit.json";
  // Both send their heads and half their bodies, so both uploads are under way (past the
  // existence check) before either finishes.
  const int fa = connect_to(server.port());
  const int fb = connect_to(server.port());
  REQUIRE(fa >= 0);
  REQUIRE(fb >= 0);
  send_all(fa, put_head(target, a.size(), true) + a.substr(0, a.size() / 2));
  send_all(fb, put_head(target, b.size(), true) + b.substr(0, b.size() / 2));
  std::this_thread::sleep_for(50ms);
  send_all(fb, b.substr(b.size() / 2));
  send_all(fa, a.substr(a.size() / 2));
  const int status_a = read_status(fa);
  const int status_b = read_status(fb);
  ::close(fa);
  ::close(fb);
  INFO("a: " << status_a << ", b: " << status_b);
  REQUIRE(((status_a == 201 && status_b == 412) || (status_a == 412 && status_b == 201)));
  const std::string stored = read_file(server.collection() / "r1/frag/0/00000001/commit.json");
  CHECK(stored == (status_a == 201 ? a : b));
}
