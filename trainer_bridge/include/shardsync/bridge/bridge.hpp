#pragma once
// DiLoCoBridge: a (Streaming) DiLoCo worker's side of the protocol of DILOCO.md §3.3, for a
// trainer that owns its fp32 parameters. The trainer calls after_inner_step() once per inner
// step; when a fragment is due (the schedule of run.json), the bridge copies that fragment's
// fp32 parameters and a background thread computes the pseudo-gradient, encodes it, publishes
// it (HTTP PUT to `shardsync serve`), follows the change lists for the other workers'
// payloads, decides or reads the commit record and reduces + applies the outer step. The
// training thread blocks only when the update is due to land (step t + tau) and the commit is
// not in yet; that wait is counted in stats().
//
// Transport: only `shardsync serve` (its PUT publish API, with `If-None-Match: *` for the
// commit record) and the shardsync client library. Resources live under `runs/{run_id}/` of
// a collection (see protocol.hpp for the layout).
//
// Threads: every member function except stats() must be called from one thread (the
// training loop); stats() may be called from any thread. The Parameter spans are read and
// written only during bootstrap(), after_inner_step(), finalize() and load_state_dict(), on
// the calling thread. No torch type appears here: parameters are named fp32 buffers.

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "shardsync/bridge/schedule.hpp"
#include "shardsync/result.hpp"

namespace shardsync::bridge {

// Error codes of the bridge protocol and API (category "shardsync.bridge").
enum class bridge_errc {
  invalid_argument = 1,  // options or parameters that cannot work (the detail names which)
  not_bootstrapped,      // a call that needs bootstrap() first
  config_mismatch,       // run.json differs from the options' config, or from the parameters
  init_mismatch,         // init/model.safetensors does not match its published sha-256
  transport,             // the server could not be reached or refused a request
  timeout,               // a resource (run.json, init model, commit) did not appear in time
  diverged,              // a reduction's result differs from the commit's global_sha256
  bad_payload,           // a payload or record that fails verification (hash, base, format)
  bad_state,             // a state_dict that does not parse or does not fit the parameters
};

const std::error_category& bridge_category() noexcept;

inline std::error_code make_error_code(bridge_errc e) noexcept {
  return {static_cast<int>(e), bridge_category()};
}

}  // namespace shardsync::bridge

template <>
struct std::is_error_code_enum<shardsync::bridge::bridge_errc> : std::true_type {};

namespace shardsync::bridge {

// How the pseudo-gradients of one sync are reduced (DILOCO.md R9).
enum class Topology {
  allgather,   // every worker fetches all included payloads and reduces them itself
  aggregator,  // one aggregator (`shardsync bridge aggregate`) commits and publishes reduced Δ̄
};

// One trainer-owned fp32 parameter. `data` holds product(shape) floats, row-major, and must
// stay valid (same address) for the bridge's lifetime.
struct Parameter {
  std::string name;
  std::vector<std::uint64_t> shape;  // [] is a scalar
  std::span<float> data;
  // Transformer block of this parameter, for the fragment assignment when run.json has no
  // tensor list (the coordinator then writes one from the parameters); -1 = block 0.
  std::int64_t layer = -1;
};

struct BridgeOptions {
  // Run identity: resources live under `runs/{run_id}/` of the collections below.
  std::string run_id;
  // This worker's id (sorted bytewise to fix the reduction order); [A-Za-z0-9._-], 1..64.
  std::string worker_id;
  // The collection this worker publishes to, e.g. "http://127.0.0.1:8080/bridge" (PUT
  // {publish_url}/runs/{run_id}/...).
  std::string publish_url;
  // Collections whose change lists are followed for payloads, commit records and reduced
  // files: every worker's own server plus the commit server. Empty = {publish_url} (one
  // shared server).
  std::vector<std::string> follow_urls;
  // The collection where run.json, init/, commit records (created with If-None-Match: *,
  // first writer wins), reduced files and checkpoints live. Empty = publish_url. With one
  // server per worker, every worker names the same commit server.
  std::string commit_url;
  // `Authorization: Bearer` token for PUTs (the servers' --write-token).
  std::string write_token;
  // The run configuration. Set on the coordinator, which publishes run.json (and
  // init/model.safetensors from the parameters) when the run has none yet; every worker
  // then checks the published run.json equals its own. Absent: fetched from the run.
  std::optional<RunConfig> config;
  // Publish run.json and init/model.safetensors if missing (one worker, usually "w0").
  bool coordinator = false;
  Topology topology = Topology::allgather;
  // Quorum K: a sync commits with at least this many payloads on the right base.
  std::int64_t min_workers = 1;
  // M: a sync commits as soon as this many payloads are in (0 = wait for the deadline).
  std::int64_t num_workers = 0;
  // After the deadline step (send step + tau), how long the committer waits for payloads
  // before deciding with what it has.
  std::chrono::milliseconds grace{2000};
  // Give up waiting for a commit record this long after the deadline (a dead committer and
  // a dead aggregator): the step is then treated as skipped locally (timeout in stats).
  std::chrono::milliseconds commit_timeout{30'000};
  // How long bootstrap() waits for run.json / init / a checkpoint to appear.
  std::chrono::milliseconds bootstrap_timeout{30'000};
  // Change-list poll period while waiting (conditional GETs).
  std::chrono::milliseconds poll_interval{20};
  // Wrap payloads in zstd.
  bool zstd = false;
  // Publish ckpt/{n}/ (global params + outer momentum) after every n-th sync of the last
  // fragment, by the worker that wrote the commit (0 = never).
  std::int64_t checkpoint_every = 1;
  // One line per event (level "info"/"warn", message); may be called from the background
  // thread. Empty = silent.
  std::function<void(std::string_view level, std::string_view message)> log;
};

// What happened at one sync of one fragment, from this worker's point of view.
struct SyncRecord {
  std::int64_t fragment = 0;
  std::uint64_t sync = 0;             // the fragment's sync ordinal (1-based)
  std::int64_t send_step = 0;         // inner step the payload was computed at
  std::int64_t land_step = 0;         // inner step the update was applied at (send_step + tau)
  std::vector<std::string> included;  // worker ids the commit included (sorted)
  bool own_included = false;          // this worker's payload was in the commit
  bool late = false;                  // this worker published, but the commit did not include it
  bool skipped = false;               // below quorum (or no commit in time): no outer step
  bool timed_out = false;             // no commit record arrived within commit_timeout
  bool committed_here = false;        // this worker wrote the winning commit record
  double wait_seconds = 0;            // the training thread's block at land_step
  std::string global_sha256;          // of the fragment after the outer step (empty when skipped)
  std::uint64_t bytes_up = 0;         // bytes PUT for this sync
  std::uint64_t bytes_down = 0;       // payload bytes fetched for this sync
};

struct BridgeStats {
  std::uint64_t bytes_up = 0;       // every PUT body
  std::uint64_t bytes_down = 0;     // every payload, reduced file, commit and checkpoint body
  double wait_seconds = 0;          // total block of the training thread
  std::uint64_t syncs = 0;          // syncs landed (committed, skipped or timed out)
  std::uint64_t included = 0;       // ... in which this worker's payload was included
  std::uint64_t late = 0;           // ... in which it was published but not included
  std::uint64_t skipped = 0;        // ... without an outer step
  std::uint64_t rejected = 0;       // payloads rejected (hash, base, format)
  std::vector<SyncRecord> records;  // one per landed sync, in landing order
};

class DiLoCoBridge {
 public:
  // No I/O here. Fails (throws std::invalid_argument) only on an empty run_id, worker_id or
  // publish_url; everything else is checked by bootstrap().
  DiLoCoBridge(BridgeOptions options, std::vector<Parameter> params);
  ~DiLoCoBridge();  // stops the background thread; in-flight work is dropped
  DiLoCoBridge(const DiLoCoBridge&) = delete;
  DiLoCoBridge& operator=(const DiLoCoBridge&) = delete;

  // Gets (or, for the coordinator, publishes) run.json and checks it against the parameters;
  // then either restores from the latest checkpoint plus the commits after it (a restart or
  // a late joiner: the parameters are overwritten with the global ones) or verifies
  // init/model.safetensors against its sha-256 and copies θ0 into the parameters. Picks a
  // new incarnation nonce. Returns the inner step to continue from (0 on a fresh start).
  [[nodiscard]] Result<std::int64_t> bootstrap();

  // Call after inner step `step` (1-based, consecutive). Sends the fragment due at this
  // step (copying its parameters; the rest runs on the background thread) and lands the
  // update due at this step (blocking until its commit is known, then α-merging or
  // replacing the fragment's parameters). `tokens`: tokens processed in this step (used
  // when the run weights by tokens). Errors: diverged, transport (a PUT failed for good).
  [[nodiscard]] Result<void> after_inner_step(std::int64_t step, std::uint64_t tokens = 0);

  // Lands every update in flight; with P > 1, runs one final sync of every fragment (R8);
  // with `publish_final`, the worker whose commit wins publishes final/model.safetensors.
  // `step` is the last inner step done. The bridge accepts no more steps afterwards.
  [[nodiscard]] Result<void> finalize(std::int64_t step, bool publish_final = true);

  // The bridge's own state: global fragments, outer momentum, sync counters, last step,
  // incarnation; a safetensors file. load_state_dict() restores it after bootstrap() (the
  // parameters are not touched) with no sync in flight; it fails with bad_state if it does
  // not fit the run, not_bootstrapped before bootstrap().
  [[nodiscard]] std::vector<std::uint8_t> state_dict() const;
  [[nodiscard]] Result<void> load_state_dict(std::span<const std::uint8_t> state);

  // A snapshot; any thread.
  [[nodiscard]] BridgeStats stats() const;

  // sha-256 (lower-case hex) of the current global fragment p (its fp32 bytes in parameter
  // order), for determinism checks.
  [[nodiscard]] std::string global_sha256(std::int64_t fragment) const;

  // The run's configuration (valid after bootstrap()).
  [[nodiscard]] const RunConfig& config() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace shardsync::bridge
