# The wire payload codec: safetensors fragments, bf16/int8/fp4-e3m0 quantizers, zstd wrapping.
add_library(shardsync_bridge_payload STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/payload.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/quantize.cpp)
add_library(shardsync::bridge_payload ALIAS shardsync_bridge_payload)
target_include_directories(shardsync_bridge_payload PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(shardsync_bridge_payload
  PUBLIC shardsync::sitemap
  PRIVATE nlohmann_json::nlohmann_json PkgConfig::zstd shardsync::warnings)
