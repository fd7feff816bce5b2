// The sitemap parser the client runs on every fetched document (RELIABILITY.md §1.2, X1–X12).
// Oracles: no crash or UB; the limits hold on what parses; the result does not depend on how
// the input is framed into batches; and whatever parses round-trips through our writer:
// parse(write(doc)) == doc, and writing that again gives the same bytes.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_check.hpp"
#include "shardsync/sitemap/parser.hpp"
#include "shardsync/sitemap/validator.hpp"
#include "shardsync/sitemap/writer.hpp"

namespace {

using namespace shardsync::sitemap;

// Small limits, so inputs of fuzzer size can reach each of them.
ParseOptions options_with_batch(std::uint32_t batch_bytes) {
  ParseOptions options;
  options.limits.max_document_bytes = 4u << 20;  // gzip input may inflate up to this
  options.limits.max_entries = 64;
  options.limits.max_depth = 8;
  options.limits.max_entry_bytes = 16u << 10;
  options.limits.max_root_tag_bytes = 4u << 10;
  options.limits.max_attributes = 16;
  options.batch_bytes = batch_bytes;
  return options;
}

std::size_t depth_of(const std::vector<ExtraElement>& elements) {
  std::size_t deepest = 0;
  for (const auto& e : elements) deepest = std::max(deepest, 1 + depth_of(e.children));
  return deepest;
}

void check_limits(const Document& doc, const ParseLimits& limits) {
  FUZZ_CHECK(doc.entries.size() <= limits.max_entries, "entry count over the limit");
  // root > entry > extension elements: the root and the entry count towards max_depth.
  for (const auto& entry : doc.entries) {
    FUZZ_CHECK(depth_of(entry.extra_elements) + 2 <= limits.max_depth, "nesting over the limit");
    FUZZ_CHECK(entry.extra_attributes.size() <= limits.max_attributes, "attributes over limit");
  }
  FUZZ_CHECK(depth_of(doc.header.extra_elements) + 1 <= limits.max_depth, "nesting over limit");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const ParseOptions small_batches = options_with_batch(512);
  auto doc = parse_document(bytes, small_batches);
  // Framing into batches is an implementation detail: one large batch must agree.
  auto whole = parse_document(bytes, options_with_batch(1u << 20));
  FUZZ_CHECK(doc.has_value() == whole.has_value(), "batch size changed the verdict");
  if (!doc) {
    FUZZ_CHECK(!doc.error().detail.empty(), "an error without a detail");
    return 0;
  }
  FUZZ_CHECK(*doc == *whole, "batch size changed the document");
  check_limits(*doc, small_batches.limits);
  (void)validate(*doc);

  auto written = write_document(*doc);
  if (!written) return 0;  // e.g. a change list going back in time: the writer refuses it
  // Default limits: escaping may make an entry longer than the small limit allowed.
  auto reparsed = parse_document(*written);
  if (!reparsed) {
    std::fprintf(stderr, "written document does not parse: %s\n%s\n",
                 reparsed.error().detail.c_str(), written->c_str());
  }
  FUZZ_CHECK(reparsed.has_value(), "our writer's output does not parse");
  FUZZ_CHECK(*reparsed == *doc, "parse(write(doc)) != doc");
  auto rewritten = write_document(*reparsed);
  FUZZ_CHECK(rewritten.has_value() && *rewritten == *written, "write is not stable");
  return 0;
}
