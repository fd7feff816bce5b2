#include "event_source.hpp"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "shardsync/client/errc.hpp"

using shardsync::client::detail::EventSourceHooks;
using shardsync::client::detail::EventSourceOptions;
using shardsync::client::detail::read_event_stream;
using shardsync::client::detail::SseEvent;
using shardsync::client::detail::SseParser;

TEST_CASE("the SSE parser joins data lines, keeps ids and skips comments", "[client][follow]") {
  std::vector<SseEvent> events;
  SseParser parser([&](const SseEvent& e) { events.push_back(e); });
  // Split at awkward places, with CRLF, CR and LF line ends.
  const std::string stream =
      ": keep-alive\n\nid: 4\nevent: changelist-notification\ndata: <a>\r\ndata: </a>\r\n\r\n"
      "data:x\r\rid: 9\n: hb\nevent: framework-notification\ndata:  y\n\n";
  for (std::size_t i = 0; i < stream.size(); i += 3) REQUIRE(parser.feed(stream.substr(i, 3)));
  REQUIRE(events.size() == 3);
  CHECK(events[0].id == "4");
  CHECK(events[0].type == "changelist-notification");
  CHECK(events[0].data == "<a>\n</a>");
  CHECK(events[1].id == "4");  // the id persists
  CHECK(events[1].type == "message");
  CHECK(events[1].data == "x");
  CHECK(events[2].id == "9");
  CHECK(events[2].data == " y");  // one space after the colon is dropped, not two

  SseParser bounded([](const SseEvent&) {}, 8);
  CHECK_FALSE(bounded.feed("data: far too long a line\n"));
}

namespace {

// Serves one connection with `reply` and keeps it open until the client leaves.
class OneShotServer {
 public:
  explicit OneShotServer(std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    REQUIRE(::listen(fd_, 4) == 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) return;
      char buf[4096];
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n > 0) request_.assign(buf, static_cast<std::size_t>(n));
      ::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      while (::recv(c, buf, sizeof buf, 0) > 0) {
      }
      ::close(c);
    });
  }
  ~OneShotServer() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/t"; }
  const std::string& request() const { return request_; }

 private:
  std::string reply_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::string request_;
  std::thread thread_;
};

}  // namespace

TEST_CASE("the event stream reader hands over events and stops on request", "[client][follow]") {
  curl_global_init(CURL_GLOBAL_ALL);
  OneShotServer server(
      "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
      "id: 12\nevent: changelist-notification\ndata: hello\n\n");
  EventSourceOptions options;
  options.url = server.url();
  std::atomic<bool> opened{false};
  std::vector<SseEvent> events;
  EventSourceHooks hooks;
  hooks.on_open = [&] { opened = true; };
  hooks.on_event = [&](const SseEvent& e) { events.push_back(e); };
  hooks.should_stop = [&] { return !events.empty(); };  // stop once the event is in
  std::string last_id = "7";
  auto ended = read_event_stream(options, hooks, last_id);
  CHECK(ended);  // stopped, not failed
  CHECK(opened);
  REQUIRE(events.size() == 1);
  CHECK(events[0].data == "hello");
  CHECK(last_id == "12");
  CHECK(server.request().find("Last-Event-ID: 7\r\n") != std::string::npos);
  CHECK(server.request().find("Accept: text/event-stream\r\n") != std::string::npos);
}

TEST_CASE("an error status is not an event stream", "[client][follow]") {
  OneShotServer server("HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\n\r\nnope");
  EventSourceOptions options;
  options.url = server.url();
  EventSourceHooks hooks;
  std::string last_id;
  auto ended = read_event_stream(options, hooks, last_id);
  REQUIRE_FALSE(ended);
  CHECK(ended.error().code == shardsync::client::errc::http_status);
}
