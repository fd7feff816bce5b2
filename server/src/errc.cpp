#include "shardsync/server/errc.hpp"

#include <string>

namespace shardsync::server {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.server"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::database:
        return "database error";
      case errc::io_error:
        return "I/O error";
      case errc::invalid_config:
        return "invalid configuration";
      case errc::network:
        return "network error";
      case errc::changed_while_read:
        return "file changed while it was read";
      case errc::unsafe_path:
        return "unsafe or reserved path";
      case errc::already_exists:
        return "already exists";
    }
    return "unknown shardsync.server error";
  }
};

}  // namespace

const std::error_category& server_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace shardsync::server
