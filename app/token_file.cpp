#include "token_file.hpp"

#include <fstream>

namespace shardsync::app {

Result<std::string> read_token_file(const std::string& path, std::size_t min_length) {
  std::ifstream in(path);
  std::string token;
  if (!in || !std::getline(in, token)) {
    return fail(std::make_error_code(std::errc::io_error), "cannot read token file " + path);
  }
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.size() < min_length) {
    return fail(
        std::make_error_code(std::errc::invalid_argument),
        "token in " + path + " is shorter than " + std::to_string(min_length) + " characters");
  }
  return token;
}

}  // namespace shardsync::app
