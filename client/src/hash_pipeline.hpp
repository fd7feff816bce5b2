#pragma once
// The downloader's second and third stages: a writer thread puts the batches the curl thread
// has filled into their files, then a hashing thread hashes them, so writing and hashing
// (≈1.5 GB/s/core for SHA-256) overlap receiving instead of running on the curl thread
// (BENCHMARKS.md §3(i)). Whole aligned batches are written with O_DIRECT: on this VM the
// page-cache copy of a buffered write was the largest single cost of a 2 GiB download
// (2 GiB: buffered + fdatasync 4.8 s, O_DIRECT 1 MiB writes 1.15 s; the download 7–11 s →
// 2.9–4.8 s with O_DIRECT on the curl thread). Every item passes the writer first, so a
// stream's items are hashed in order and its finish comes after its last write. Batches come
// from a bounded pool, so memory stays at (max_batches × batch size) however far the stages
// fall behind: the curl thread then waits in acquire().

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
// Buffered writes (a partial batch, a file system without O_DIRECT) start the kernel's
// writeback every this many bytes, so the fsync before the rename finds little left to write:
// for 2 GiB on this VM's ext4 it took 3 ms instead of 0.65–0.8 s. (No fallocate up front: it
// bought nothing measurable on ext4 and cost 10–60 % on tmpfs, which zeroes what it reserves.)
inline constexpr std::uint64_t kWritebackBytes = 8 << 20;

// Page-aligned, so that a full batch can be written with O_DIRECT.
inline constexpr std::size_t kBatchAlignment = 4096;
struct AlignedDelete {
  void operator()(char* p) const { ::operator delete[](p, std::align_val_t{kBatchAlignment}); }
};
struct Batch {
  std::unique_ptr<char[], AlignedDelete> data;
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

  // The write stage's progress, final once drain() has returned: the file's length made of
  // this stream's bytes, and the errno of a failed write (the stream's later writes are
  // skipped). The submitter sets `written` before queuing any write (a resumed partial).
  std::atomic<std::uint64_t> written{0};
  std::atomic<int> write_errno{0};
  // Writer thread only.
  std::uint64_t writeback_from = 0;
  bool direct_refused = false;
  // Writes queued and not yet done (under the pipeline's mutex).
  int pending_writes = 0;
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
  // Queues `batch` to be written at `offset` of the file `fd` (through `direct_fd`, the same
  // file opened O_DIRECT, when it is not -1 and the batch is whole pages at a page offset),
  // then hashed. Both fds must stay open until drain() or the stream's finish token.
  void write(std::shared_ptr<HashStream> stream, int fd, int direct_fd, std::uint64_t offset,
             std::unique_ptr<Batch> batch);
  // Waits until every write queued for `stream` is done (or skipped).
  void drain(HashStream& stream);
  // Queues the first `length` bytes of the file `fd` (read with pread; the fd is closed after).
  void hash_file(std::shared_ptr<HashStream> stream, UniqueFd fd, std::uint64_t length);
  // Queues the end of `stream`: its digests are taken, then `token` appears in
  // take_finished() and `wake` is called.
  void finish(std::shared_ptr<HashStream> stream, std::uint64_t token);
  // The tokens whose finish has been processed since the last call.
  std::vector<std::uint64_t> take_finished();

 private:
  enum class Kind { write, batch, file, finish };
  struct Item {
    Kind kind;
    std::shared_ptr<HashStream> stream;
    std::unique_ptr<Batch> batch;
    UniqueFd fd;
    std::uint64_t length = 0;  // file: bytes to read; finish: the token; write: the offset
    int write_fd = -1;         // write: borrowed descriptors of the file
    int direct_fd = -1;
  };
  void loop();
  void write_loop();
  void push(Item item);
  static void write_batch(HashStream& stream, const Item& item);
  void read_file(HashStream& stream, int fd, std::uint64_t length);

  const std::size_t batch_bytes_;
  const std::size_t max_batches_;
  const std::function<void()> wake_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable write_cv_;
  std::condition_variable drained_cv_;
  std::condition_variable free_cv_;
  std::deque<Item> write_queue_;  // every item enters here
  std::deque<Item> queue_;        // then here, for the hashing thread
  std::vector<std::unique_ptr<Batch>> free_;
  std::size_t allocated_ = 0;
  std::vector<std::uint64_t> finished_;
  bool stop_ = false;
  std::unique_ptr<char[]> read_buffer_;  // the hashing thread's, for hash_file
  std::thread thread_;                   // last: they start once the members above exist
  std::thread writer_;
};

}  // namespace shardsync::client::detail
