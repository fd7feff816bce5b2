#pragma once
// Expected failures are values across shardsync: Result<T> holds a T or an Error.
// tl::expected has the API of C++23 std::expected, so switching later is one line.

#include <tl/expected.hpp>

#include "shardsync/error.hpp"

namespace shardsync {

template <typename T>
using Result = tl::expected<T, Error>;

// Builds the error side of a Result: `return fail(errc::x, "detail");`
template <typename Code>
[[nodiscard]] tl::unexpected<Error> fail(Code code, std::string detail) {
  return tl::unexpected<Error>(Error{make_error_code(code), std::move(detail)});
}

[[nodiscard]] inline tl::unexpected<Error> fail(std::error_code code, std::string detail) {
  return tl::unexpected<Error>(Error{code, std::move(detail)});
}

[[nodiscard]] inline tl::unexpected<Error> fail(Error error) {
  return tl::unexpected<Error>(std::move(error));
}

}  // namespace shardsync
