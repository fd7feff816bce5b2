#include "http_handler.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <limits>
#include <optional>

#include "shardsync/server/collection.hpp"
#include "shardsync/sitemap/timestamp.hpp"
#include "shardsync/sitemap/url.hpp"

namespace shardsync::server::detail {

namespace {

constexpr std::int64_t kNanos = 1'000'000'000;
// A closed Change List never changes: a year, the longest max-age caches honour in practice.
constexpr std::string_view kImmutableCache = "max-age=31536000, immutable";
constexpr std::string_view kXmlType = "application/xml";
constexpr std::string_view kOctetStream = "application/octet-stream";

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

bool is_ows(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

// Splits a comma-separated field value; calls f on each non-empty trimmed element.
template <typename F>
void for_each_element(std::string_view list, F&& f) {
  while (true) {
    const std::size_t comma = list.find(',');
    const std::string_view element = trim(list.substr(0, comma));
    if (!element.empty()) f(element);
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Parses decimal digits; false on overflow or non-digits.
bool parse_u64(std::string_view s, std::uint64_t& out) {
  if (!all_digits(s)) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

using sitemap::civil_from_days;
using sitemap::days_from_civil;

constexpr std::array<std::string_view, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr std::array<std::string_view, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                      "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

std::optional<unsigned> month_number(std::string_view name) {
  for (std::size_t i = 0; i < kMonths.size(); ++i) {
    if (name == kMonths[i]) return static_cast<unsigned>(i + 1);
  }
  return std::nullopt;
}

bool parse_fixed(std::string_view s, unsigned& out) {
  std::uint64_t v = 0;
  if (!parse_u64(s, v) || v > 100000) return false;
  out = static_cast<unsigned>(v);
  return true;
}

// "08:49:37" -> seconds of the day.
std::optional<std::int64_t> parse_clock(std::string_view s) {
  unsigned h = 0, m = 0, sec = 0;
  if (s.size() != 8 || s[2] != ':' || s[5] != ':') return std::nullopt;
  if (!parse_fixed(s.substr(0, 2), h) || !parse_fixed(s.substr(3, 2), m) ||
      !parse_fixed(s.substr(6, 2), sec)) {
    return std::nullopt;
  }
  if (h > 23 || m > 59 || sec > 60) return std::nullopt;
  return static_cast<std::int64_t>(h) * 3600 + m * 60 + sec;
}

std::optional<std::int64_t> assemble(std::int64_t year, unsigned month, unsigned day,
                                     std::int64_t clock) {
  if (month < 1 || month > 12 || day < 1 || day > 31) return std::nullopt;
  return days_from_civil(year, month, day) * 86400 + clock;
}

// ---- Responses ----

void add(ResponsePlan& plan, std::string_view name, std::string value) {
  plan.headers.emplace_back(std::string(name), std::move(value));
}

ResponsePlan error(unsigned status, std::string_view text) {
  ResponsePlan plan;
  plan.status = status;
  add(plan, "Content-Type", "text/plain; charset=utf-8");
  add(plan, "Cache-Control", "no-store");
  plan.text = std::string(text);
  plan.text += '\n';
  plan.source = BodySource::text;
  plan.content_length = plan.text.size();
  return plan;
}

ResponsePlan not_allowed(bool known) {
  ResponsePlan plan = error(known ? 405 : 501, known ? "method not allowed" : "not implemented");
  add(plan, "Allow", "GET, HEAD");
  return plan;
}

ResponsePlan unauthorized() {
  ResponsePlan plan = error(401, "authorization required");
  add(plan, "WWW-Authenticate", "Bearer realm=\"shardsync\"");
  return plan;
}

enum class TokenCheck { ok, missing, wrong };

TokenCheck check_bearer(std::string_view authorization, std::string_view token) {
  authorization = trim(authorization);
  const std::size_t space = authorization.find(' ');
  if (space == std::string_view::npos || !iequals(authorization.substr(0, space), "Bearer")) {
    return TokenCheck::missing;
  }
  const std::string_view given = trim(authorization.substr(space + 1));
  if (given.empty()) return TokenCheck::missing;
  return secrets_equal(given, token) ? TokenCheck::ok : TokenCheck::wrong;
}

// The answer for a request that does not carry `token` (401 without credentials, 403 with
// wrong ones), or nullopt when it does.
std::optional<ResponsePlan> refuse_without(std::string_view authorization, std::string_view token) {
  switch (check_bearer(authorization, token)) {
    case TokenCheck::missing:
      return unauthorized();
    case TokenCheck::wrong:
      return error(403, "forbidden");
    case TokenCheck::ok:
      break;
  }
  return std::nullopt;
}

bool known_method(std::string_view m) {
  for (std::string_view k :
       {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}) {
    if (m == k) return true;
  }
  return false;
}

// `"abc"` -> `"abc-gz"`: each content coding is its own representation with its own
// strong ETag (RFC 9110 §8.8.3.3), so a cache never answers a gzip request with zstd bytes.
std::string coded_etag(std::string_view etag, Coding coding) {
  if (coding == Coding::identity || etag.size() < 2 || etag.back() != '"') return std::string(etag);
  std::string tagged(etag.substr(0, etag.size() - 1));
  tagged += coding == Coding::gzip ? "-gz\"" : "-zst\"";
  return tagged;
}

// What a representation looks like to conditional and range requests.
struct Representation {
  std::uint64_t size = 0;
  std::string_view etag;  // strong, quoted; may be empty
  std::int64_t last_modified_s = 0;
};

bool is_get_or_head(std::string_view method) { return method == "GET" || method == "HEAD"; }

// RFC 9110 §13.2.2 order: If-Match, If-Unmodified-Since, If-None-Match, If-Modified-Since,
// then Range/If-Range. Fills status (200, 206, 304, 412, 416) and the slice to send.
struct Decision {
  unsigned status = 200;
  ByteRange slice;
};

Decision decide(const HttpRequest& request, const Representation& rep) {
  Decision d;
  d.slice = {0, rep.size};
  if (!request.if_match.empty()) {
    if (!etag_list_matches(request.if_match, rep.etag, false)) return {412, {}};
  } else if (!request.if_unmodified_since.empty()) {
    const auto since = parse_http_date(request.if_unmodified_since);
    if (since && rep.last_modified_s > *since) return {412, {}};
  }
  if (!request.if_none_match.empty()) {
    if (etag_list_matches(request.if_none_match, rep.etag, true)) return {304, {}};
  } else if (!request.if_modified_since.empty()) {
    const auto since = parse_http_date(request.if_modified_since);
    if (since && rep.last_modified_s <= *since) return {304, {}};
  }
  // Range is defined for GET only (RFC 9110 §14.2); HEAD answers as a plain GET would.
  if (request.method != "GET" || request.range.empty()) return d;
  if (!request.if_range.empty()) {
    const std::string_view validator = trim(request.if_range);
    bool match = false;
    if (validator.starts_with("\"")) {
      match = !rep.etag.empty() && validator == rep.etag;  // strong comparison
    } else if (!validator.starts_with("W/")) {
      const auto date = parse_http_date(validator);
      match = date && *date == rep.last_modified_s;
    }
    if (!match) return d;  // the client's copy is stale: send everything
  }
  const RangeResult range = parse_range(request.range, rep.size);
  if (range.kind == RangeKind::satisfiable) {
    d.status = 206;
    d.slice = range.range;
  } else if (range.kind == RangeKind::unsatisfiable) {
    d.status = 416;
  }
  return d;
}

// Applies the decision: status, validators, Content-Range; returns false when the plan is
// complete without a body slice (304, 412, 416).
bool apply(ResponsePlan& plan, const HttpRequest& request, const Representation& rep,
           const Decision& d) {
  if (d.status == 412) {
    plan = error(412, "precondition failed");
    return false;
  }
  if (d.status == 416) {
    plan = error(416, "range not satisfiable");
    add(plan, "Content-Range", "bytes */" + std::to_string(rep.size));
    return false;
  }
  if (!rep.etag.empty()) add(plan, "ETag", std::string(rep.etag));
  add(plan, "Last-Modified", http_date(rep.last_modified_s));
  if (d.status == 304) {
    plan.status = 304;
    plan.send_body = false;
    plan.source = BodySource::none;
    plan.content_length = 0;
    return false;
  }
  add(plan, "Accept-Ranges", "bytes");
  plan.status = d.status;
  plan.content_length = d.slice.length;
  if (d.status == 206) {
    add(plan, "Content-Range",
        "bytes " + std::to_string(d.slice.first) + "-" +
            std::to_string(d.slice.first + d.slice.length - 1) + "/" + std::to_string(rep.size));
  }
  plan.send_body = request.method != "HEAD";
  return true;
}

ResponsePlan serve_document(const HttpRequest& request,
                            const std::shared_ptr<const ServedDocument>& doc, bool protected_) {
  ResponsePlan plan;
  const Coding coding =
      negotiate_coding(request.accept_encoding, !doc->gzip.empty(), !doc->zstd.empty());
  const std::string_view bytes =
      coding == Coding::zstd ? doc->zstd : (coding == Coding::gzip ? doc->gzip : doc->body);
  const std::string etag = coded_etag(doc->etag, coding);
  // Documents change in place (the open Change List, the Resource List): caches may keep them
  // but must revalidate every time (a cheap 304 by ETag), so a mirror never acts on a stale
  // list. A closed Change List never changes again: cache it for a year.
  std::string cache = doc->immutable ? std::string(kImmutableCache) : "no-cache";
  if (protected_) cache = "private, " + cache;
  add(plan, "Content-Type", std::string(kXmlType));
  add(plan, "Cache-Control", std::move(cache));
  add(plan, "Vary", "Accept-Encoding");
  const Representation rep{bytes.size(), etag, doc->last_modified_s};
  const Decision d = decide(request, rep);
  if (!apply(plan, request, rep, d)) return plan;
  if (coding != Coding::identity) {
    add(plan, "Content-Encoding", coding == Coding::zstd ? "zstd" : "gzip");
  }
  if (plan.send_body) {
    const int fd = coding == Coding::zstd   ? doc->zstd_fd
                   : coding == Coding::gzip ? doc->gzip_fd
                                            : doc->body_fd;
    const int own = fd >= 0 ? ::fcntl(fd, F_DUPFD_CLOEXEC, 0) : -1;
    if (own >= 0) {
      // Sent like a file (sendfile on plain TCP) from the document's sealed memfd.
      plan.source = BodySource::file;
      plan.file = UniqueFd(own);
      plan.file_offset = d.slice.first;
      plan.file_size = bytes.size();
      plan.file_sealed = true;
    } else {
      plan.source = BodySource::document;
    }
    plan.document = doc;
    plan.document_bytes = bytes.substr(d.slice.first, d.slice.length);
  }
  return plan;
}

const Collection* find_collection(const Site& site, std::string_view name) {
  for (const Collection& c : site.collections) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

ResponsePlan serve_resource(const HttpRequest& request, const ServedResource& resource,
                            const Site& site, bool protected_, const HandlerContext& context) {
  ResponsePlan plan;
  const ResourceState& state = resource.state;
  // Files are replaced under the same URL (a new checkpoint shard): caches may store them but
  // must revalidate by ETag every time, the same policy as the lists that advertise them, so a
  // cache never hands out bytes that contradict the hash in the current Change List.
  add(plan, "Cache-Control", protected_ ? "private, no-cache" : "no-cache");
  add(plan, "Link",
      "<" + site.base_url + resource.collection + "/" + std::string(kCapabilityListName) +
          ">; rel=\"resourcesync\"");
  const std::int64_t last_modified =
      state.mtime_ns >= 0 ? state.mtime_ns / kNanos : (state.mtime_ns - kNanos + 1) / kNanos;
  const Representation rep{state.length, resource.etag, last_modified};
  const Decision d = decide(request, rep);
  if (d.status == 304 || d.status == 412) {
    apply(plan, request, rep, d);
    return plan;
  }
  // HEAD opens the file too: it must answer exactly as GET would (404/503 included).
  const Collection* collection = find_collection(site, resource.collection);
  if (collection == nullptr) return error(404, "not found");
  // Dump packages live under the state directory, not the collection's.
  const std::string& root = resource.root.empty() ? collection->directory : resource.root;
  OpenedFile opened = open_resource(root, state.path, state, context.use_openat2);
  switch (opened.status) {
    case OpenStatus::ok:
      break;
    case OpenStatus::missing:
    case OpenStatus::changed: {
      // The file changed after it was logged: its bytes would contradict the advertised hash.
      // The next snapshot will list it as it is now.
      ResponsePlan busy = error(503, "resource is changing; retry shortly");
      add(busy, "Retry-After", "1");
      return busy;
    }
    case OpenStatus::unsafe:
      return error(404, "not found");
    case OpenStatus::error:
      return error(500, "cannot open resource");
  }
  add(plan, "Content-Type",
      state.type.empty() ? std::string(kOctetStream) : std::string(state.type));
  add(plan, "X-Content-Type-Options", "nosniff");
  if (!apply(plan, request, rep, d)) return plan;
  if (plan.send_body) {
    plan.source = BodySource::file;
    plan.file = std::move(opened.fd);
    plan.file_offset = d.slice.first;
    plan.file_size = opened.size;
    plan.file_mtime_ns = opened.mtime_ns;
  }
  return plan;
}

// GET/HEAD on a notification topic: WebSub discovery (Link headers), or the event stream.
ResponsePlan serve_topic(const HttpRequest& request, const Site& site,
                         const std::string& collection, Channel channel) {
  const std::string hub = hub_url(site.base_url);
  const std::string topic = topic_url(site.base_url, collection, channel);
  const std::string links = "<" + hub + ">; rel=\"hub\", <" + topic + ">; rel=\"self\"";
  bool wants_stream = false;
  for_each_element(request.accept, [&](std::string_view element) {
    const std::string_view type = trim(element.substr(0, element.find(';')));
    if (iequals(type, "text/event-stream")) wants_stream = true;
  });
  if (wants_stream && request.method == "GET") {
    ResponsePlan plan;
    add(plan, "Link", links);
    EventStreamRequest stream{collection, channel, 0, hub, topic};
    std::uint64_t last = 0;
    if (parse_u64(trim(request.last_event_id), last)) stream.last_event_id = last;
    plan.event_stream = std::move(stream);
    return plan;
  }
  ResponsePlan plan =
      error(200, std::string(channel_name(channel)) + " topic of " + collection +
                     ": subscribe at " + hub + ", or GET it with Accept: text/event-stream");
  plan.headers.pop_back();  // no-store is for errors
  add(plan, "Cache-Control", "no-cache");
  add(plan, "Link", links);
  return plan;
}

ResponsePlan route(const HttpRequest& request, const Site* site, const HandlerContext& context) {
  const std::string_view method = request.method;
  const bool write = method == "PUT" || method == "DELETE";
  const bool hub_post = method == "POST" && context.options->notifier &&
                        decode_target_path(request.target) == std::string(kHubPath);
  if (hub_post) {
    if (site == nullptr) {
      ResponsePlan busy = error(503, "starting");
      add(busy, "Retry-After", "1");
      return busy;
    }
    ResponsePlan plan;
    plan.hub_form = true;
    return plan;
  }
  if (!is_get_or_head(method) && !write) return not_allowed(known_method(method));

  const std::optional<std::string> path = decode_target_path(request.target);
  if (!path) return error(400, "bad request target");
  const std::string_view p = *path;
  const std::size_t second_slash = p.find('/', 1);
  const std::string_view first_segment = p.substr(
      1, second_slash == std::string_view::npos ? std::string_view::npos : second_slash - 1);
  const HttpOptions& options = *context.options;

  if (write) {
    const PublishHooks& hooks = options.publish;
    if (method == "PUT" ? !hooks.put : !hooks.remove) return not_allowed(true);
    if (options.write_token.empty()) return error(403, "publishing is disabled");
    if (auto refused = refuse_without(request.authorization, options.write_token)) {
      return std::move(*refused);
    }
    if (site == nullptr) {
      ResponsePlan busy = error(503, "starting");
      add(busy, "Retry-After", "1");
      return busy;
    }
    if (second_slash == std::string_view::npos || !find_collection(*site, first_segment)) {
      return error(404, "no such collection");
    }
    const std::string relative(p.substr(second_slash + 1));
    if (is_reserved_path(relative)) return error(403, "reserved path");
    ResponsePlan plan;
    plan.publish = PublishRequest{std::string(first_segment), relative, std::nullopt};
    plan.publish_remove = method == "DELETE";
    // RFC 9110 §13.1.2: `If-None-Match: *` on a PUT means "only if nothing is there yet".
    plan.publish->create_only = method == "PUT" && trim(request.if_none_match) == "*";
    return plan;
  }

  if (p == "/metrics") {
    ResponsePlan plan;
    add(plan, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    add(plan, "Cache-Control", "no-store");
    plan.text = context.metrics ? render_metrics(*context.metrics) : std::string();
    plan.content_length = plan.text.size();
    plan.send_body = method == "GET";
    plan.source = plan.send_body ? BodySource::text : BodySource::none;
    return plan;
  }
  if (site == nullptr) {
    ResponsePlan busy = error(503, "starting");
    add(busy, "Retry-After", "1");
    return busy;
  }
  // A collection's read token guards everything under /<collection>/, checked before the
  // lookup so that a 404 does not reveal what exists.
  bool protected_ = false;
  if (second_slash != std::string_view::npos) {
    const auto token = options.read_tokens.find(std::string(first_segment));
    if (token != options.read_tokens.end() && !token->second.empty()) {
      protected_ = true;
      if (auto refused = refuse_without(request.authorization, token->second)) {
        return std::move(*refused);
      }
    }
  }
  if (const auto doc = site->documents.find(*path); doc != site->documents.end()) {
    return serve_document(request, doc->second, protected_);
  }
  if (second_slash != std::string_view::npos) {
    const auto resource = site->resources.find(std::string(p.substr(1)));
    if (resource != site->resources.end()) {
      return serve_resource(request, resource->second, *site, protected_, context);
    }
  }
  if (options.notifier) {
    if (p == kHubPath) {
      ResponsePlan plan = error(405, "the WebSub hub takes form POSTs");
      add(plan, "Allow", "POST");
      return plan;
    }
    if (auto topic = parse_topic_path(p); topic && find_collection(*site, topic->first)) {
      return serve_topic(request, *site, topic->first, topic->second);
    }
  }
  return error(404, "not found");
}

}  // namespace

// ---- Framing ----

std::optional<unsigned> check_framing(const Framing& framing) {
  if (framing.host_fields > 1) return 400;
  if (framing.version >= 11 && framing.host_fields == 0) return 400;
  if (!framing.has_transfer_encoding) return std::nullopt;
  // RFC 9112 §6.1: TE with Content-Length is a smuggling attempt; TE in HTTP/1.0 cannot be
  // framed by a 1.0 recipient; the final coding must be chunked or the length is unknowable.
  if (framing.has_content_length || framing.version < 11) return 400;
  std::vector<std::string_view> codings;
  for_each_element(framing.transfer_encoding, [&](std::string_view element) {
    codings.push_back(trim(element.substr(0, element.find(';'))));
  });
  if (codings.empty() || !iequals(codings.back(), "chunked")) return 400;
  if (codings.size() > 1) return 501;
  return std::nullopt;
}

bool has_obs_fold(std::string_view header_section) {
  for (std::size_t i = header_section.find('\n'); i != std::string_view::npos;
       i = header_section.find('\n', i + 1)) {
    if (i + 1 < header_section.size() && is_ows(header_section[i + 1])) return true;
  }
  return false;
}

// ---- Paths ----

std::optional<std::string> decode_target_path(std::string_view target) {
  // absolute-form (RFC 9112 §3.2.2): drop the scheme and authority.
  for (std::string_view scheme : {"http://", "https://"}) {
    if (target.size() >= scheme.size() && iequals(target.substr(0, scheme.size()), scheme)) {
      target.remove_prefix(scheme.size());
      const std::size_t slash = target.find_first_of("/?");
      if (slash == std::string_view::npos || target[slash] == '?') return "/";
      target.remove_prefix(slash);
      break;
    }
  }
  if (target.empty() || target.front() != '/') return std::nullopt;
  target = target.substr(0, target.find_first_of("?#"));
  if (target == "/") return "/";
  std::string path;
  path.reserve(target.size());
  std::string_view rest = target.substr(1);
  while (true) {
    const std::size_t slash = rest.find('/');
    const std::string_view raw = rest.substr(0, slash);
    if (raw.empty()) return std::nullopt;
    // Decoded exactly once: "%252e" stays the literal "%2e", never "." .
    std::optional<std::string> segment = sitemap::decode_percent(raw);
    if (!segment || *segment == "." || *segment == "..") return std::nullopt;
    for (const char c : *segment) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '/' || c == '\\' || u < 0x20 || u == 0x7f) return std::nullopt;
    }
    path += '/';
    path += *segment;
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  return path;
}

// ---- Dates ----

std::string http_date(std::int64_t t) {
  // Beyond year 9999 an IMF-fixdate has no form; clamp (Last-Modified only, never reached).
  constexpr std::int64_t kMax = 253402300799;  // 9999-12-31T23:59:59Z
  t = std::clamp<std::int64_t>(t, 0, kMax);
  const std::int64_t days = t / 86400;
  const std::int64_t secs = t % 86400;
  const sitemap::CivilDate c = civil_from_days(days);
  const auto weekday = static_cast<std::size_t>((days + 4) % 7);
  char out[40];
  std::snprintf(out, sizeof out, "%.3s, %02u %.3s %04lld %02lld:%02lld:%02lld GMT",
                kDays[weekday].data(), c.day, kMonths[c.month - 1].data(),
                static_cast<long long>(c.year), static_cast<long long>(secs / 3600),
                static_cast<long long>(secs / 60 % 60), static_cast<long long>(secs % 60));
  return out;
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  s = trim(s);
  unsigned day = 0, year = 0;
  // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
  if (s.size() == 29 && s[3] == ',' && s[4] == ' ' && s[7] == ' ' && s[11] == ' ' && s[16] == ' ' &&
      s.substr(25) == " GMT") {
    const auto month = month_number(s.substr(8, 3));
    const auto clock = parse_clock(s.substr(17, 8));
    if (!month || !clock || !parse_fixed(s.substr(5, 2), day) ||
        !parse_fixed(s.substr(12, 4), year)) {
      return std::nullopt;
    }
    return assemble(year, *month, day, *clock);
  }
  // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
  if (const std::size_t comma = s.find(", ");
      comma != std::string_view::npos && s.size() == comma + 24 && s.ends_with(" GMT")) {
    const std::string_view d = s.substr(comma + 2);  // "06-Nov-94 08:49:37 GMT"
    if (d[2] != '-' || d[6] != '-' || d[9] != ' ') return std::nullopt;
    const auto month = month_number(d.substr(3, 3));
    const auto clock = parse_clock(d.substr(10, 8));
    if (!month || !clock || !parse_fixed(d.substr(0, 2), day) ||
        !parse_fixed(d.substr(7, 2), year)) {
      return std::nullopt;
    }
    // RFC 9110 §5.6.7: a two-digit year more than 50 years ahead is in the past century.
    return assemble(year < 70 ? 2000 + year : 1900 + year, *month, day, *clock);
  }
  // asctime: "Sun Nov  6 08:49:37 1994"
  if (s.size() == 24 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' && s[19] == ' ') {
    const auto month = month_number(s.substr(4, 3));
    const auto clock = parse_clock(s.substr(11, 8));
    const std::string_view d = s[8] == ' ' ? s.substr(9, 1) : s.substr(8, 2);
    if (!month || !clock || !parse_fixed(d, day) || !parse_fixed(s.substr(20, 4), year)) {
      return std::nullopt;
    }
    return assemble(year, *month, day, *clock);
  }
  return std::nullopt;
}

// ---- Ranges ----

RangeResult parse_range(std::string_view header, std::uint64_t size) {
  header = trim(header);
  const std::size_t eq = header.find('=');
  if (eq == std::string_view::npos || !iequals(trim(header.substr(0, eq)), "bytes")) return {};
  std::vector<std::string_view> specs;
  for_each_element(header.substr(eq + 1), [&](std::string_view e) { specs.push_back(e); });
  // Several ranges: the whole representation (one response, no multipart; also defeats
  // overlapping-range amplification, CVE-2011-3192).
  if (specs.size() != 1) return {};
  // An empty representation has no byte to range over: send it whole (200, empty).
  if (size == 0) return {};
  const std::string_view spec = specs.front();
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return {};
  const std::string_view first_text = trim(spec.substr(0, dash));
  const std::string_view last_text = trim(spec.substr(dash + 1));
  if (first_text.empty()) {  // suffix: the last N bytes
    if (!all_digits(last_text)) return {};
    std::uint64_t n = 0;
    if (!parse_u64(last_text, n)) n = std::numeric_limits<std::uint64_t>::max();
    if (n == 0) return {RangeKind::unsatisfiable, {}};
    n = std::min(n, size);
    return {RangeKind::satisfiable, {size - n, n}};
  }
  if (!all_digits(first_text)) return {};
  std::uint64_t first = 0;
  // A first position past 2^64 is past any file.
  if (!parse_u64(first_text, first)) return {RangeKind::unsatisfiable, {}};
  std::uint64_t last = std::numeric_limits<std::uint64_t>::max();
  if (!last_text.empty()) {
    if (!all_digits(last_text)) return {};
    if (!parse_u64(last_text, last)) last = std::numeric_limits<std::uint64_t>::max();
    if (last < first) return {};  // invalid: ignore the header
  }
  if (first >= size) return {RangeKind::unsatisfiable, {}};
  last = std::min(last, size - 1);
  return {RangeKind::satisfiable, {first, last - first + 1}};
}

// ---- Negotiation and validators ----

Coding negotiate_coding(std::string_view accept_encoding, bool gzip_ok, bool zstd_ok) {
  // q-values in thousandths; -1: not mentioned.
  int q_zstd = -1, q_gzip = -1, q_identity = -1, q_any = -1;
  for_each_element(accept_encoding, [&](std::string_view element) {
    const std::size_t semi = element.find(';');
    const std::string_view coding = trim(element.substr(0, semi));
    int q = 1000;
    if (semi != std::string_view::npos) {
      std::string_view param = trim(element.substr(semi + 1));
      if (param.size() < 2 || lower(param[0]) != 'q' || param[1] != '=') return;
      param.remove_prefix(2);
      // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
      if (param.empty() || (param[0] != '0' && param[0] != '1')) return;
      q = param[0] == '1' ? 1000 : 0;
      if (param.size() > 1) {
        if (param[1] != '.' || param.size() > 5) return;
        int scale = 100;
        for (const char c : param.substr(2)) {
          if (c < '0' || c > '9') return;
          q += (c - '0') * scale;
          scale /= 10;
        }
        if (q > 1000) return;
      }
    }
    if (iequals(coding, "zstd")) {
      q_zstd = q;
    } else if (iequals(coding, "gzip") || iequals(coding, "x-gzip")) {
      q_gzip = q;
    } else if (iequals(coding, "identity")) {
      q_identity = q;
    } else if (coding == "*") {
      q_any = q;
    }
  });
  const int zstd = zstd_ok ? (q_zstd >= 0 ? q_zstd : std::max(q_any, 0)) : 0;
  const int gzip = gzip_ok ? (q_gzip >= 0 ? q_gzip : std::max(q_any, 0)) : 0;
  // identity is acceptable unless refused explicitly; we still send it when nothing else is.
  const int identity = q_identity >= 0 ? q_identity : (q_any == 0 ? 0 : 1);
  if (zstd > 0 && zstd >= gzip && zstd >= identity) return Coding::zstd;
  if (gzip > 0 && gzip >= identity) return Coding::gzip;
  return Coding::identity;
}

bool etag_list_matches(std::string_view list, std::string_view tag, bool weak) {
  list = trim(list);
  if (list == "*") return true;
  if (tag.empty()) return false;
  while (!list.empty()) {
    while (!list.empty() && (is_ows(list.front()) || list.front() == ',')) list.remove_prefix(1);
    if (list.empty()) break;
    bool is_weak = false;
    if (list.starts_with("W/")) {
      is_weak = true;
      list.remove_prefix(2);
    }
    if (list.empty() || list.front() != '"') return false;
    const std::size_t close = list.find('"', 1);
    if (close == std::string_view::npos) return false;
    const std::string_view candidate = list.substr(0, close + 1);
    if ((weak || !is_weak) && candidate == tag) return true;
    list.remove_prefix(close + 1);
  }
  return false;
}

bool bearer_matches(std::string_view authorization, std::string_view token) {
  return check_bearer(authorization, token) == TokenCheck::ok;
}

bool secrets_equal(std::string_view a, std::string_view b) {
  // Digests first, so neither the length nor a common prefix shows in the timing.
  unsigned char da[EVP_MAX_MD_SIZE], db[EVP_MAX_MD_SIZE];
  unsigned int la = 0, lb = 0;
  if (EVP_Digest(a.data(), a.size(), da, &la, EVP_sha256(), nullptr) != 1 ||
      EVP_Digest(b.data(), b.size(), db, &lb, EVP_sha256(), nullptr) != 1 || la != lb) {
    return false;
  }
  return CRYPTO_memcmp(da, db, la) == 0;
}

// ---- Responses ----

ResponsePlan text_response(unsigned status, std::string text, std::int64_t now_s) {
  ResponsePlan plan = error(status, text);
  if (status < 400) plan.headers.pop_back();             // no "no-store" needed on success
  if (status == 204 || status == 304 || status < 200) {  // these never have a body
    plan.headers.clear();
    plan.text.clear();
    plan.source = BodySource::none;
    plan.send_body = false;
    plan.content_length = 0;
  }
  add(plan, "Date", http_date(now_s));
  return plan;
}

ResponsePlan handle_request(const HttpRequest& request, const Site* site,
                            const HandlerContext& context) {
  ResponsePlan plan = route(request, site, context);
  add(plan, "Date", http_date(context.now_s));
  if (request.method == "HEAD") {
    plan.send_body = false;
    plan.source = BodySource::none;
    plan.file = UniqueFd();
    plan.document.reset();
  }
  return plan;
}

std::string_view reason_phrase(unsigned status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 202:
      return "Accepted";
    case 204:
      return "No Content";
    case 206:
      return "Partial Content";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 416:
      return "Range Not Satisfiable";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return status < 300 ? "OK" : (status < 500 ? "Client Error" : "Server Error");
  }
}

std::string serialize_head(const ResponsePlan& plan, bool keep_alive, unsigned request_version) {
  std::string out;
  out.reserve(512);
  out += "HTTP/1.1 ";
  out += std::to_string(plan.status);
  out += ' ';
  out += reason_phrase(plan.status);
  out += "\r\n";
  for (const auto& [name, value] : plan.headers) {
    out += name;
    out += ": ";
    // Values are ours, but a media type comes from the scanner: never let a CR or LF through.
    for (const char c : value) {
      const auto u = static_cast<unsigned char>(c);
      if (u >= 0x20 || c == '\t') out += c;
    }
    out += "\r\n";
  }
  // No Content-Length on 304 (it would have to equal the 200's) or on 1xx/204.
  if (plan.status != 304 && plan.status != 204 && plan.status >= 200) {
    out += "Content-Length: ";
    out += std::to_string(plan.content_length);
    out += "\r\n";
  }
  if (!keep_alive) {
    out += "Connection: close\r\n";
  } else if (request_version < 11) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
  return out;
}

// ---- Files ----

namespace {

std::atomic<bool> g_openat2_missing{false};

OpenedFile open_failed(int err) {
  OpenedFile f;
  f.error = err;
  switch (err) {
    case ENOENT:
      f.status = OpenStatus::missing;
      break;
    case ELOOP:
    case EXDEV:
      f.status = OpenStatus::unsafe;
      break;
    default:
      f.status = OpenStatus::error;
  }
  return f;
}

constexpr int kFileFlags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;

// The fallback when openat2() is refused: one component at a time, never following a link.
int walk_beneath(int root, const std::string& relative) {
  UniqueFd dir;
  int at = root;
  std::string_view rest = relative;
  while (true) {
    const std::size_t slash = rest.find('/');
    const std::string name(rest.substr(0, slash));
    if (name.empty() || name == "." || name == "..") {
      errno = EXDEV;
      return -1;
    }
    if (slash == std::string_view::npos) return ::openat(at, name.c_str(), kFileFlags | O_NOFOLLOW);
    const int next = ::openat(at, name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (next < 0) {
      // A symlink where a directory was: ENOTDIR; say what it really is.
      struct stat st {};
      if (errno == ENOTDIR && ::fstatat(at, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISLNK(st.st_mode)) {
        errno = ELOOP;
      } else if (errno == ENOTDIR) {
        errno = ENOENT;
      }
      return -1;
    }
    dir = UniqueFd(next);
    at = next;
    rest.remove_prefix(slash + 1);
  }
}

}  // namespace

OpenedFile open_resource(const std::string& root, const std::string& relative_path,
                         const ResourceState& expected, bool use_openat2) {
  const UniqueFd root_fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd.valid()) return open_failed(errno);
  int fd = -1;
  bool walked = !use_openat2 || g_openat2_missing.load(std::memory_order_relaxed);
  if (!walked) {
    open_how how{};
    how.flags = static_cast<std::uint64_t>(kFileFlags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    fd = static_cast<int>(
        ::syscall(SYS_openat2, root_fd.get(), relative_path.c_str(), &how, sizeof how));
    if (fd < 0 && (errno == ENOSYS || errno == EPERM)) {
      g_openat2_missing.store(true, std::memory_order_relaxed);
      walked = true;
    }
  }
  if (walked) fd = walk_beneath(root_fd.get(), relative_path);
  if (fd < 0) {
    // openat2 reports a plain file used as a directory as ENOTDIR: it is gone as published.
    return open_failed(errno == ENOTDIR ? ENOENT : errno);
  }
  OpenedFile f;
  f.fd = UniqueFd(fd);
  struct stat st {};
  if (::fstat(fd, &st) != 0) return open_failed(errno);
  if (!S_ISREG(st.st_mode)) {
    f.fd = UniqueFd();
    f.status = OpenStatus::unsafe;
    return f;
  }
  f.size = static_cast<std::uint64_t>(st.st_size);
  f.mtime_ns = static_cast<std::int64_t>(st.st_mtim.tv_sec) * kNanos + st.st_mtim.tv_nsec;
  if (f.size != expected.length || f.mtime_ns != expected.mtime_ns) {
    f.fd = UniqueFd();
    f.status = OpenStatus::changed;
    return f;
  }
  ::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  f.status = OpenStatus::ok;
  return f;
}

std::string render_metrics(const Metrics& m) {
  std::string out;
  out.reserve(1536);
  const auto metric = [&](std::string_view name, std::string_view type, std::string_view help,
                          std::uint64_t value) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
    out += name;
    out += ' ';
    out += std::to_string(value);
    out += '\n';
  };
  const auto load = [](const std::atomic<std::uint64_t>& a) {
    return a.load(std::memory_order_relaxed);
  };
  metric("shardsync_http_requests_total", "counter", "HTTP requests received.", load(m.requests));
  out +=
      "# HELP shardsync_http_responses_total HTTP responses sent, by status class.\n"
      "# TYPE shardsync_http_responses_total counter\n";
  const std::pair<const char*, std::uint64_t> classes[] = {{"2xx", load(m.responses_2xx)},
                                                           {"3xx", load(m.responses_3xx)},
                                                           {"4xx", load(m.responses_4xx)},
                                                           {"5xx", load(m.responses_5xx)}};
  for (const auto& [label, value] : classes) {
    out += "shardsync_http_responses_total{code=\"";
    out += label;
    out += "\"} ";
    out += std::to_string(value);
    out += '\n';
  }
  metric("shardsync_http_sent_bytes_total", "counter", "Bytes of HTTP responses sent.",
         load(m.bytes_sent));
  metric("shardsync_http_connections_open", "gauge", "Connections being served.",
         load(m.connections_open));
  metric("shardsync_http_connections_refused_total", "counter",
         "Connections refused at the connection limit.", load(m.connections_refused));
  metric("shardsync_changes_total", "counter", "Changes recorded in the change log.",
         load(m.changes));
  metric("shardsync_hash_cache_hits_total", "counter", "Files whose digests came from the cache.",
         load(m.hash_cache_hits));
  metric("shardsync_files_hashed_total", "counter", "Files read and hashed.", load(m.files_hashed));
  metric("shardsync_errors_total", "counter", "Errors (I/O, internal, failed responses).",
         load(m.errors));
  metric("shardsync_notifications_total", "counter", "Change/Framework Notifications published.",
         load(m.notifications));
  metric("shardsync_push_deliveries_total", "counter", "Notifications delivered to callbacks.",
         load(m.push_deliveries));
  metric("shardsync_push_failures_total", "counter",
         "Notifications given up on (the subscriber was dropped).", load(m.push_failures));
  metric("shardsync_push_subscriptions", "gauge", "Active WebSub subscriptions.",
         load(m.push_subscriptions));
  metric("shardsync_event_streams", "gauge", "Open event streams.", load(m.event_streams));
  return out;
}

}  // namespace shardsync::server::detail
