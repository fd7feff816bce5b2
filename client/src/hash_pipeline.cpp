#include "hash_pipeline.hpp"

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
      thread_([this] { loop(); }) {}

HashPipeline::~HashPipeline() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  work_cv_.notify_all();
  thread_.join();
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
  batch->data = std::make_unique_for_overwrite<char[]>(batch_bytes_);
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

void HashPipeline::push(Item item) {
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(item));
  }
  work_cv_.notify_one();
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
