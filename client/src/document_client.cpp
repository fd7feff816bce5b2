#include "shardsync/client/document_client.hpp"

#include <curl/curl.h>

#include <chrono>
#include <thread>

#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "transient_error.hpp"

namespace shardsync::client {
namespace {

struct Receiver {
  HttpResponse* response;
  std::uint64_t max_bytes;
  bool too_large = false;
};

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* r = static_cast<Receiver*>(user);
  const std::size_t n = size * count;
  if (r->response->body.size() + n > r->max_bytes) {
    r->too_large = true;
    return 0;  // aborts the transfer
  }
  r->response->body.append(data, n);
  return n;
}

// Keeps the headers the client looks at; everything else is dropped, so a header flood
// costs nothing here (libcurl caps header sizes itself).
std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* r = static_cast<Receiver*>(user);
  const std::string_view line(data, size * count);
  const auto colon = line.find(':');
  if (line.starts_with("HTTP/")) {
    // A new response (after a redirect or 100-continue): forget the previous one's headers.
    r->response->link_header.clear();
    r->response->content_type.clear();
    r->response->etag.clear();
  }
  if (colon == std::string_view::npos) return size * count;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == '\r' || value.back() == '\n' || value.back() == ' ')) {
    value.remove_suffix(1);
  }
  constexpr std::size_t kMaxKept = 64 * 1024;
  if (name == "link" && r->response->link_header.size() + value.size() < kMaxKept) {
    if (!r->response->link_header.empty()) r->response->link_header += ", ";
    r->response->link_header += value;
  } else if (name == "etag" && value.size() < 1024) {
    r->response->etag = value;
  } else if (name == "content-type" && value.size() < 1024) {
    r->response->content_type = value;
  }
  return size * count;
}

}  // namespace

struct DocumentClient::Impl {
  DocumentClientOptions options;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl{curl_easy_init(), curl_easy_cleanup};
  std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> headers{nullptr, curl_slist_free_all};
  char error[CURL_ERROR_SIZE] = {};
};

DocumentClient::DocumentClient(DocumentClientOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  CURL* c = impl_->curl.get();
  if (!c) throw std::runtime_error("cannot initialise libcurl");
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(c, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(impl_->options.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(impl_->options.low_speed_seconds));
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, impl_->error);
  curl_easy_setopt(c, CURLOPT_ACCEPT_ENCODING, "");  // zstd, gzip, deflate, br as built
  curl_easy_setopt(c, CURLOPT_USERAGENT, "shardsync/0.1");
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  if (!impl_->options.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, impl_->options.ca_file.c_str());
  }
  if (!impl_->options.bearer_token.empty()) {
    const std::string header = "Authorization: Bearer " + impl_->options.bearer_token;
    impl_->headers.reset(curl_slist_append(nullptr, header.c_str()));
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, impl_->headers.get());
  }
}

DocumentClient::~DocumentClient() = default;

Result<HttpResponse> DocumentClient::get(const std::string& url, const std::string& if_none_match) {
  CURL* c = impl_->curl.get();
  int backoff_ms = impl_->options.initial_backoff_ms;
  for (int attempt = 1;; ++attempt) {
    HttpResponse response;
    Receiver receiver{&response, impl_->options.max_bytes};
    impl_->error[0] = '\0';
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    // Per-request headers: the token (when any), plus the validator of a conditional GET.
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> request_headers{
        nullptr, curl_slist_free_all};
    if (!if_none_match.empty() && if_none_match.find_first_of("\r\n") == std::string::npos) {
      for (const curl_slist* h = impl_->headers.get(); h; h = h->next) {
        request_headers.reset(curl_slist_append(request_headers.release(), h->data));
      }
      const std::string line = "If-None-Match: " + if_none_match;
      request_headers.reset(curl_slist_append(request_headers.release(), line.c_str()));
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, request_headers.get());
    } else {
      curl_easy_setopt(c, CURLOPT_HTTPHEADER, impl_->headers.get());
    }
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &receiver);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &receiver);
    const CURLcode rc = curl_easy_perform(c);
    ++requests_;
    curl_off_t wire = 0;
    if (curl_easy_getinfo(c, CURLINFO_SIZE_DOWNLOAD_T, &wire) == CURLE_OK && wire > 0) {
      bytes_received_ += static_cast<std::uint64_t>(wire);
    }
    if (receiver.too_large) {
      return fail(errc::bad_document, url + ": response larger than " +
                                          std::to_string(impl_->options.max_bytes) + " bytes");
    }
    const std::string why = impl_->error[0] ? impl_->error : curl_easy_strerror(rc);
    if (rc == CURLE_OK) {
      curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
      char* effective = nullptr;
      curl_easy_getinfo(c, CURLINFO_EFFECTIVE_URL, &effective);
      response.effective_url = effective ? effective : url;
      const bool retry_status = response.status >= 500 || response.status == 429;
      if (!retry_status || attempt >= impl_->options.max_attempts) return response;
    } else if (!is_transient(rc) || attempt >= impl_->options.max_attempts) {
      return fail(errc::transfer_failed, url + ": " + why);
    }
    if (impl_->options.log) {
      impl_->options.log("retrying " + url + " in " + std::to_string(backoff_ms) + " ms (" +
                         (rc == CURLE_OK ? "HTTP " + std::to_string(response.status) : why) + ")");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms = std::min(backoff_ms * 2, 10'000);
  }
}

Result<ConditionalDocument> DocumentClient::get_document_if_changed(const std::string& url,
                                                                    const std::string& etag) {
  auto response = get(url, etag);
  if (!response) return fail(response.error());
  if (response->status == 304 && !etag.empty()) return ConditionalDocument{std::nullopt, etag};
  if (response->status >= 400) {
    return fail(errc::http_status, "HTTP " + std::to_string(response->status) + " " + url);
  }
  auto document = sitemap::parse_document(response->body);
  if (!document) return fail(errc::bad_document, url + ": " + document.error().detail);
  return ConditionalDocument{std::move(*document), response->etag};
}

Result<sitemap::Document> DocumentClient::get_document(const std::string& url) {
  auto response = get(url);
  if (!response) return fail(response.error());
  if (response->status >= 400) {
    return fail(errc::http_status, "HTTP " + std::to_string(response->status) + " " + url);
  }
  auto document = sitemap::parse_document(response->body);
  if (!document) return fail(errc::bad_document, url + ": " + document.error().detail);
  return document;
}

}  // namespace shardsync::client
