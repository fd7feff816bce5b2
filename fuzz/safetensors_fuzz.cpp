// The trainer bridge's payload decoder (RELIABILITY.md §1.9 B6): safetensors header and
// layout, then the fragment schema, dequantisation and zstd unwrapping. Oracles for a file
// that parses: the tensors tile the buffer exactly (no overlap, hole or tail), each range is
// shape x dtype bytes, the header is within its cap; our writer re-creates a file that parses
// to the same tensors and metadata. For a payload that decodes: shapes match value counts
// and every value is finite.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "fuzz_check.hpp"
#include "shardsync/bridge/payload.hpp"

namespace {

using namespace shardsync::bridge;

constexpr std::uint64_t kMaxHeader = 64u << 10;

std::uint64_t product(const std::vector<std::uint64_t>& shape) {
  std::uint64_t n = 1;
  for (const auto d : shape) n *= d;  // checked by the parser to fit
  return n;
}

void check_view(const SafetensorsView& view) {
  FUZZ_CHECK(view.header_size <= kMaxHeader, "header over the cap");
  std::uint64_t at = 0;
  for (const auto& t : view.tensors) {
    FUZZ_CHECK(t.begin == at && t.begin <= t.end, "tensors do not tile the buffer");
    FUZZ_CHECK(t.end <= view.buffer.size(), "tensor past the buffer");
    const std::size_t esize = dtype_size(t.dtype);
    FUZZ_CHECK(esize > 0, "unknown dtype accepted");
    FUZZ_CHECK(product(t.shape) * esize == t.end - t.begin, "shape x dtype != byte range");
    at = t.end;
  }
  FUZZ_CHECK(at == view.buffer.size(), "bytes after the last tensor");
}

void check_round_trip(const SafetensorsView& view) {
  std::vector<TensorBytes> tensors;
  for (const auto& t : view.tensors) {
    const auto bytes = view.buffer.subspan(t.begin, t.end - t.begin);
    tensors.push_back({t.name, t.dtype, t.shape, {bytes.begin(), bytes.end()}});
  }
  auto written = write_safetensors(view.metadata, tensors);
  FUZZ_CHECK(written.has_value(), "our writer refuses what our parser accepted");
  auto reparsed = parse_safetensors(*written, kMaxHeader + 64);
  FUZZ_CHECK(reparsed.has_value(), "our writer's output does not parse");
  FUZZ_CHECK(reparsed->metadata == view.metadata, "metadata changed");
  FUZZ_CHECK(reparsed->tensors.size() == view.tensors.size(), "tensor count changed");
  for (const auto& t : reparsed->tensors) {
    const auto same = std::find_if(tensors.begin(), tensors.end(),
                                   [&](const TensorBytes& o) { return o.name == t.name; });
    FUZZ_CHECK(same != tensors.end(), "a tensor appeared");
    FUZZ_CHECK(same->dtype == t.dtype && same->shape == t.shape, "dtype or shape changed");
    const auto bytes = reparsed->buffer.subspan(t.begin, t.end - t.begin);
    FUZZ_CHECK(std::equal(bytes.begin(), bytes.end(), same->bytes.begin(), same->bytes.end()),
               "tensor bytes changed");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> file(data, size);
  if (auto view = parse_safetensors(file, kMaxHeader)) {
    check_view(*view);
    check_round_trip(*view);
  }
  DecodeOptions options;
  options.max_decompressed = 8u << 20;  // a zstd bomb stops here
  options.max_header = kMaxHeader;
  if (auto decoded = decode_payload(file, options)) {
    for (const auto& t : decoded->tensors) {
      FUZZ_CHECK(product(t.shape) == t.values.size(), "value count unlike the shape");
      for (const float v : t.values) FUZZ_CHECK(std::isfinite(v), "non-finite value decoded");
    }
  }
  return 0;
}
