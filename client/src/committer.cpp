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
    CommitJob job = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    CommitDone done;
    done.token = job.token;
    commit(job, done);
    lock.lock();
    done_.push_back(std::move(done));
    lock.unlock();
    if (wake_) wake_();
    lock.lock();
  }
}

void Committer::commit(CommitJob& job, CommitDone& done) {
  bool created = false;
  const auto failed = [&](Error error) {
    done.error = std::move(error);
    if (created) {
      // Made here, without resume state: of no use to a rerun.
      job.file.reset();
      ::unlinkat(job.dir_fd, job.temp_name.c_str(), 0);
    } else {
      done.file = std::move(job.file);
    }
  };
  if (!job.file) {
    if (auto error = write_new(job, created)) return failed(std::move(*error));
  }
  const int fd = job.file.get();
  if (!job.drop_xattr.empty()) ::fremovexattr(fd, job.drop_xattr.c_str());
  if (job.mtime) {
    const timespec times[2] = {{0, UTIME_OMIT}, *job.mtime};
    if (::futimens(fd, times) != 0) return failed(os_error(errno, "setting mtime of " + job.leaf));
  }
  // The data (and the size that reaches it) durable before the name points at it; the mtime
  // may lag: a file whose mtime was lost is re-checked by its digest, never wrong.
  if (::fdatasync(fd) != 0) return failed(os_error(errno, "fsync of " + job.temp_name));
  if (::renameat(job.dir_fd, job.temp_name.c_str(), job.dir_fd, job.leaf.c_str()) != 0) {
    return failed(os_error(errno, "renaming " + job.temp_name + " to " + job.leaf));
  }
  done.renamed = true;
  job.file.reset();
  note_rename(job, done);
}

// Creates the temp file with job.body (replacing a name nobody should have made meanwhile).
std::optional<Error> Committer::write_new(CommitJob& job, bool& created) {
  const auto create = [&] {
    job.file = UniqueFd(::openat(job.dir_fd, job.temp_name.c_str(),
                                 O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644));
    return job.file.valid();
  };
  if (!create() && errno == EEXIST && ::unlinkat(job.dir_fd, job.temp_name.c_str(), 0) == 0) {
    create();
  }
  if (!job.file) return os_error(errno, "cannot open " + job.temp_name + " for " + job.leaf);
  created = true;
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
