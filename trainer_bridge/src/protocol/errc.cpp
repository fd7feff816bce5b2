#include <string>

#include "shardsync/bridge/bridge.hpp"

namespace shardsync::bridge {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "shardsync.bridge"; }
  std::string message(int value) const override {
    switch (static_cast<bridge_errc>(value)) {
      case bridge_errc::invalid_argument:
        return "invalid argument";
      case bridge_errc::not_bootstrapped:
        return "bootstrap() has not run";
      case bridge_errc::config_mismatch:
        return "run configuration mismatch";
      case bridge_errc::init_mismatch:
        return "initial model does not match its hash";
      case bridge_errc::transport:
        return "transport failure";
      case bridge_errc::timeout:
        return "timed out";
      case bridge_errc::diverged:
        return "global fragment diverged from the commit";
      case bridge_errc::bad_payload:
        return "payload or record failed verification";
      case bridge_errc::bad_state:
        return "state does not fit the run";
    }
    return "unknown shardsync.bridge error";
  }
};

}  // namespace

const std::error_category& bridge_category() noexcept {
  static const Category category;
  return category;
}

}  // namespace shardsync::bridge
