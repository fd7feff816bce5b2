#pragma once
// Parallel, verified, resumable downloads into the destination (libcurl multi, one thread).
//
// Each job's bytes go to a temp file in the target's own directory,
// `.shardsync-part-<16 hex>` (the hex is from sha-256 of the leaf name, so a rerun finds it),
// are hashed as they arrive (never re-read), and take the final name only when length and
// hash match the listed values and the bytes are on disk: fdatasync → renameat, on a
// committer thread, so no crash can leave a torn file under a final name. A body that
// arrives whole within one write batch is kept in memory and written to its temp file by the
// committer once verified. The mtime is set to `lastmod` before the rename. The directories
// renamed into are fsynced in batches (every ~2,000 renames or second, and all before run()
// returns), not once per file: on_done reports the rename, and the renames are durable when
// run() returns. A crash before that may undo a reported rename (the file is then fetched
// again), never expose a torn file.
// A partial file left by an interrupted run is resumed with `Range` + `If-Range` (the
// validator — strong ETag, else Last-Modified — is stored in the partial's
// `user.shardsync.validator` xattr before the first bytes it covers, except for a body
// complete in its first write, which is committed next; without it the partial is
// discarded); its existing bytes are hashed once to continue the digest. A 200 to a range
// request, a 206 with another start, or a digest mismatch discards the partial and starts
// over; a 416 means "complete" only when its Content-Range length is the partial's, else it
// is discarded too.
// Timeouts, stalls (low-speed limit), truncated bodies and 5xx/408/429 are retried with
// exponential backoff (capped; Retry-After honoured up to the cap); bytes received before a
// failure are kept and the retry asks for the rest. After the retries of the primary URL,
// `duplicate` mirror URLs are tried in order. Other 4xx (and redirect loops, refused
// protocols) end a URL at once without retries; the last URL's error is the job's. An error
// status's body is never written. A full disk (ENOSPC/EDQUOT) is final for the job, not
// retried, and keeps the partial for a rerun.
// Requests ask for `Accept-Encoding: identity` (a range of an encoded body is a range of the
// encoding); gzip and zstd Content-Encoding sent anyway are decoded before hashing, and such
// a body is never resumed. Redirects: at most 5, http(s) only, no credentials forwarded to
// other hosts.
//
// Threads: run() drives libcurl on the calling thread and starts, for its duration, one
// hashing thread and `commit_threads` committer threads. curl_global_init must have been
// called (main does).

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "shardsync/result.hpp"
#include "shardsync/sitemap/hashes.hpp"
#include "shardsync/sitemap/timestamp.hpp"

namespace shardsync::client {

struct DownloadJob {
  std::uint64_t id = 0;                 // the caller's, echoed in the result
  std::vector<std::string> urls;        // the primary URL first, then `duplicate` mirrors
  int dir_fd = -1;                      // borrowed until on_done: the directory the file goes in
  std::string leaf;                     // final name inside dir_fd; one job per name at a time
  std::optional<std::uint64_t> length;  // listed length (checked when present)
  sitemap::HashList hashes;             // sha-256 preferred, else sha-1, else md5
  std::optional<sitemap::Timestamp> lastmod;  // becomes the file's mtime
};

struct DownloadOutcome {
  std::uint64_t bytes_received = 0;  // body bytes over the wire in this run (all attempts)
  std::uint64_t resumed_from = 0;    // bytes kept from an earlier run's partial file (0: fresh)
  std::uint64_t length = 0;          // final file length
  std::string sha256;                // hex digest of the final file
  int attempts = 1;  // requests made, all URLs; 0: a complete partial verified without one
};

struct DownloadResult {
  std::uint64_t id = 0;
  Result<DownloadOutcome> outcome;  // errc::http_status, transfer_failed, length_mismatch,
                                    // hash_mismatch, disk_full, io_error
};

struct DownloaderOptions {
  // Transfers at once (connections); keep-alive and HTTP/2 multiplexing where offered.
  int parallel = 8;
  // Sent as `Authorization: Bearer …` when not empty (to the source's host only).
  std::string bearer_token;
  // Attempts per URL before moving to the next mirror (first try included).
  int max_attempts = 4;
  // First retry delay; doubles per retry, capped at max_backoff_ms.
  int initial_backoff_ms = 250;
  int max_backoff_ms = 10'000;
  // Connection set-up limit, and the stall rule: below low_speed_bytes/s for low_speed_seconds.
  int connect_timeout_ms = 10'000;
  int low_speed_bytes = 1024;
  int low_speed_seconds = 30;
  // libcurl receive buffer (512 KiB is libcurl 7.88's maximum) and the write batch size: each
  // batch is copied from libcurl, then written (O_DIRECT when whole pages) and hashed on other
  // threads. With O_DIRECT, 1 MiB beat 256 KiB (2 GiB: 3.3 s vs 3.3–4.3 s, 3 alternating runs;
  // dd: 1.9 vs 1.1 GB/s); with buffered writes 256 KiB had won (the batch stayed in cache).
  long receive_buffer_bytes = 512 * 1024;
  // Whole aligned batches bypass the page cache (O_DIRECT). Off for files read back at once
  // (dump packages): they would come back from the disk instead of from memory.
  bool direct_io = true;
  // Files are made durable (fdatasync or a batch's syncfs) before their final name, and their
  // directories fsynced before run() returns. Off for scratch files removed once read.
  bool durable = true;
  std::size_t write_batch_bytes = 1024 * 1024;
  // Threads that write held bodies, make files durable and rename them, so the curl thread
  // never waits for the disk. Each takes all queued files as one batch (one syncfs), so one
  // thread can sync while another prepares; more only contend for the directory's lock
  // (perf, 20,000 × 16 KiB with 4: 20 % of the samples spinning in rwsem_spin_on_owner).
  int commit_threads = 2;
  // Trust store and client certificate options for https; empty: system defaults.
  std::string ca_file;
  // Receives human-readable retry/resume lines; may be empty.
  std::function<void(const std::string&)> log;
};

class Downloader {
 public:
  explicit Downloader(DownloaderOptions options);
  ~Downloader();
  Downloader(const Downloader&) = delete;
  Downloader& operator=(const Downloader&) = delete;

  // Runs until next_job() returns nullopt and every started job has finished. next_job is
  // pulled whenever a slot is free (a job holds its slot until on_done), so callers can
  // produce jobs lazily. on_done is called once per job, on_bytes with body bytes as they
  // arrive; all callbacks run on the calling thread. A successful on_done means the file has
  // its final name with verified, fdatasynced bytes; the directory entries are durable when
  // run() returns (fsynced in batches; the downloader keeps its own fds of the directories,
  // so the caller may close a job's dir_fd in its on_done). Record the files as committed
  // only after run() returns.
  // An exception from a callback stops the run (transfers abandoned, partial files kept for
  // the next run) and propagates. A failed directory fsync, known only after its files were
  // reported, throws std::system_error (errc::io_error or disk_full) once every job is done:
  // those renames may not survive a crash, so the caller must not record them.
  void run(const std::function<std::optional<DownloadJob>()>& next_job,
           const std::function<void(DownloadResult&&)>& on_done,
           const std::function<void(std::uint64_t bytes)>& on_bytes = {});

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The name of a job's partial file in its directory (exposed for tests and cleanup).
[[nodiscard]] std::string partial_name(const std::string& leaf);

}  // namespace shardsync::client
