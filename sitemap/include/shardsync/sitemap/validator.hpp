#pragma once
// Checks a document against ResourceSync 1.1: its MUST rules as errors, SHOULD rules (and
// interoperability hazards) as warnings. Works streaming, as a ParseHandler, so documents of
// any size are checked in bounded memory (only a Resource List's locs, a dump manifest's paths
// and a Capability List's capabilities are remembered, to find duplicates).

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "shardsync/sitemap/model.hpp"
#include "shardsync/sitemap/parser.hpp"

namespace shardsync::sitemap {

enum class Severity { warning, error };

struct Finding {
  Severity severity = Severity::error;
  std::uint32_t line = 0;  // 0 when the finding concerns the document as a whole
  std::string rule;        // stable identifier, e.g. "at-required"
  std::string message;     // for people, with the spec section

  // "ERROR line 12: at-required: …" (the `shardsync sitemap check` line format).
  [[nodiscard]] std::string format() const;
};

class Validator final : public ParseHandler {
 public:
  Validator();
  ~Validator() override;

  void on_header(const DocumentHeader& header) override;
  void on_entry(Entry&& entry) override;
  // Document-wide checks (size, entry count). Call once after a successful parse.
  void finish(const ParseStats& stats);

  [[nodiscard]] const std::vector<Finding>& findings() const;
  [[nodiscard]] std::size_t errors() const;
  [[nodiscard]] std::size_t warnings() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// Validates a document held in memory (no size check: that needs the serialised bytes).
[[nodiscard]] std::vector<Finding> validate(const Document& document);

}  // namespace shardsync::sitemap
