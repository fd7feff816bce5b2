target_sources(shardsync_client PRIVATE
  src/local_path.cpp
  src/dest_root.cpp)
