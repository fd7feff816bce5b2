#pragma once
// The downloader's second stage: one thread hashes the batches the curl thread has just
// written, so hashing (≈1.5 GB/s/core for SHA-256) overlaps receiving and writing instead of
// halving throughput on the curl thread (BENCHMARKS.md §3(i)). Batches come from a bounded
// pool, so memory stays at (max_batches × batch size) however far the hasher falls behind:
// the curl thread then waits in acquire().

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "shardsync/sitemap/digest.hpp"
#include "shardsync/unique_fd.hpp"

namespace shardsync::client::detail {

// A block of body bytes, written to the file and then hashed.
struct Batch {
  std::unique_ptr<char[]> data;
  std::size_t size = 0;
};

// The running digest of one file's bytes, in file order. Only the hashing thread touches
// `hasher`; `digests` and `error` may be read by the submitting thread once finish()'s token
// has come back from take_finished() (the queue's mutex orders the two).
struct HashStream {
  explicit HashStream(std::vector<sitemap::HashAlgorithm> algorithms)
      : hasher(std::move(algorithms)) {}
  sitemap::Hasher hasher;
  // Set by the submitter when the bytes are discarded: queued work for it is skipped.
  std::atomic<bool> cancelled{false};
  sitemap::HashList digests;
  std::string error;  // reading a partial file's existing bytes failed
};

class HashPipeline {
 public:
  // `wake` is called on the hashing thread after a finish item is done (the downloader passes
  // curl_multi_wakeup, so curl_multi_poll returns).
  HashPipeline(std::size_t batch_bytes, std::size_t max_batches, std::function<void()> wake);
  // Stops the thread; queued work is dropped.
  ~HashPipeline();
  HashPipeline(const HashPipeline&) = delete;
  HashPipeline& operator=(const HashPipeline&) = delete;

  std::size_t batch_bytes() const { return batch_bytes_; }
  // An empty batch of batch_bytes() capacity; blocks while all max_batches are queued.
  std::unique_ptr<Batch> acquire();
  // Returns a batch that will not be submitted.
  void release(std::unique_ptr<Batch> batch);
  // Queues bytes for `stream`; the batch returns to the pool once hashed.
  void hash(std::shared_ptr<HashStream> stream, std::unique_ptr<Batch> batch);
  // Queues the first `length` bytes of the file `fd` (read with pread; the fd is closed after).
  void hash_file(std::shared_ptr<HashStream> stream, UniqueFd fd, std::uint64_t length);
  // Queues the end of `stream`: its digests are taken, then `token` appears in
  // take_finished() and `wake` is called.
  void finish(std::shared_ptr<HashStream> stream, std::uint64_t token);
  // The tokens whose finish has been processed since the last call.
  std::vector<std::uint64_t> take_finished();

 private:
  enum class Kind { batch, file, finish };
  struct Item {
    Kind kind;
    std::shared_ptr<HashStream> stream;
    std::unique_ptr<Batch> batch;
    UniqueFd fd;
    std::uint64_t length = 0;  // file: bytes to read; finish: the token
  };
  void loop();
  void push(Item item);
  void read_file(HashStream& stream, int fd, std::uint64_t length);

  const std::size_t batch_bytes_;
  const std::size_t max_batches_;
  const std::function<void()> wake_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable free_cv_;
  std::deque<Item> queue_;
  std::vector<std::unique_ptr<Batch>> free_;
  std::size_t allocated_ = 0;
  std::vector<std::uint64_t> finished_;
  bool stop_ = false;
  std::unique_ptr<char[]> read_buffer_;  // the hashing thread's, for hash_file
  std::thread thread_;                   // last: starts once the members above exist
};

}  // namespace shardsync::client::detail
