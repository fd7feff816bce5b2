#pragma once
// The numeric core of a DiLoCo outer step (DILOCO.md §3.1 R3-R6): pseudo-gradient, the
// deterministic fp32 reduction, the outer Nesterov SGD and the overlap merge. All arithmetic is
// fp32 with a fixed operation order, so every replica gets bit-identical results; the optimizer
// and merge reproduce PyTorch 1.13 on x86-64 CPUs bit for bit (see NesterovSgd). This file is
// built with -ffp-contract=off: every fused multiply-add is an explicit std::fma.
//
// Not thread-safe per object; free functions are pure.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/bridge/schedule.hpp"
#include "shardsync/result.hpp"

namespace shardsync::bridge {

// R3: out = base - local ("old minus new"), elementwise in fp32. base is the last committed
// global fragment, not the merged local one. Fails with size_mismatch unless all three spans
// have the same length. out may alias neither input.
[[nodiscard]] Result<void> pseudo_gradient(std::span<const float> base,
                                           std::span<const float> local, std::span<float> out);
[[nodiscard]] Result<std::vector<float>> pseudo_gradient(std::span<const float> base,
                                                         std::span<const float> local);

// One worker's (dequantized, fp32) pseudo-gradient for one fragment.
struct Contribution {
  std::string worker;            // worker id; contributions are accumulated in byte order of it
  std::span<const float> delta;  // borrowed; must outlive the reduce_mean call
  std::uint64_t tokens = 0;      // tokens processed since the fragment's last sync (weighting)
};

// R4: the weighted mean of the contributions, accumulated in fp32 in ascending worker-id order,
// so the result does not depend on the order the payloads arrived in.
//   uniform:  acc = 0; acc += delta_m (sorted m); result = acc / float(M)   (torch's sum / M)
//   tokens:   w_m = float(tokens_m / sum tokens) (ratio in double); acc += w_m * delta_m,
//             two roundings per term (no FMA)
// Fails with empty_input (no contributions, or token weights summing to 0), duplicate_worker,
// or size_mismatch (deltas of different lengths).
[[nodiscard]] Result<std::vector<float>> reduce_mean(std::vector<Contribution> contributions,
                                                     bool token_weighted = false);

// R6 overlap merge after the outer step: local <- alpha*local + (1-alpha)*global, computed as
// torch.lerp(global, local, alpha) does on CPU (torchft's `p.lerp_(local, alpha)`), with w =
// float(alpha) and d = local - global:  |w| < 0.5: fma(w, d, global);  else fma(w - 1, d, local).
// alpha = 0 gives global exactly, alpha = 1 gives local exactly. Fails with size_mismatch.
[[nodiscard]] Result<void> merge_overlap(std::span<float> local, std::span<const float> global,
                                         double alpha);

struct OuterOptions {
  double lr = 0.7;        // outer learning rate (DiLoCo 0.7, Streaming DiLoCo 0.4), > 0
  double momentum = 0.9;  // Nesterov momentum in [0, 1); 0 = plain SGD
};

// R5: torch.optim.SGD(params, lr, momentum, nesterov=True, dampening=0, weight_decay=0), as
// PyTorch 1.13's single-tensor path runs it on CPU fp32 (foreach is off for CPU tensors):
//   first step:  buf = g                       (torch.clone)
//   later:       buf = buf * mu; buf = buf + g (mul_ then add_: two roundings)
//   d = g + mu * buf                           (add(buf, alpha=mu): one FMA in torch's kernel)
//   param = param + (-lr) * d                  (add_(d, alpha=-lr): one FMA)
// with mu = float(momentum) and -lr = float(-lr), as torch converts Scalars for fp32 tensors.
// torch's CPU add kernel is vec::fmadd for full vectors and, on its AVX2/AVX512 builds, also
// fused for the tail (checked by tests/bridge/torch_outer_check.py); a CPU without FMA running
// torch's DEFAULT kernels would round twice there and differ in the last bit.
// One momentum buffer per tensor, created on that tensor's first step.
class NesterovSgd {
 public:
  explicit NesterovSgd(OuterOptions options = {}) : options_(options) {}

  // One outer step over the tensors of a fragment; params[i] and grads[i] must have equal
  // lengths, and the tensor count and lengths must be the same on every call (else
  // size_mismatch, and nothing is modified).
  [[nodiscard]] Result<void> step(std::span<const std::span<float>> params,
                                  std::span<const std::span<const float>> grads);

  [[nodiscard]] const OuterOptions& options() const noexcept { return options_; }
  [[nodiscard]] std::uint64_t steps() const noexcept { return steps_; }
  // Momentum buffers, one per tensor; empty before the first step.
  [[nodiscard]] const std::vector<std::vector<float>>& momentum_buffers() const noexcept {
    return buffers_;
  }

  // Checkpoint state: a little-endian binary blob holding options, step count and buffers
  // ("SSNSGD01" magic). load_state fails with bad_state on anything that does not parse.
  [[nodiscard]] std::string save_state() const;
  [[nodiscard]] static Result<NesterovSgd> load_state(std::string_view bytes);

 private:
  OuterOptions options_;
  std::uint64_t steps_ = 0;
  std::vector<std::vector<float>> buffers_;
};

}  // namespace shardsync::bridge
