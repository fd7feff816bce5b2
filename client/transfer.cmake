# Transfers: the downloader (libcurl multi on the caller's thread), its hashing stage and its
# committer (fdatasync + rename off the curl thread, directories fsynced in batches).
target_sources(shardsync_client PRIVATE
  src/committer.cpp
  src/downloader.cpp
  src/hash_pipeline.cpp)
