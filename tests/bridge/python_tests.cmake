# The Python package (trainer_bridge/python.cmake): codec bindings against the test vectors,
# and workers training a torch model through the bridge. Registered only when the package is
# built (pybind11-dev and python3-dev present; scripts/deps installs both).
if(TARGET shardsync_python)
  set(python_env PYTHONPATH=${CMAKE_BINARY_DIR}/python)
  # A sanitized extension needs the ASan runtime loaded before the (uninstrumented, C)
  # interpreter's own libraries, and libstdc++ with it: ASan's __cxa_throw interceptor looks
  # the real one up at start-up, before the extension would dlopen libstdc++. Python's arenas
  # are not leaks.
  if(SHARDSYNC_SANITIZE MATCHES "address")
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libasan.so
                    OUTPUT_VARIABLE asan_runtime OUTPUT_STRIP_TRAILING_WHITESPACE)
    execute_process(COMMAND ${CMAKE_CXX_COMPILER} -print-file-name=libstdc++.so
                    OUTPUT_VARIABLE libstdcxx OUTPUT_STRIP_TRAILING_WHITESPACE)
    list(APPEND python_env "LD_PRELOAD=${asan_runtime}:${libstdcxx}" ASAN_OPTIONS=detect_leaks=0)
  endif()
  add_test(NAME bridge.python_codec
           COMMAND ${SHARDSYNC_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/python_codec_test.py
                   ${CMAKE_CURRENT_SOURCE_DIR}/data/bridge)
  set_tests_properties(bridge.python_codec PROPERTIES ENVIRONMENT "${python_env}" TIMEOUT 60)

  # Three torch workers through shardsync.DiLoCoBridge against a real `shardsync serve`.
  if(TARGET shardsync_bridge_protocol)
    add_test(NAME bridge.python_workers
             COMMAND ${SHARDSYNC_PYTHON} ${CMAKE_CURRENT_LIST_DIR}/python_workers_test.py
                     $<TARGET_FILE:shardsync>)
    set_tests_properties(bridge.python_workers PROPERTIES ENVIRONMENT "${python_env}" TIMEOUT 120)
    # examples/diloco can't rot: two workers, 20 steps of the calibration model, Streaming fp4.
    add_test(NAME bridge.python_example
             COMMAND ${SHARDSYNC_PYTHON} ${PROJECT_SOURCE_DIR}/examples/diloco/run.py
                     --build ${CMAKE_BINARY_DIR} --only smoke_M2_H10_P2_tau2_fp4 --steps 20
                     --out-dir ${CMAKE_CURRENT_BINARY_DIR}/diloco_example --force)
    set_tests_properties(bridge.python_example PROPERTIES ENVIRONMENT "${python_env}" TIMEOUT 180)
  endif()
endif()
