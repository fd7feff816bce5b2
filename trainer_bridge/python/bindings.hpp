#pragma once
// Shared helpers of the shardsync._bridge extension: conversions between numpy arrays and the
// library's spans/vectors, and the one exception type that carries a shardsync::Error.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstddef>
#include <span>
#include <type_traits>
#include <utility>
#include <vector>

#include "shardsync/result.hpp"

namespace shardsync::python {

namespace py = pybind11;

// Contiguous fp32 input; other dtypes and strides are converted (a copy) on the way in.
using FloatArray = py::array_t<float, py::array::c_style | py::array::forcecast>;

template <class T>
std::span<const T> view(const py::array_t<T, py::array::c_style | py::array::forcecast>& a) {
  return {a.data(), static_cast<std::size_t>(a.size())};
}

// Hands a vector to numpy without copying: the array owns it through a capsule.
template <class T>
py::array_t<T> to_numpy(std::vector<T> values) {
  auto* owned = new std::vector<T>(std::move(values));
  py::capsule owner(owned, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>({owned->size()}, {sizeof(T)}, owned->data(), owner);
}

// Thrown by bindings for a failed Result; surfaces in Python as shardsync.Error with the
// attributes `category`, `code` (int) and `detail`.
struct ErrorException {
  Error error;
};

template <class T>
T value_or_throw(Result<T> result) {
  if (!result) throw ErrorException{std::move(result.error())};
  if constexpr (!std::is_void_v<T>) return std::move(*result);
}

// Registers shardsync._bridge.Error and its translator.
void register_errors(py::module_& m);
void register_codec(py::module_& m);
// DiLoCoBridge, when the build has the protocol library (SHARDSYNC_PYTHON_WITH_BRIDGE).
void register_bridge(py::module_& m);

}  // namespace shardsync::python
