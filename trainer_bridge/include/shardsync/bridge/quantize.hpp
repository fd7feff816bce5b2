#pragma once
// Wire quantizers for DiLoCo pseudo-gradients (DILOCO.md §1.2, §3.1 R7, §4.3.1). Each one is
// bit-compatible with `diloco_sim.quantize_dequantize` (same codes, same fp32 scales, same
// dequantized magnitudes) and with the stdlib-only Python codec in
// tests/bridge/payload_vectors.py; tests/bridge/payload_sim_check.py runs the simulator itself on
// the test vectors.
//
// Blocks: a block is `block` consecutive values of a tensor's row-major flattening; the last
// block of a tensor may be short. Each block has one fp32 scale. All arithmetic is IEEE fp32
// with round-to-nearest-even (the default rounding mode; the project never changes it).
//
// bf16: the upper 16 bits of the fp32 pattern after round-to-nearest-even on the low 16 bits
//   (torch's `.to(torch.bfloat16)`). A finite input that rounds past bf16's range becomes Inf;
//   the payload encoder refuses it (see payload.hpp).
//
// int8 (symmetric absmax): amax = max(max|x|, 1e-30f); scale = amax / 127.0f (fp32 division);
//   code = clamp(nearbyint(x / scale), -127, 127) (fp32 division, ties to even, never -128);
//   value = float(code) * scale. |value - x| <= scale / 2 for every finite x.
//
// fp4-e3m0: one fp32 scale per block, scale = amax = max(max|x|, 1e-30f). A 4-bit code is
//   bit 3 = sign (1 = negative), bits 0-2 = exponent e:
//     e = 0      -> 0 (always with sign bit 0: code 8 is never written and is refused)
//     e = 1..7   -> 2^(e-7) * scale, i.e. {1/64, 1/32, 1/16, 1/8, 1/4, 1/2, 1} * scale
//   value = (sign ? -1 : 1) * (2^(e-7) * scale)   (one fp32 multiply by a power of two)
//   Encoding, with r = |x| / scale (fp32 division), in [0, 1]:
//     r < 2^-7              -> e = 0
//     otherwise lo = 2^floor(log2 r) (from frexp, exact), mag = lo, or 2*lo when
//       r - lo > 2*lo - r (ties go to the lower magnitude); mag = clamp(mag, 2^-6, 1);
//       e = log2(mag) + 7.
//   So r in [2^-7, 2^-6) maps to 1/64 (not to 0), as in the simulator. Error bound per value:
//   |value - x| <= max(scale * 2^-7, |x| / 3) (up to fp32 rounding of r): below 2^-6 the code
//   is 0 or 1/64; above, r lies in [lo, 2 lo) and the nearer end is at most r / 3 away.
//   Packing: two codes per byte, value 2i in the low nibble and 2i+1 in the high nibble; an
//   odd count leaves the last high nibble 0.
//
// Zeros: every zero code decodes to +0.0f (the simulator would keep the sign of a negative
// input that rounds to zero: -0.0f). They compare equal; the bit patterns differ only there.
//
// Preconditions: inputs are finite (the payload encoder checks), block >= 1. No allocation
// failures are reported (std::bad_alloc propagates). All functions are pure and thread-safe.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

namespace shardsync::bridge {

enum class WireFormat { f32, bf16, int8, fp4_e3m0 };

// "f32", "bf16", "int8", "fp4-e3m0": the `wire` metadata value.
[[nodiscard]] std::string_view wire_name(WireFormat wire) noexcept;
[[nodiscard]] std::optional<WireFormat> wire_from_name(std::string_view name) noexcept;

// The floor torch's `clamp_min(1e-30)` puts under a block's absmax.
inline constexpr float kAbsmaxFloor = 1e-30f;

[[nodiscard]] std::uint16_t bf16_from_f32(float x) noexcept;  // NaN stays a quiet NaN
[[nodiscard]] float f32_from_bf16(std::uint16_t bits) noexcept;

[[nodiscard]] constexpr std::size_t block_count(std::size_t n, std::size_t block) noexcept {
  return block == 0 ? 0 : (n + block - 1) / block;
}

struct Int8Blocks {
  std::vector<std::int8_t> codes;  // one per value
  std::vector<float> scales;       // block_count(n, block)
};
[[nodiscard]] Int8Blocks quantize_int8(std::span<const float> x, std::size_t block);
// out.size() values; codes.size() >= out.size(), scales.size() >= block_count(out.size()).
void dequantize_int8(std::span<const std::int8_t> codes, std::span<const float> scales,
                     std::size_t block, std::span<float> out) noexcept;

struct Fp4Blocks {
  std::vector<std::uint8_t> packed;  // (n + 1) / 2 bytes, low nibble first
  std::vector<float> scales;         // block_count(n, block)
};
// The 4-bit code of x in a block of absmax `scale` (already floored).
[[nodiscard]] std::uint8_t fp4_e3m0_code(float x, float scale) noexcept;
// The value of a 4-bit code (only the low 4 bits are read); code 8 gives -0.0f.
[[nodiscard]] float fp4_e3m0_value(std::uint8_t code, float scale) noexcept;
[[nodiscard]] Fp4Blocks quantize_fp4_e3m0(std::span<const float> x, std::size_t block);
// out.size() values from packed.size() >= (out.size() + 1) / 2 bytes.
void dequantize_fp4_e3m0(std::span<const std::uint8_t> packed, std::span<const float> scales,
                         std::size_t block, std::span<float> out) noexcept;

}  // namespace shardsync::bridge
