# The storage side of the server: change log, scanner and watcher, on real SQLite files,
# real directories and real inotify. SQLite directly: tests tamper with a log's schema.
target_sources(server_tests PRIVATE
  server/change_log_test.cpp
  server/scanner_test.cpp
  server/watcher_test.cpp)
target_link_libraries(server_tests PRIVATE SQLite::SQLite3)
