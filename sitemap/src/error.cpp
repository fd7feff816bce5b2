#include "shardsync/error.hpp"

namespace shardsync {

std::string Error::describe() const {
  if (!code) return detail;
  std::string text = detail;
  if (!text.empty()) text += ": ";
  text += code.message();
  return text;
}

}  // namespace shardsync
