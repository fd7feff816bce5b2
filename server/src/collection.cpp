#include "shardsync/server/collection.hpp"

#include <algorithm>

namespace shardsync::server {

bool is_valid_collection_name(std::string_view name) {
  if (name.empty() || name.size() > 128 || name == "." || name == ".." || name == ".well-known" ||
      name == "metrics") {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

}  // namespace shardsync::server
