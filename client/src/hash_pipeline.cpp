#include "hash_pipeline.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace shardsync::client::detail {

HashPipeline::HashPipeline(std::size_t batch_bytes, std::size_t max_batches,
                           std::function<void()> wake)
    : batch_bytes_(batch_bytes),
      max_batches_(max_batches),
      wake_(std::move(wake)),
      read_buffer_(std::make_unique_for_overwrite<char[]>(batch_bytes)),
      thread_([this] { loop(); }),
      writer_([this] { write_loop(); }) {}

HashPipeline::~HashPipeline() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  write_cv_.notify_all();
  drained_cv_.notify_all();
  thread_.join();
  writer_.join();
}

std::unique_ptr<Batch> HashPipeline::acquire() {
  std::unique_lock lock(mutex_);
  free_cv_.wait(lock, [&] { return !free_.empty() || allocated_ < max_batches_; });
  if (!free_.empty()) {
    auto batch = std::move(free_.back());
    free_.pop_back();
    batch->size = 0;
    return batch;
  }
  ++allocated_;
  lock.unlock();
  auto batch = std::make_unique<Batch>();
  batch->data.reset(
      static_cast<char*>(::operator new[](batch_bytes_, std::align_val_t{kBatchAlignment})));
  return batch;
}

void HashPipeline::release(std::unique_ptr<Batch> batch) {
  if (!batch) return;
  {
    std::lock_guard lock(mutex_);
    free_.push_back(std::move(batch));
  }
  free_cv_.notify_one();
}

void HashPipeline::hash(std::shared_ptr<HashStream> stream, std::unique_ptr<Batch> batch) {
  push(Item{Kind::batch, std::move(stream), std::move(batch), UniqueFd{}, 0});
}

void HashPipeline::hash_file(std::shared_ptr<HashStream> stream, UniqueFd fd,
                             std::uint64_t length) {
  push(Item{Kind::file, std::move(stream), nullptr, std::move(fd), length});
}

void HashPipeline::finish(std::shared_ptr<HashStream> stream, std::uint64_t token) {
  push(Item{Kind::finish, std::move(stream), nullptr, UniqueFd{}, token});
}

std::vector<std::uint64_t> HashPipeline::take_finished() {
  std::lock_guard lock(mutex_);
  return std::exchange(finished_, {});
}

void HashPipeline::write(std::shared_ptr<HashStream> stream, int fd, int direct_fd,
                         std::uint64_t offset, std::unique_ptr<Batch> batch) {
  Item item{Kind::write, std::move(stream), std::move(batch), UniqueFd{}, offset};
  item.write_fd = fd;
  item.direct_fd = direct_fd;
  {
    std::lock_guard lock(mutex_);
    ++item.stream->pending_writes;
  }
  push(std::move(item));
}

void HashPipeline::drain(HashStream& stream) {
  std::unique_lock lock(mutex_);
  drained_cv_.wait(lock, [&] { return stop_ || stream.pending_writes == 0; });
}

void HashPipeline::push(Item item) {
  {
    std::lock_guard lock(mutex_);
    write_queue_.push_back(std::move(item));
  }
  write_cv_.notify_one();
}

// Writes (or skips) the write items and passes everything on to the hashing thread, in order.
void HashPipeline::write_loop() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mutex_);
      write_cv_.wait(lock, [&] { return stop_ || !write_queue_.empty(); });
      if (stop_) return;
      item = std::move(write_queue_.front());
      write_queue_.pop_front();
    }
    if (item.kind == Kind::write) {
      HashStream& stream = *item.stream;
      const bool skip = stream.cancelled.load(std::memory_order_relaxed) ||
                        stream.write_errno.load(std::memory_order_relaxed) != 0;
      if (!skip) write_batch(stream, item);
      const bool hash = !skip && stream.write_errno.load(std::memory_order_relaxed) == 0;
      {
        std::lock_guard lock(mutex_);
        --stream.pending_writes;
      }
      drained_cv_.notify_all();
      if (!hash) {
        release(std::move(item.batch));
        continue;
      }
      item.kind = Kind::batch;
    }
    {
      std::lock_guard lock(mutex_);
      queue_.push_back(std::move(item));
    }
    work_cv_.notify_one();
  }
}

void HashPipeline::write_batch(HashStream& stream, const Item& item) {
  const char* data = item.batch->data.get();
  std::size_t left = item.batch->size;
  std::uint64_t offset = item.length;
  const bool aligned = left % kBatchAlignment == 0 && offset % kBatchAlignment == 0;
  int fd =
      (item.direct_fd >= 0 && aligned && !stream.direct_refused) ? item.direct_fd : item.write_fd;
  while (left > 0) {
    const ssize_t n = ::pwrite(fd, data, left, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EINVAL && fd != item.write_fd) {
      // The file system refuses O_DIRECT for this file: buffered from now on.
      stream.direct_refused = true;
      fd = item.write_fd;
      continue;
    }
    if (n < 0) {
      stream.write_errno.store(errno == 0 ? EIO : errno, std::memory_order_release);
      return;
    }
    data += n;
    left -= static_cast<std::size_t>(n);
    offset += static_cast<std::uint64_t>(n);
    stream.written.store(offset, std::memory_order_release);
  }
  // Buffered bytes: start the kernel's writeback now, so the fsync before the rename finds
  // little left to write.
  if (fd == item.write_fd && offset - stream.writeback_from >= kWritebackBytes) {
    ::sync_file_range(fd, static_cast<off_t>(stream.writeback_from),
                      static_cast<off_t>(offset - stream.writeback_from), SYNC_FILE_RANGE_WRITE);
    stream.writeback_from = offset;
  }
}

void HashPipeline::loop() {
  for (;;) {
    Item item;
    {
      std::unique_lock lock(mutex_);
      work_cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      item = std::move(queue_.front());
      queue_.pop_front();
    }
    HashStream& stream = *item.stream;
    const bool live = !stream.cancelled.load(std::memory_order_relaxed);
    switch (item.kind) {
      case Kind::write:  // the writer turned it into a batch
      case Kind::batch:
        if (live) stream.hasher.update({item.batch->data.get(), item.batch->size});
        release(std::move(item.batch));
        break;
      case Kind::file:
        if (live) read_file(stream, item.fd.get(), item.length);
        break;
      case Kind::finish:
        if (live) stream.digests = stream.hasher.finish();
        {
          std::lock_guard lock(mutex_);
          finished_.push_back(item.length);
        }
        if (wake_) wake_();
        break;
    }
  }
}

void HashPipeline::read_file(HashStream& stream, int fd, std::uint64_t length) {
  std::uint64_t done = 0;
  while (done < length) {
    // A discarded partial stops being read at the next block rather than at its end.
    if (stream.cancelled.load(std::memory_order_relaxed)) return;
    const std::size_t want =
        static_cast<std::size_t>(std::min<std::uint64_t>(length - done, batch_bytes_));
    const ssize_t n = ::pread(fd, read_buffer_.get(), want, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      stream.error = n < 0 ? std::string("reading the partial file: ") + std::strerror(errno)
                           : std::string("the partial file shrank while being read");
      return;
    }
    stream.hasher.update({read_buffer_.get(), static_cast<std::size_t>(n)});
    done += static_cast<std::uint64_t>(n);
  }
}

}  // namespace shardsync::client::detail
