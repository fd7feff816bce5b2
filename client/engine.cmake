# The sync engine: documents, discovery, state, planning and the sync/audit runs.
target_sources(shardsync_client PRIVATE
  src/document_client.cpp
  src/discovery.cpp
  src/sync_state.cpp
  src/change_plan.cpp
  src/sync.cpp)
# --follow: the event stream reader and the follow loop.
target_sources(shardsync_client PRIVATE
  src/event_source.cpp
  src/follow.cpp)
