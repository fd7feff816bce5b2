# The HTTP side: the Beast I/O (listener, sessions, TLS) in one TU, because each TU that
# includes Beast's I/O headers costs 15-19 s to compile here; the request handler is pure.
target_sources(shardsync_server PRIVATE
  src/http_fields.cpp
  src/http_handler.cpp
  src/http_server.cpp)
# Push notifications: payloads and history (no Beast), and the hub with its outgoing calls
# and the event streams' queues (Beast, a second I/O TU).
target_sources(shardsync_server PRIVATE
  src/notifier.cpp
  src/push_hub.cpp)
