# The Python package `shardsync` (DILOCO.md §3.4): pure-Python glue in python/shardsync/ plus the
# pybind11 extension shardsync._bridge over the C++ library. Built only when pybind11 and the
# Python headers are found (Debian pybind11-dev, python3-dev); the package is assembled in
# <build>/python, so `PYTHONPATH=<build>/python /usr/bin/python3 -c "import shardsync"` works.
#
# The interpreter is Debian's /usr/bin/python3 (the one python3-torch installs into), not the
# first python3 on PATH; SHARDSYNC_PYTHON picks another.
set(SHARDSYNC_PYTHON /usr/bin/python3 CACHE FILEPATH "Python interpreter the bindings are built for")
set(Python_EXECUTABLE ${SHARDSYNC_PYTHON})
find_package(Python 3.9 COMPONENTS Interpreter Development.Module)
if(Python_FOUND)
  find_package(pybind11 2.6 CONFIG QUIET)
endif()
if(NOT Python_FOUND OR NOT pybind11_FOUND)
  message(STATUS "shardsync: Python bindings off (need pybind11-dev and python3-dev)")
  return()
endif()

set(package_out ${CMAKE_BINARY_DIR}/python/shardsync)

# A shared module links the project's static libraries: they, and the static libraries they
# link, must be position-independent.
function(shardsync_position_independent target)
  if(NOT TARGET ${target})
    return()
  endif()
  get_target_property(aliased ${target} ALIASED_TARGET)
  if(aliased)
    set(target ${aliased})
  endif()
  get_target_property(imported ${target} IMPORTED)
  get_target_property(type ${target} TYPE)
  if(imported OR NOT type MATCHES "STATIC_LIBRARY|OBJECT_LIBRARY")
    return()
  endif()
  set_property(TARGET ${target} PROPERTY POSITION_INDEPENDENT_CODE ON)
  get_target_property(libs ${target} LINK_LIBRARIES)
  foreach(lib IN LISTS libs)
    shardsync_position_independent(${lib})
  endforeach()
endfunction()

pybind11_add_module(shardsync_python MODULE
  ${CMAKE_CURRENT_LIST_DIR}/python/module.cpp
  ${CMAKE_CURRENT_LIST_DIR}/python/codec_bindings.cpp)
set_target_properties(shardsync_python PROPERTIES
  OUTPUT_NAME _bridge
  LIBRARY_OUTPUT_DIRECTORY ${package_out})
target_link_libraries(shardsync_python PRIVATE shardsync::bridge_payload shardsync::warnings)
shardsync_position_independent(shardsync_bridge_payload)
if(TARGET shardsync_bridge_protocol)
  target_sources(shardsync_python PRIVATE ${CMAKE_CURRENT_LIST_DIR}/python/bridge_bindings.cpp)
  target_link_libraries(shardsync_python PRIVATE shardsync::bridge_protocol)
  target_compile_definitions(shardsync_python PRIVATE SHARDSYNC_PYTHON_WITH_BRIDGE)
  shardsync_position_independent(shardsync_bridge_protocol)
endif()

# The pure-Python modules sit next to the extension (copied at build time, so edits show up on
# the next build).
set(python_sources __init__.py diloco.py)
foreach(file IN LISTS python_sources)
  add_custom_command(
    OUTPUT ${package_out}/${file}
    COMMAND ${CMAKE_COMMAND} -E copy_if_different
            ${CMAKE_CURRENT_LIST_DIR}/python/shardsync/${file} ${package_out}/${file}
    DEPENDS ${CMAKE_CURRENT_LIST_DIR}/python/shardsync/${file})
  list(APPEND python_outputs ${package_out}/${file})
endforeach()
add_custom_target(shardsync_python_sources ALL DEPENDS ${python_outputs})
add_dependencies(shardsync_python shardsync_python_sources)
