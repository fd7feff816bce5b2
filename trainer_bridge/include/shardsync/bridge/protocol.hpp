#pragma once
// The trainer bridge's resources over ResourceSync (DILOCO.md §3.3): where each file of a run
// lives under its collection, and the commit record that fixes a sync's outcome.
//
//   runs/{run}/run.json                                       run configuration (R2)
//   runs/{run}/init/model.safetensors                         θ0 (R1)
//   runs/{run}/frag/{p}/{sync:08d}/worker/{w}.safetensors     Δ_{w,p} (payload.hpp)
//   runs/{run}/frag/{p}/{sync:08d}/commit.json                CommitRecord, first writer wins
//   runs/{run}/frag/{p}/{sync:08d}/reduced.safetensors        Δ̄_p (aggregator topology)
//   runs/{run}/ckpt/{n:08d}/global.safetensors                fp32 global params
//   runs/{run}/ckpt/{n:08d}/outer_state.safetensors           outer momentum + counters
//   runs/{run}/workers/{w}/state.json                         heartbeat
//   runs/{run}/final/model.safetensors                        the final global model (R8)
//
// Paths are relative to a collection URL ("http://host:port/NAME"). Pure and thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::bridge {

// A run or worker id: 1 to 64 of [A-Za-z0-9._-], not "." or "..".
[[nodiscard]] bool valid_id(std::string_view id) noexcept;

[[nodiscard]] std::string run_prefix(std::string_view run);  // "runs/{run}/"
[[nodiscard]] std::string run_json_path(std::string_view run);
[[nodiscard]] std::string init_model_path(std::string_view run);
[[nodiscard]] std::string payload_path(std::string_view run, std::int64_t fragment,
                                       std::uint64_t sync, std::string_view worker);
[[nodiscard]] std::string commit_path(std::string_view run, std::int64_t fragment,
                                      std::uint64_t sync);
[[nodiscard]] std::string reduced_path(std::string_view run, std::int64_t fragment,
                                       std::uint64_t sync);
[[nodiscard]] std::string checkpoint_global_path(std::string_view run, std::uint64_t n);
[[nodiscard]] std::string checkpoint_state_path(std::string_view run, std::uint64_t n);
[[nodiscard]] std::string worker_state_path(std::string_view run, std::string_view worker);
[[nodiscard]] std::string final_model_path(std::string_view run);

// What a path under runs/{run}/ names; nullopt for anything else.
struct RunPath {
  enum class Kind { payload, commit, reduced, checkpoint_global, checkpoint_state, other };
  Kind kind = Kind::other;
  std::int64_t fragment = 0;
  std::uint64_t sync = 0;  // the sync ordinal, or the checkpoint number
  std::string worker;      // payloads only
};
[[nodiscard]] std::optional<RunPath> parse_run_path(std::string_view run, std::string_view path);

// One payload the commit includes.
struct CommitEntry {
  std::string worker;
  std::string nonce;   // the payload's worker_nonce (incarnation)
  std::string sha256;  // of the payload file as published
  std::uint64_t tokens = 0;
  std::string url;  // where the committer fetched it

  bool operator==(const CommitEntry&) const = default;
};

// commit.json: the sync's outcome, decided once. Everyone reduces exactly `included`, in
// worker order, and must reach `global_sha256`.
struct CommitRecord {
  std::string run_id;
  std::int64_t fragment = 0;
  std::uint64_t sync = 0;             // the fragment's sync ordinal, from 1
  std::int64_t send_step = 0;         // the inner step the payloads were computed at
  bool applied = true;                // false: below quorum, no outer step (base unchanged)
  std::string reason;                 // "all_in" | "deadline" | "below_quorum"
  std::int64_t quorum = 1;            // K in force
  std::string base_sha256;            // of the global fragment every included payload is based on
  std::string global_sha256;          // of the global fragment after the step (= base when skipped)
  std::string reduced_sha256;         // aggregator topology: sha-256 of reduced.safetensors
  std::vector<CommitEntry> included;  // sorted by worker
  std::string committer;              // worker id or "aggregator"
  std::string created;                // RFC 3339

  bool operator==(const CommitRecord&) const = default;
};

[[nodiscard]] std::string serialize_commit(const CommitRecord& record);
// Fails with bridge_errc::bad_payload on anything malformed.
[[nodiscard]] Result<CommitRecord> parse_commit(std::string_view json);

// The current UTC time as RFC 3339 ("2026-11-25T01:02:03Z").
[[nodiscard]] std::string utc_now_rfc3339();

}  // namespace shardsync::bridge
