target_sources(shardsync_server PRIVATE
  src/http_server.cpp)
