# Dump packages: the unpacker against good and hostile ZIPs the tests write with libzip.
if(NOT TARGET PkgConfig::libzip)
  pkg_check_modules(libzip REQUIRED IMPORTED_TARGET libzip)
endif()
target_sources(client_tests PRIVATE client/dump_package_test.cpp)
target_link_libraries(client_tests PRIVATE PkgConfig::libzip)
# `shardsync sync --via-dump` end to end against packages served by python's http.server.
add_test(NAME integration.sync_dump
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/integration/sync_dump_test.sh
                 $<TARGET_FILE:shardsync>)
set_tests_properties(integration.sync_dump PROPERTIES TIMEOUT 120)
