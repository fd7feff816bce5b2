// Python bindings of the wire codecs (quantize.hpp, payload.hpp). Arrays in and out are numpy;
// quantizer preconditions the C++ leaves to its callers (finite inputs, block >= 1, enough codes
// and scales) are checked here and raise ValueError, so no Python call reaches undefined
// behaviour. Encoding and decoding release the GIL.
#include <pybind11/stl.h>

#include <cmath>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "bindings.hpp"
#include "shardsync/bridge/payload.hpp"
#include "shardsync/bridge/quantize.hpp"

namespace shardsync::python {
namespace {

using bridge::WireFormat;

void require_block(std::size_t block) {
  if (block < 1 || block > bridge::kMaxBlockSize) {
    throw py::value_error("block must be in [1, " + std::to_string(bridge::kMaxBlockSize) + "]");
  }
}

void require_finite(std::span<const float> x) {
  for (float v : x) {
    if (!std::isfinite(v)) throw py::value_error("values must be finite");
  }
}

WireFormat wire_or_throw(const std::string& name) {
  auto wire = bridge::wire_from_name(name);
  if (!wire) throw py::value_error("unknown wire format '" + name + "'");
  return *wire;
}

std::size_t count_or_default(std::optional<std::size_t> n, std::size_t fallback) {
  return n ? *n : fallback;
}

void require_blocks(std::size_t n, std::size_t scales, std::size_t block) {
  if (scales < bridge::block_count(n, block)) {
    throw py::value_error("too few scales for " + std::to_string(n) + " values");
  }
}

py::tuple quantize_int8(const FloatArray& x, std::size_t block) {
  require_block(block);
  auto values = view(x);
  require_finite(values);
  auto q = bridge::quantize_int8(values, block);
  return py::make_tuple(to_numpy(std::move(q.codes)), to_numpy(std::move(q.scales)));
}

py::array_t<float> dequantize_int8(
    const py::array_t<std::int8_t, py::array::c_style | py::array::forcecast>& codes,
    const FloatArray& scales, std::size_t block, std::optional<std::size_t> n) {
  require_block(block);
  std::size_t count = count_or_default(n, static_cast<std::size_t>(codes.size()));
  if (count > static_cast<std::size_t>(codes.size())) throw py::value_error("too few codes");
  require_blocks(count, static_cast<std::size_t>(scales.size()), block);
  std::vector<float> out(count);
  bridge::dequantize_int8(view(codes), view(scales), block, out);
  return to_numpy(std::move(out));
}

py::tuple quantize_fp4(const FloatArray& x, std::size_t block) {
  require_block(block);
  auto values = view(x);
  require_finite(values);
  auto q = bridge::quantize_fp4_e3m0(values, block);
  return py::make_tuple(to_numpy(std::move(q.packed)), to_numpy(std::move(q.scales)));
}

py::array_t<float> dequantize_fp4(
    const py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>& packed,
    const FloatArray& scales, std::size_t block, std::size_t n) {
  require_block(block);
  if ((n + 1) / 2 > static_cast<std::size_t>(packed.size())) throw py::value_error("too few codes");
  require_blocks(n, static_cast<std::size_t>(scales.size()), block);
  std::vector<float> out(n);
  bridge::dequantize_fp4_e3m0(view(packed), view(scales), block, out);
  return to_numpy(std::move(out));
}

py::array_t<std::uint16_t> bf16_bits(const FloatArray& x) {
  std::vector<std::uint16_t> out;
  out.reserve(static_cast<std::size_t>(x.size()));
  for (float v : view(x)) out.push_back(bridge::bf16_from_f32(v));
  return to_numpy(std::move(out));
}

py::array_t<float> bf16_values(
    const py::array_t<std::uint16_t, py::array::c_style | py::array::forcecast>& bits) {
  std::vector<float> out;
  out.reserve(static_cast<std::size_t>(bits.size()));
  for (std::uint16_t b : view(bits)) out.push_back(bridge::f32_from_bf16(b));
  return to_numpy(std::move(out));
}

// The wire round trip of diloco_sim.quantize_dequantize: (fp32 values, payload bytes of the
// tensor data including scales).
py::tuple quantize_dequantize(const FloatArray& x, const std::string& wire_name,
                              std::size_t block) {
  auto wire = wire_or_throw(wire_name);
  auto values = view(x);
  require_finite(values);
  std::size_t n = values.size();
  std::vector<float> out(n);
  std::size_t bytes = 0;
  switch (wire) {
    case WireFormat::f32:
      out.assign(values.begin(), values.end());
      bytes = 4 * n;
      break;
    case WireFormat::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        out[i] = bridge::f32_from_bf16(bridge::bf16_from_f32(values[i]));
      }
      bytes = 2 * n;
      break;
    case WireFormat::int8: {
      require_block(block);
      auto q = bridge::quantize_int8(values, block);
      bridge::dequantize_int8(q.codes, q.scales, block, out);
      bytes = n + 4 * q.scales.size();
      break;
    }
    case WireFormat::fp4_e3m0: {
      require_block(block);
      auto q = bridge::quantize_fp4_e3m0(values, block);
      bridge::dequantize_fp4_e3m0(q.packed, q.scales, block, out);
      bytes = q.packed.size() + 4 * q.scales.size();
      break;
    }
  }
  py::array_t<float> result = to_numpy(std::move(out));
  return py::make_tuple(result.attr("reshape")(x.attr("shape")), bytes);
}

// ---- payloads ----------------------------------------------------------------------------------

bridge::FragmentMeta meta_from_dict(const py::dict& d) {
  bridge::FragmentMeta meta;
  for (auto [key_handle, value] : d) {
    auto key = key_handle.cast<std::string>();
    if (key == "run_id")
      meta.run_id = value.cast<std::string>();
    else if (key == "outer_step")
      meta.outer_step = value.cast<std::uint64_t>();
    else if (key == "inner_step")
      meta.inner_step = value.cast<std::uint64_t>();
    else if (key == "fragment_id")
      meta.fragment_id = value.cast<std::uint64_t>();
    else if (key == "num_fragments")
      meta.num_fragments = value.cast<std::uint64_t>();
    else if (key == "worker_id")
      meta.worker_id = value.cast<std::string>();
    else if (key == "worker_nonce")
      meta.worker_nonce = value.cast<std::string>();
    else if (key == "base_sha256")
      meta.base_sha256 = value.cast<std::string>();
    else if (key == "tokens")
      meta.tokens = value.cast<std::uint64_t>();
    else if (key == "torch_dtype_master")
      meta.torch_dtype_master = value.cast<std::string>();
    else if (key == "created")
      meta.created = value.cast<std::string>();
    else
      throw py::value_error("unknown fragment metadata key '" + key + "'");
  }
  return meta;
}

py::dict meta_to_dict(const bridge::FragmentMeta& meta) {
  py::dict d;
  d["run_id"] = meta.run_id;
  d["outer_step"] = meta.outer_step;
  d["inner_step"] = meta.inner_step;
  d["fragment_id"] = meta.fragment_id;
  d["num_fragments"] = meta.num_fragments;
  d["worker_id"] = meta.worker_id;
  d["worker_nonce"] = meta.worker_nonce;
  d["base_sha256"] = meta.base_sha256;
  d["tokens"] = meta.tokens;
  d["torch_dtype_master"] = meta.torch_dtype_master;
  d["created"] = meta.created;
  return d;
}

// tensors: a sequence of (name, array) pairs; each array's shape is the tensor's shape.
py::bytes encode_payload(const py::iterable& tensors, const py::dict& meta, const std::string& wire,
                         std::size_t block_size, bool zstd, int zstd_level) {
  bridge::Fragment fragment;
  fragment.meta = meta_from_dict(meta);
  for (auto item : tensors) {
    auto pair = item.cast<py::tuple>();
    if (pair.size() != 2) throw py::value_error("tensors must be (name, array) pairs");
    auto array = pair[1].cast<FloatArray>();
    bridge::Tensor t;
    t.name = pair[0].cast<std::string>();
    for (py::ssize_t i = 0; i < array.ndim(); ++i) {
      t.shape.push_back(static_cast<std::uint64_t>(array.shape(i)));
    }
    auto values = view(array);
    t.values.assign(values.begin(), values.end());
    fragment.tensors.push_back(std::move(t));
  }
  bridge::EncodeOptions options{wire_or_throw(wire), block_size, zstd, zstd_level};
  Result<std::vector<std::uint8_t>> encoded;
  {
    py::gil_scoped_release release;
    encoded = bridge::encode_payload(fragment, options);
  }
  auto bytes = value_or_throw(std::move(encoded));
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

py::dict decode_payload(const py::bytes& file, std::uint64_t max_decompressed) {
  std::string_view data = file;  // immutable and referenced by the caller while decoding
  std::span<const std::uint8_t> bytes{reinterpret_cast<const std::uint8_t*>(data.data()),
                                      data.size()};
  bridge::DecodeOptions options;
  options.max_decompressed = max_decompressed;
  Result<bridge::DecodedFragment> decoded;
  {
    py::gil_scoped_release release;
    decoded = bridge::decode_payload(bytes, options);
  }
  auto fragment = value_or_throw(std::move(decoded));
  py::list tensors;
  for (auto& t : fragment.tensors) {
    std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
    py::array_t<float> flat = to_numpy(std::move(t.values));
    tensors.append(py::make_tuple(t.name, flat.attr("reshape")(py::tuple(py::cast(shape)))));
  }
  py::dict out;
  out["meta"] = meta_to_dict(fragment.meta);
  out["wire"] = std::string(bridge::wire_name(fragment.wire));
  out["block_size"] = fragment.block_size;
  out["zstd"] = fragment.zstd;
  out["tensors"] = tensors;
  out["metadata"] = fragment.metadata;
  return out;
}

}  // namespace

void register_errors(py::module_& m) {
  static py::exception<ErrorException> error_type(m, "Error", PyExc_RuntimeError);
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ErrorException& e) {
      py::object type = py::reinterpret_borrow<py::object>(error_type);
      py::object instance = type(e.error.describe());
      instance.attr("category") = e.error.code.category().name();
      instance.attr("code") = e.error.code.value();
      instance.attr("detail") = e.error.detail;
      PyErr_SetObject(error_type.ptr(), instance.ptr());
    }
  });
}

void register_codec(py::module_& m) {
  using namespace pybind11::literals;
  m.attr("FRAGMENT_FORMAT") = std::string(bridge::kFragmentFormat);
  m.def("quantize_int8", &quantize_int8, "x"_a, "block"_a,
        "int8 block absmax: (codes int8[n], scales float32[ceil(n/block)])");
  m.def("dequantize_int8", &dequantize_int8, "codes"_a, "scales"_a, "block"_a, "n"_a = py::none(),
        "fp32 values of int8 codes (n defaults to len(codes))");
  m.def("quantize_fp4_e3m0", &quantize_fp4, "x"_a, "block"_a,
        "fp4-e3m0: (packed uint8[ceil(n/2)], low nibble first; scales float32)");
  m.def("dequantize_fp4_e3m0", &dequantize_fp4, "packed"_a, "scales"_a, "block"_a, "n"_a,
        "fp32 values of n packed fp4-e3m0 codes");
  m.def("bf16_bits", &bf16_bits, "x"_a, "bf16 bit patterns (round to nearest even)");
  m.def("bf16_values", &bf16_values, "bits"_a, "fp32 values of bf16 bit patterns");
  m.def("quantize_dequantize", &quantize_dequantize, "x"_a, "wire"_a, "block"_a = 128,
        "wire round trip: (fp32 values shaped like x, bytes of codes + scales)");
  m.def("encode_payload", &encode_payload, "tensors"_a, "meta"_a, "wire"_a = "fp4-e3m0",
        "block_size"_a = 128, "zstd"_a = false, "zstd_level"_a = 3,
        "a fragment payload (safetensors, optionally one zstd frame) from (name, array) pairs");
  m.def("decode_payload", &decode_payload, "data"_a, "max_decompressed"_a = std::uint64_t{1} << 32,
        "dict(meta, wire, block_size, zstd, tensors=[(name, fp32 array)], metadata)");
}

}  // namespace shardsync::python
