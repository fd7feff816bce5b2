#pragma once
// The socket-free half of the HTTP server: request line and headers in, a response plan out
// (status, headers, and where the body comes from). No Beast, no sockets, so it is unit-tested
// directly and compiles fast; http_server.cpp does the I/O.
//
// Everything here is called on the server thread; functions are reentrant.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http_fields.hpp"
#include "shardsync/server/http_server.hpp"
#include "shardsync/server/notifier.hpp"
#include "shardsync/server/site.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::server::detail {

// ---- Framing checks (RELIABILITY.md §1.5, the gaps of Beast 1.81's parser) ----

struct Framing {
  unsigned version = 11;        // 10 or 11
  std::size_t host_fields = 0;  // number of Host lines
  bool has_content_length = false;
  bool has_transfer_encoding = false;
  std::string_view transfer_encoding;  // every Transfer-Encoding line, joined with ", "
};

// nullopt when the framing is acceptable; else the status to answer before closing:
// 400 for Transfer-Encoding not ending in chunked, TE with Content-Length, TE in HTTP/1.0,
// no Host in HTTP/1.1, several Host lines; 501 for a transfer coding other than chunked
// (e.g. "gzip, chunked": framed correctly, but we do not decode gzip).
[[nodiscard]] std::optional<unsigned> check_framing(const Framing& framing);

// True if the raw header section (request line to the empty line) folds a line (obs-fold:
// CRLF followed by SP or HTAB), which Beast 1.81 accepts and RFC 9112 §5.2 lets us refuse.
[[nodiscard]] bool has_obs_fold(std::string_view header_section);

// ---- Paths ----

// Decodes an origin-form (or absolute-form) target's path exactly once and checks every
// segment: no empty segment, ".", "..", encoded '/', backslash, NUL or other control
// character; the query is dropped. Returns the decoded path ("/C/a/b.bin"), or nullopt.
[[nodiscard]] std::optional<std::string> decode_target_path(std::string_view target);

// ---- Credentials ----

// Whether `authorization` is `Bearer <token>`, compared in constant time.
[[nodiscard]] bool bearer_matches(std::string_view authorization, std::string_view token);

// Constant-time comparison of secrets of any length (compares SHA-256 digests).
[[nodiscard]] bool secrets_equal(std::string_view a, std::string_view b);

// ---- Requests and response plans ----

struct HttpRequest {
  std::string_view method;  // as received: "GET"
  std::string_view target;
  unsigned version = 11;
  // Field values; several lines of one field joined with ", "; empty when absent.
  std::string_view authorization;
  std::string_view range;
  std::string_view if_range;
  std::string_view if_none_match;
  std::string_view if_modified_since;
  std::string_view if_match;
  std::string_view if_unmodified_since;
  std::string_view accept_encoding;
  std::string_view accept;
  std::string_view last_event_id;
};

// A GET that asked a notification topic for its event stream.
struct EventStreamRequest {
  std::string collection;
  Channel channel = Channel::changelist;
  std::uint64_t last_event_id = 0;  // 0: none given (only new events)
  std::string hub, topic;           // for the Link header
};

enum class BodySource {
  none,      // no body (or HEAD / 304: content_length still describes the GET body)
  text,      // `text`
  document,  // `document_bytes`, a slice of `document`'s bytes
  file,      // `file`, from `file_offset`, content_length bytes
};

struct ResponsePlan {
  unsigned status = 200;
  std::vector<std::pair<std::string, std::string>> headers;  // besides the ones below
  BodySource source = BodySource::none;
  std::string text;
  std::shared_ptr<const ServedDocument> document;
  std::string_view document_bytes;
  UniqueFd file;
  std::uint64_t file_offset = 0;
  // The file's size and mtime as checked against the snapshot (re-checked while sending).
  std::uint64_t file_size = 0;
  std::int64_t file_mtime_ns = 0;
  bool file_sealed = false;          // a document's sealed memfd: nothing to re-check while sending
  std::uint64_t content_length = 0;  // always sent (except on 304)
  bool send_body = true;             // false for HEAD and 304
  bool close = false;                // close the connection after this response

  // For PUT and DELETE, once the checks passed: what to publish.
  std::optional<PublishRequest> publish;
  bool publish_remove = false;

  // A hub request (POST to the hub): the session reads the form body and lets the hub answer.
  bool hub_form = false;
  // GET with Accept: text/event-stream on a topic: the session streams events.
  std::optional<EventStreamRequest> event_stream;
};

struct HandlerContext {
  const HttpOptions* options = nullptr;  // tokens, publish hooks
  const Metrics* metrics = nullptr;      // for /metrics
  std::int64_t now_s = 0;                // for Date
  // openat2() can be refused (old kernels, seccomp): tests force the O_NOFOLLOW walk.
  bool use_openat2 = true;
};

// Routes and answers one request against the snapshot `site` (nullptr: 503, not ready).
[[nodiscard]] ResponsePlan handle_request(const HttpRequest& request, const Site* site,
                                          const HandlerContext& context);

// A small text/plain response (errors, PUT/DELETE replies).
[[nodiscard]] ResponsePlan text_response(unsigned status, std::string text, std::int64_t now_s);

// The status line and header section of `plan` ("HTTP/1.1 200 OK\r\n…\r\n\r\n"), with
// Content-Length and, as needed, Connection for a client speaking `request_version`.
[[nodiscard]] std::string serialize_head(const ResponsePlan& plan, bool keep_alive,
                                         unsigned request_version);

[[nodiscard]] std::string_view reason_phrase(unsigned status);

// ---- Files ----

enum class OpenStatus {
  ok,
  missing,  // gone, or a directory component is no longer a directory
  unsafe,   // a symlink on the way, an escape, not a regular file
  changed,  // size or mtime differ from the snapshot: changed after it was logged
  error,    // anything else (EACCES, EMFILE, ...): `error` has errno
};
struct OpenedFile {
  OpenStatus status = OpenStatus::error;
  UniqueFd fd;
  std::uint64_t size = 0;
  std::int64_t mtime_ns = 0;
  int error = 0;
};
// Opens `relative_path` (checked, '/'-separated) beneath directory `root` without following
// any symlink (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW walk), checks
// that it is a regular file and that its size and mtime are `expected`'s.
[[nodiscard]] OpenedFile open_resource(const std::string& root, const std::string& relative_path,
                                       const ResourceState& expected, bool use_openat2 = true);

// Prometheus text format of `metrics`.
[[nodiscard]] std::string render_metrics(const Metrics& metrics);

}  // namespace shardsync::server::detail
