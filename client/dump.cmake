# Dumps: unpacking Resource/Change Dump packages (ZIP, via libzip) and the dump-driven sync.
if(NOT TARGET PkgConfig::libzip)
  pkg_check_modules(libzip REQUIRED IMPORTED_TARGET libzip)
endif()
target_sources(shardsync_client PRIVATE
  src/dump_package.cpp
  src/dump_sync.cpp)
target_link_libraries(shardsync_client PRIVATE PkgConfig::libzip)
