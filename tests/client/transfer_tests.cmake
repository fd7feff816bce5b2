# The downloader against tests/support/fault_server.py (python3, stdlib only) over loopback.
target_sources(client_tests PRIVATE client/downloader_test.cpp)
target_link_libraries(client_tests PRIVATE CURL::libcurl OpenSSL::Crypto
                      nlohmann_json::nlohmann_json)
target_compile_definitions(client_tests PRIVATE
  SHARDSYNC_FAULT_SERVER="${CMAKE_CURRENT_SOURCE_DIR}/support/fault_server.py")
