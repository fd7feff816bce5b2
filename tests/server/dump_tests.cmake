# Resource/Change Dumps: packages read back with libzip, the builder on a real change log.
target_sources(server_tests PRIVATE server/dump_test.cpp)
target_link_libraries(server_tests PRIVATE PkgConfig::libzip)
