# The sync engine: its pure planning, its state, and whole runs against real servers.
target_sources(client_tests PRIVATE
  client/change_plan_test.cpp
  client/sync_state_test.cpp)
# --follow: the event stream parser and reader (against a loopback server).
target_sources(client_tests PRIVATE client/event_source_test.cpp)
