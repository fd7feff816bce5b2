#pragma once
// The wire payload of one DiLoCo fragment: a safetensors file (DILOCO.md §3.2) holding one
// worker's pseudo-gradient tensors in a wire format (quantize.hpp), optionally wrapped whole
// in one zstd frame.
//
// File layout (safetensors): u64 little-endian N, then N bytes of UTF-8 JSON beginning with
// '{' and padded with spaces so that N is a multiple of 8, then the data buffer. The JSON is
// written compact (no spaces), keys sorted bytewise, non-ASCII as raw UTF-8; each tensor is
// {"data_offsets":[begin,end],"dtype":D,"shape":[...]}, offsets relative to the buffer.
// Buffer order: descending dtype alignment (F32 4, BF16 2, I8/U8 1), then by name, packed
// with no holes (the reference Rust writer's order).
//
// Tensors per parameter `p` (numel n, shape S):
//   f32       p        F32  S
//   bf16      p        BF16 S
//   int8      p.q      I8   S                 p.scale F32 [ceil(n / block)]
//   fp4-e3m0  p.q      U8   [ceil(n / 2)]     p.scale F32 [ceil(n / block)]
//
// __metadata__ (all strings): format "shardsync.diloco.fragment/1", run_id, outer_step,
// inner_step, fragment_id, num_fragments, worker_id, worker_nonce, base_sha256 (64 lower-case
// hex), wire, block_size ("0" for f32/bf16), scale_dtype "F32", tokens, param_names (a JSON
// array of strings, the parameter order), shapes (a JSON array of shapes, parallel to
// param_names), torch_dtype_master, created (RFC 3339). Integers are canonical decimal.
//
// NaN/Inf: never on the wire. encode_payload refuses non-finite inputs and bf16 overflow;
// decode_payload refuses non-finite f32/bf16 values and scales that are not finite and > 0,
// int8 code -128, fp4 code 8 (negative zero) and a non-zero padding nibble.
//
// Everything here is pure and thread-safe; failures are Results, never exceptions (other than
// std::bad_alloc).

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "shardsync/bridge/quantize.hpp"
#include "shardsync/result.hpp"

namespace shardsync::bridge {

// Error codes of the payload codec (category "shardsync.bridge.payload").
enum class payload_errc {
  truncated = 1,     // shorter than its header says
  bad_header,        // header length, JSON, or a tensor entry that is malformed
  bad_layout,        // offsets out of range, overlapping, leaving holes, or shape x dtype != range
  unknown_dtype,     // a dtype safetensors does not define, or one this wire format doesn't use
  bad_metadata,      // a __metadata__ key missing, malformed or inconsistent with the tensors
  bad_values,        // non-finite values or scales, or codes the encoder never writes
  too_large,         // past a size limit (header, decompressed size, element count)
  zstd_failed,       // a zstd frame that does not decode
  invalid_argument,  // encode: inputs that cannot be written (names, shapes, NaN/Inf, options)
};

const std::error_category& payload_category() noexcept;

inline std::error_code make_error_code(payload_errc e) noexcept {
  return {static_cast<int>(e), payload_category()};
}

inline constexpr std::string_view kFragmentFormat = "shardsync.diloco.fragment/1";
inline constexpr std::uint64_t kMaxHeaderSize = 100'000'000;  // the reference parser's limit

// ---- generic safetensors -------------------------------------------------------------------

struct TensorEntry {
  std::string name;
  std::string dtype;  // "F32", "I8", ...
  std::vector<std::uint64_t> shape;
  std::uint64_t begin = 0;  // relative to the data buffer
  std::uint64_t end = 0;
};

// A parsed safetensors file; `buffer` points into the bytes given to parse_safetensors.
struct SafetensorsView {
  std::uint64_t header_size = 0;  // N
  std::map<std::string, std::string> metadata;
  std::vector<TensorEntry> tensors;  // buffer order
  std::span<const std::uint8_t> buffer;
};

// Bytes per element of a safetensors dtype name, or 0 when unknown. Sub-byte dtypes (F4,
// F6_*) are known but rejected by the parser (their byte ranges are not whole elements).
[[nodiscard]] std::size_t dtype_size(std::string_view dtype) noexcept;

// Validates the whole layout (see the top of this file and DILOCO.md §3.2); refuses duplicate
// JSON keys at any depth.
[[nodiscard]] Result<SafetensorsView> parse_safetensors(std::span<const std::uint8_t> file,
                                                        std::uint64_t max_header = kMaxHeaderSize);

struct TensorBytes {
  std::string name;
  std::string dtype;
  std::vector<std::uint64_t> shape;
  std::vector<std::uint8_t> bytes;  // little-endian, row-major
};
// Writes in the canonical form above. Fails on duplicate or invalid UTF-8 names, a byte count
// unlike shape x dtype, or an unknown dtype.
[[nodiscard]] Result<std::vector<std::uint8_t>> write_safetensors(
    const std::map<std::string, std::string>& metadata, std::vector<TensorBytes> tensors);

// ---- zstd wrapping -------------------------------------------------------------------------

[[nodiscard]] bool is_zstd_frame(std::span<const std::uint8_t> bytes) noexcept;
// Decompresses exactly one frame (trailing bytes refused) into at most `max_size` bytes.
[[nodiscard]] Result<std::vector<std::uint8_t>> zstd_decompress(std::span<const std::uint8_t> frame,
                                                                std::uint64_t max_size);

// ---- fragment payloads ---------------------------------------------------------------------

struct FragmentMeta {
  std::string run_id;
  std::uint64_t outer_step = 0;  // the fragment's sync ordinal
  std::uint64_t inner_step = 0;  // global step at send
  std::uint64_t fragment_id = 0;
  std::uint64_t num_fragments = 1;
  std::string worker_id;
  std::string worker_nonce;  // incarnation; a restarted worker gets a new one
  std::string base_sha256;   // 64 lower-case hex digits
  std::uint64_t tokens = 0;  // tokens since this fragment's last sync (for weighting)
  std::string torch_dtype_master = "float32";
  std::string created;  // RFC 3339; encode_payload fills in the current UTC time when empty

  bool operator==(const FragmentMeta&) const = default;
};

struct Tensor {
  std::string name;                  // the parameter's name
  std::vector<std::uint64_t> shape;  // [] is a scalar
  std::vector<float> values;         // row-major, product(shape) values

  bool operator==(const Tensor&) const = default;
};

struct Fragment {
  FragmentMeta meta;
  std::vector<Tensor> tensors;  // this order becomes param_names
};

struct EncodeOptions {
  // The wire format.
  WireFormat wire = WireFormat::fp4_e3m0;
  // Values per scale for int8 and fp4-e3m0, 1 to kMaxBlockSize; ignored for f32 and bf16.
  std::size_t block_size = 128;
  // Wrap the whole file in one zstd frame.
  bool zstd = false;
  // zstd compression level when `zstd` is set.
  int zstd_level = 3;
};
inline constexpr std::size_t kMaxBlockSize = std::size_t{1} << 24;

struct DecodeOptions {
  // The largest file a zstd frame may decompress to (a bomb fails with too_large).
  std::uint64_t max_decompressed = std::uint64_t{1} << 32;
  // The largest safetensors header accepted.
  std::uint64_t max_header = kMaxHeaderSize;
};

struct DecodedFragment {
  FragmentMeta meta;
  WireFormat wire = WireFormat::f32;
  std::size_t block_size = 0;                   // 0 for f32 and bf16
  bool zstd = false;                            // the input was a zstd frame
  std::vector<Tensor> tensors;                  // dequantized to fp32, in param_names order
  std::map<std::string, std::string> metadata;  // all of __metadata__, unknown keys included
};

[[nodiscard]] Result<std::vector<std::uint8_t>> encode_payload(const Fragment& fragment,
                                                               const EncodeOptions& options);
[[nodiscard]] Result<DecodedFragment> decode_payload(std::span<const std::uint8_t> file,
                                                     const DecodeOptions& options = {});

}  // namespace shardsync::bridge

template <>
struct std::is_error_code_enum<shardsync::bridge::payload_errc> : std::true_type {};
