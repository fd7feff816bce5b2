#include "shardsync/client/errc.hpp"

#include <string>

namespace shardsync::client {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.client"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::unsafe_path:
        return "unsafe or reserved local path";
      case errc::path_collision:
        return "two resources map to one local path";
      case errc::outside_source:
        return "URL outside the source";
      case errc::http_status:
        return "HTTP error status";
      case errc::transfer_failed:
        return "transfer failed";
      case errc::length_mismatch:
        return "length does not match the listed length";
      case errc::hash_mismatch:
        return "hash does not match the listed hash";
      case errc::disk_full:
        return "disk full";
      case errc::io_error:
        return "I/O error";
      case errc::bad_document:
        return "bad ResourceSync document";
      case errc::discovery_failed:
        return "no capability list found";
      case errc::ambiguous_source:
        return "several resource sets: pick one with --collection";
      case errc::state_corrupt:
        return "sync state unreadable";
      case errc::source_changed:
        return "destination mirrors another source";
      case errc::delete_limit:
        return "more deletions than --max-delete allows";
      case errc::not_retained:
        return "source no longer retains the changes since the last sync";
      case errc::invalid_options:
        return "invalid options";
      case errc::bad_package:
        return "bad dump package";
    }
    return "unknown shardsync.client error";
  }
};

}  // namespace

const std::error_category& client_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace shardsync::client
