# Path mapping (URL -> relative path) and the destination root (fd-relative file operations).
target_sources(client_tests PRIVATE
  client/local_path_test.cpp
  client/dest_root_test.cpp)
