#include "shardsync/sitemap/errc.hpp"

#include <string>

namespace shardsync::sitemap {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.sitemap"; }

  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::malformed_xml:
        return "malformed XML";
      case errc::doctype_refused:
        return "DOCTYPE refused";
      case errc::limit_exceeded:
        return "limit exceeded";
      case errc::invalid_utf8:
        return "invalid UTF-8 or forbidden character";
      case errc::unsupported_encoding:
        return "unsupported encoding (only UTF-8)";
      case errc::not_a_sitemap:
        return "not a sitemap";
      case errc::multiple_roots:
        return "more than one root element";
      case errc::duplicate_attribute:
        return "duplicate attribute";
      case errc::invalid_value:
        return "invalid value";
      case errc::structure:
        return "invalid document structure";
      case errc::truncated:
        return "truncated document";
      case errc::decompression_failed:
        return "decompression failed";
      case errc::io_error:
        return "I/O error";
    }
    return "unknown shardsync.sitemap error";
  }
};

}  // namespace

const std::error_category& sitemap_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace shardsync::sitemap
