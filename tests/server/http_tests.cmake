# The HTTP server: the pure handler, and the real server over loopback (libcurl, raw sockets).
target_sources(server_tests PRIVATE
  server/http_handler_test.cpp
  server/http_server_test.cpp)
