# The trainer bridge's wire payloads: quantizers, safetensors codec, hostile files, vectors.
add_executable(bridge_tests ${CMAKE_CURRENT_LIST_DIR}/payload_test.cpp)
target_link_libraries(bridge_tests PRIVATE shardsync::bridge_payload Catch2::Catch2WithMain
                      nlohmann_json::nlohmann_json PkgConfig::zstd shardsync::warnings)
target_compile_definitions(bridge_tests PRIVATE
  SHARDSYNC_TEST_DATA="${CMAKE_CURRENT_SOURCE_DIR}/data")
catch_discover_tests(bridge_tests TEST_PREFIX "bridge: ")

# An independent stdlib-only Python codec must reproduce the committed payloads byte for byte
# and their dequantized values bit for bit.
find_package(Python3 COMPONENTS Interpreter)
if(Python3_Interpreter_FOUND)
  add_test(NAME bridge.payload_vectors
           COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_LIST_DIR}/payload_vectors.py
                   ${CMAKE_CURRENT_SOURCE_DIR}/data/bridge)
endif()

# `shardsync bridge inspect`: output and exit codes.
add_test(NAME bridge.inspect_cli
         COMMAND bash ${CMAKE_CURRENT_LIST_DIR}/inspect_cli_test.sh $<TARGET_FILE:shardsync>
                 ${CMAKE_CURRENT_SOURCE_DIR}/data/bridge)

# DILOCO.md §4.3.1: the vectors' dequantized values are those of diloco_sim.quantize_dequantize
# (shared/diloco_sim.py, run with Debian's python3-torch). Skipped (77) without torch.
add_test(NAME bridge.payload_sim
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/payload_sim_check.py
                 ${PROJECT_SOURCE_DIR}/../shared ${CMAKE_CURRENT_SOURCE_DIR}/data/bridge)
set_tests_properties(bridge.payload_sim PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)
