#include "event_source.hpp"

#include <curl/curl.h>

#include <memory>

#include "shardsync/client/errc.hpp"

namespace shardsync::client::detail {

bool SseParser::feed(std::string_view bytes) {
  for (const char c : bytes) {
    // Lines end in CRLF, LF or CR: a LF right after a CR ends nothing more.
    if (c == '\n' && saw_cr_) {
      saw_cr_ = false;
      continue;
    }
    saw_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(partial_);
      partial_.clear();
      continue;
    }
    if (partial_.size() >= max_line_) return false;
    partial_ += c;
  }
  return true;
}

void SseParser::line(std::string_view text) {
  if (text.empty()) {  // dispatch
    if (has_data_) {
      event_.id = last_id_;
      if (on_event_) on_event_(event_);
    }
    event_ = SseEvent{};
    has_data_ = false;
    return;
  }
  if (text.front() == ':') return;  // a comment: heartbeats
  const std::size_t colon = text.find(':');
  const std::string_view field = text.substr(0, colon);
  std::string_view value =
      colon == std::string_view::npos ? std::string_view() : text.substr(colon + 1);
  if (value.starts_with(' ')) value.remove_prefix(1);
  if (field == "data") {
    if (has_data_) event_.data += '\n';
    event_.data += value;
    has_data_ = true;
  } else if (field == "event") {
    event_.type = value;
  } else if (field == "id" && value.find('\0') == std::string_view::npos) {
    last_id_ = value;
  }
}

namespace {

struct StreamContext {
  const EventSourceHooks* hooks;
  SseParser* parser;
  bool opened = false;
  bool bad_line = false;
  CURL* curl = nullptr;
};

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* ctx = static_cast<StreamContext*>(user);
  const std::string_view line(data, size * count);
  if ((line == "\r\n" || line == "\n") && !ctx->opened) {
    long status = 0;
    curl_easy_getinfo(ctx->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200) {
      ctx->opened = true;
      if (ctx->hooks->on_open) ctx->hooks->on_open();
    }
  }
  return size * count;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* ctx = static_cast<StreamContext*>(user);
  if (!ctx->opened) return 0;  // an error page: not a stream
  if (!ctx->parser->feed(std::string_view(data, size * count))) {
    ctx->bad_line = true;
    return 0;
  }
  return size * count;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* ctx = static_cast<StreamContext*>(user);
  return ctx->hooks->should_stop && ctx->hooks->should_stop() ? 1 : 0;
}

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

}  // namespace

Result<void> read_event_stream(const EventSourceOptions& options, const EventSourceHooks& hooks,
                               std::string& last_event_id) {
  std::unique_ptr<CURL, CurlDeleter> curl(curl_easy_init());
  if (!curl) return fail(errc::transfer_failed, "curl_easy_init failed");
  SseParser parser([&](const SseEvent& event) {
    last_event_id = event.id;
    if (hooks.on_event) hooks.on_event(event);
  });
  StreamContext ctx{&hooks, &parser};
  ctx.curl = curl.get();
  std::unique_ptr<curl_slist, SlistDeleter> headers;
  const auto add_header = [&](const std::string& h) {
    headers.reset(curl_slist_append(headers.release(), h.c_str()));
  };
  add_header("Accept: text/event-stream");
  if (!last_event_id.empty()) add_header("Last-Event-ID: " + last_event_id);
  if (!options.bearer_token.empty()) add_header("Authorization: Bearer " + options.bearer_token);
  char error_buffer[CURL_ERROR_SIZE] = {};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, options.url.c_str());
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, static_cast<long>(options.idle_timeout_s));
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &ctx);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &ctx);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, &ctx);
  if (!options.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options.ca_file.c_str());
  const CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_ABORTED_BY_CALLBACK) return {};
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  if (!ctx.opened && status != 0) {
    return fail(errc::http_status, "HTTP " + std::to_string(status) + " " + options.url);
  }
  if (ctx.bad_line) return fail(errc::transfer_failed, options.url + ": event line too long");
  const std::string why = error_buffer[0] ? error_buffer : curl_easy_strerror(rc);
  return fail(errc::transfer_failed,
              options.url + ": stream ended" + (rc == CURLE_OK ? std::string() : ": " + why));
}

}  // namespace shardsync::client::detail
