#include "shardsync/bridge/payload.hpp"

#include <zstd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <ctime>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

namespace shardsync::bridge {
namespace {

using json = nlohmann::json;

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.bridge.payload"; }
  std::string message(int value) const override {
    switch (static_cast<payload_errc>(value)) {
      case payload_errc::truncated:
        return "truncated payload";
      case payload_errc::bad_header:
        return "malformed safetensors header";
      case payload_errc::bad_layout:
        return "bad tensor layout";
      case payload_errc::unknown_dtype:
        return "unknown or unexpected dtype";
      case payload_errc::bad_metadata:
        return "bad fragment metadata";
      case payload_errc::bad_values:
        return "bad values";
      case payload_errc::too_large:
        return "size limit exceeded";
      case payload_errc::zstd_failed:
        return "zstd decompression failed";
      case payload_errc::invalid_argument:
        return "invalid argument";
    }
    return "unknown shardsync.bridge.payload error";
  }
};

std::uint64_t read_u64_le(const std::uint8_t* p) noexcept {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void append_u64_le(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}

std::size_t dtype_alignment(std::string_view dtype) noexcept {
  const std::size_t size = dtype_size(dtype);
  return size == 0 ? 1 : std::min<std::size_t>(size, 8);
}

// numel of a shape, or nullopt on overflow past `limit`.
std::optional<std::uint64_t> checked_numel(const std::vector<std::uint64_t>& shape,
                                           std::uint64_t limit) noexcept {
  std::uint64_t n = 1;
  for (auto d : shape) {
    if (d == 0) return 0;  // zero-size tensors are allowed, whatever the other dimensions
  }
  for (auto d : shape) {
    if (n > limit / d) return std::nullopt;
    n *= d;
  }
  return n;
}

// Duplicate keys at any depth: nlohmann keeps the last one silently, safetensors refuses them.
Result<json> parse_json_strict(std::string_view text) {
  std::vector<std::set<std::string>> keys;
  bool duplicate = false;
  std::string duplicate_key;
  json::parser_callback_t cb = [&](int /*depth*/, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!keys.empty()) keys.pop_back();
        break;
      case json::parse_event_t::key:
        if (!keys.empty() && !keys.back().insert(parsed.get<std::string>()).second) {
          duplicate = true;
          duplicate_key = parsed.get<std::string>();
        }
        break;
      default:
        break;
    }
    return true;
  };
  json parsed = json::parse(text.begin(), text.end(), cb, /*allow_exceptions=*/false);
  if (duplicate)
    return fail(payload_errc::bad_header, "duplicate JSON key \"" + duplicate_key + "\"");
  if (parsed.is_discarded()) return fail(payload_errc::bad_header, "header is not valid JSON");
  return parsed;
}

Result<std::vector<std::uint64_t>> json_u64_array(const json& j, const std::string& what) {
  if (!j.is_array()) return fail(payload_errc::bad_header, what + " is not an array");
  std::vector<std::uint64_t> out;
  out.reserve(j.size());
  for (const auto& v : j) {
    if (!v.is_number_unsigned()) {
      return fail(payload_errc::bad_header,
                  what + " holds a value that is not an unsigned integer");
    }
    out.push_back(v.get<std::uint64_t>());
  }
  return out;
}

std::string dump_json(const json& j) {
  // Raw UTF-8 out; invalid UTF-8 throws type_error, which callers turn into an Error.
  return j.dump(-1, ' ', false, json::error_handler_t::strict);
}

}  // namespace

const std::error_category& payload_category() noexcept {
  static const Category category;
  return category;
}

std::size_t dtype_size(std::string_view dtype) noexcept {
  static constexpr std::array<std::pair<std::string_view, std::size_t>, 22> kSizes{{
      {"BOOL", 1},    {"U8", 1},          {"I8", 1},          {"I16", 2},     {"U16", 2},
      {"I32", 4},     {"U32", 4},         {"I64", 8},         {"U64", 8},     {"F16", 2},
      {"BF16", 2},    {"F32", 4},         {"F64", 8},         {"C64", 8},     {"F8_E4M3", 1},
      {"F8_E5M2", 1}, {"F8_E4M3FNUZ", 1}, {"F8_E5M2FNUZ", 1}, {"F8_E8M0", 1}, {"F6_E2M3", 0},
      {"F6_E3M2", 0}, {"F4", 0},
  }};
  for (const auto& [name, size] : kSizes) {
    if (name == dtype) return size;
  }
  return 0;
}

Result<SafetensorsView> parse_safetensors(std::span<const std::uint8_t> file,
                                          std::uint64_t max_header) {
  if (file.size() < 8) {
    return fail(payload_errc::truncated,
                "file of " + std::to_string(file.size()) + " bytes has no header length");
  }
  SafetensorsView view;
  const std::uint64_t n = read_u64_le(file.data());
  if (n > max_header) {
    return fail(payload_errc::too_large, "header length " + std::to_string(n) + " over the limit " +
                                             std::to_string(max_header));
  }
  if (n > file.size() - 8) {
    return fail(payload_errc::truncated, "header length " + std::to_string(n) +
                                             " past the end of a " + std::to_string(file.size()) +
                                             "-byte file");
  }
  if (n < 2) return fail(payload_errc::bad_header, "header shorter than \"{}\"");
  view.header_size = n;
  const auto* header_begin = reinterpret_cast<const char*>(file.data() + 8);
  std::string_view header(header_begin, static_cast<std::size_t>(n));
  if (header.front() != '{')
    return fail(payload_errc::bad_header, "header does not begin with '{'");
  // Only trailing spaces may pad the JSON (the reference writer's padding).
  const auto last = header.find_last_not_of(' ');
  header = header.substr(0, last + 1);
  if (header.back() != '}') return fail(payload_errc::bad_header, "header does not end with '}'");
  auto parsed = parse_json_strict(header);
  if (!parsed) return fail(parsed.error());
  if (!parsed->is_object()) return fail(payload_errc::bad_header, "header is not a JSON object");
  view.buffer = file.subspan(8 + static_cast<std::size_t>(n));
  const std::uint64_t buffer_size = view.buffer.size();

  for (const auto& [name, entry] : parsed->items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        return fail(payload_errc::bad_header, "__metadata__ is not an object");
      for (const auto& [key, value] : entry.items()) {
        if (!value.is_string()) {
          return fail(payload_errc::bad_header,
                      "__metadata__ value of \"" + key + "\" is not a string");
        }
        view.metadata.emplace(key, value.get<std::string>());
      }
      continue;
    }
    const std::string what = "tensor \"" + name + "\"";
    if (!entry.is_object()) return fail(payload_errc::bad_header, what + " is not an object");
    if (entry.size() != 3 || !entry.contains("dtype") || !entry.contains("shape") ||
        !entry.contains("data_offsets")) {
      return fail(payload_errc::bad_header,
                  what + " must have exactly dtype, shape and data_offsets");
    }
    if (!entry["dtype"].is_string())
      return fail(payload_errc::bad_header, what + ": dtype is not a string");
    TensorEntry t;
    t.name = name;
    t.dtype = entry["dtype"].get<std::string>();
    const std::size_t esize = dtype_size(t.dtype);
    if (esize == 0) {
      return fail(payload_errc::unknown_dtype, what + ": unsupported dtype \"" + t.dtype + "\"");
    }
    auto shape = json_u64_array(entry["shape"], what + " shape");
    if (!shape) return fail(shape.error());
    t.shape = std::move(*shape);
    auto offsets = json_u64_array(entry["data_offsets"], what + " data_offsets");
    if (!offsets) return fail(offsets.error());
    if (offsets->size() != 2)
      return fail(payload_errc::bad_header, what + ": data_offsets needs 2 values");
    t.begin = (*offsets)[0];
    t.end = (*offsets)[1];
    if (t.begin > t.end || t.end > buffer_size) {
      return fail(payload_errc::bad_layout, what + ": data_offsets [" + std::to_string(t.begin) +
                                                ", " + std::to_string(t.end) + "] outside the " +
                                                std::to_string(buffer_size) + "-byte buffer");
    }
    const auto numel = checked_numel(t.shape, buffer_size / esize + 1);
    if (!numel || *numel * esize != t.end - t.begin) {
      return fail(payload_errc::bad_layout, what + ": shape x " + t.dtype + " is not the " +
                                                std::to_string(t.end - t.begin) + "-byte range");
    }
    view.tensors.push_back(std::move(t));
  }

  // The ranges must tile the buffer exactly: no overlap, no hole, nothing after the last.
  std::sort(view.tensors.begin(), view.tensors.end(),
            [](const TensorEntry& a, const TensorEntry& b) {
              return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
            });
  std::uint64_t at = 0;
  for (const auto& t : view.tensors) {
    if (t.begin != at) {
      return fail(payload_errc::bad_layout,
                  "tensor \"" + t.name + "\" " +
                      (t.begin < at ? "overlaps" : "leaves a hole before") + " byte " +
                      std::to_string(at));
    }
    at = t.end;
  }
  if (at != buffer_size) {
    return fail(payload_errc::bad_layout, "buffer has " + std::to_string(buffer_size - at) +
                                              " bytes not covered by any tensor");
  }
  return view;
}

Result<std::vector<std::uint8_t>> write_safetensors(
    const std::map<std::string, std::string>& metadata, std::vector<TensorBytes> tensors) {
  std::sort(tensors.begin(), tensors.end(), [](const TensorBytes& a, const TensorBytes& b) {
    const auto aa = dtype_alignment(a.dtype);
    const auto ba = dtype_alignment(b.dtype);
    return aa != ba ? aa > ba : a.name < b.name;
  });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t at = 0;
  for (const auto& t : tensors) {
    const std::size_t esize = dtype_size(t.dtype);
    if (esize == 0)
      return fail(payload_errc::unknown_dtype, "cannot write dtype \"" + t.dtype + "\"");
    if (t.name == "__metadata__" || header.contains(t.name)) {
      return fail(payload_errc::invalid_argument,
                  "duplicate or reserved tensor name \"" + t.name + "\"");
    }
    const auto numel = checked_numel(t.shape, std::numeric_limits<std::uint64_t>::max() / esize);
    if (!numel || *numel * esize != t.bytes.size()) {
      return fail(payload_errc::invalid_argument, "tensor \"" + t.name + "\" has " +
                                                      std::to_string(t.bytes.size()) +
                                                      " bytes, unlike its shape");
    }
    header[t.name] = {
        {"dtype", t.dtype}, {"shape", t.shape}, {"data_offsets", {at, at + t.bytes.size()}}};
    at += t.bytes.size();
  }
  std::string text;
  try {
    text = dump_json(header);
  } catch (const json::exception& e) {
    return fail(payload_errc::invalid_argument,
                std::string("header cannot be written: ") + e.what());
  }
  text.append((8 - text.size() % 8) % 8, ' ');
  std::vector<std::uint8_t> out;
  out.reserve(8 + text.size() + at);
  append_u64_le(out, text.size());
  out.insert(out.end(), text.begin(), text.end());
  for (const auto& t : tensors) out.insert(out.end(), t.bytes.begin(), t.bytes.end());
  return out;
}

bool is_zstd_frame(std::span<const std::uint8_t> bytes) noexcept {
  return bytes.size() >= 4 && bytes[0] == 0x28 && bytes[1] == 0xB5 && bytes[2] == 0x2F &&
         bytes[3] == 0xFD;
}

Result<std::vector<std::uint8_t>> zstd_decompress(std::span<const std::uint8_t> frame,
                                                  std::uint64_t max_size) {
  const unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR)
    return fail(payload_errc::zstd_failed, "not a zstd frame");
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared > max_size) {
    return fail(payload_errc::too_large, "zstd frame declares " + std::to_string(declared) +
                                             " bytes, over the limit " + std::to_string(max_size));
  }
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> ctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  if (!ctx) throw std::bad_alloc();
  // The declared size is a claim: allocate at most what the frame could hold at a plausible
  // ratio (and never past the cap), then grow by doubling as output really arrives; stop at
  // max_size + 1 to detect a bomb.
  const std::uint64_t plausible =
      std::max<std::uint64_t>(std::uint64_t{frame.size()} * 16, 1 << 20);
  std::uint64_t initial = declared != ZSTD_CONTENTSIZE_UNKNOWN ? declared : plausible;
  initial = std::min({initial, plausible, max_size});
  std::vector<std::uint8_t> out(static_cast<std::size_t>(initial + 1));
  ZSTD_inBuffer in{frame.data(), frame.size(), 0};
  std::size_t produced = 0;
  for (;;) {
    ZSTD_outBuffer o{out.data() + produced, out.size() - produced, 0};
    const std::size_t ret = ZSTD_decompressStream(ctx.get(), &o, &in);
    if (ZSTD_isError(ret)) return fail(payload_errc::zstd_failed, ZSTD_getErrorName(ret));
    produced += o.pos;
    if (produced > max_size) {
      return fail(payload_errc::too_large,
                  "zstd frame decompresses past the limit " + std::to_string(max_size));
    }
    if (ret == 0) break;  // frame complete
    if (in.pos == in.size && o.pos < o.size) {
      return fail(payload_errc::zstd_failed, "zstd frame is truncated");
    }
    if (produced == out.size()) {
      out.resize(static_cast<std::size_t>(
          std::min<std::uint64_t>(std::uint64_t{out.size()} * 2, max_size + 1)));
    }
  }
  if (in.pos != in.size) return fail(payload_errc::zstd_failed, "bytes after the zstd frame");
  out.resize(produced);
  return out;
}

// ---- fragment payloads ---------------------------------------------------------------------

namespace {

bool is_hex64(std::string_view s) noexcept {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool is_digits(std::string_view s, std::size_t count) noexcept {
  return s.size() == count &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// RFC 3339 date-time: YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM).
bool is_rfc3339(std::string_view s) noexcept {
  if (s.size() < 20) return false;
  if (!is_digits(s.substr(0, 4), 4) || s[4] != '-' || !is_digits(s.substr(5, 2), 2) ||
      s[7] != '-' || !is_digits(s.substr(8, 2), 2) || (s[10] != 'T' && s[10] != 't') ||
      !is_digits(s.substr(11, 2), 2) || s[13] != ':' || !is_digits(s.substr(14, 2), 2) ||
      s[16] != ':' || !is_digits(s.substr(17, 2), 2)) {
    return false;
  }
  std::size_t i = 19;
  if (s[i] == '.') {
    const std::size_t start = ++i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    if (i == start) return false;
  }
  const auto zone = s.substr(i);
  if (zone == "Z" || zone == "z") return true;
  return zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') &&
         is_digits(zone.substr(1, 2), 2) && zone[3] == ':' && is_digits(zone.substr(4, 2), 2);
}

std::string now_rfc3339() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Canonical unsigned decimal: digits only, no sign, no leading zero (except "0").
std::optional<std::uint64_t> parse_u64(std::string_view s) noexcept {
  if (s.empty() || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  std::uint64_t v = 0;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || ptr != s.data() + s.size()) return std::nullopt;
  return v;
}

template <typename T>
std::vector<std::uint8_t> le_bytes(std::span<const T> values) {
  static_assert(std::endian::native == std::endian::little, "big-endian hosts need a byte swap");
  std::vector<std::uint8_t> out(values.size_bytes());
  if (!out.empty()) std::memcpy(out.data(), values.data(), out.size());
  return out;
}

template <typename T>
std::vector<T> from_le_bytes(std::span<const std::uint8_t> bytes) {
  std::vector<T> out(bytes.size() / sizeof(T));
  if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
  return out;
}

Result<void> check_meta_for_write(const FragmentMeta& m) {
  if (m.run_id.empty() || m.worker_id.empty()) {
    return fail(payload_errc::invalid_argument, "run_id and worker_id must not be empty");
  }
  if (!is_hex64(m.base_sha256)) {
    return fail(payload_errc::invalid_argument, "base_sha256 must be 64 lower-case hex digits");
  }
  if (m.num_fragments == 0 || m.fragment_id >= m.num_fragments) {
    return fail(payload_errc::invalid_argument, "fragment_id must be below num_fragments");
  }
  if (!m.created.empty() && !is_rfc3339(m.created)) {
    return fail(payload_errc::invalid_argument, "created is not an RFC 3339 date-time");
  }
  return {};
}

}  // namespace

Result<std::vector<std::uint8_t>> encode_payload(const Fragment& fragment,
                                                 const EncodeOptions& options) {
  if (auto ok = check_meta_for_write(fragment.meta); !ok) return fail(ok.error());
  const WireFormat wire = options.wire;
  const bool blocked = wire == WireFormat::int8 || wire == WireFormat::fp4_e3m0;
  const std::size_t block = blocked ? options.block_size : 0;
  if (blocked && (block == 0 || block > kMaxBlockSize)) {
    return fail(payload_errc::invalid_argument,
                "block_size must be 1 to " + std::to_string(kMaxBlockSize));
  }
  std::vector<TensorBytes> out;
  json names = json::array();
  json shapes = json::array();
  std::set<std::string> seen;
  for (const auto& t : fragment.tensors) {
    if (t.name.empty() || !seen.insert(t.name).second) {
      return fail(payload_errc::invalid_argument,
                  "empty or duplicate parameter name \"" + t.name + "\"");
    }
    const auto numel = checked_numel(t.shape, std::numeric_limits<std::uint64_t>::max() / 8);
    if (!numel || *numel != t.values.size()) {
      return fail(payload_errc::invalid_argument, "parameter \"" + t.name + "\" has " +
                                                      std::to_string(t.values.size()) +
                                                      " values, unlike its shape");
    }
    for (std::size_t i = 0; i < t.values.size(); ++i) {
      if (!std::isfinite(t.values[i])) {
        return fail(payload_errc::invalid_argument,
                    "parameter \"" + t.name + "\" value " + std::to_string(i) + " is not finite");
      }
    }
    names.push_back(t.name);
    shapes.push_back(t.shape);
    const std::span<const float> x(t.values);
    switch (wire) {
      case WireFormat::f32:
        out.push_back({t.name, "F32", t.shape, le_bytes(x)});
        break;
      case WireFormat::bf16: {
        std::vector<std::uint16_t> bits(x.size());
        for (std::size_t i = 0; i < x.size(); ++i) {
          bits[i] = bf16_from_f32(x[i]);
          if ((bits[i] & 0x7F80u) == 0x7F80u) {
            return fail(payload_errc::invalid_argument, "parameter \"" + t.name + "\" value " +
                                                            std::to_string(i) + " overflows bf16");
          }
        }
        out.push_back({t.name, "BF16", t.shape, le_bytes(std::span<const std::uint16_t>(bits))});
        break;
      }
      case WireFormat::int8: {
        auto q = quantize_int8(x, block);
        out.push_back(
            {t.name + ".q", "I8", t.shape, le_bytes(std::span<const std::int8_t>(q.codes))});
        out.push_back({t.name + ".scale",
                       "F32",
                       {q.scales.size()},
                       le_bytes(std::span<const float>(q.scales))});
        break;
      }
      case WireFormat::fp4_e3m0: {
        auto q = quantize_fp4_e3m0(x, block);
        out.push_back({t.name + ".q", "U8", {q.packed.size()}, std::move(q.packed)});
        out.push_back({t.name + ".scale",
                       "F32",
                       {q.scales.size()},
                       le_bytes(std::span<const float>(q.scales))});
        break;
      }
    }
  }
  const auto& m = fragment.meta;
  std::map<std::string, std::string> meta{
      {"format", std::string(kFragmentFormat)},
      {"run_id", m.run_id},
      {"outer_step", std::to_string(m.outer_step)},
      {"inner_step", std::to_string(m.inner_step)},
      {"fragment_id", std::to_string(m.fragment_id)},
      {"num_fragments", std::to_string(m.num_fragments)},
      {"worker_id", m.worker_id},
      {"worker_nonce", m.worker_nonce},
      {"base_sha256", m.base_sha256},
      {"wire", std::string(wire_name(wire))},
      {"block_size", std::to_string(block)},
      {"scale_dtype", "F32"},
      {"tokens", std::to_string(m.tokens)},
      {"torch_dtype_master", m.torch_dtype_master},
      {"created", m.created.empty() ? now_rfc3339() : m.created},
  };
  try {
    meta["param_names"] = dump_json(names);
    meta["shapes"] = dump_json(shapes);
  } catch (const json::exception& e) {
    return fail(payload_errc::invalid_argument, std::string("parameter names: ") + e.what());
  }
  auto file = write_safetensors(meta, std::move(out));
  if (!file || !options.zstd) return file;
  std::vector<std::uint8_t> frame(ZSTD_compressBound(file->size()));
  const std::size_t n =
      ZSTD_compress(frame.data(), frame.size(), file->data(), file->size(), options.zstd_level);
  if (ZSTD_isError(n)) return fail(payload_errc::invalid_argument, ZSTD_getErrorName(n));
  frame.resize(n);
  return frame;
}

namespace {

Result<std::string> require(const std::map<std::string, std::string>& md, const std::string& key) {
  const auto it = md.find(key);
  if (it == md.end()) return fail(payload_errc::bad_metadata, "__metadata__ lacks \"" + key + "\"");
  return it->second;
}

Result<std::uint64_t> require_u64(const std::map<std::string, std::string>& md,
                                  const std::string& key) {
  auto s = require(md, key);
  if (!s) return fail(s.error());
  auto v = parse_u64(*s);
  if (!v)
    return fail(payload_errc::bad_metadata,
                "__metadata__ \"" + key + "\" is not a decimal integer");
  return *v;
}

Result<FragmentMeta> read_meta(const std::map<std::string, std::string>& md) {
  FragmentMeta m;
  auto format = require(md, "format");
  if (!format) return fail(format.error());
  if (*format != kFragmentFormat) {
    return fail(payload_errc::bad_metadata,
                "format \"" + *format + "\" is not " + std::string(kFragmentFormat));
  }
  for (auto [key, field] :
       {std::pair{"run_id", &m.run_id}, std::pair{"worker_id", &m.worker_id},
        std::pair{"worker_nonce", &m.worker_nonce}, std::pair{"base_sha256", &m.base_sha256},
        std::pair{"torch_dtype_master", &m.torch_dtype_master}, std::pair{"created", &m.created}}) {
    auto v = require(md, key);
    if (!v) return fail(v.error());
    *field = std::move(*v);
  }
  for (auto [key, field] :
       {std::pair{"outer_step", &m.outer_step}, std::pair{"inner_step", &m.inner_step},
        std::pair{"fragment_id", &m.fragment_id}, std::pair{"num_fragments", &m.num_fragments},
        std::pair{"tokens", &m.tokens}}) {
    auto v = require_u64(md, key);
    if (!v) return fail(v.error());
    *field = *v;
  }
  if (m.run_id.empty() || m.worker_id.empty()) {
    return fail(payload_errc::bad_metadata, "run_id or worker_id is empty");
  }
  if (!is_hex64(m.base_sha256)) {
    return fail(payload_errc::bad_metadata, "base_sha256 is not 64 lower-case hex digits");
  }
  if (m.fragment_id >= m.num_fragments) {
    return fail(payload_errc::bad_metadata, "fragment_id is not below num_fragments");
  }
  if (!is_rfc3339(m.created)) return fail(payload_errc::bad_metadata, "created is not RFC 3339");
  return m;
}

Result<void> check_finite(std::span<const float> values, const std::string& what) {
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return fail(payload_errc::bad_values,
                  what + " value " + std::to_string(i) + " is not finite");
    }
  }
  return {};
}

Result<void> check_scales(std::span<const float> scales, const std::string& what) {
  for (std::size_t i = 0; i < scales.size(); ++i) {
    if (!std::isfinite(scales[i]) || !(scales[i] > 0.0f)) {
      return fail(payload_errc::bad_values,
                  what + " scale " + std::to_string(i) + " is not finite and positive");
    }
  }
  return {};
}

}  // namespace

Result<DecodedFragment> decode_payload(std::span<const std::uint8_t> file,
                                       const DecodeOptions& options) {
  DecodedFragment out;
  std::vector<std::uint8_t> inflated;
  if (is_zstd_frame(file)) {
    auto d = zstd_decompress(file, options.max_decompressed);
    if (!d) return fail(d.error());
    inflated = std::move(*d);
    file = inflated;
    out.zstd = true;
  }
  auto view = parse_safetensors(file, options.max_header);
  if (!view) return fail(view.error());
  auto meta = read_meta(view->metadata);
  if (!meta) return fail(meta.error());
  out.meta = std::move(*meta);
  out.metadata = view->metadata;

  auto wire_text = require(view->metadata, "wire");
  if (!wire_text) return fail(wire_text.error());
  const auto wire = wire_from_name(*wire_text);
  if (!wire) return fail(payload_errc::bad_metadata, "unknown wire format \"" + *wire_text + "\"");
  out.wire = *wire;
  auto block = require_u64(view->metadata, "block_size");
  if (!block) return fail(block.error());
  const bool blocked = out.wire == WireFormat::int8 || out.wire == WireFormat::fp4_e3m0;
  if (blocked ? (*block == 0 || *block > kMaxBlockSize) : *block != 0) {
    return fail(payload_errc::bad_metadata,
                "block_size " + std::to_string(*block) + " does not suit wire " + *wire_text);
  }
  out.block_size = static_cast<std::size_t>(*block);
  auto scale_dtype = require(view->metadata, "scale_dtype");
  if (!scale_dtype) return fail(scale_dtype.error());
  if (*scale_dtype != "F32") return fail(payload_errc::bad_metadata, "scale_dtype is not F32");

  // param_names and shapes: parallel JSON arrays.
  auto names_text = require(view->metadata, "param_names");
  if (!names_text) return fail(names_text.error());
  auto shapes_text = require(view->metadata, "shapes");
  if (!shapes_text) return fail(shapes_text.error());
  auto names = parse_json_strict(*names_text);
  auto shapes = parse_json_strict(*shapes_text);
  if (!names || !shapes || !names->is_array() || !shapes->is_array() ||
      names->size() != shapes->size()) {
    return fail(payload_errc::bad_metadata,
                "param_names and shapes must be JSON arrays of one length");
  }

  std::map<std::string, const TensorEntry*> by_name;
  for (const auto& t : view->tensors) by_name.emplace(t.name, &t);
  std::size_t expected_tensors = 0;
  std::set<std::string> seen;
  const auto find = [&](const std::string& name, std::string_view dtype,
                        const std::vector<std::uint64_t>& shape) -> Result<const TensorEntry*> {
    const auto it = by_name.find(name);
    if (it == by_name.end())
      return fail(payload_errc::bad_metadata, "tensor \"" + name + "\" is missing");
    if (it->second->dtype != dtype) {
      return fail(payload_errc::unknown_dtype, "tensor \"" + name + "\" is " + it->second->dtype +
                                                   ", expected " + std::string(dtype));
    }
    if (it->second->shape != shape) {
      return fail(payload_errc::bad_metadata, "tensor \"" + name + "\" has an unexpected shape");
    }
    ++expected_tensors;
    return it->second;
  };
  const auto bytes_of = [&](const TensorEntry* t) {
    return view->buffer.subspan(static_cast<std::size_t>(t->begin),
                                static_cast<std::size_t>(t->end - t->begin));
  };

  for (std::size_t p = 0; p < names->size(); ++p) {
    const auto& jn = (*names)[p];
    if (!jn.is_string()) return fail(payload_errc::bad_metadata, "param_names holds a non-string");
    Tensor t;
    t.name = jn.get<std::string>();
    if (!seen.insert(t.name).second) {
      return fail(payload_errc::bad_metadata, "param_names repeats \"" + t.name + "\"");
    }
    auto shape = json_u64_array((*shapes)[p], "shape of \"" + t.name + "\"");
    if (!shape) return fail(payload_errc::bad_metadata, shape.error().detail);
    t.shape = std::move(*shape);
    // Every element of every parameter is backed by at least half a byte of the buffer, so
    // the count is bounded by the file, not by the claim.
    const auto numel = checked_numel(t.shape, std::uint64_t{view->buffer.size()} * 2 + 1);
    if (!numel) return fail(payload_errc::bad_metadata, "shape of \"" + t.name + "\" is too large");
    const auto n = static_cast<std::size_t>(*numel);
    const std::string what = "\"" + t.name + "\"";
    switch (out.wire) {
      case WireFormat::f32: {
        auto e = find(t.name, "F32", t.shape);
        if (!e) return fail(e.error());
        t.values = from_le_bytes<float>(bytes_of(*e));
        if (auto ok = check_finite(t.values, what); !ok) return fail(ok.error());
        break;
      }
      case WireFormat::bf16: {
        auto e = find(t.name, "BF16", t.shape);
        if (!e) return fail(e.error());
        const auto bits = from_le_bytes<std::uint16_t>(bytes_of(*e));
        t.values.resize(bits.size());
        for (std::size_t i = 0; i < bits.size(); ++i) t.values[i] = f32_from_bf16(bits[i]);
        if (auto ok = check_finite(t.values, what); !ok) return fail(ok.error());
        break;
      }
      case WireFormat::int8: {
        auto q = find(t.name + ".q", "I8", t.shape);
        if (!q) return fail(q.error());
        auto s = find(t.name + ".scale", "F32", {block_count(n, out.block_size)});
        if (!s) return fail(s.error());
        const auto codes = from_le_bytes<std::int8_t>(bytes_of(*q));
        const auto scales = from_le_bytes<float>(bytes_of(*s));
        if (auto ok = check_scales(scales, what); !ok) return fail(ok.error());
        if (std::find(codes.begin(), codes.end(), std::int8_t{-128}) != codes.end()) {
          return fail(payload_errc::bad_values, what + " holds int8 code -128");
        }
        t.values.resize(n);
        dequantize_int8(codes, scales, out.block_size, t.values);
        // A finite scale no encoder writes (over FLT_MAX / 127) still overflows to infinity.
        if (auto ok = check_finite(t.values, what); !ok) return fail(ok.error());
        break;
      }
      case WireFormat::fp4_e3m0: {
        auto q = find(t.name + ".q", "U8", {(*numel + 1) / 2});
        if (!q) return fail(q.error());
        auto s = find(t.name + ".scale", "F32", {block_count(n, out.block_size)});
        if (!s) return fail(s.error());
        const auto packed = bytes_of(*q);
        const auto scales = from_le_bytes<float>(bytes_of(*s));
        if (auto ok = check_scales(scales, what); !ok) return fail(ok.error());
        for (std::size_t i = 0; i < packed.size(); ++i) {
          const std::uint8_t lo = packed[i] & 0x0Fu;
          const auto hi = static_cast<std::uint8_t>(packed[i] >> 4);
          const bool pad = 2 * i + 1 == n;
          if (lo == 0x8u || hi == 0x8u || (pad && hi != 0)) {
            return fail(payload_errc::bad_values,
                        what + " byte " + std::to_string(i) +
                            (pad && hi != 0 ? " has a non-zero padding nibble"
                                            : " holds fp4 code 8 (negative zero)"));
          }
        }
        t.values.resize(n);
        dequantize_fp4_e3m0(packed, scales, out.block_size, t.values);
        break;
      }
    }
    out.tensors.push_back(std::move(t));
  }
  if (expected_tensors != view->tensors.size()) {
    return fail(payload_errc::bad_metadata,
                std::to_string(view->tensors.size() - expected_tensors) +
                    " tensors are not named by param_names");
  }
  return out;
}

}  // namespace shardsync::bridge
