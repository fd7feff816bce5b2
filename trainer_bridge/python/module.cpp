// shardsync._bridge: the compiled half of the `shardsync` Python package.
#include "bindings.hpp"

PYBIND11_MODULE(_bridge, m) {
  m.doc() = "shardsync trainer bridge: payload codecs and the DiLoCo bridge (C++ library)";
  shardsync::python::register_errors(m);
  shardsync::python::register_codec(m);
#ifdef SHARDSYNC_PYTHON_WITH_BRIDGE
  shardsync::python::register_bridge(m);
#endif
}
