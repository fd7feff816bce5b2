# The bridge protocol over loopback: worker processes, real servers, faults.
add_test(NAME integration.bridge_protocol
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/bridge/protocol_test.sh $<TARGET_FILE:shardsync>)
set_tests_properties(integration.bridge_protocol PROPERTIES TIMEOUT 120)
