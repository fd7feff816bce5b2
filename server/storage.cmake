target_sources(shardsync_server PRIVATE
  src/change_log.cpp
  src/scanner.cpp
  src/watcher.cpp)
