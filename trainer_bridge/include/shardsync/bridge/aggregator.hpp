#pragma once
// The aggregator role of the bridge's topology (b) (DILOCO.md R9): it follows the workers'
// payloads, and per sync reduces them once in fp32 (sorted worker order), quantizes Δ̄ once
// in the run's wire format, publishes frag/{p}/{sync}/reduced.safetensors and then the
// commit record (create-only). Workers running with Topology::aggregator fetch that one file
// instead of M payloads. It keeps the same replicated state as the workers (and publishes the
// checkpoints), so it can be restarted: it resumes from the latest checkpoint + commits.

#include <cstdint>
#include <functional>
#include <memory>

#include "shardsync/bridge/bridge.hpp"

namespace shardsync::bridge {

class Aggregator {
 public:
  // options.worker_id names the committer (e.g. "aggregator"); config, coordinator and
  // topology are ignored. A sync commits when num_workers payloads are in, or `grace` after
  // the first valid one arrived (with at least min_workers; below that it commits a skip).
  explicit Aggregator(BridgeOptions options);
  ~Aggregator();
  Aggregator(const Aggregator&) = delete;
  Aggregator& operator=(const Aggregator&) = delete;

  // Bootstraps, then aggregates every sync the schedule has up to inner step `last_step`
  // (and, with P > 1, the final sync of each fragment that DiLoCoBridge::finalize() runs).
  // `on_sync` runs after each commit. Returns when done, or on the first error.
  [[nodiscard]] Result<void> run(std::int64_t last_step,
                                 const std::function<void(const SyncRecord&)>& on_sync = {});

  // Any thread: makes run() return soon with bridge_errc::timeout.
  void stop();

  // sha-256 of the aggregator's global fragment p.
  [[nodiscard]] std::string global_sha256(std::int64_t fragment) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::bridge
