#!/usr/bin/env bash
# `shardsync serve --notify` + `shardsync sync --follow` end to end: files written, changed and
# deleted on the source reach the mirror within a deadline (polled, never a fixed sleep as the
# pass condition); the follower survives a server restart; SIGTERM ends it with exit 0.
# Prints the measured close -> arrival latency. Usage: follow_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
py=/usr/bin/python3
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "${KEEP_WORK:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
same_tree() { diff -r --exclude='.shardsync*' "$1" "$2"; }
# converges DEADLINE_S: the mirror equals the source within the deadline.
converges() {
  local deadline=$((SECONDS + $1))
  while [ $SECONDS -lt $deadline ]; do
    same_tree "$data" "$mirror" >/dev/null 2>&1 && return 0
    sleep 0.05
  done
  return 1
}

data="$work/ckpt"
mirror="$work/mirror"
mkdir -p "$data/step-1"
head -c 300000 /dev/urandom >"$data/step-1/model.bin"
echo '{"layers": 2}' >"$data/step-1/config.json"
touch -d '10 seconds ago' "$data"/step-1/*

start_server() {  # start_server LISTEN
  rm -f "$work/port"
  "$bin" serve --collection "ckpt=$data" --listen "$1" --port-file "$work/port" \
    --state-dir "$work/state" --notify >>"$work/server.log" 2>&1 &
  server=$!
  pids+=($server)
  for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
  [ -s "$work/port" ]
}
start_server 127.0.0.1:0 || { echo "FAIL: the server did not start"; cat "$work/server.log"; exit 1; }
port=$(cat "$work/port")
base="http://127.0.0.1:$port"

curl -s "$base/ckpt/capabilitylist.xml" | grep -q 'capability="changelist-notification"' && pass ||
  failed "the Capability List advertises the changelist-notification channel"

"$bin" sync "$base/ckpt/capabilitylist.xml" "$mirror" --delete --follow --poll-interval 0.5 \
  --json >"$work/follow.out" 2>"$work/follow.err" &
follower=$!
pids+=($follower)
converges 20 && pass || failed "the first sync mirrors the source"
for _ in $(seq 1 100); do grep -q "following " "$work/follow.err" && break; sleep 0.05; done
grep -q "following $base/ckpt/.resourcesync/changelist-notification" "$work/follow.err" && pass ||
  failed "the follower opened the event stream ($(tail -3 "$work/follow.err"))"

# Close -> arrival latency of small files: written and closed on the source, then the mirror
# is polled every millisecond until the file is there with its bytes.
latency=$("$py" - "$data" "$mirror" <<'EOF'
import os, sys, time
data, mirror = sys.argv[1], sys.argv[2]
samples = []
for i in range(8):
    name = f"step-2/shard-{i}.bin"
    body = os.urandom(4096)
    os.makedirs(os.path.join(data, "step-2"), exist_ok=True)
    with open(os.path.join(data, name), "wb") as f:
        f.write(body)
    start = time.monotonic()  # the close just happened
    target = os.path.join(mirror, name)
    while time.monotonic() - start < 10:
        try:
            with open(target, "rb") as f:
                if f.read() == body:
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    else:
        print("timeout")
        sys.exit(0)
    samples.append((time.monotonic() - start) * 1000)
    time.sleep(0.3)  # one change at a time: each sample is one notification round trip
samples.sort()
print(f"min {samples[0]:.0f} ms, median {samples[len(samples) // 2]:.0f} ms, "
      f"max {samples[-1]:.0f} ms over {len(samples)} files")
EOF
)
echo "close -> arrival latency (4 KiB files, loopback): $latency"
[ "$latency" != timeout ] && pass || failed "new files reach the mirror within 10 s"

"$bin" sitemap check "$base/ckpt/capabilitylist.xml" >/dev/null 2>&1 && pass ||
  failed "sitemap check accepts the Capability List with its notification channels"
# A reader back with Last-Event-ID gets what it missed; the payload is a valid document.
curl -sN -m 1 -H 'Accept: text/event-stream' -H 'Last-Event-ID: 1' \
  "$base/ckpt/.resourcesync/changelist-notification" >"$work/replay.txt"
"$py" - "$work/replay.txt" "$work/payload.xml" <<'EOF'
import sys
event = open(sys.argv[1]).read().split("\n\n")[0]
open(sys.argv[2], "w").write("\n".join(l[6:] for l in event.split("\n") if l.startswith("data: ")))
EOF
grep -q 'capability="changelist-notification"' "$work/payload.xml" &&
  "$bin" sitemap check "$work/payload.xml" >/dev/null 2>&1 && pass ||
  failed "Last-Event-ID replays a valid changelist-notification ($(head -c 300 "$work/replay.txt"))"

echo "changed" >"$data/step-1/config.json"
converges 10 && pass || failed "a modified file reaches the mirror"
rm "$data/step-1/model.bin"
converges 10 && pass || failed "a deleted file leaves the mirror"
grep -q '"trigger":"event"' "$work/follow.out" && pass ||
  failed "rounds were triggered by events ($(tail -2 "$work/follow.out"))"

# The server goes away; a file changes meanwhile; the server comes back on the same port.
kill -9 "$server"
wait "$server" 2>/dev/null
echo "written while the server was down" >"$data/step-1/late.txt"
start_server "127.0.0.1:$port" || failed "the server restarts on port $port"
converges 30 && pass || failed "the follower recovers after a server restart"
echo "after the restart" >"$data/step-1/later.txt"
converges 30 && pass || failed "the follower keeps following after a restart"

kill -TERM "$follower"
for _ in $(seq 1 100); do kill -0 "$follower" 2>/dev/null || break; sleep 0.05; done
wait "$follower"
rc=$?
[ $rc = 0 ] && pass || failed "SIGTERM ends the follower with exit 0 (rc=$rc: $(tail -3 "$work/follow.err"))"
# The server ends its event streams and stops on SIGTERM too.
kill -TERM "$server"
wait "$server"
rc=$?
[ $rc = 0 ] && pass || failed "SIGTERM stops the server with exit 0 (rc=$rc)"
"$py" -c '
import json, sys
rounds = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
assert rounds[0]["trigger"] == "initial", rounds[0]
assert all("trigger" in r for r in rounds)
' "$work/follow.out" && pass || failed "--json prints one object per round ($(head -2 "$work/follow.out"))"

if [ $failures -gt 0 ]; then
  echo "--- server log"; tail -20 "$work/server.log"
  echo "--- follower log"; tail -20 "$work/follow.err"
fi
echo "follow_test: $passes passed, $failures failed"
[ $failures = 0 ]
