#include "committer.hpp"

#include <fcntl.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "shardsync/client/errc.hpp"

namespace shardsync::client::detail {

Error os_error(int error, const std::string& what) {
  const errc code = (error == ENOSPC || error == EDQUOT) ? errc::disk_full : errc::io_error;
  return Error{make_error_code(code), what + ": " + std::strerror(error)};
}

Committer::Committer(int threads, std::function<void()> wake) : wake_(std::move(wake)) {
  for (int i = 0; i < std::max(1, threads); ++i) threads_.emplace_back([this] { loop(); });
}

Committer::~Committer() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  for (std::thread& thread : threads_) thread.join();
  // Renames already made (an exception ended the run): durable too, as far as possible.
  (void)fsync_dirs(take_dirty());
}

void Committer::submit(CommitJob job) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

std::vector<CommitDone> Committer::take_done() {
  std::lock_guard lock(mutex_);
  return std::exchange(done_, {});
}

std::optional<Error> Committer::sync_dirs() {
  std::unique_lock lock(mutex_);
  // A round in progress may hold directories whose renames were reported: wait for it.
  round_cv_.wait(lock, [&] { return rounds_running_ == 0; });
  std::optional<Error> error = std::exchange(round_error_, std::nullopt);
  DirtySet dirs = take_dirty();
  lock.unlock();
  std::optional<Error> now = fsync_dirs(std::move(dirs));
  return error ? error : now;
}

std::size_t Committer::dir_syncs() const {
  std::lock_guard lock(mutex_);
  return dir_syncs_;
}

void Committer::loop() {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (stop_) return;
    if (round_due(Clock::now())) {
      DirtySet dirs = take_dirty();
      ++rounds_running_;
      lock.unlock();
      std::optional<Error> error = fsync_dirs(std::move(dirs));
      lock.lock();
      --rounds_running_;
      if (error && !round_error_) round_error_ = std::move(error);
      round_cv_.notify_all();
      continue;
    }
    if (queue_.empty()) {
      // Idle with renames pending: wake for the round that kRoundInterval makes due (unless
      // one is running: its worker checks again when it ends).
      if (dirty_.empty() || rounds_running_ > 0) {
        work_cv_.wait(lock);
      } else {
        work_cv_.wait_until(lock, dirty_since_ + kRoundInterval);
      }
      continue;
    }
    // Everything queued (up to kBatchJobs) commits as one batch: one syncfs for all.
    std::vector<CommitJob> jobs;
    const auto linger_until = Clock::now() + kLinger;
    for (;;) {
      while (!queue_.empty() && jobs.size() < kBatchJobs) {
        jobs.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      // Jobs submitted one by one would each meet an idle worker and cost an fdatasync: wait
      // a moment for more, so that one syncfs covers them.
      if (jobs.size() >= kBatchJobs || stop_ ||
          !work_cv_.wait_until(lock, linger_until, [&] { return stop_ || !queue_.empty(); })) {
        break;
      }
    }
    lock.unlock();
    std::vector<CommitDone> dones = commit_batch(jobs);
    lock.lock();
    for (CommitDone& done : dones) done_.push_back(std::move(done));
    lock.unlock();
    if (wake_) wake_();
    lock.lock();
  }
}

std::vector<CommitDone> Committer::commit_batch(std::vector<CommitJob>& jobs) {
  std::vector<CommitDone> dones(jobs.size());
  std::vector<std::size_t> ready;
  std::vector<std::size_t> scratch;
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    dones[i].token = jobs[i].token;
    if (prepare(jobs[i], dones[i])) (jobs[i].durable ? ready : scratch).push_back(i);
  }
  for (std::size_t i : scratch) rename_into_place(jobs[i], dones[i]);
  // The data (and the size that reaches it) durable before the name points at it. One file:
  // fdatasync. Several: one syncfs — a single writeback and device flush for the batch,
  // where an fdatasync each costs a flush each (~1 ms here: the small-file rate's ceiling).
  // The mtime may lag: a file whose mtime was lost is re-checked by its digest, never wrong.
  if (ready.size() == 1) {
    CommitJob& job = jobs[ready[0]];
    if (::fdatasync(job.file.get()) != 0) {
      fail(job, dones[ready[0]], os_error(errno, "fsync of " + job.temp_name));
      ready.clear();
    }
  } else if (ready.size() > 1 && ::syncfs(jobs[ready[0]].file.get()) != 0) {
    const int error = errno;
    for (std::size_t i : ready) {
      fail(jobs[i], dones[i], os_error(error, "syncing the file system of " + jobs[i].temp_name));
    }
    ready.clear();
  }
  for (std::size_t i : ready) rename_into_place(jobs[i], dones[i]);
  return dones;
}

// A job that failed: a temp file made here (no resume state) goes; a downloaded one goes back.
void Committer::fail(CommitJob& job, CommitDone& done, Error error) {
  done.error = std::move(error);
  if (job.created) {
    job.file.reset();
    ::unlinkat(job.dir_fd, job.temp_name.c_str(), 0);
  } else {
    done.file = std::move(job.file);
  }
}

// Everything but durability and the rename: the file written (when held in memory), the resume
// xattr dropped, the mtime set. False when the job failed.
bool Committer::prepare(CommitJob& job, CommitDone& done) {
  if (!job.file) {
    if (auto error = write_new(job)) {
      fail(job, done, std::move(*error));
      return false;
    }
  }
  const int fd = job.file.get();
  if (!job.drop_xattr.empty()) ::fremovexattr(fd, job.drop_xattr.c_str());
  if (job.mtime) {
    const timespec times[2] = {{0, UTIME_OMIT}, *job.mtime};
    if (::futimens(fd, times) != 0) {
      fail(job, done, os_error(errno, "setting mtime of " + job.leaf));
      return false;
    }
  }
  return true;
}

void Committer::rename_into_place(CommitJob& job, CommitDone& done) {
  if (::renameat(job.dir_fd, job.temp_name.c_str(), job.dir_fd, job.leaf.c_str()) != 0) {
    return fail(job, done, os_error(errno, "renaming " + job.temp_name + " to " + job.leaf));
  }
  done.renamed = true;
  job.file.reset();
  if (job.durable) note_rename(job, done);
}

// Creates the temp file with job.body (replacing a name nobody should have made meanwhile).
std::optional<Error> Committer::write_new(CommitJob& job) {
  const auto create = [&] {
    job.file = UniqueFd(::openat(job.dir_fd, job.temp_name.c_str(),
                                 O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644));
    return job.file.valid();
  };
  if (!create() && errno == EEXIST && ::unlinkat(job.dir_fd, job.temp_name.c_str(), 0) == 0) {
    create();
  }
  if (!job.file) return os_error(errno, "cannot open " + job.temp_name + " for " + job.leaf);
  job.created = true;
  std::size_t written = 0;
  while (written < job.body.size()) {
    const ssize_t n = ::write(job.file.get(), job.body.data() + written, job.body.size() - written);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return os_error(errno, "writing " + job.temp_name + " for " + job.leaf);
    written += static_cast<std::size_t>(n);
  }
  return std::nullopt;
}

// Records the directory for the next round, with our own fd to it.
void Committer::note_rename(const CommitJob& job, CommitDone& done) {
  struct stat st {};
  const bool known = ::fstat(job.dir_fd, &st) == 0;
  if (known) {
    const DirKey key{st.st_dev, st.st_ino};
    std::lock_guard lock(mutex_);
    if (dirty_.empty()) dirty_since_ = Clock::now();
    ++dirty_renames_;
    if (dirty_.contains(key)) return;
    UniqueFd dup(::fcntl(job.dir_fd, F_DUPFD_CLOEXEC, 0));
    if (dup) {
      dirty_.emplace(key, Dirty{std::move(dup), job.leaf});
      return;
    }
  }
  // No fd of our own (EMFILE): fsync now, while the caller's fd is still open.
  if (::fsync(job.dir_fd) != 0) {
    done.error = os_error(errno, "fsync of the directory of " + job.leaf);
  }
  std::lock_guard lock(mutex_);
  ++dir_syncs_;
}

bool Committer::round_due(Clock::time_point now) const {
  if (dirty_.empty() || rounds_running_ > 0) return false;
  return dirty_renames_ >= kRoundRenames || dirty_.size() >= kRoundDirs ||
         now - dirty_since_ >= kRoundInterval;
}

Committer::DirtySet Committer::take_dirty() {
  dirty_renames_ = 0;
  return std::exchange(dirty_, {});
}

std::optional<Error> Committer::fsync_dirs(DirtySet dirs) {
  std::optional<Error> error;
  for (const auto& [key, dir] : dirs) {
    if (::fsync(dir.fd.get()) != 0 && !error) {
      error = os_error(errno, "fsync of the directory of " + dir.leaf);
    }
  }
  std::lock_guard lock(mutex_);
  dir_syncs_ += dirs.size();
  return error;
}

}  // namespace shardsync::client::detail
