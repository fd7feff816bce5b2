// shardsync._bridge: the compiled half of the `shardsync` Python package.
#include "bindings.hpp"

PYBIND11_MODULE(_bridge, m) {
  m.doc() = "shardsync trainer bridge: payload codecs and the DiLoCo bridge (C++ library)";
  shardsync::python::register_errors(m);
  shardsync::python::register_codec(m);
}
