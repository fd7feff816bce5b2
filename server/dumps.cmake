# Resource Dumps, Change Dumps and archives: ZIP packages written with libzip.
target_sources(shardsync_server PRIVATE
  src/dump_packer.cpp
  src/dump_builder.cpp
  src/dump_documents.cpp
  src/dump_catalog_file.cpp)
target_link_libraries(shardsync_server PRIVATE PkgConfig::libzip nlohmann_json::nlohmann_json)
