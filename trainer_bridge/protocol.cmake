# The bridge's protocol over ResourceSync (DILOCO.md §3.3) and the DiLoCoBridge API: resource
# layout + commit records, HTTP PUT/GET through `shardsync serve` and the client library,
# change-list following, the replicated run state, and the worker's sync engine.
add_library(shardsync_bridge_protocol STATIC
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/errc.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/layout.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/transport.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/run_index.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/run_state.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/sync_engine.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/sync_bootstrap.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/sync_aggregate.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/sync_state_io.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/bridge.cpp
  ${CMAKE_CURRENT_LIST_DIR}/src/protocol/aggregator.cpp)
add_library(shardsync::bridge_protocol ALIAS shardsync_bridge_protocol)
target_include_directories(shardsync_bridge_protocol PUBLIC ${CMAKE_CURRENT_LIST_DIR}/include)
target_link_libraries(shardsync_bridge_protocol
  PUBLIC shardsync::bridge_core shardsync::bridge_payload shardsync::sitemap
  PRIVATE shardsync::client CURL::libcurl nlohmann_json::nlohmann_json Threads::Threads
          shardsync::warnings)
