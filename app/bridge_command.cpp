// shardsync bridge inspect FILE: what a DiLoCo fragment payload holds (metadata, tensors, wire
// format, sizes, sha-256), after validating it the way a receiving worker does.

#include <CLI/CLI.hpp>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "shardsync/bridge/payload.hpp"
#include "shardsync/sitemap/digest.hpp"

namespace shardsync::app {
namespace {

using namespace shardsync::bridge;

std::string shape_text(const std::vector<std::uint64_t>& shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i != 0) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

int run_inspect(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "shardsync bridge inspect: cannot open %s\n", path.c_str());
    return kExitFailure;
  }
  const std::vector<std::uint8_t> file((std::istreambuf_iterator<char>(in)), {});
  if (in.bad()) {
    std::fprintf(stderr, "shardsync bridge inspect: cannot read %s\n", path.c_str());
    return kExitFailure;
  }
  auto decoded = decode_payload(file);
  if (!decoded) {
    std::fprintf(stderr, "shardsync bridge inspect: %s: %s\n", path.c_str(),
                 decoded.error().describe().c_str());
    return kExitFailure;
  }
  // The layout as stored (decode_payload has validated it, so these succeed).
  std::vector<std::uint8_t> inflated;
  std::span<const std::uint8_t> content = file;
  if (decoded->zstd) {
    inflated = zstd_decompress(file, DecodeOptions{}.max_decompressed).value();
    content = inflated;
  }
  const auto view = parse_safetensors(content).value();

  sitemap::Hasher hasher;
  hasher.update(std::string_view(reinterpret_cast<const char*>(file.data()), file.size()));
  const auto hashes = hasher.finish();

  std::uint64_t values = 0;
  for (const auto& t : decoded->tensors) values += t.values.size();

  std::printf("file: %s\n", path.c_str());
  std::printf("sha-256: %s\n", std::string(hashes.get(sitemap::HashAlgorithm::sha256)).c_str());
  std::printf("length: %zu\n", file.size());
  std::printf("zstd: %s\n", decoded->zstd ? "yes" : "no");
  std::printf("safetensors: %zu bytes (header %" PRIu64 ", buffer %zu)\n", content.size(),
              view.header_size, view.buffer.size());
  std::printf("wire: %s\n", std::string(wire_name(decoded->wire)).c_str());
  std::printf("block_size: %zu\n", decoded->block_size);
  std::printf("values: %" PRIu64 "\n", values);
  if (values != 0) {
    std::printf("bytes_per_value: %.4f (buffer), %.4f (file)\n",
                static_cast<double>(view.buffer.size()) / static_cast<double>(values),
                static_cast<double>(file.size()) / static_cast<double>(values));
  }
  std::printf("metadata:\n");
  for (const auto& [key, value] : decoded->metadata) {
    std::printf("  %s: %s\n", key.c_str(), value.c_str());
  }
  std::printf("parameters:\n");
  for (const auto& t : decoded->tensors) {
    std::printf("  %s %s (%zu values)\n", t.name.c_str(), shape_text(t.shape).c_str(),
                t.values.size());
  }
  std::printf("tensors:\n");
  for (const auto& t : view.tensors) {
    std::printf("  %s %s %s [%" PRIu64 ", %" PRIu64 ") %" PRIu64 " bytes\n", t.name.c_str(),
                t.dtype.c_str(), shape_text(t.shape).c_str(), t.begin, t.end, t.end - t.begin);
  }
  return kExitOk;
}

}  // namespace

void add_bridge_command(CLI::App& app, int& exit_code) {
  CLI::App* bridge = app.add_subcommand("bridge", "DiLoCo trainer bridge tools");
  bridge->require_subcommand(1);
  auto path = std::make_shared<std::string>();
  CLI::App* inspect = bridge->add_subcommand(
      "inspect", "Validate a fragment payload and print its metadata, tensors and sha-256");
  inspect->add_option("file", *path, "a .safetensors fragment payload, plain or zstd")->required();
  inspect->footer("Example: shardsync bridge inspect frag/1/00000003/worker/w3.safetensors");
  inspect->callback([path, &exit_code] { exit_code = run_inspect(*path); });
  add_bridge_worker_command(bridge, exit_code);
  add_bridge_aggregate_command(bridge, exit_code);
}

}  // namespace shardsync::app
