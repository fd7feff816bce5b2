# Transfers: the downloader (libcurl multi on the caller's thread) and its hashing stage.
target_sources(shardsync_client PRIVATE
  src/downloader.cpp
  src/hash_pipeline.cpp)
