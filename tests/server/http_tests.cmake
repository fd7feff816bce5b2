# The HTTP server: the pure handler, and the real server over loopback (libcurl, raw sockets).
target_sources(server_tests PRIVATE
  server/http_handler_test.cpp
  server/http_server_test.cpp)
# Push notifications: notifier, WebSub hub and event streams over loopback (OpenSSL for the
# expected HMACs).
target_sources(server_tests PRIVATE server/push_test.cpp)
target_link_libraries(server_tests PRIVATE OpenSSL::Crypto)
