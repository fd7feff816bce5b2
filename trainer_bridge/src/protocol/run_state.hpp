#pragma once
// The replicated state of a run: the global fp32 parameters split into fragments, one outer
// Nesterov optimizer per fragment and the number of syncs committed per fragment. Every
// worker (and the aggregator) holds one and advances it with the same commits, in the same
// order, so all copies stay bit-identical; global_sha256() is the check. Not thread-safe.

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shardsync/bridge/outer.hpp"
#include "shardsync/bridge/payload.hpp"
#include "shardsync/bridge/schedule.hpp"
#include "shardsync/result.hpp"

namespace shardsync::bridge::detail {

class RunState {
 public:
  RunState() = default;
  // From the run configuration and a safetensors file of all parameters in F32 (the init
  // model or a checkpoint's global.safetensors). Fails with config_mismatch when the file's
  // tensors do not match run.json's tensor list.
  [[nodiscard]] static Result<RunState> create(const RunConfig& config,
                                               std::span<const std::uint8_t> model);

  [[nodiscard]] std::int64_t fragments() const { return static_cast<std::int64_t>(global_.size()); }
  // The fragment's tensors, in run.json order.
  [[nodiscard]] const std::vector<Tensor>& global(std::int64_t p) const {
    return global_[static_cast<std::size_t>(p)];
  }
  // sha-256 over the fragment's fp32 bytes (little-endian), tensor after tensor.
  [[nodiscard]] std::string global_sha256(std::int64_t p) const;
  [[nodiscard]] std::uint64_t committed(std::int64_t p) const {
    return committed_[static_cast<std::size_t>(p)];
  }
  void set_committed(std::int64_t p, std::uint64_t n) {
    committed_[static_cast<std::size_t>(p)] = n;
  }
  // The step a checkpoint of this state resumes at.
  std::int64_t resume_step = 0;

  // R4 + R5 on fragment p: reduce the payloads (sorted by worker; token weights when the
  // run says so), then one outer step. Fails with bad_payload when a payload does not fit
  // the fragment. The state is unchanged on failure.
  [[nodiscard]] Result<void> apply_payloads(std::int64_t p,
                                            const std::vector<const DecodedFragment*>& payloads,
                                            bool token_weighted);
  // R5 on fragment p with an already reduced Δ̄ (aggregator topology).
  [[nodiscard]] Result<void> apply_reduced(std::int64_t p, const DecodedFragment& reduced);
  // The mean Δ̄ of the payloads (R4), without stepping; for the aggregator to publish.
  [[nodiscard]] Result<std::vector<Tensor>> reduce(
      std::int64_t p, const std::vector<const DecodedFragment*>& payloads,
      bool token_weighted) const;

  // ckpt/{n}/global.safetensors: every tensor in F32.
  [[nodiscard]] Result<std::vector<std::uint8_t>> encode_global() const;
  // ckpt/{n}/outer_state.safetensors: per fragment the optimizer state blob (U8) and, in
  // __metadata__, the committed counts and resume_step.
  [[nodiscard]] Result<std::vector<std::uint8_t>> encode_outer_state() const;
  [[nodiscard]] Result<void> load_outer_state(std::span<const std::uint8_t> file);

  // Overwrites every fragment's tensors from an F32 safetensors file of all parameters.
  [[nodiscard]] Result<void> load_global(std::span<const std::uint8_t> file);

 private:
  std::vector<std::vector<Tensor>> global_;  // [fragment][tensor]
  std::vector<NesterovSgd> optimizers_;
  std::vector<std::uint64_t> committed_;
};

// Reads an F32 safetensors file into tensors (by name); bad_payload on anything else.
[[nodiscard]] Result<std::vector<Tensor>> read_f32_tensors(std::span<const std::uint8_t> file);
// Writes tensors as an F32 safetensors file.
[[nodiscard]] Result<std::vector<std::uint8_t>> write_f32_tensors(
    const std::vector<Tensor>& tensors, const std::map<std::string, std::string>& metadata = {});

}  // namespace shardsync::bridge::detail
