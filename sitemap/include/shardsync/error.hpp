#pragma once
// Error: the failure half of shardsync::Result. The code is for branching (retry, skip,
// abort); the detail is for people (file, line, URL, offset).

#include <string>
#include <system_error>

namespace shardsync {

struct Error {
  std::error_code code;
  std::string detail;

  // "detail (category:value message)", the form logs and CLI messages use.
  [[nodiscard]] std::string describe() const;
};

}  // namespace shardsync
