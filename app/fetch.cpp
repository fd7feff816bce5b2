#include "fetch.hpp"

#include <curl/curl.h>

#include <memory>

#include "shardsync/sitemap/errc.hpp"

namespace shardsync::app {
namespace {

struct Body {
  std::string bytes;
  std::size_t max_bytes;
  bool too_large = false;
};

std::size_t on_data(char* data, std::size_t size, std::size_t count, void* user) {
  auto* body = static_cast<Body*>(user);
  const std::size_t n = size * count;
  if (body->bytes.size() + n > body->max_bytes) {
    body->too_large = true;
    return 0;  // aborts the transfer
  }
  body->bytes.append(data, n);
  return n;
}

}  // namespace

bool is_url(const std::string& target) {
  return target.starts_with("http://") || target.starts_with("https://");
}

Result<std::string> fetch_url(const std::string& url, std::size_t max_bytes) {
  using sitemap::errc;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return fail(errc::io_error, "cannot initialise libcurl");
  Body body{{}, max_bytes};
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(curl.get(), CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl.get(), CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(curl.get(), CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(curl.get(), CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl.get(), CURLOPT_CONNECTTIMEOUT, 15L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl.get(), CURLOPT_LOW_SPEED_TIME, 30L);
  curl_easy_setopt(curl.get(), CURLOPT_ERRORBUFFER, error);
  // Documents come compressed when the server offers it; the cap applies to decoded bytes.
  curl_easy_setopt(curl.get(), CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(curl.get(), CURLOPT_USERAGENT, "shardsync/0.1");
  curl_easy_setopt(curl.get(), CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl.get(), CURLOPT_WRITEDATA, &body);
  const CURLcode rc = curl_easy_perform(curl.get());
  if (body.too_large) {
    return fail(errc::limit_exceeded,
                url + ": response larger than " + std::to_string(max_bytes) + " bytes");
  }
  if (rc != CURLE_OK) {
    return fail(errc::io_error, url + ": " + (error[0] ? error : curl_easy_strerror(rc)));
  }
  long status = 0;
  curl_easy_getinfo(curl.get(), CURLINFO_RESPONSE_CODE, &status);
  if (status >= 400) return fail(errc::io_error, url + ": HTTP " + std::to_string(status));
  return std::move(body.bytes);
}

}  // namespace shardsync::app
