#include "shardsync/bridge/payload.hpp"

#include <zstd.h>

#include <bit>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "shardsync/bridge/quantize.hpp"

using namespace shardsync::bridge;
using Bytes = std::vector<std::uint8_t>;

namespace {

const std::string kDataDir = std::string(SHARDSYNC_TEST_DATA) + "/bridge";

FragmentMeta sample_meta() {
  FragmentMeta m;
  m.run_id = "r1";
  m.outer_step = 3;
  m.inner_step = 150;
  m.fragment_id = 1;
  m.num_fragments = 4;
  m.worker_id = "w3";
  m.worker_nonce = "n-7f3a";
  m.base_sha256 = "3c0a8e5d0b6a4e0e7d9b2c6a1f4e8d7c6b5a4938271605f4e3d2c1b0a9f8e7d6";
  m.tokens = 32768;
  m.created = "2026-11-25T00:00:00Z";
  return m;
}

std::vector<float> random_values(std::size_t n, unsigned seed) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-20, 3);
  std::vector<float> v(n);
  for (auto& x : v) x = std::ldexp(normal(gen), exponent(gen));
  return v;
}

Fragment sample_fragment(std::size_t n = 1000) {
  Fragment f;
  f.meta = sample_meta();
  f.tensors.push_back({"blocks.0.attn.w", {n / 10, 10}, random_values(n / 10 * 10, 1)});
  f.tensors.push_back({"blocks.0.ln.b", {7}, random_values(7, 2)});
  return f;
}

Bytes read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

std::uint32_t bits(float x) { return std::bit_cast<std::uint32_t>(x); }

// A file with a hand-written header and a buffer of `buffer` bytes.
Bytes raw_file(const std::string& header, std::size_t buffer) {
  Bytes out(8 + header.size() + buffer, 0);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i)
    out[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(n >> (8 * i));
  std::memcpy(out.data() + 8, header.data(), header.size());
  return out;
}

payload_errc code_of(const shardsync::Error& e) {
  REQUIRE(e.code.category() == payload_category());
  return static_cast<payload_errc>(e.code.value());
}

}  // namespace

TEST_CASE("bf16 rounds to nearest even like torch", "[bridge][quantize]") {
  CHECK(bf16_from_f32(1.0f) == 0x3F80);
  CHECK(bf16_from_f32(std::bit_cast<float>(0x3F808000u)) == 0x3F80);  // tie, even stays
  CHECK(bf16_from_f32(std::bit_cast<float>(0x3F818000u)) == 0x3F82);  // tie, odd rounds up
  CHECK(bf16_from_f32(std::bit_cast<float>(0x3F808001u)) == 0x3F81);
  CHECK(bf16_from_f32(-0.0f) == 0x8000);
  CHECK(bf16_from_f32(std::numeric_limits<float>::max()) == 0x7F80);  // overflows to Inf
  CHECK(std::isnan(f32_from_bf16(bf16_from_f32(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(f32_from_bf16(0x3F82) == std::bit_cast<float>(0x3F820000u));
}

TEST_CASE("int8 codes round half to even and stay within scale/2", "[bridge][quantize]") {
  const std::vector<float> x{127.0f, 0.5f, 1.5f, 2.5f, -2.5f, -126.5f, 63.5f, -0.0f};
  const auto q = quantize_int8(x, 8);
  REQUIRE(q.scales.size() == 1);
  CHECK(q.scales[0] == 1.0f);
  CHECK(q.codes == std::vector<std::int8_t>{127, 0, 2, 2, -2, -126, 64, 0});

  const auto v = random_values(1000, 7);
  for (std::size_t block : {1u, 7u, 64u, 128u, 1000u, 5000u}) {
    const auto r = quantize_int8(v, block);
    CHECK(r.scales.size() == block_count(v.size(), block));
    std::vector<float> out(v.size());
    dequantize_int8(r.codes, r.scales, block, out);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float scale = r.scales[i / block];
      INFO("block " << block << " i " << i);
      CHECK(std::fabs(out[i] - v[i]) <= scale * 0.5f * (1.0f + 1e-6f));
      CHECK(r.codes[i] != -128);
    }
  }
}

TEST_CASE("fp4-e3m0 code table and rounding", "[bridge][quantize]") {
  // Code e in 1..7 is 2^(e-7) * scale; bit 3 is the sign; 0 is zero.
  for (std::uint8_t e = 1; e < 8; ++e) {
    CHECK(fp4_e3m0_value(e, 2.0f) == std::ldexp(2.0f, e - 7));
    CHECK(fp4_e3m0_value(static_cast<std::uint8_t>(e | 8), 2.0f) == -std::ldexp(2.0f, e - 7));
  }
  CHECK(bits(fp4_e3m0_value(0, 3.0f)) == 0u);
  CHECK(fp4_e3m0_code(1.0f, 1.0f) == 7);
  CHECK(fp4_e3m0_code(-1.0f, 1.0f) == 15);
  CHECK(fp4_e3m0_code(0.75f, 1.0f) == 6);       // tie between 1/2 and 1: lower
  CHECK(fp4_e3m0_code(0.7500001f, 1.0f) == 7);  // just above the tie
  CHECK(fp4_e3m0_code(-0.6f, 1.0f) == (6 | 8));
  CHECK(fp4_e3m0_code(3.0f / 128, 1.0f) == 1);       // tie between 1/64 and 1/32: lower
  CHECK(fp4_e3m0_code(0x1p-7f, 1.0f) == 1);          // [2^-7, 2^-6) -> 1/64
  CHECK(fp4_e3m0_code(0x1p-7f * 0.99f, 1.0f) == 0);  // below 2^-7 -> 0
  CHECK(fp4_e3m0_code(-1e-9f, 1.0f) == 0);           // never code 8
  CHECK(fp4_e3m0_code(-0.0f, 1.0f) == 0);

  const auto v = random_values(999, 9);  // odd: the last high nibble is padding
  for (std::size_t block : {1u, 8u, 64u, 128u}) {
    const auto q = quantize_fp4_e3m0(v, block);
    REQUIRE(q.packed.size() == 500);
    CHECK((q.packed.back() >> 4) == 0);
    std::vector<float> out(v.size());
    dequantize_fp4_e3m0(q.packed, q.scales, block, out);
    for (std::size_t i = 0; i < v.size(); ++i) {
      const float scale = q.scales[i / block];
      INFO("block " << block << " i " << i << " x " << v[i] << " got " << out[i]);
      CHECK(std::fabs(out[i] - v[i]) <=
            std::max(scale * 0x1p-7f, std::fabs(v[i]) / 3.0f) * (1.0f + 1e-6f));
      // Every magnitude is 0 or a power of two times the block scale.
      if (out[i] != 0.0f) {
        int ex = 0;
        CHECK(std::frexp(std::fabs(out[i]) / scale, &ex) == 0.5f);
      }
    }
  }
}

TEST_CASE("payloads round trip in every wire format", "[bridge][payload]") {
  const auto fragment = sample_fragment();
  for (auto wire : {WireFormat::f32, WireFormat::bf16, WireFormat::int8, WireFormat::fp4_e3m0}) {
    for (bool zstd : {false, true}) {
      INFO(wire_name(wire) << (zstd ? " zstd" : ""));
      EncodeOptions opt;
      opt.wire = wire;
      opt.block_size = 64;
      opt.zstd = zstd;
      auto file = encode_payload(fragment, opt);
      REQUIRE(file);
      CHECK(is_zstd_frame(*file) == zstd);
      auto decoded = decode_payload(*file);
      REQUIRE(decoded);
      CHECK(decoded->meta == fragment.meta);
      CHECK(decoded->wire == wire);
      CHECK(decoded->zstd == zstd);
      CHECK(decoded->metadata.at("format") == kFragmentFormat);
      CHECK(decoded->metadata.at("param_names") == R"(["blocks.0.attn.w","blocks.0.ln.b"])");
      CHECK(decoded->metadata.at("shapes") == "[[100,10],[7]]");
      REQUIRE(decoded->tensors.size() == 2);
      for (std::size_t t = 0; t < 2; ++t) {
        const auto& in = fragment.tensors[t];
        const auto& out = decoded->tensors[t];
        CHECK(out.name == in.name);
        CHECK(out.shape == in.shape);
        REQUIRE(out.values.size() == in.values.size());
        if (wire == WireFormat::f32) CHECK(out.values == in.values);
        if (wire == WireFormat::bf16) {
          for (std::size_t i = 0; i < in.values.size(); ++i) {
            CHECK(out.values[i] == f32_from_bf16(bf16_from_f32(in.values[i])));
          }
        }
        if (wire == WireFormat::int8) {
          const auto q = quantize_int8(in.values, 64);
          std::vector<float> expect(in.values.size());
          dequantize_int8(q.codes, q.scales, 64, expect);
          CHECK(out.values == expect);
        }
        if (wire == WireFormat::fp4_e3m0) {
          const auto q = quantize_fp4_e3m0(in.values, 64);
          std::vector<float> expect(in.values.size());
          dequantize_fp4_e3m0(q.packed, q.scales, 64, expect);
          CHECK(out.values == expect);
        }
      }
      // The safetensors layer sees a valid, 8-aligned file.
      if (!zstd) {
        auto view = parse_safetensors(*file);
        REQUIRE(view);
        CHECK(view->header_size % 8 == 0);
      }
    }
  }
}

TEST_CASE("fp4 costs at most 1/7 of fp32, scales included, from block 64", "[bridge][payload]") {
  const std::size_t n = 64 * 1024;
  Fragment f;
  f.meta = sample_meta();
  f.tensors.push_back({"w", {n}, random_values(n, 3)});
  for (std::size_t block : {64u, 128u, 256u}) {
    EncodeOptions fp4{WireFormat::fp4_e3m0, block, false, 3};
    EncodeOptions f32{WireFormat::f32, 0, false, 3};
    auto a = encode_payload(f, fp4);
    auto b = encode_payload(f, f32);
    REQUIRE(a);
    REQUIRE(b);
    auto va = parse_safetensors(*a);
    REQUIRE(va);
    INFO("block " << block);
    CHECK(va->buffer.size() == n / 2 + 4 * (n / block));
    CHECK(7 * va->buffer.size() <= 4 * n);
    CHECK(7 * a->size() <= b->size());  // the whole file, header included
  }
  EncodeOptions int8{WireFormat::int8, 128, false, 3};
  auto c = encode_payload(f, int8);
  REQUIRE(c);
  auto vc = parse_safetensors(*c);
  REQUIRE(vc);
  CHECK(vc->buffer.size() == n + 4 * (n / 128));
}

TEST_CASE("the encoder refuses what cannot go on the wire", "[bridge][payload]") {
  auto f = sample_fragment(100);
  EncodeOptions opt;
  SECTION("NaN and Inf") {
    for (float bad :
         {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
          -std::numeric_limits<float>::infinity()}) {
      f.tensors[0].values[5] = bad;
      for (auto wire :
           {WireFormat::f32, WireFormat::bf16, WireFormat::int8, WireFormat::fp4_e3m0}) {
        opt.wire = wire;
        auto r = encode_payload(f, opt);
        REQUIRE_FALSE(r);
        CHECK(code_of(r.error()) == payload_errc::invalid_argument);
      }
    }
  }
  SECTION("bf16 overflow") {
    f.tensors[0].values[0] = std::numeric_limits<float>::max();
    opt.wire = WireFormat::bf16;
    CHECK_FALSE(encode_payload(f, opt));
    opt.wire = WireFormat::int8;
    CHECK(encode_payload(f, opt));
  }
  SECTION("shape unlike the values") {
    f.tensors[0].shape = {11, 10};
    CHECK_FALSE(encode_payload(f, opt));
  }
  SECTION("duplicate names") {
    f.tensors[1].name = f.tensors[0].name;
    CHECK_FALSE(encode_payload(f, opt));
  }
  SECTION("invalid UTF-8 name") {
    f.tensors[1].name = "\xff\xfe";
    auto r = encode_payload(f, opt);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::invalid_argument);
  }
  SECTION("metadata") {
    f.meta.base_sha256 = "ABC";
    CHECK_FALSE(encode_payload(f, opt));
    f.meta = sample_meta();
    f.meta.fragment_id = 4;
    CHECK_FALSE(encode_payload(f, opt));
    f.meta = sample_meta();
    f.meta.created = "yesterday";
    CHECK_FALSE(encode_payload(f, opt));
  }
  SECTION("block size") {
    opt.block_size = 0;
    CHECK_FALSE(encode_payload(f, opt));
    opt.block_size = kMaxBlockSize + 1;
    CHECK_FALSE(encode_payload(f, opt));
  }
  SECTION("an empty created is filled with the current time") {
    f.meta.created.clear();
    auto file = encode_payload(f, opt);
    REQUIRE(file);
    auto d = decode_payload(*file);
    REQUIRE(d);
    CHECK(d->meta.created.size() == 20);
  }
}

TEST_CASE("hostile safetensors files give errors, not crashes", "[bridge][payload][hostile]") {
  EncodeOptions opt{WireFormat::int8, 16, false, 3};
  auto good = encode_payload(sample_fragment(100), opt);
  REQUIRE(good);

  SECTION("every truncation") {
    for (std::size_t len = 0; len < good->size(); ++len) {
      auto r = decode_payload(std::span(good->data(), len));
      INFO("length " << len);
      REQUIRE_FALSE(r);
    }
  }
  SECTION("every single-byte corruption is refused or decodes") {
    // Flipping any byte must never crash; most are refused.
    for (std::size_t i = 0; i < good->size(); i += 3) {
      Bytes bad = *good;
      bad[i] ^= 0xA5;
      (void)decode_payload(bad);
    }
  }
  SECTION("header length past the file") {
    Bytes bad = *good;
    bad[0] = 0xFF;
    bad[1] = 0xFF;
    auto r = decode_payload(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::truncated);
    bad[7] = 0x7F;
    r = decode_payload(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::too_large);
  }
  SECTION("structural cases") {
    struct Case {
      std::string header;
      std::size_t buffer;
      payload_errc code;
    };
    const std::vector<Case> cases{
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]", 8,
         payload_errc::bad_header},
        {" {}", 0, payload_errc::bad_header},
        {"{}x", 0, payload_errc::bad_header},
        {"[1,2]   ", 0, payload_errc::bad_header},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, payload_errc::bad_header},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
         payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
         payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8,
         payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8,
         payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8,
         payload_errc::bad_layout},
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         payload_errc::unknown_dtype},
        {"{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1,
         payload_errc::unknown_dtype},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
         payload_errc::bad_header},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,8]}}",
         8, payload_errc::bad_layout},
        {"{\"__metadata__\":{\"k\":1}}", 0, payload_errc::bad_header},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, payload_errc::bad_header},
        {"{}      ", 0, payload_errc::bad_metadata},  // valid safetensors, not a fragment
    };
    for (const auto& c : cases) {
      INFO(c.header);
      auto r = decode_payload(raw_file(c.header, c.buffer));
      REQUIRE_FALSE(r);
      CHECK(code_of(r.error()) == c.code);
      CHECK_FALSE(r.error().describe().empty());
    }
    // Zero-size tensors and scalars are fine for the generic parser.
    auto ok = parse_safetensors(
        raw_file("{\"z\":{\"dtype\":\"F32\",\"shape\":[0,5],\"data_offsets\":[0,0]},"
                 "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4]}}",
                 4));
    REQUIRE(ok);
    CHECK(ok->tensors.size() == 2);
  }
  SECTION("metadata and code checks on a fragment") {
    auto view = parse_safetensors(*good);
    REQUIRE(view);
    const auto header_at = 8;
    std::string header(reinterpret_cast<const char*>(good->data() + header_at), view->header_size);
    const auto patched = [&](const std::string& from, const std::string& to) {
      std::string h = header;
      const auto at = h.find(from);
      REQUIRE(at != std::string::npos);
      h.replace(at, from.size(), to);
      Bytes b = raw_file(h, 0);
      b.insert(b.end(), view->buffer.begin(), view->buffer.end());
      return b;
    };
    const std::vector<std::tuple<std::string, std::string, payload_errc>> cases{
        {"\"wire\":\"int8\"", "\"wire\":\"int9\"", payload_errc::bad_metadata},
        {"\"block_size\":\"16\"", "\"block_size\":\"016\"", payload_errc::bad_metadata},
        {"\"block_size\":\"16\"", "\"block_size\":\"32\"", payload_errc::bad_metadata},
        {"\"fragment_id\":\"1\"", "\"fragment_id\":\"9\"", payload_errc::bad_metadata},
        {"\"format\":\"shardsync.diloco.fragment/1\"", "\"format\":\"shardsync.diloco.fragment/2\"",
         payload_errc::bad_metadata},
        {"\"outer_step\"", "\"outer_stop\"", payload_errc::bad_metadata},
        {"\"dtype\":\"I8\"", "\"dtype\":\"U8\"", payload_errc::unknown_dtype},
    };
    for (const auto& [from, to, code] : cases) {
      INFO(from << " -> " << to);
      auto r = decode_payload(patched(from, to));
      REQUIRE_FALSE(r);
      CHECK(code_of(r.error()) == code);
    }
    // int8 code -128 and a negative scale are values the encoder never writes.
    const auto* q = &view->tensors.back();
    for (const auto& t : view->tensors) {
      if (t.dtype == "I8") q = &t;
    }
    Bytes bad = *good;
    bad[8 + view->header_size + q->begin] = 0x80;
    auto r = decode_payload(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::bad_values);
    bad = *good;
    bad[8 + view->header_size + 3] |= 0x80;  // the first F32 scale's sign bit
    r = decode_payload(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::bad_values);
    // A finite, positive scale that overflows to infinity times a code (found by the fuzzer).
    bad = *good;
    const float huge = std::numeric_limits<float>::max();
    std::memcpy(&bad[8 + view->header_size], &huge, sizeof huge);  // the first F32 scale
    r = decode_payload(bad);
    REQUIRE_FALSE(r);
    CHECK(code_of(r.error()) == payload_errc::bad_values);
  }
  SECTION("fp4 code 8 and padding nibbles") {
    Fragment f;
    f.meta = sample_meta();
    f.tensors.push_back({"w", {3}, {1.0f, -0.5f, 0.25f}});
    auto file = encode_payload(f, {WireFormat::fp4_e3m0, 64, false, 3});
    REQUIRE(file);
    auto view = parse_safetensors(*file);
    REQUIRE(view);
    const std::size_t q = 8 + view->header_size + 4;  // U8 follows the one F32 scale
    CHECK((*file)[q] == (7 | ((6 | 8) << 4)));
    CHECK((*file)[q + 1] == 5);
    Bytes bad = *file;
    bad[q + 1] = 0x15;  // padding nibble set
    CHECK_FALSE(decode_payload(bad));
    bad = *file;
    bad[q] = 0x87;  // code 8
    CHECK_FALSE(decode_payload(bad));
  }
}

TEST_CASE("zstd payloads: truncation, trailing bytes and bombs", "[bridge][payload][hostile]") {
  auto plain = encode_payload(sample_fragment(1000), {WireFormat::f32, 0, false, 3});
  auto packed = encode_payload(sample_fragment(1000), {WireFormat::f32, 0, true, 3});
  REQUIRE(plain);
  REQUIRE(packed);
  REQUIRE(is_zstd_frame(*packed));

  DecodeOptions small;
  small.max_decompressed = plain->size() - 1;
  auto r = decode_payload(*packed, small);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == payload_errc::too_large);
  small.max_decompressed = plain->size();
  CHECK(decode_payload(*packed, small));

  auto cut = decode_payload(std::span(packed->data(), packed->size() - 3));
  REQUIRE_FALSE(cut);
  Bytes trailing = *packed;
  trailing.push_back(0);
  REQUIRE_FALSE(decode_payload(trailing));

  // A bomb without a declared size: 64 MiB of zeros in a streaming frame, refused at 1 MiB.
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  std::vector<std::uint8_t> zeros(1 << 20, 0);
  std::vector<std::uint8_t> bomb(ZSTD_CStreamOutSize());
  std::vector<std::uint8_t> frame;
  for (int i = 0; i < 64; ++i) {
    ZSTD_inBuffer in{zeros.data(), zeros.size(), 0};
    const auto mode = i == 63 ? ZSTD_e_end : ZSTD_e_continue;
    for (;;) {
      ZSTD_outBuffer out{bomb.data(), bomb.size(), 0};
      const std::size_t left = ZSTD_compressStream2(cctx.get(), &out, &in, mode);
      REQUIRE_FALSE(ZSTD_isError(left));
      frame.insert(frame.end(), bomb.begin(), bomb.begin() + static_cast<std::ptrdiff_t>(out.pos));
      if (mode == ZSTD_e_end ? left == 0 : in.pos == in.size) break;
    }
  }
  CHECK(ZSTD_getFrameContentSize(frame.data(), frame.size()) == ZSTD_CONTENTSIZE_UNKNOWN);
  DecodeOptions capped;
  capped.max_decompressed = 1 << 20;
  auto b = decode_payload(frame, capped);
  REQUIRE_FALSE(b);
  CHECK(code_of(b.error()) == payload_errc::too_large);
}

TEST_CASE("a zstd frame that lies about its size is not trusted", "[bridge][payload][hostile]") {
  // Frame header: magic, FHD 0xC0 (8-byte content size, window descriptor follows), window
  // 1 KiB, content size 2^39; then one raw last block of 4 bytes. Allocating the claim would
  // throw std::bad_alloc (or abort under ASan); the decoder must fail cleanly instead.
  Bytes frame{0x28, 0xB5, 0x2F, 0xFD, 0xC0, 0x00};
  for (int i = 0; i < 8; ++i)
    frame.push_back(static_cast<std::uint8_t>((std::uint64_t{1} << 39) >> (8 * i)));
  const Bytes block{0x21, 0x00, 0x00, 0x7B, 0x7D, 0x20, 0x20};
  frame.insert(frame.end(), block.begin(), block.end());
  REQUIRE(ZSTD_getFrameContentSize(frame.data(), frame.size()) == (std::uint64_t{1} << 39));
  DecodeOptions huge;
  huge.max_decompressed = std::uint64_t{1} << 40;
  auto r = decode_payload(frame, huge);
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == payload_errc::zstd_failed);
  auto capped = decode_payload(frame);  // the default cap (4 GiB) is below the claim
  REQUIRE_FALSE(capped);
  CHECK(code_of(capped.error()) == payload_errc::too_large);
}

TEST_CASE("deeply nested header JSON is refused without recursion trouble",
          "[bridge][payload][hostile]") {
  const std::size_t depth = 200000;
  const std::string header = "{\"a\":" + std::string(depth, '[') + std::string(depth, ']') + "}";
  auto r = decode_payload(raw_file(header, 0));
  REQUIRE_FALSE(r);
  CHECK(code_of(r.error()) == payload_errc::bad_header);
  const std::string objects = "{\"a\":" + [&] {
    std::string s;
    for (std::size_t i = 0; i < depth; ++i) s += "{\"k\":";
    s += "1";
    s += std::string(depth, '}');
    return s;
  }() + "}";
  auto o = decode_payload(raw_file(objects, 0));
  REQUIRE_FALSE(o);
  CHECK(code_of(o.error()) == payload_errc::bad_header);
}

TEST_CASE("random corruptions of every format never crash", "[bridge][payload][hostile]") {
  // Seeded mutations (flips, truncations, splices of header bytes); run under ASan/UBSan in CI.
  std::mt19937 gen(42);
  std::size_t refused = 0;
  std::size_t total = 0;
  for (auto wire : {WireFormat::f32, WireFormat::bf16, WireFormat::int8, WireFormat::fp4_e3m0}) {
    for (bool zstd : {false, true}) {
      auto good = encode_payload(sample_fragment(200), {wire, 16, zstd, 3});
      REQUIRE(good);
      std::uniform_int_distribution<std::size_t> pos(0, good->size() - 1);
      for (int i = 0; i < 300; ++i) {
        Bytes bad = *good;
        switch (i % 3) {
          case 0:
            bad[pos(gen)] ^= static_cast<std::uint8_t>(1u << (gen() % 8));
            break;
          case 1:
            bad.resize(pos(gen));
            break;
          default: {
            const std::size_t at = pos(gen);
            bad.insert(bad.begin() + static_cast<std::ptrdiff_t>(at), good->begin(),
                       good->begin() + static_cast<std::ptrdiff_t>(std::min<std::size_t>(at, 40)));
            break;
          }
        }
        ++total;
        if (!decode_payload(bad)) ++refused;
      }
    }
  }
  // Most mutations must be caught (a flip inside an f32 value can decode, legitimately).
  CHECK(refused * 2 > total);
}

TEST_CASE("every payload error code has a message", "[bridge][payload]") {
  for (int v = 1; v <= static_cast<int>(payload_errc::invalid_argument); ++v) {
    INFO(v);
    const auto message = make_error_code(static_cast<payload_errc>(v)).message();
    CHECK(message != "unknown shardsync.bridge.payload error");
    CHECK_FALSE(message.empty());
  }
  CHECK(std::string(payload_category().name()) == "shardsync.bridge.payload");
  CHECK(make_error_code(static_cast<payload_errc>(99)).message() ==
        "unknown shardsync.bridge.payload error");
}

// The test vectors in tests/data/bridge/: encode the inputs, compare with the committed bytes
// (also checked by tests/bridge/payload_vectors.py, an independent Python codec), and decode
// the committed payloads to the expected bit patterns.
namespace {

Fragment vector_fragment(const nlohmann::json& spec, EncodeOptions& opt) {
  opt.wire = *wire_from_name(spec["wire"].get<std::string>());
  opt.block_size = spec["block_size"].get<std::size_t>();
  opt.zstd = spec["zstd"].get<bool>();
  Fragment f;
  const auto& m = spec["meta"];
  f.meta.run_id = m["run_id"];
  f.meta.outer_step = m["outer_step"];
  f.meta.inner_step = m["inner_step"];
  f.meta.fragment_id = m["fragment_id"];
  f.meta.num_fragments = m["num_fragments"];
  f.meta.worker_id = m["worker_id"];
  f.meta.worker_nonce = m["worker_nonce"];
  f.meta.base_sha256 = m["base_sha256"];
  f.meta.tokens = m["tokens"];
  f.meta.torch_dtype_master = m["torch_dtype_master"];
  f.meta.created = m["created"];
  for (const auto& t : spec["tensors"]) {
    Tensor tensor{t["name"], t["shape"].get<std::vector<std::uint64_t>>(), {}};
    for (const auto& h : t["bits"]) {
      tensor.values.push_back(std::bit_cast<float>(
          static_cast<std::uint32_t>(std::stoul(h.get<std::string>(), nullptr, 16))));
    }
    f.tensors.push_back(std::move(tensor));
  }
  return f;
}

nlohmann::json bit_patterns(const std::vector<Tensor>& tensors) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& t : tensors) {
    nlohmann::json b = nlohmann::json::array();
    for (float v : t.values) {
      char buf[9];
      std::snprintf(buf, sizeof buf, "%08x", bits(v));
      b.push_back(buf);
    }
    out.push_back({{"name", t.name}, {"bits", b}});
  }
  return out;
}

const std::vector<std::string> kVectors{"f32_edge", "bf16_edge", "int8_edge", "fp4_edge",
                                        "fp4_b128", "int8_zstd", "fp4_zstd"};

}  // namespace

TEST_CASE("test vectors decode to their expected values and re-encode byte for byte",
          "[bridge][payload][vectors]") {
  for (const auto& name : kVectors) {
    INFO(name);
    const auto spec = nlohmann::json::parse(read_file(kDataDir + "/" + name + ".in.json"));
    const auto expected =
        nlohmann::json::parse(read_file(kDataDir + "/" + name + ".expected.json"));
    const Bytes committed = read_file(kDataDir + "/" + name + ".safetensors");
    EncodeOptions opt;
    const auto fragment = vector_fragment(spec, opt);
    auto file = encode_payload(fragment, opt);
    REQUIRE(file);
    if (opt.zstd) {
      // Compressed bytes depend on the libzstd version; compare the content instead.
      auto content = zstd_decompress(committed, 1 << 24);
      REQUIRE(content);
      auto mine = zstd_decompress(*file, 1 << 24);
      REQUIRE(mine);
      CHECK(*content == *mine);
    } else {
      CHECK(*file == committed);
    }
    auto decoded = decode_payload(committed);
    REQUIRE(decoded);
    CHECK(decoded->meta == fragment.meta);
    CHECK(bit_patterns(decoded->tensors) == expected["tensors"]);
  }
}

// Regenerates the committed payloads and expected values from the *.in.json inputs; run by
// hand after a deliberate format change: bridge_tests "[.regen]".
TEST_CASE("regenerate the bridge test vectors", "[.regen]") {
  for (const auto& name : kVectors) {
    const auto spec = nlohmann::json::parse(read_file(kDataDir + "/" + name + ".in.json"));
    EncodeOptions opt;
    const auto fragment = vector_fragment(spec, opt);
    auto file = encode_payload(fragment, opt);
    REQUIRE(file);
    std::ofstream(kDataDir + "/" + name + ".safetensors", std::ios::binary)
        .write(reinterpret_cast<const char*>(file->data()),
               static_cast<std::streamsize>(file->size()));
    auto decoded = decode_payload(*file);
    REQUIRE(decoded);
    std::ofstream(kDataDir + "/" + name + ".expected.json")
        << nlohmann::json{{"tensors", bit_patterns(decoded->tensors)}}.dump(1) << "\n";
  }
}
