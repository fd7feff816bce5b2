#pragma once
// Fetches ResourceSync documents (and discovery probes) over HTTP with libcurl: one easy
// handle reused, so the connection is kept alive between documents. gzip and zstd bodies are
// decoded; the decoded size is capped; redirects are limited to http(s), at most 5.
// Timeouts and 5xx answers are retried with backoff; 4xx answers are returned as errors
// (errc::http_status) with the status kept apart from "no response" (errc::transfer_failed).
// Not thread-safe: one DocumentClient per thread.

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/model.hpp"

namespace shardsync::client {

struct DocumentClientOptions {
  // Sent as `Authorization: Bearer …` when not empty.
  std::string bearer_token;
  // Decoded bytes of one response (Sitemaps allow 50 MB per document).
  std::uint64_t max_bytes = 64ull << 20;
  // Attempts per document for timeouts, truncation and 5xx (first try included).
  int max_attempts = 4;
  int initial_backoff_ms = 250;
  int connect_timeout_ms = 10'000;
  // Stall rule: below 1 KiB/s for this long aborts the attempt.
  int low_speed_seconds = 30;
  std::string ca_file;
  std::function<void(const std::string&)> log;
};

struct HttpResponse {
  long status = 0;
  std::string effective_url;  // after redirects
  std::string body;           // decoded
  std::string content_type;
  std::string link_header;  // every Link header value, joined with ", "
  std::string etag;         // the ETag header, as sent (quotes and W/ included)
};

// A document fetched with If-None-Match: absent when the server answered 304.
struct ConditionalDocument {
  std::optional<sitemap::Document> document;
  std::string etag;  // the new ETag (empty when the server sent none)
};

class DocumentClient {
 public:
  explicit DocumentClient(DocumentClientOptions options);
  ~DocumentClient();
  DocumentClient(const DocumentClient&) = delete;
  DocumentClient& operator=(const DocumentClient&) = delete;

  // GET `url` (with `If-None-Match: if_none_match` when not empty). Any status is a
  // response (callers decide); no response is an error.
  [[nodiscard]] Result<HttpResponse> get(const std::string& url,
                                         const std::string& if_none_match = {});

  // GET and parse a ResourceSync document; errc::http_status for status >= 400,
  // errc::bad_document when it does not parse (detail: URL and line).
  [[nodiscard]] Result<sitemap::Document> get_document(const std::string& url);
  // The same, unless the server says the document still has the ETag `etag` (304).
  [[nodiscard]] Result<ConditionalDocument> get_document_if_changed(const std::string& url,
                                                                    const std::string& etag);

  // Bytes of response bodies received so far (for reports).
  [[nodiscard]] std::uint64_t bytes_received() const { return bytes_received_; }
  [[nodiscard]] std::uint64_t requests() const { return requests_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::uint64_t bytes_received_ = 0;
  std::uint64_t requests_ = 0;
};

}  // namespace shardsync::client
