#pragma once
// The run configuration of a (Streaming) DiLoCo run and the fragment schedule it implies
// (DILOCO.md §3.1 R2). Every function here is a pure function of the configuration and the
// inner step, so that all workers agree on which fragment syncs when without talking to each
// other. Thread-safe: nothing here has hidden state.
//
// Steps count inner optimizer steps from 1 (the first inner step is step 1), as in torchft and
// diloco_sim.py. A "round" is one period of H inner steps; with a constant H, round r covers
// steps r*H+1 .. (r+1)*H and fragment p syncs at step r*H + t_p.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::bridge {

// Error codes of the bridge's algorithm core (category "shardsync.bridge.core").
enum class core_errc {
  invalid_config = 1,  // run.json parses but a value is out of range or inconsistent
  malformed_json,      // run.json or a state file is not JSON or has the wrong shape
  size_mismatch,       // tensors/buffers of different lengths where equal ones are needed
  empty_input,         // a reduction with no contributions, or weights summing to zero
  duplicate_worker,    // two contributions from the same worker id
  bad_state,           // optimizer state that does not fit the tensors it is applied to
};

const std::error_category& core_category() noexcept;

inline std::error_code make_error_code(core_errc e) noexcept {
  return {static_cast<int>(e), core_category()};
}

}  // namespace shardsync::bridge

template <>
struct std::is_error_code_enum<shardsync::bridge::core_errc> : std::true_type {};

namespace shardsync::bridge {

// How transformer blocks are split into fragments (Streaming DiLoCo §2.2).
enum class Pattern {
  strided,     // block i -> fragment i mod P (the paper's default)
  sequential,  // block i -> fragment floor(i*P/L): runs of consecutive blocks
};

[[nodiscard]] std::string_view to_string(Pattern p) noexcept;

// The inner learning-rate schedule, needed only by QSR (H grows as the lr decays).
struct LrSchedule {
  enum class Kind {
    constant,  // peak for every step
    cosine,    // linear warm-up to peak, then cosine decay to min_ratio*peak at total_steps
  };
  Kind kind = Kind::cosine;
  double peak = 4e-4;             // peak learning rate, > 0
  std::int64_t warmup_steps = 0;  // linear warm-up length, >= 0
  std::int64_t total_steps = 0;   // end of the cosine, > warmup_steps for cosine
  double min_ratio = 0.1;         // final lr / peak, in [0, 1]

  // The lr used by inner step `step` (1-based): the same curve as diloco_sim.py's lr_at(step-1).
  [[nodiscard]] double at(std::int64_t step) const;
};

// Quadratic Synchronization Rule (Gu et al., ICLR 2024): at the start of each round,
// H = max(h_base, floor((alpha / lr)^2)) with lr the inner learning rate at that step.
struct QsrOptions {
  std::int64_t h_base = 0;  // lower bound on H, >= P
  double alpha = 0.0;       // the QSR coefficient, > 0
  LrSchedule lr;            // the inner lr the rule reads
};

// One tensor of the model and the transformer block it belongs to. By convention
// (diloco_sim.py) embeddings travel with block 0 and the final norm / head with block L-1.
struct TensorInfo {
  std::string name;
  std::uint64_t numel = 0;  // element count, > 0
  std::int64_t layer = 0;   // 0 <= layer < RunConfig::n_layers
};

// The immutable configuration of a run, published as run.json. Defaults are DiLoCo's.
struct RunConfig {
  std::int64_t h = 500;  // inner steps between two syncs of a fragment (without QSR)
  std::int64_t p = 1;    // number of fragments; 1 = plain DiLoCo
  Pattern pattern = Pattern::strided;
  std::vector<std::int64_t> offsets;  // t_p; empty = torchft's floor(H/P*(p+1)); else P
                                      // distinct values in [1, H] (not allowed with QSR)
  std::int64_t tau = 0;             // overlap: inner steps an outer update is in flight, tau*P < H
  double alpha = 0.5;               // merge weight of the local params when tau > 0, in [0, 1]
  double outer_lr = 0.7;            // outer Nesterov SGD learning rate, > 0
  double outer_momentum = 0.9;      // outer momentum, in [0, 1)
  bool token_weighted = false;      // reduction weights: tokens (true) or uniform (false)
  std::string wire_format = "f32";  // f32 | bf16 | int8 | fp4-e3m0 | uint8-codebook
  std::uint64_t block_size = 256;   // quantization block, > 0
  std::optional<QsrOptions> qsr;    // variable H; absent = constant h
  std::int64_t n_layers = 0;        // transformer blocks L (0 = no tensor list)
  std::vector<TensorInfo> tensors;  // optional parameter list for the fragment assignment

  // Checks every range and cross-field rule; the detail names the field.
  [[nodiscard]] Result<void> validate() const;

  // The offsets in use: `offsets` if given, else floor(H/P*(p+1)) for the given H.
  [[nodiscard]] std::vector<std::int64_t> offsets_for(std::int64_t round_h) const;
};

// run.json. parse_run_config validates; unknown keys are rejected (a typo must not silently
// fall back to a default in a config every worker must agree on).
[[nodiscard]] Result<RunConfig> parse_run_config(std::string_view json);
[[nodiscard]] std::string serialize_run_config(const RunConfig& config);

// One round of the schedule: inner steps first_step .. first_step + h - 1.
struct Round {
  std::int64_t index = 0;       // 0-based round number
  std::int64_t first_step = 1;  // first inner step of the round
  std::int64_t h = 0;           // its length
};

// What happens at an inner step, after that step's inner update.
struct StepEvents {
  std::optional<std::int64_t> send;  // fragment whose pseudo-gradient is computed and sent
  std::optional<std::int64_t> land;  // fragment whose outer update lands (sent at step - tau)
};

// The schedule of a validated RunConfig. Copyable; all queries are const and pure.
class Schedule {
 public:
  // Fails with invalid_config when config.validate() does.
  [[nodiscard]] static Result<Schedule> create(RunConfig config);

  [[nodiscard]] const RunConfig& config() const noexcept { return config_; }

  // The round containing inner step `step` (>= 1). With QSR the rounds are walked from the
  // start, O(step / h_base); H of a round is fixed by the lr at its first step.
  [[nodiscard]] Round round_of(std::int64_t step) const;

  // The fragment synced at `step`, if any: the one with round.first_step - 1 + t_p == step.
  [[nodiscard]] std::optional<std::int64_t> fragment_at(std::int64_t step) const;

  // Send and land events at `step`. With tau = 0 the update lands at the send step itself.
  [[nodiscard]] StepEvents events_at(std::int64_t step) const;

  // The first step > `after` at which `fragment` syncs.
  [[nodiscard]] std::int64_t next_sync(std::int64_t fragment, std::int64_t after) const;

  // Fragment of a transformer block under the configured pattern.
  [[nodiscard]] std::int64_t fragment_of_layer(std::int64_t layer) const;

  // Indices into config().tensors, per fragment, in tensor order.
  [[nodiscard]] std::vector<std::vector<std::size_t>> assignment() const;

 private:
  explicit Schedule(RunConfig config) : config_(std::move(config)) {}
  RunConfig config_;
};

}  // namespace shardsync::bridge
