#include "shardsync/bridge/quantize.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace shardsync::bridge {

std::string_view wire_name(WireFormat wire) noexcept {
  switch (wire) {
    case WireFormat::f32:
      return "f32";
    case WireFormat::bf16:
      return "bf16";
    case WireFormat::int8:
      return "int8";
    case WireFormat::fp4_e3m0:
      return "fp4-e3m0";
  }
  return "?";
}

std::optional<WireFormat> wire_from_name(std::string_view name) noexcept {
  for (auto w : {WireFormat::f32, WireFormat::bf16, WireFormat::int8, WireFormat::fp4_e3m0}) {
    if (wire_name(w) == name) return w;
  }
  return std::nullopt;
}

std::uint16_t bf16_from_f32(float x) noexcept {
  const auto u = std::bit_cast<std::uint32_t>(x);
  if (std::isnan(x)) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  // Round to nearest, ties to even, on the 16 bits that are dropped (c10's round_to_nearest_even).
  const std::uint32_t rounded = u + 0x7FFFu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(rounded >> 16);
}

float f32_from_bf16(std::uint16_t bits) noexcept {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

namespace {

float block_absmax(std::span<const float> block) noexcept {
  float amax = 0.0f;
  for (float v : block) amax = std::max(amax, std::fabs(v));
  return std::max(amax, kAbsmaxFloor);
}

}  // namespace

Int8Blocks quantize_int8(std::span<const float> x, std::size_t block) {
  Int8Blocks out;
  out.codes.resize(x.size());
  out.scales.resize(block_count(x.size(), block));
  for (std::size_t b = 0; b < out.scales.size(); ++b) {
    const std::size_t begin = b * block;
    const auto values = x.subspan(begin, std::min(block, x.size() - begin));
    // Division, not a multiply by 1/scale: that is what the simulator does (DILOCO.md §4.3.1).
    const float scale = block_absmax(values) / 127.0f;
    out.scales[b] = scale;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const float q = std::clamp(std::nearbyint(values[i] / scale), -127.0f, 127.0f);
      out.codes[begin + i] = static_cast<std::int8_t>(q);
    }
  }
  return out;
}

void dequantize_int8(std::span<const std::int8_t> codes, std::span<const float> scales,
                     std::size_t block, std::span<float> out) noexcept {
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = static_cast<float>(codes[i]) * scales[i / block];
  }
}

std::uint8_t fp4_e3m0_code(float x, float scale) noexcept {
  const float r = std::fabs(x) / scale;
  if (!(r >= 0x1p-7f)) return 0;  // also catches NaN
  int ex = 0;
  (void)std::frexp(r, &ex);  // r = m * 2^ex, m in [0.5, 1): lo = 2^(ex-1) <= r, exactly
  const float lo = std::ldexp(1.0f, ex - 1);
  float mag = (r - lo > 2.0f * lo - r) ? 2.0f * lo : lo;  // ties to the lower magnitude
  mag = std::clamp(mag, 0x1p-6f, 1.0f);
  int mex = 0;
  (void)std::frexp(mag, &mex);  // mag = 2^(mex-1), mex in [-5, 1]
  const auto e = static_cast<std::uint8_t>(mex + 6);
  return static_cast<std::uint8_t>(std::signbit(x) ? (e | 0x8u) : e);
}

float fp4_e3m0_value(std::uint8_t code, float scale) noexcept {
  const int e = code & 0x7;
  const float mag = e == 0 ? 0.0f : std::ldexp(1.0f, e - 7) * scale;
  return (code & 0x8) != 0 ? -mag : mag;
}

Fp4Blocks quantize_fp4_e3m0(std::span<const float> x, std::size_t block) {
  Fp4Blocks out;
  out.packed.assign((x.size() + 1) / 2, 0);
  out.scales.resize(block_count(x.size(), block));
  for (std::size_t b = 0; b < out.scales.size(); ++b) {
    const std::size_t begin = b * block;
    const auto values = x.subspan(begin, std::min(block, x.size() - begin));
    const float scale = block_absmax(values);
    out.scales[b] = scale;
    for (std::size_t i = 0; i < values.size(); ++i) {
      const std::size_t at = begin + i;
      const std::uint8_t code = fp4_e3m0_code(values[i], scale);
      out.packed[at / 2] |= static_cast<std::uint8_t>(at % 2 == 0 ? code : code << 4);
    }
  }
  return out;
}

void dequantize_fp4_e3m0(std::span<const std::uint8_t> packed, std::span<const float> scales,
                         std::size_t block, std::span<float> out) noexcept {
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::uint8_t byte = packed[i / 2];
    const auto code = static_cast<std::uint8_t>(i % 2 == 0 ? byte & 0x0Fu : byte >> 4);
    out[i] = fp4_e3m0_value(code, scales[i / block]);
  }
}

}  // namespace shardsync::bridge
