#pragma once
// The bridge's HTTP: PUT to `shardsync serve`'s publish API (with `If-None-Match: *` for
// create-only records) through libcurl, and GET of resources through the client library's
// DocumentClient. Counts the bytes both ways. Not thread-safe: one Transport per thread.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "shardsync/client/document_client.hpp"
#include "shardsync/result.hpp"

namespace shardsync::bridge::detail {

class Transport {
 public:
  Transport(std::string write_token, std::function<void(const std::string&)> log);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  // PUT `bytes` to `url`; the HTTP status (201, 204, 412 ...). Connection failures and 5xx
  // are retried a few times; then bridge_errc::transport.
  [[nodiscard]] Result<long> put(const std::string& url, std::span<const std::uint8_t> bytes,
                                 bool create_only);
  // GET `url`: the body of a 200; a 404 or other status is bridge_errc::transport (detail
  // has the status), as is no response.
  [[nodiscard]] Result<std::string> get(const std::string& url);

  client::DocumentClient& documents() { return *documents_; }
  [[nodiscard]] std::uint64_t bytes_up() const { return bytes_up_; }
  [[nodiscard]] std::uint64_t bytes_down() const { return bytes_down_; }

 private:
  struct Curl;
  std::string auth_header_;
  std::function<void(const std::string&)> log_;
  std::unique_ptr<Curl> curl_;
  std::unique_ptr<client::DocumentClient> documents_;
  std::uint64_t bytes_up_ = 0;
  std::uint64_t bytes_down_ = 0;
};

// sha-256 of bytes, lower-case hex.
[[nodiscard]] std::string sha256_hex(std::string_view bytes);

}  // namespace shardsync::bridge::detail
