#pragma once
// One worker's protocol engine (DILOCO.md §3.3): bootstrap from run.json + init or the
// latest checkpoint + later commits, and per sync: publish the payload, gather and verify
// the others', decide the commit at the deadline (create-only, first writer wins), reduce,
// step, and check global_sha256. Runs on the bridge's background thread, except bootstrap()
// and the state accessors, which lock.

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>

#include "run_index.hpp"
#include "run_state.hpp"
#include "shardsync/bridge/bridge.hpp"
#include "shardsync/bridge/protocol.hpp"
#include "transport.hpp"

namespace shardsync::bridge::detail {

// Drops trailing slashes and fills the defaults: commit_url = publish_url, follow_urls =
// {publish_url}.
void normalize_urls(BridgeOptions& options);

// A string's bytes, for PUT bodies.
[[nodiscard]] std::span<const std::uint8_t> bytes_of(const std::string& s);
// "runs/{run}/frag/{p}/{n:08d}/": the directory of one sync's resources.
[[nodiscard]] std::string frag_prefix(const std::string& run, std::int64_t p, std::uint64_t n);

// A fresh incarnation nonce: 16 random hex digits.
[[nodiscard]] std::string random_nonce();

class SyncEngine {
 public:
  using Clock = std::chrono::steady_clock;
  struct Outcome {
    SyncRecord record;
    std::vector<Tensor> global;  // the fragment after the step (empty when skipped)
    std::uint64_t rejected = 0;
    Error error;  // code set: the sync failed (diverged, transport)
  };

  SyncEngine(BridgeOptions options, std::string nonce);

  // Returns the inner step to continue after. `own`: the coordinator's (or a checking
  // worker's) configuration; `init`: θ0 to publish (coordinator only).
  [[nodiscard]] Result<std::int64_t> bootstrap(const std::optional<RunConfig>& own,
                                               const std::vector<Tensor>* init);

  [[nodiscard]] const RunConfig& config() const { return config_; }
  [[nodiscard]] std::int64_t fragments() const;
  // The fragment's tensors with their current global values.
  [[nodiscard]] std::vector<Tensor> global_copy(std::int64_t p) const;
  [[nodiscard]] std::string global_sha256(std::int64_t p) const;

  // One sync of fragment p (ordinal n). `deadline()` gives the moment the trainer reached
  // the landing step (nullopt before); `stopping()` aborts.
  [[nodiscard]] Outcome run_sync(std::int64_t p, std::uint64_t n, std::int64_t send_step,
                                 const std::vector<Tensor>& local, std::uint64_t tokens,
                                 const std::function<std::optional<Clock::time_point>()>& deadline,
                                 const std::function<bool()>& stopping);

  // Aggregator topology: gathers the payloads of (p, n) sent at `send_step`, publishes
  // reduced.safetensors and the commit. The grace period starts with the first valid payload.
  [[nodiscard]] Outcome aggregate(std::int64_t p, std::uint64_t n, std::int64_t send_step,
                                  const std::function<bool()>& stopping);

  [[nodiscard]] Result<void> publish_final();
  [[nodiscard]] Result<std::vector<std::uint8_t>> snapshot(
      const std::map<std::string, std::string>& meta) const;
  [[nodiscard]] Result<std::map<std::string, std::string>> restore(
      std::span<const std::uint8_t> bytes);

  // Refresh the change lists and wait up to `timeout` for `path` on collection `c`
  // (SIZE_MAX: any).
  [[nodiscard]] Result<Listed> wait_for(const std::string& path, std::size_t c,
                                        std::chrono::milliseconds timeout);

  std::uint64_t bytes_up() const { return transport_.bytes_up(); }
  std::uint64_t bytes_down() const { return transport_.bytes_down(); }

 private:
  // Transport counters at the start of a sync: finished() charges the traffic since to it.
  struct TrafficMark {
    std::uint64_t up = 0;
    std::uint64_t down = 0;
  };
  [[nodiscard]] TrafficMark traffic_mark() const;
  [[nodiscard]] Outcome finished(Outcome& out, const TrafficMark& mark) const;
  // Sets the error, logs it as "bridge: WHAT fragment p sync n: …" and finishes.
  [[nodiscard]] Outcome failed(Outcome& out, const TrafficMark& mark, Error error,
                               std::string_view what) const;
  struct Candidate {
    std::string sha256;
    std::string url;
    DecodedFragment payload;
  };
  std::string url_of(const std::string& collection, const std::string& path) const {
    return collection + "/" + path;
  }
  Result<std::vector<std::uint8_t>> fetch_verified(const std::string& url,
                                                   const std::string& sha256);
  // New or changed payloads of (p, n) on base `base_sha`, into `candidates`; rejects counted.
  void gather(std::int64_t p, std::uint64_t n, const std::string& base_sha,
              std::map<std::string, Candidate>& candidates, std::set<std::string>& rejected,
              std::uint64_t& rejected_count);
  // Applies a commit to the state (fetching what it needs); checks global_sha256.
  Result<void> apply_commit(const CommitRecord& record,
                            std::map<std::string, Candidate>& candidates);
  Result<CommitRecord> fetch_commit(std::int64_t p, std::uint64_t n, const Listed* listed);
  void write_checkpoint(std::uint64_t n, std::int64_t resume_step);
  void log(std::string_view level, const std::string& message) const {
    if (options_.log) options_.log(level, message);
  }

  BridgeOptions options_;
  std::string nonce_;
  Transport transport_;
  RunIndex index_;
  std::size_t commit_collection_ = 0;
  RunConfig config_;
  mutable std::mutex state_mutex_;  // state_ is read by the training thread
  RunState state_;
};

}  // namespace shardsync::bridge::detail
