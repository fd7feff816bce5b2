# The bridge's algorithm core: run configuration + fragment schedule (R2), pseudo-gradient,
# reduction, outer Nesterov SGD and overlap merge (R3-R6). Included by trainer_bridge/CMakeLists.txt.
add_library(shardsync_bridge_core
  ${CMAKE_CURRENT_LIST_DIR}/src/schedule.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/outer.cpp)
add_library(shardsync::bridge_core ALIAS shardsync_bridge_core)
target_include_directories(shardsync_bridge_core PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(shardsync_bridge_core
  PUBLIC shardsync::sitemap
  PRIVATE nlohmann_json::nlohmann_json shardsync::warnings)
# Bit-exact fp32: no implicit fused multiply-adds (every FMA in outer.cpp is an explicit
# std::fma, matching torch's kernels), whatever -march a build uses.
target_compile_options(shardsync_bridge_core PRIVATE -ffp-contract=off)
