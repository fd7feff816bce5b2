# Conditional create (PUT with If-None-Match: *): the publisher and a real server on loopback.
target_sources(server_tests PRIVATE server/conditional_put_test.cpp)
