#include "shardsync/client/downloader.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>
#include <map>
#include <string_view>
#include <system_error>

#include "committer.hpp"
#include "hash_pipeline.hpp"
#include "shardsync/client/errc.hpp"
#include "shardsync/sitemap/digest.hpp"
#include "shardsync/unique_fd.hpp"
#include "transient_error.hpp"

namespace shardsync::client {
namespace {

using Clock = std::chrono::steady_clock;
using detail::Batch;
using detail::CommitDone;
using detail::CommitJob;
using detail::Committer;
using detail::HashPipeline;
using detail::HashStream;
using detail::os_error;
using sitemap::HashAlgorithm;

constexpr char kValidatorXattr[] = "user.shardsync.validator";
// Response headers of one request, redirects included; libcurl caps single lines at 100 KiB,
// this caps the sum (RELIABILITY.md C8).
constexpr std::size_t kMaxHeaderBytes = 256 * 1024;
// Batches queued for writing and hashing beyond the one each transfer fills: enough to ride
// out a slow moment of the disk or the hasher, small enough to bound memory (8 MiB with the
// default 1 MiB batches).
constexpr std::size_t kQueuedBatches = 8;
// Bodies held in memory up to this size are hashed on the curl thread (hashes_inline).
constexpr std::size_t kInlineHashBytes = 64 * 1024;

struct EasyDeleter {
  void operator()(CURL* easy) const { curl_easy_cleanup(easy); }
};
struct MultiDeleter {
  void operator()(CURLM* multi) const { curl_multi_cleanup(multi); }
};
struct SlistDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};
struct UrlDeleter {
  void operator()(CURLU* url) const { curl_url_cleanup(url); }
};
using EasyPtr = std::unique_ptr<CURL, EasyDeleter>;
using MultiPtr = std::unique_ptr<CURLM, MultiDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return (x | 0x20) == (y | 0x20);  // ASCII header names and hex digits only
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() &&
         (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n')) {
    s.remove_suffix(1);
  }
  return s;
}

template <typename T>
std::optional<T> parse_number(std::string_view s) {
  T value{};
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

// Content-Range of a 206 or 416: "bytes FIRST-LAST/TOTAL" or "bytes */TOTAL" (TOTAL may be *).
struct ContentRange {
  std::optional<std::uint64_t> first;
  std::optional<std::uint64_t> total;
};
std::optional<ContentRange> parse_content_range(std::string_view value) {
  if (value.substr(0, 6) != "bytes ") return std::nullopt;
  value.remove_prefix(6);
  const auto slash = value.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  ContentRange range;
  const std::string_view span = value.substr(0, slash);
  const std::string_view total = value.substr(slash + 1);
  if (total != "*") {
    range.total = parse_number<std::uint64_t>(total);
    if (!range.total) return std::nullopt;
  }
  if (span != "*") {
    const auto dash = span.find('-');
    if (dash == std::string_view::npos) return std::nullopt;
    range.first = parse_number<std::uint64_t>(span.substr(0, dash));
    if (!range.first || !parse_number<std::uint64_t>(span.substr(dash + 1))) return std::nullopt;
  }
  return range;
}

// scheme://host:port of a URL (default port filled in), empty when it does not parse.
std::string origin_of(const std::string& url) {
  std::unique_ptr<CURLU, UrlDeleter> handle(curl_url());
  if (!handle || curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return {};
  std::string out;
  for (const auto& [part, flags] : {std::pair{CURLUPART_SCHEME, 0u}, std::pair{CURLUPART_HOST, 0u},
                                    std::pair{CURLUPART_PORT, unsigned{CURLU_DEFAULT_PORT}}}) {
    char* text = nullptr;
    if (curl_url_get(handle.get(), part, &text, flags) != CURLUE_OK) return {};
    out.append(text).push_back('|');
    curl_free(text);
  }
  return out;
}

bool valid_leaf(const std::string& leaf) {
  return !leaf.empty() && leaf != "." && leaf != ".." &&
         leaf.find_first_of(std::string_view("/\0", 2)) == std::string::npos;
}

// What ended a request early (the write or header callback returned short).
enum class Abort {
  none,
  http_status,   // not 200/206: the body is an error page, never data
  wrong_length,  // more bytes than listed, or a response announcing another length
  bad_range,     // a 206 that does not continue our bytes
  header_flood,  // response headers over kMaxHeaderBytes
  local,         // writing failed (local_error says how)
  exception,     // a callback threw; rethrown after curl_multi_perform
};

// The headers of the response being received (reset at each status line, so redirects and
// 1xx responses leave only the final response's).
struct Response {
  long status = 0;
  std::string etag;
  std::string last_modified;
  std::string content_range;
  std::string content_encoding;
  std::optional<long> retry_after_s;
};

enum class State { waiting, active, hashing, committing };

}  // namespace

std::string partial_name(const std::string& leaf) {
  sitemap::Hasher hasher;
  hasher.update(leaf);
  return ".shardsync-part-" + std::string(hasher.finish().get(HashAlgorithm::sha256).substr(0, 16));
}

struct Downloader::Impl {
  struct Transfer;

  explicit Impl(DownloaderOptions o) : options(std::move(o)), multi(curl_multi_init()) {
    if (!multi) throw std::runtime_error("curl_multi_init failed");
    options.parallel = std::max(1, options.parallel);
    options.max_attempts = std::max(1, options.max_attempts);
    options.write_batch_bytes = std::max<std::size_t>(options.write_batch_bytes, 64 * 1024);
    options.commit_threads = std::max(1, options.commit_threads);
    curl_multi_setopt(multi.get(), CURLMOPT_MAX_HOST_CONNECTIONS, long{options.parallel});
    curl_multi_setopt(multi.get(), CURLMOPT_PIPELINING, long{CURLPIPE_MULTIPLEX});
  }

  void log(const std::string& line) const {
    if (options.log) options.log(line);
  }

  void run(const std::function<std::optional<DownloadJob>()>& next_job,
           const std::function<void(DownloadResult&&)>& done,
           const std::function<void(std::uint64_t)>& bytes);

  // Job set-up and the request cycle.
  void begin(DownloadJob job);
  void start_request(Transfer& t);
  bool start_body(Transfer& t);
  bool open_temp(Transfer& t, bool create, struct stat& st);
  bool ready_to_write(Transfer& t, bool last);
  bool flush(Transfer& t, bool last = false);
  bool reset_content(Transfer& t);
  void request_done(Transfer& t, CURLcode code);
  void hashed(Transfer& t);
  void commit(Transfer& t);
  void committed(Transfer& t, CommitDone done);
  // Outcomes of a request.
  void retry(Transfer& t, Error error, bool with_backoff);
  void next_url(Transfer& t, Error error);
  void fail(Transfer& t, Error error);
  void succeed(Transfer& t);
  void verify(Transfer& t);
  static bool hashes_inline(const Transfer& t);

  static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user);
  std::size_t header_line(Transfer& t, std::string_view raw);
  static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user);

  DownloaderOptions options;
  MultiPtr multi;
  // Per run().
  std::unique_ptr<HashPipeline> pipeline;
  std::unique_ptr<Committer> committer;
  std::map<std::uint64_t, std::unique_ptr<Transfer>> transfers;
  std::uint64_t next_token = 1;
  // Transfers handed to the committer: they no longer hold one of the `parallel` slots (a
  // commit waits for the disk, not the network), up to kMaxCommitting of them.
  std::size_t committing = 0;
  static constexpr std::size_t kMaxCommitting = 256;
  bool slot_free() const {
    return transfers.size() - committing < static_cast<std::size_t>(options.parallel) &&
           committing < kMaxCommitting;
  }
  const std::function<void(DownloadResult&&)>* on_done = nullptr;
  const std::function<void(std::uint64_t)>* on_bytes = nullptr;
  std::exception_ptr callback_error;
};

struct Downloader::Impl::Transfer {
  Impl* impl = nullptr;
  std::uint64_t token = 0;
  DownloadJob job;
  std::string temp_name;
  std::string primary_origin;
  UniqueFd fd;
  UniqueFd direct_fd;  // the same file opened O_DIRECT (by the writer, for aligned batches)
  bool direct_failed = false;
  std::vector<HashAlgorithm> algorithms;
  std::shared_ptr<HashStream> stream;
  std::string validator;     // of the bytes in the temp file; empty: they cannot be resumed
  bool xattr_set = false;    // the temp file may carry the validator xattr
  std::string held;          // a body complete in its one batch, for the committer to write
  std::uint64_t offset = 0;  // body bytes kept: written, or waiting in `batch`
  std::unique_ptr<Batch> batch;
  DownloadOutcome outcome;
  std::size_t url_index = 0;
  int url_attempts = 0;
  State state = State::waiting;
  Clock::time_point due{};
  Error last_error;
  // The request in flight.
  EasyPtr easy;
  SlistPtr headers;
  char error_buffer[CURL_ERROR_SIZE] = {};
  Response response;
  std::size_t header_bytes = 0;
  bool body_started = false;
  Abort abort = Abort::none;
  std::optional<Error> local_error;

  const std::string& url() const { return job.urls[url_index]; }
};

void Downloader::Impl::run(const std::function<std::optional<DownloadJob>()>& next_job,
                           const std::function<void(DownloadResult&&)>& done,
                           const std::function<void(std::uint64_t)>& bytes) {
  on_done = &done;
  on_bytes = bytes ? &bytes : nullptr;
  const std::size_t max_batches = static_cast<std::size_t>(options.parallel) + kQueuedBatches;
  const auto wake = [m = multi.get()] { curl_multi_wakeup(m); };
  pipeline = std::make_unique<HashPipeline>(options.write_batch_bytes, max_batches, wake);
  committer = std::make_unique<Committer>(options.commit_threads, wake);
  // Leaves no easy handle in the multi and no thread running, however run() ends; partial
  // files stay for the next run to resume.
  struct Cleanup {
    Impl& impl;
    ~Cleanup() {
      for (auto& [token, t] : impl.transfers) {
        if (t->easy) curl_multi_remove_handle(impl.multi.get(), t->easy.get());
        if (t->stream) t->stream->cancelled = true;
      }
      impl.committer.reset();  // before the caller may close the directories it lent
      impl.pipeline.reset();   // joins the writer: `written` is what reached the files
      for (auto& [token, t] : impl.transfers) {
        if (t->fd && t->stream->written.load(std::memory_order_acquire) == 0) {
          ::unlinkat(t->job.dir_fd, t->temp_name.c_str(), 0);
        }
      }
      impl.transfers.clear();
      impl.committing = 0;
      impl.callback_error = nullptr;
    }
  } cleanup{*this};

  bool exhausted = false;
  for (;;) {
    // Refill: next_job is pulled only while a slot is free (callers may produce lazily).
    while (!exhausted && slot_free()) {
      std::optional<DownloadJob> job = next_job();
      if (!job) {
        exhausted = true;
        break;
      }
      begin(std::move(*job));
    }
    if (exhausted && transfers.empty()) break;

    int running = 0;
    curl_multi_perform(multi.get(), &running);
    if (callback_error) std::rethrow_exception(callback_error);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi.get(), &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      char* priv = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      Transfer* t = reinterpret_cast<Transfer*>(priv);
      const CURLcode code = msg->data.result;
      curl_multi_remove_handle(multi.get(), msg->easy_handle);
      request_done(*t, code);
    }
    for (const std::uint64_t token : pipeline->take_finished()) {
      const auto it = transfers.find(token);
      if (it != transfers.end() && it->second->state == State::hashing) hashed(*it->second);
    }
    for (CommitDone& result : committer->take_done()) {
      const auto it = transfers.find(result.token);
      if (it != transfers.end()) committed(*it->second, std::move(result));
    }
    // Retries whose backoff has passed; the earliest one still waiting bounds the poll.
    const auto now = Clock::now();
    auto wait = std::chrono::milliseconds(1000);
    std::vector<Transfer*> due;
    for (auto& [token, t] : transfers) {
      if (t->state != State::waiting) continue;
      if (t->due <= now) {
        due.push_back(t.get());
      } else {
        wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(t->due - now));
      }
    }
    for (Transfer* t : due) start_request(*t);
    if (!due.empty()) continue;  // new handles: perform at once
    // A slot came free (or all are): refill, or end, before sleeping.
    if (transfers.empty() || (!exhausted && slot_free())) {
      continue;
    }
    curl_multi_poll(multi.get(), nullptr, 0, static_cast<int>(wait.count()), nullptr);
  }
  // The renames reported by on_done become durable here (their directories' fsyncs), before
  // the caller records them.
  if (auto error = committer->sync_dirs()) throw std::system_error(error->code, error->detail);
}

void Downloader::Impl::begin(DownloadJob job) {
  auto owned = std::make_unique<Transfer>();
  Transfer& t = *owned;
  t.impl = this;
  t.token = next_token++;
  t.job = std::move(job);
  t.outcome.attempts = 0;
  transfers.emplace(t.token, std::move(owned));

  if (t.job.urls.empty() || t.job.dir_fd < 0) {
    return fail(t, Error{make_error_code(errc::invalid_options), "job without URL or directory"});
  }
  if (!valid_leaf(t.job.leaf)) {
    return fail(t, Error{make_error_code(errc::unsafe_path), "unsafe file name: " + t.job.leaf});
  }
  t.primary_origin = origin_of(t.job.urls.front());
  // sha-256 always (the outcome reports it); the listed algorithm too when it is another.
  t.algorithms = {HashAlgorithm::sha256};
  if (t.job.hashes.get(HashAlgorithm::sha256).empty()) {
    if (!t.job.hashes.get(HashAlgorithm::sha1).empty()) {
      t.algorithms.push_back(HashAlgorithm::sha1);
    } else if (!t.job.hashes.get(HashAlgorithm::md5).empty()) {
      t.algorithms.push_back(HashAlgorithm::md5);
    }
  }
  t.stream = std::make_shared<HashStream>(t.algorithms);

  t.temp_name = partial_name(t.job.leaf);
  struct stat st {};
  if (!open_temp(t, false, st)) {
    return fail(t, os_error(errno, "cannot open " + t.temp_name + " for " + t.job.leaf));
  }
  // None: the file is made with the first bytes written (flush), or by the committer.
  if (!t.fd) return start_request(t);
  t.xattr_set = true;  // an earlier run's file may carry one
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size == 0) return start_request(t);

  // A partial file from an earlier run: resumable only with the validator its bytes came with.
  std::string validator(1024, '\0');
  const ssize_t n = ::fgetxattr(t.fd.get(), kValidatorXattr, validator.data(), validator.size());
  validator.resize(n > 0 ? static_cast<std::size_t>(n) : 0);
  const bool too_long = t.job.length && size > *t.job.length;
  if (validator.empty() || too_long) {
    log("discarding partial " + t.temp_name + " of " + t.job.leaf +
        (too_long ? ": longer than listed" : ": no validator"));
    if (!reset_content(t)) return fail(t, *t.local_error);
    return start_request(t);
  }
  t.validator = std::move(validator);
  t.offset = t.outcome.resumed_from = size;
  t.stream->written = size;
  t.stream->writeback_from = size;
  // Its bytes are hashed once, on the hashing thread, ahead of the batches that follow them.
  UniqueFd reader(::fcntl(t.fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!reader) return fail(t, os_error(errno, "dup"));
  pipeline->hash_file(t.stream, std::move(reader), size);
  log("resuming " + t.job.leaf + " at " + std::to_string(size) + " bytes");
  start_request(t);
}

// Opens the job's partial file; without `create` only one that exists (none: t.fd stays
// empty). One this program did not make — a symlink or hard link planted under the partial's
// name would make us write through to another file, a FIFO would block — first loses its
// name (touching only the name). False: errno says why.
bool Downloader::Impl::open_temp(Transfer& t, bool create, struct stat& st) {
  const auto open = [&](int flags) {
    // O_NONBLOCK: opening a FIFO planted under our name must not hang (regular files ignore it).
    t.fd = UniqueFd(::openat(t.job.dir_fd, t.temp_name.c_str(),
                             O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | flags, 0644));
    return t.fd && ::fstat(t.fd.get(), &st) == 0;
  };
  bool opened = open(create ? O_CREAT : 0);
  if (!opened && !create && errno == ENOENT) return true;
  if (opened ? !S_ISREG(st.st_mode) || st.st_nlink != 1 : errno == ELOOP) {
    log("replacing " + t.temp_name + ": not a plain file of its own");
    t.fd.reset();
    if (::unlinkat(t.job.dir_fd, t.temp_name.c_str(), 0) != 0) return false;
    if (!create) return true;
    opened = open(O_CREAT | O_EXCL);
  }
  if (!opened) {
    const int error = errno;
    t.fd.reset();
    errno = error;
  }
  return opened;
}

void Downloader::Impl::start_request(Transfer& t) {
  // The whole listed length is already here: verify it without asking the server.
  if (t.job.length && t.offset == *t.job.length && t.offset > 0) return verify(t);
  if (t.offset > 0 && t.validator.empty() && !reset_content(t)) return fail(t, *t.local_error);

  ++t.outcome.attempts;
  ++t.url_attempts;
  t.response = {};
  t.header_bytes = 0;
  t.body_started = false;
  t.abort = Abort::none;
  t.error_buffer[0] = '\0';
  t.easy.reset(curl_easy_init());
  t.headers.reset();
  if (!t.easy) throw std::bad_alloc();
  CURL* easy = t.easy.get();
  const auto& o = options;
  curl_easy_setopt(easy, CURLOPT_URL, t.url().c_str());
  curl_easy_setopt(easy, CURLOPT_PRIVATE, &t);
  curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t.error_buffer);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
  curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(easy, CURLOPT_UNRESTRICTED_AUTH, 0L);
  curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, long{o.connect_timeout_ms});
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_LIMIT, long{o.low_speed_bytes});
  curl_easy_setopt(easy, CURLOPT_LOW_SPEED_TIME, long{o.low_speed_seconds});
  curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, o.receive_buffer_bytes);
  curl_easy_setopt(easy, CURLOPT_USERAGENT, "shardsync/0.1");
  // Ask for the bytes as stored: a range of an encoded body is a range of the encoding, which
  // cannot be resumed or spliced. Setting the option also makes libcurl decode gzip/zstd when
  // a server encodes anyway; such a body is hashed decoded and never resumed (no validator).
  curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "identity");
  curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &Impl::on_header);
  curl_easy_setopt(easy, CURLOPT_HEADERDATA, &t);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &Impl::on_body);
  curl_easy_setopt(easy, CURLOPT_WRITEDATA, &t);
  if (!o.ca_file.empty()) curl_easy_setopt(easy, CURLOPT_CAINFO, o.ca_file.c_str());
  // The token goes to the source's own origin only; libcurl drops it on redirects elsewhere.
  if (!o.bearer_token.empty() && !t.primary_origin.empty() &&
      origin_of(t.url()) == t.primary_origin) {
    curl_easy_setopt(easy, CURLOPT_HTTPAUTH, long{CURLAUTH_BEARER});
    curl_easy_setopt(easy, CURLOPT_XOAUTH2_BEARER, o.bearer_token.c_str());
  }
  if (t.offset > 0) {
    // If-Range: the server sends the rest only if the bytes we hold are still current,
    // otherwise the whole new body (RFC 9110 §13.1.5).
    const std::string range = std::to_string(t.offset) + "-";
    curl_easy_setopt(easy, CURLOPT_RANGE, range.c_str());  // libcurl copies strings
    const std::string if_range = "If-Range: " + t.validator;
    t.headers.reset(curl_slist_append(nullptr, if_range.c_str()));
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t.headers.get());
  }
  t.state = State::active;
  curl_multi_add_handle(multi.get(), easy);
}

std::size_t Downloader::Impl::on_header(char* data, std::size_t, std::size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  try {
    return t.impl->header_line(t, std::string_view(data, count));
  } catch (...) {  // nothing may unwind through libcurl's C frames
    t.impl->callback_error = std::current_exception();
    t.abort = Abort::exception;
    return 0;
  }
}

std::size_t Downloader::Impl::header_line(Transfer& t, std::string_view raw) {
  const std::size_t count = raw.size();
  t.header_bytes += count;
  if (t.header_bytes > kMaxHeaderBytes) {
    t.abort = Abort::header_flood;
    return 0;
  }
  const std::string_view line = trim(raw);
  if (line.starts_with("HTTP/")) {
    t.response = {};
    const auto space = line.find(' ');
    if (space != std::string_view::npos) {
      t.response.status = parse_number<long>(line.substr(space + 1, 3)).value_or(0);
    }
    return count;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return count;
  const std::string_view name = line.substr(0, colon);
  const std::string_view value = trim(line.substr(colon + 1));
  if (iequals(name, "etag")) {
    t.response.etag = value;
  } else if (iequals(name, "last-modified")) {
    t.response.last_modified = value;
  } else if (iequals(name, "content-range")) {
    t.response.content_range = value;
  } else if (iequals(name, "content-encoding")) {
    t.response.content_encoding = value;
  } else if (iequals(name, "retry-after")) {
    // Delta-seconds only (an HTTP-date falls back to our own backoff); capped when used.
    if (const auto seconds = parse_number<long>(value)) t.response.retry_after_s = *seconds;
  }
  return count;
}

std::size_t Downloader::Impl::on_body(char* data, std::size_t, std::size_t count, void* user) {
  Transfer& t = *static_cast<Transfer*>(user);
  Impl& impl = *t.impl;
  try {
    if (!t.body_started && !impl.start_body(t)) return 0;
    if (t.abort != Abort::none) return 0;
    if (t.stream->write_errno.load(std::memory_order_relaxed) != 0) {
      t.abort = Abort::local;  // request_done() names the error
      return 0;
    }
    if (t.job.length && t.offset + count > *t.job.length) {
      // More than listed: the source changed or lies; stop instead of fetching the rest.
      t.abort = Abort::wrong_length;
      return 0;
    }
    t.outcome.bytes_received += count;
    if (impl.on_bytes) (*impl.on_bytes)(count);
    std::size_t done = 0;
    while (done < count) {
      if (!t.batch) t.batch = impl.pipeline->acquire();
      Batch& batch = *t.batch;
      const std::size_t take = std::min(count - done, impl.pipeline->batch_bytes() - batch.size);
      std::memcpy(batch.data.get() + batch.size, data + done, take);
      batch.size += take;
      done += take;
      t.offset += take;
      if (batch.size == impl.pipeline->batch_bytes() && !impl.flush(t)) return 0;
    }
    return count;
  } catch (...) {  // nothing may unwind through libcurl's C frames
    impl.callback_error = std::current_exception();
    t.abort = Abort::exception;
    return 0;
  }
}

// Decides, at the first body byte (or at the end of an empty body), whether this response's
// body is data for our file. False (with `abort` set) ends the request.
bool Downloader::Impl::start_body(Transfer& t) {
  t.body_started = true;
  Response& r = t.response;
  if (r.status == 0) curl_easy_getinfo(t.easy.get(), CURLINFO_RESPONSE_CODE, &r.status);
  if (r.status != 200 && r.status != 206) {
    t.abort = Abort::http_status;
    return false;
  }
  const bool encoded = !r.content_encoding.empty() && !iequals(r.content_encoding, "identity");
  if (r.status == 206) {
    const auto range = parse_content_range(r.content_range);
    // A 206 must continue exactly our bytes, of the same representation: otherwise splicing
    // would corrupt the file (RELIABILITY.md C5).
    const bool etag_changed =
        !r.etag.empty() && t.validator.starts_with('"') && r.etag != t.validator;
    if (encoded || !range || !range->first || *range->first != t.offset || etag_changed ||
        t.offset == 0) {
      t.abort = Abort::bad_range;
      return false;
    }
    if (t.job.length && range->total && *range->total != *t.job.length) {
      t.abort = Abort::wrong_length;
      return false;
    }
  } else {
    if (t.offset > 0) {
      log(t.job.leaf + ": the server sent the whole body (changed, or no range support); " +
          "restarting from 0");
      if (!reset_content(t)) return false;
    }
    curl_off_t announced = -1;
    curl_easy_getinfo(t.easy.get(), CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &announced);
    if (!encoded && t.job.length && announced >= 0 &&
        static_cast<std::uint64_t>(announced) != *t.job.length) {
      t.abort = Abort::wrong_length;
      return false;
    }
    // Strong ETag, else Last-Modified; an encoded body has no byte ranges we could resume.
    // (Stored with the first bytes written: ready_to_write.)
    if (!encoded) t.validator = r.etag.starts_with('"') ? r.etag : r.last_modified;
  }
  return true;
}

// Makes the file ready for bytes: created if need be, and carrying the validator before the
// first bytes it covers, so a later run can resume them — except before the last batch of a
// complete body, verified and committed next: that saves two xattr updates a file, and a run
// ended before the commit merely fetches those bytes again. False: `abort` says why.
bool Downloader::Impl::ready_to_write(Transfer& t, bool last) {
  struct stat st {};
  if (!t.fd && !open_temp(t, true, st)) {
    t.local_error = os_error(errno, "cannot open " + t.temp_name + " for " + t.job.leaf);
    t.abort = Abort::local;
    return false;
  }
  if (t.xattr_set || last) return true;
  t.xattr_set = true;
  if (t.validator.empty() ||
      ::fsetxattr(t.fd.get(), kValidatorXattr, t.validator.data(), t.validator.size(), 0) == 0) {
    return true;
  }
  // Without xattr support a partial can still be resumed within this run, not after it.
  if (errno != ENOSPC && errno != EDQUOT) return true;
  t.local_error = os_error(errno, "storing the validator of " + t.temp_name);
  t.abort = Abort::local;
  return false;
}

// Hands the filled batch to the writer thread (then the hashing thread), at its place in the
// file.
// `last`: the batch completes the body (see ready_to_write).
bool Downloader::Impl::flush(Transfer& t, bool last) {
  if (!t.batch || t.batch->size == 0) return true;
  if (!t.fd && last) {
    // A whole body in one batch: kept in memory, and the committer creates and writes the
    // file once it is verified, so this thread never waits for the file system on it
    // (creating a file here took 120–350 µs a file on this VM's ext4).
    t.held.assign(t.batch->data.get(), t.batch->size);
    if (!hashes_inline(t)) {
      pipeline->hash(t.stream, std::move(t.batch));
    } else {
      t.stream->hasher.update(t.held);
      pipeline->release(std::move(t.batch));
    }
    return true;
  }
  if (!ready_to_write(t, last)) {
    t.offset -= t.batch->size;  // the bytes before it are queued
    t.batch->size = 0;
    return false;
  }
  if (!t.direct_fd && !t.direct_failed && options.direct_io) {
    // A second open file description of the same inode, so O_DIRECT does not change the
    // flags of t.fd (or of the dup hashing a resumed partial).
    const std::string self = "/proc/self/fd/" + std::to_string(t.fd.get());
    t.direct_fd = UniqueFd(::open(self.c_str(), O_WRONLY | O_CLOEXEC | O_DIRECT));
    t.direct_failed = !t.direct_fd;
  }
  const std::uint64_t at = t.offset - t.batch->size;
  pipeline->write(t.stream, t.fd.get(), t.direct_fd ? t.direct_fd.get() : -1, at,
                  std::move(t.batch));
  return true;
}

// Forgets the bytes held for a job: the file is emptied and the digest starts over.
bool Downloader::Impl::reset_content(Transfer& t) {
  pipeline->drain(*t.stream);  // no write of the old bytes may land after the truncation
  t.stream->cancelled = true;
  t.stream = std::make_shared<HashStream>(t.algorithms);
  if (t.batch) t.batch->size = 0;
  t.offset = 0;
  t.outcome.resumed_from = 0;
  t.validator.clear();
  t.held.clear();
  if (!t.fd) return true;  // nothing written yet
  if (std::exchange(t.xattr_set, false)) ::fremovexattr(t.fd.get(), kValidatorXattr);
  if (::ftruncate(t.fd.get(), 0) != 0) {
    t.local_error = os_error(errno, "truncating " + t.temp_name);
    t.abort = Abort::local;
    return false;
  }
  return true;
}

void Downloader::Impl::request_done(Transfer& t, CURLcode code) {
  if (code == CURLE_OK && !t.body_started) start_body(t);  // an empty body or an error status
  const bool complete = code == CURLE_OK && (!t.job.length || t.offset == *t.job.length);
  if (t.abort == Abort::none) flush(t, complete);  // on failure: Abort::local below
  // What reached the file decides what a retry or a rerun resumes from.
  pipeline->drain(*t.stream);
  if (const int error = t.stream->write_errno.load(std::memory_order_acquire)) {
    if (t.abort == Abort::none || t.abort == Abort::local) {
      t.local_error = os_error(error, "writing " + t.temp_name + " for " + t.job.leaf);
      t.abort = Abort::local;
    }
    t.offset = t.stream->written.load(std::memory_order_acquire);
  }
  const Response r = t.response;
  const std::string url = t.url();
  const std::string curl_text = t.error_buffer[0] ? t.error_buffer : curl_easy_strerror(code);
  t.easy.reset();
  t.headers.reset();
  pipeline->release(std::move(t.batch));

  const auto http_error = [&] {
    return Error{make_error_code(errc::http_status),
                 "HTTP " + std::to_string(r.status) + " " + url};
  };
  switch (t.abort) {
    case Abort::exception:
      return;  // run() rethrows; Cleanup keeps the partial
    case Abort::local:
      // A full disk is final for the job: retrying cannot help, and the partial stays so a
      // rerun after freeing space resumes it.
      return fail(t, *t.local_error);
    case Abort::wrong_length:
      if (!reset_content(t)) return fail(t, *t.local_error);
      return retry(t,
                   Error{make_error_code(errc::length_mismatch),
                         "the body is not the listed " + std::to_string(*t.job.length) +
                             " bytes (source mid-update?): " + url},
                   true);
    case Abort::bad_range:
      log(t.job.leaf + ": unusable 206 (Content-Range '" + r.content_range +
          "'); discarding the partial");
      if (!reset_content(t)) return fail(t, *t.local_error);
      return retry(
          t, Error{make_error_code(errc::transfer_failed), "206 not continuing our bytes: " + url},
          false);
    case Abort::header_flood:
      return next_url(t, Error{make_error_code(errc::transfer_failed),
                               "response headers over 256 KiB: " + url});
    case Abort::http_status:
    case Abort::none:
      break;
  }
  if (t.abort == Abort::http_status) {
    if (r.status == 416) {
      // Nothing past our bytes: when the server's length is ours they may be complete (a
      // 416 means If-Range matched, so they are of the current body).
      const auto range = parse_content_range(r.content_range);
      if (range && range->total && *range->total == t.offset && t.offset > 0) return verify(t);
      if (!reset_content(t)) return fail(t, *t.local_error);
      return retry(t, http_error(), false);
    }
    if (r.status == 408 || r.status == 429 || r.status >= 500) return retry(t, http_error(), true);
    // A definite answer from this URL (404, 403, a 3xx without Location...): try the mirrors;
    // the partial is of no further use.
    if (!reset_content(t)) return fail(t, *t.local_error);
    return next_url(t, http_error());
  }
  if (code == CURLE_OK) {
    if (t.job.length && t.offset < *t.job.length) {
      // A close-delimited body that ended early looks complete to HTTP (RELIABILITY.md C1).
      return retry(t,
                   Error{make_error_code(errc::transfer_failed),
                         "body ended at " + std::to_string(t.offset) + " of " +
                             std::to_string(*t.job.length) + " bytes: " + url},
                   true);
    }
    return verify(t);
  }
  Error error{make_error_code(errc::transfer_failed), curl_text + ": " + url};
  if (is_transient(code)) return retry(t, std::move(error), true);
  return next_url(t, std::move(error));
}

// Queues the end of the digest; hashed() continues once the hashing thread has caught up.
void Downloader::Impl::verify(Transfer& t) {
  t.state = State::hashing;
  if (!hashes_inline(t)) return pipeline->finish(t.stream, t.token);
  t.stream->digests = t.stream->hasher.finish();
  hashed(t);
}

// A small body held in memory (or an empty one) is hashed on this thread: ~20 µs of SHA-256
// instead of a round trip through the hashing thread (~250 µs on this loaded 2-core VM). No
// file means no bytes were ever queued for the job, so the stream is this thread's alone.
bool Downloader::Impl::hashes_inline(const Transfer& t) {
  return !t.fd && t.held.size() <= kInlineHashBytes;
}

void Downloader::Impl::hashed(Transfer& t) {
  if (!t.stream->error.empty()) {
    return fail(t, Error{make_error_code(errc::io_error), t.stream->error + ": " + t.temp_name});
  }
  std::optional<Error> mismatch;
  if (t.job.length && t.offset != *t.job.length) {
    mismatch = Error{make_error_code(errc::length_mismatch),
                     "got " + std::to_string(t.offset) + " bytes, listed " +
                         std::to_string(*t.job.length) + " (source mid-update?): " + t.url()};
  } else {
    const HashAlgorithm listed = t.algorithms.back();
    const std::string_view want = t.job.hashes.get(listed);
    const std::string_view got = t.stream->digests.get(listed);
    if (!want.empty() && !iequals(want, got)) {
      mismatch = Error{make_error_code(errc::hash_mismatch),
                       std::string(sitemap::algorithm_name(listed)) + " " + std::string(got) +
                           " is not the listed " + std::string(want) +
                           " (source mid-update?): " + t.url()};
    }
  }
  if (!mismatch) return commit(t);
  const bool from_earlier_run = t.outcome.attempts == 0;
  log(t.job.leaf + ": " + mismatch->detail + "; discarding the bytes");
  if (!reset_content(t)) return fail(t, *t.local_error);
  if (from_earlier_run) {
    // A stale partial from an earlier run: fetch afresh, no request was spent on it.
    t.state = State::waiting;
    t.due = Clock::now();
    return;
  }
  retry(t, std::move(*mismatch), true);
}

void Downloader::Impl::retry(Transfer& t, Error error, bool with_backoff) {
  if (t.url_attempts >= options.max_attempts) return next_url(t, std::move(error));
  int delay_ms = 0;
  if (with_backoff) {
    // initial × 2^(n-1), capped; a Retry-After may lengthen it, up to the same cap (C13).
    long long delay = options.initial_backoff_ms;
    for (int i = 1; i < t.url_attempts && delay < options.max_backoff_ms; ++i) delay *= 2;
    if (t.response.retry_after_s) {
      delay = std::max(delay, std::min<long long>(*t.response.retry_after_s, 1'000'000) * 1000);
    }
    delay_ms = static_cast<int>(std::clamp<long long>(delay, 0, options.max_backoff_ms));
  }
  log("retry " + std::to_string(t.url_attempts + 1) + "/" + std::to_string(options.max_attempts) +
      " in " + std::to_string(delay_ms) + " ms (" + error.detail + ")" +
      (t.offset > 0 ? ", resuming at " + std::to_string(t.offset) : ""));
  t.last_error = std::move(error);
  t.state = State::waiting;
  t.due = Clock::now() + std::chrono::milliseconds(delay_ms);
}

void Downloader::Impl::next_url(Transfer& t, Error error) {
  t.last_error = std::move(error);
  if (t.url_index + 1 >= t.job.urls.size()) return fail(t, t.last_error);
  ++t.url_index;
  t.url_attempts = 0;
  log(t.job.leaf + ": " + t.last_error.detail + "; trying mirror " + t.url());
  t.state = State::waiting;
  t.due = Clock::now();
}

// Hands the verified file to the committer; its transfer slot is free for the next job.
void Downloader::Impl::commit(Transfer& t) {
  t.direct_fd.reset();
  CommitJob job{.token = t.token,
                .file = std::move(t.fd),
                .body = std::move(t.held),
                .dir_fd = t.job.dir_fd,
                .temp_name = t.temp_name,
                .leaf = t.job.leaf,
                // resume state, not part of the mirrored file
                .drop_xattr = t.xattr_set ? kValidatorXattr : "",
                .mtime = std::nullopt,
                .durable = options.durable};
  if (t.job.lastmod) {
    job.mtime = timespec{static_cast<time_t>(t.job.lastmod->seconds),
                         static_cast<long>(t.job.lastmod->nanos)};
  }
  t.state = State::committing;
  ++committing;
  committer->submit(std::move(job));
}

void Downloader::Impl::committed(Transfer& t, CommitDone done) {
  --committing;
  if (done.file) t.fd = std::move(done.file);  // not renamed: fail() decides on the partial
  if (done.renamed) t.temp_name.clear();       // the name is the final one: nothing to clean up
  if (done.error) return fail(t, std::move(*done.error));
  succeed(t);
}

void Downloader::Impl::succeed(Transfer& t) {
  t.outcome.length = t.offset;
  t.outcome.sha256 = std::string(t.stream->digests.get(HashAlgorithm::sha256));
  DownloadResult result{t.job.id, std::move(t.outcome)};
  transfers.erase(t.token);
  (*on_done)(std::move(result));
}

void Downloader::Impl::fail(Transfer& t, Error error) {
  // Bytes that a later run can resume stay (with their validator); anything else goes.
  // (A file implies a stream, whose writes are done here: drained at the request's end.)
  if (t.fd && !t.temp_name.empty() &&
      (t.validator.empty() || t.stream->written.load(std::memory_order_acquire) == 0)) {
    ::unlinkat(t.job.dir_fd, t.temp_name.c_str(), 0);
  }
  DownloadResult result{t.job.id, tl::unexpected<Error>(std::move(error))};
  transfers.erase(t.token);
  (*on_done)(std::move(result));
}

Downloader::Downloader(DownloaderOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

Downloader::~Downloader() = default;

void Downloader::run(const std::function<std::optional<DownloadJob>()>& next_job,
                     const std::function<void(DownloadResult&&)>& on_done,
                     const std::function<void(std::uint64_t bytes)>& on_bytes) {
  impl_->run(next_job, on_done, on_bytes);
}

}  // namespace shardsync::client
