#include "transport.hpp"

#include <curl/curl.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "shardsync/bridge/bridge.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace shardsync::bridge::detail {
namespace {

struct Body {
  std::span<const std::uint8_t> bytes;
  std::size_t sent = 0;
};

std::size_t read_body(char* out, std::size_t size, std::size_t count, void* user) {
  auto* body = static_cast<Body*>(user);
  const std::size_t n = std::min(size * count, body->bytes.size() - body->sent);
  std::memcpy(out, body->bytes.data() + body->sent, n);
  body->sent += n;
  return n;
}

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

}  // namespace

struct Transport::Curl {
  CURL* handle = curl_easy_init();
  ~Curl() { curl_easy_cleanup(handle); }
};

Transport::Transport(std::string write_token, std::function<void(const std::string&)> log)
    : auth_header_(write_token.empty() ? std::string() : "Authorization: Bearer " + write_token),
      log_(std::move(log)),
      curl_(std::make_unique<Curl>()) {
  client::DocumentClientOptions options;
  options.max_bytes = std::uint64_t{8} << 30;  // payloads and checkpoints, not only sitemaps
  options.max_attempts = 3;
  options.initial_backoff_ms = 50;
  options.log = log_;
  documents_ = std::make_unique<client::DocumentClient>(std::move(options));
}

Transport::~Transport() = default;

Result<long> Transport::put(const std::string& url, std::span<const std::uint8_t> bytes,
                            bool create_only) {
  if (!curl_->handle) return fail(bridge_errc::transport, "curl_easy_init failed");
  std::string last_error;
  for (int attempt = 0; attempt < 4; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100 << attempt));
    CURL* curl = curl_->handle;
    curl_easy_reset(curl);
    char error[CURL_ERROR_SIZE] = {};
    Body body{bytes, 0};
    curl_slist* headers = nullptr;
    if (!auth_header_.empty()) headers = curl_slist_append(headers, auth_header_.c_str());
    if (create_only) headers = curl_slist_append(headers, "If-None-Match: *");
    headers = curl_slist_append(headers, "Expect:");  // no 100-continue round trip
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 30L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(curl, CURLOPT_READFUNCTION, read_body);
    curl_easy_setopt(curl, CURLOPT_READDATA, &body);
    curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, static_cast<curl_off_t>(bytes.size()));
    const CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (code == CURLE_OK && status > 0 && status < 500) {
      bytes_up_ += bytes.size();
      return status;
    }
    last_error = code != CURLE_OK ? std::string(error[0] ? error : curl_easy_strerror(code))
                                  : "HTTP " + std::to_string(status);
    if (log_) log_("PUT " + url + " failed: " + last_error);
  }
  return fail(bridge_errc::transport, "PUT " + url + ": " + last_error);
}

Result<std::string> Transport::get(const std::string& url) {
  auto response = documents_->get(url);
  if (!response)
    return fail(bridge_errc::transport, "GET " + url + ": " + response.error().describe());
  if (response->status != 200) {
    return fail(bridge_errc::transport,
                "GET " + url + ": HTTP " + std::to_string(response->status));
  }
  bytes_down_ += response->body.size();
  return std::move(response->body);
}

std::string sha256_hex(std::string_view bytes) {
  sitemap::Hasher hasher({sitemap::HashAlgorithm::sha256});
  hasher.update(bytes);
  return std::string(hasher.finish().get(sitemap::HashAlgorithm::sha256));
}

}  // namespace shardsync::bridge::detail
