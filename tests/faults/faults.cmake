# The reliability suite (tests/faults/README.md maps RELIABILITY.md's catalogue to these tests).
# Fast variants run in CI; tests/faults/run-long runs the same scripts at full size.
set(faults_dir ${CMAKE_CURRENT_LIST_DIR})

# SIGKILL `shardsync sync` at random points of a mirror; verify and resume after each kill.
add_test(NAME faults.kill_client
         COMMAND bash ${faults_dir}/kill_client.sh $<TARGET_FILE:shardsync> 192 5)
set_tests_properties(faults.kill_client PROPERTIES TIMEOUT 300)

# SIGKILL `shardsync serve` while `shardsync publish` PUTs and DELETEs; after each restart the
# change log, the Resource List and the files agree, and acknowledged publishes hold.
add_test(NAME faults.kill_server COMMAND bash ${faults_dir}/kill_server.sh $<TARGET_FILE:shardsync> 4)
set_tests_properties(faults.kill_server PROPERTIES TIMEOUT 180)

# A full disk (tmpfs) and EIO/ENOSPC from write/fsync (fiu-run) for client and server.
add_test(NAME faults.disk COMMAND bash ${faults_dir}/disk_faults.sh $<TARGET_FILE:shardsync>)
set_tests_properties(faults.disk PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 240)

# Hostile requests as raw bytes against the real server (smuggling, traversal, ranges,
# conditionals, pipelining, an fd flood past RLIMIT_NOFILE).
add_test(NAME faults.http_attacks
         COMMAND python3 ${faults_dir}/http_attacks.py $<TARGET_FILE:shardsync>)
set_tests_properties(faults.http_attacks PROPERTIES TIMEOUT 240)

# slowhttptest (slowloris, slow body, slow read, range attack) while a legitimate client
# measures its latency; p99 under 1 s (2 s in the sanitizer build), no failed request.
add_test(NAME faults.slow_attacks
         COMMAND bash ${faults_dir}/slow_attacks.sh $<TARGET_FILE:shardsync> 100 14)
set_tests_properties(faults.slow_attacks PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180
                     ENVIRONMENT "P99_LIMIT_MS=2000")

# Random histories (create, update, delete, rename, server clock steps under libfaketime) with
# incremental syncs at random points; the mirror equals the test's model after each. Seeded.
add_test(NAME faults.history_model
         COMMAND python3 ${faults_dir}/history_model.py $<TARGET_FILE:shardsync> 4 15 1)
set_tests_properties(faults.history_model PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 180)

# A malicious static source: entity bombs, XXE (with a trap listener), wrong roots and
# namespaces, duplicate attributes, UTF-16, index recursion, one URL twice, a wrong document
# type, no hashes, gzip and zstd bombs (file and content codings) under a memory bound,
# lying Content-Disposition; DEST in a sentinel tree.
add_test(NAME faults.hostile_source
         COMMAND python3 ${faults_dir}/hostile_source.py $<TARGET_FILE:shardsync>)
set_tests_properties(faults.hostile_source PROPERTIES TIMEOUT 120)

# Bad certificates for `shardsync sync` (untrusted, self-signed, wrong host, expired) and
# TLS 1.0/1.1 handshakes the server must refuse.
add_test(NAME faults.tls COMMAND bash ${faults_dir}/tls_faults.sh $<TARGET_FILE:shardsync>)
set_tests_properties(faults.tls PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 120)

# `shardsync serve` SIGKILLed and restarted on its port under a running `shardsync sync`:
# the mirror ends equal to the source, partials resumed.
add_test(NAME faults.server_restart
         COMMAND bash ${faults_dir}/server_restart.sh $<TARGET_FILE:shardsync> 3)
set_tests_properties(faults.server_restart PROPERTIES TIMEOUT 180)
