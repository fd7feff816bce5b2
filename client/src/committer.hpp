#pragma once
// The downloader's last stage: a few threads give verified files their final names, so the
// curl thread never waits for the disk. Per file: the temp file is created and written here
// when the downloader kept a small body in memory; the resume xattr is removed, the mtime
// set, the data made durable, then renameat — so a final name only ever points at complete,
// durable bytes, whatever crashes when. A worker takes every queued job at once and makes the
// batch durable with one syncfs (one file: fdatasync): an fdatasync per file costs a device
// flush each and capped small files at ~2,000–3,000 files/s (bench/sync_bench.sh W3), while
// the batches grow by themselves exactly when the disk is the bottleneck.
//
// Directories are not fsynced per file: each directory that received renames is fsynced
// once per round — in sync_dirs() (the downloader calls it before run() returns), and by a
// worker whenever kRoundRenames renames or kRoundDirs directories are pending, or the oldest
// pending rename is kRoundInterval old (bounding what a crash can undo, and the dup()ed
// directory fds held). A rename is thus reported done before its directory's fsync: a crash
// may lose the name (never expose a torn file), and the next run fetches it again.

#include <sys/stat.h>
#include <time.h>

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "shardsync/error.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::client::detail {

// errno as an Error: errc::disk_full for ENOSPC/EDQUOT, else errc::io_error.
[[nodiscard]] Error os_error(int error, const std::string& what);

struct CommitJob {
  std::uint64_t token = 0;
  UniqueFd file;                  // the verified temp file; none: created here with `body`
  std::string body;               // without `file`: the verified bytes to write
  int dir_fd = -1;                // borrowed until the token comes back from take_done()
  std::string temp_name;          // in dir_fd
  std::string leaf;               // the final name in dir_fd
  std::string drop_xattr;         // removed first (resume state); empty: none
  std::optional<timespec> mtime;  // set before the data is synced
  // False for scratch files (dump packages, removed once read): renamed without being made
  // durable first, and their directory is not fsynced.
  bool durable = true;
  bool created = false;  // the committer made `file` from `body`
};

struct CommitDone {
  std::uint64_t token = 0;
  bool renamed = false;        // the final name points at the file (even with an error)
  std::optional<Error> error;  // what failed
  UniqueFd file;               // the temp file, handed back when it was not renamed
};

class Committer {
 public:
  // Pending renames or directories, or the age of the oldest, that start a round of
  // directory fsyncs before sync_dirs().
  static constexpr std::size_t kRoundRenames = 2048;
  static constexpr std::size_t kRoundDirs = 64;
  static constexpr std::chrono::milliseconds kRoundInterval{1000};
  // Jobs a worker takes from the queue at once, made durable by one syncfs.
  static constexpr std::size_t kBatchJobs = 256;
  // How long a worker waits for more jobs before committing a batch.
  static constexpr std::chrono::milliseconds kLinger{2};

  // `wake` is called on a worker after each job is done (the downloader passes
  // curl_multi_wakeup).
  Committer(int threads, std::function<void()> wake);
  // Stops the workers (queued jobs are dropped: a temp file stays for a rerun, a held body
  // is fetched again), then fsyncs the directories renamed into, ignoring errors.
  ~Committer();
  Committer(const Committer&) = delete;
  Committer& operator=(const Committer&) = delete;

  void submit(CommitJob job);
  // The jobs done since the last call.
  std::vector<CommitDone> take_done();
  // Makes every rename reported so far durable: waits for a round in progress, then fsyncs
  // each directory renamed into since its last fsync. Returns the first failure since the
  // last call, a worker's rounds included.
  std::optional<Error> sync_dirs();
  // Directory fsyncs made so far (for tests: one per directory per round).
  std::size_t dir_syncs() const;

 private:
  using Clock = std::chrono::steady_clock;
  using DirKey = std::pair<dev_t, ino_t>;
  struct Dirty {
    UniqueFd fd;       // our dup: the caller may close its own once the job is done
    std::string leaf;  // one file renamed into it, for messages
  };
  using DirtySet = std::map<DirKey, Dirty>;

  void loop();
  std::vector<CommitDone> commit_batch(std::vector<CommitJob>& jobs);
  static bool prepare(CommitJob& job, CommitDone& done);
  static void fail(CommitJob& job, CommitDone& done, Error error);
  void rename_into_place(CommitJob& job, CommitDone& done);
  static std::optional<Error> write_new(CommitJob& job);
  void note_rename(const CommitJob& job, CommitDone& done);
  bool round_due(Clock::time_point now) const;  // mutex_ held
  DirtySet take_dirty();                        // mutex_ held
  std::optional<Error> fsync_dirs(DirtySet dirs);

  const std::function<void()> wake_;
  mutable std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable round_cv_;  // a worker's round ended
  std::deque<CommitJob> queue_;
  std::vector<CommitDone> done_;
  DirtySet dirty_;
  std::size_t dirty_renames_ = 0;
  Clock::time_point dirty_since_{};
  int rounds_running_ = 0;
  std::optional<Error> round_error_;
  std::size_t dir_syncs_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: they start once the members above exist
};

}  // namespace shardsync::client::detail
