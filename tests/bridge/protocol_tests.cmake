# The bridge protocol's pure parts, in bridge_core_tests (internal headers from src/protocol).
target_sources(bridge_core_tests PRIVATE ${CMAKE_CURRENT_LIST_DIR}/protocol_unit_test.cpp)
target_link_libraries(bridge_core_tests PRIVATE shardsync::bridge_protocol)
target_include_directories(bridge_core_tests PRIVATE
  ${PROJECT_SOURCE_DIR}/trainer_bridge/src/protocol)

# Over loopback: worker processes, real servers, faults, the aggregator topology.
add_test(NAME integration.bridge_protocol
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bridge/protocol_test.sh $<TARGET_FILE:shardsync>)
set_tests_properties(integration.bridge_protocol PROPERTIES TIMEOUT 180)
