#!/usr/bin/env bash
# `shardsync serve` end to end, as a user runs it: a real process on 127.0.0.1 (port 0),
# real files, curl (libcurl) as the client. Usage: serve_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass; else failed "$what"; fi
}

data="$work/ckpt"
state="$work/state"
mkdir -p "$data/step-100"
for i in 1 2 3; do head -c $((100000 + i)) /dev/urandom >"$data/step-100/model-0000$i.safetensors"; done
echo '{"layers": 2}' >"$data/step-100/config.json"
touch -d '10 seconds ago' "$data"/step-100/*   # settled: a scan publishes them

start_server() {  # start_server [PREFIX COMMAND...]
  rm -f "$work/port"
  "$@" "$bin" serve --collection "ckpt=$data" --listen 127.0.0.1:0 --port-file "$work/port" \
    --state-dir "$state" --rescan-interval 1 >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    [ -s "$work/port" ] && break
    sleep 0.1
  done
  port=$(cat "$work/port" 2>/dev/null)
  base="http://127.0.0.1:$port"
  [ -n "$port" ]
}
stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid"
  local rc=$?
  server_pid=
  return $rc
}
get() { curl -sS --max-time 10 "$@"; }
# Waits until the change list mentions PATTERN (the watcher and rebuild are asynchronous).
wait_for_change() {
  for _ in $(seq 1 60); do
    get "$base/ckpt/.resourcesync/changelist-00001.xml" | grep -q -- "$1" && return 0
    sleep 0.1
  done
  return 1
}

check "the server starts and writes its port file" start_server
check "Source Description" get -f "$base/.well-known/resourcesync" -o "$work/sd.xml"
check "Capability List" get -f "$base/ckpt/capabilitylist.xml" -o "$work/cl.xml"
check "Resource List" get -f "$base/ckpt/.resourcesync/resourcelist.xml" -o "$work/rl.xml"
check "Change List Index" get -f "$base/ckpt/.resourcesync/changelist.xml" -o "$work/cli.xml"
check "Change List" get -f "$base/ckpt/.resourcesync/changelist-00001.xml" -o "$work/cl1.xml"
for doc in sd cl rl cli cl1; do
  check "sitemap check passes $doc.xml" "$bin" sitemap check "$work/$doc.xml"
done
[ "$(grep -c '<url>' "$work/rl.xml")" -eq 4 ] && pass || failed "the Resource List lists 4 files"

# A resource: bytes, strong ETag from the sha-256, 304, Range.
sha=$(sha256sum "$data/step-100/model-00001.safetensors" | cut -d' ' -f1)
get -f -D "$work/h1" "$base/ckpt/step-100/model-00001.safetensors" -o "$work/m1"
cmp -s "$work/m1" "$data/step-100/model-00001.safetensors" && pass || failed "resource bytes"
grep -qi "^etag: \"$sha\"" "$work/h1" && pass || failed "ETag is the sha-256"
grep -qi '^link: <.*ckpt/capabilitylist.xml>; rel="resourcesync"' "$work/h1" && pass ||
  failed "Link rel=resourcesync on resources"
code=$(get -o /dev/null -w '%{http_code}' -H "If-None-Match: \"$sha\"" "$base/ckpt/step-100/model-00001.safetensors")
[ "$code" = 304 ] && pass || failed "If-None-Match gives 304 (got $code)"
get -f -r 10-19 "$base/ckpt/step-100/model-00001.safetensors" -o "$work/range"
cmp -s "$work/range" <(tail -c +11 "$data/step-100/model-00001.safetensors" | head -c 10) && pass ||
  failed "Range 10-19"
code=$(get -o /dev/null -w '%{http_code}' "$base/ckpt/..%2f..%2fetc/passwd")
[ "$code" = 400 ] || [ "$code" = 404 ] && pass || failed "encoded traversal refused (got $code)"
get -f -H 'Accept-Encoding: gzip' -D "$work/h2" "$base/ckpt/.resourcesync/resourcelist.xml" -o "$work/rl.gz"
grep -qi '^content-encoding: gzip' "$work/h2" && gzip -t "$work/rl.gz" 2>/dev/null && pass ||
  failed "documents are served gzip-compressed on request"

# A new file appears in the change list once written and closed.
head -c 5000 /dev/urandom >"$data/step-100/optimizer.pt"
check "a created file is published" wait_for_change "step-100/optimizer.pt"

# A file written slowly is not published until it is closed.
exec 7>"$data/step-100/slow.bin"
head -c 1000 /dev/urandom >&7
sleep 2.5   # past the settle time and a rescan: still open, still recent writes
head -c 1000 /dev/urandom >&7
sleep 1.5
if get "$base/ckpt/.resourcesync/changelist-00001.xml" | grep -q "slow.bin"; then
  failed "a file still being written was published"
else
  pass
fi
head -c 1000 /dev/urandom >&7
exec 7>&-
check "the slow file is published once closed" wait_for_change "slow.bin"
get "$base/ckpt/.resourcesync/resourcelist.xml" >"$work/rl2.xml"
slow_len=$(grep -o 'slow.bin</loc><lastmod>[^<]*</lastmod><rs:md [^>]*length="[0-9]*"' "$work/rl2.xml" |
           sed 's/.*length="\([0-9]*\)"/\1/')
[ "$slow_len" = 3000 ] && pass || failed "the slow file is published whole (length $slow_len)"

rm "$data/step-100/config.json"
check "a deleted file is published as deleted" wait_for_change 'config.json</loc><rs:md change="deleted"'
mv "$data/step-100/optimizer.pt" "$data/step-100/optimizer-final.pt"
check "a renamed file appears under its new name" wait_for_change "optimizer-final.pt"

# Graceful stop, then a restart reads the hash cache instead of hashing again. Files hashed
# right after they were written are cached by the next rescan (a same-second rewrite could
# otherwise keep a cached key), so give that rescan time to run first.
sleep 2.5
check "SIGTERM stops the server cleanly" stop_server
get "$base/" >/dev/null 2>&1 && failed "the server still answers after SIGTERM" || pass
: >"$work/server.log"
check "the server restarts" start_server
grep -q ' 0 hashed, 5 from the hash cache' "$work/server.log" && pass ||
  { failed "restart does not re-hash"; grep scan "$work/server.log"; }

# Change datetimes keep increasing even when the clock steps back a day.
last_before=$(get "$base/ckpt/.resourcesync/changelist-00001.xml" | grep -o 'datetime="[^"]*"' | tail -1)
check "SIGTERM again" stop_server
# libfaketime preloaded directly (the faketime wrapper forks, so signals would miss the
# server); NO_FAKE_STAT keeps the file times stat() returns real.
libfaketime=$(ls /usr/lib/*/faketime/libfaketime.so.1 2>/dev/null | head -1)
newer() {  # newer A B: W3C datetime A is later than B (same day format, any fraction digits)
  local a=${1%Z} b=${2%Z} fa fb
  fa=${a#*.}; [ "$fa" = "$a" ] && fa=0
  fb=${b#*.}; [ "$fb" = "$b" ] && fb=0
  a=${a%%.*}; b=${b%%.*}
  fa=$(printf '%-9s' "$fa" | tr ' ' 0); fb=$(printf '%-9s' "$fb" | tr ' ' 0)
  [[ "$a.$fa" > "$b.$fb" ]]
}
if [ -n "$libfaketime" ]; then
  check "the server restarts a day in the past" \
    start_server env LD_PRELOAD="$libfaketime" FAKETIME=-1d NO_FAKE_STAT=1 \
    ASAN_OPTIONS="verify_asan_link_order=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
  echo late >"$data/step-100/late.txt"
  check "a change under the stepped-back clock is published" wait_for_change "late.txt"
  last_after=$(get "$base/ckpt/.resourcesync/changelist-00001.xml" | grep -o 'datetime="[^"]*"' | tail -1)
  last_before=${last_before#datetime=}; last_after=${last_after#datetime=}
  if newer "${last_after//\"/}" "${last_before//\"/}"; then pass; else
    failed "datetime went back: $last_before then $last_after"
  fi
  get "$base/ckpt/.resourcesync/changelist-00001.xml" >"$work/cl-late.xml"
  check "the change list is still in forward chronological order" "$bin" sitemap check "$work/cl-late.xml"
  check "SIGTERM once more" stop_server
else
  echo "skipped: libfaketime is not installed"
fi

# The same settings from a JSON config file, with a read token on the collection.
echo "a-read-token-of-some-length" >"$work/read-token"
cat >"$work/config.json" <<JSON
{"collections": {"ckpt": "$data"}, "listen": "127.0.0.1:0", "port_file": "$work/port",
 "state_dir": "$state", "read_token_files": {"ckpt": "$work/read-token"}}
JSON
rm -f "$work/port"
"$bin" serve --config "$work/config.json" >>"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port" 2>/dev/null)"
code=$(get -o /dev/null -w '%{http_code}' "$base/ckpt/.resourcesync/resourcelist.xml")
[ "$code" = 401 ] && pass || failed "--config: a read token is required (got $code)"
code=$(get -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $(cat "$work/read-token")" \
  "$base/ckpt/.resourcesync/resourcelist.xml")
[ "$code" = 200 ] && pass || failed "--config: the read token is accepted (got $code)"
code=$(get -o /dev/null -w '%{http_code}' "$base/metrics")
[ "$code" = 200 ] && pass || failed "/metrics answers (got $code)"
get "$base/metrics" | grep -q '^shardsync_' && pass || failed "/metrics is Prometheus text"
check "SIGTERM stops the configured server" stop_server
code=$("$bin" serve --collection "bad name=$data" >/dev/null 2>&1; echo $?)
[ "$code" = 2 ] && pass || failed "a bad collection name is a usage error (exit $code)"

# Retention: with --retention 1 and lists of 2 changes, closed lists older than a second
# are dropped whole, and the index's `from` moves forward (a destination that fell behind
# sees where history now starts and re-baselines).
mkdir -p "$work/short"
rm -f "$work/port"
"$bin" serve --collection "short=$work/short" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state-short" --retention 1 --list-entries 2 --rescan-interval 1 \
  >>"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port" 2>/dev/null)"
for i in 1 2 3 4 5; do echo "$i" >"$work/short/f$i.txt"; done
for _ in $(seq 1 50); do
  get "$base/short/.resourcesync/changelist.xml" | grep -q changelist-00003.xml && break
  sleep 0.1
done
get "$base/short/.resourcesync/changelist.xml" >"$work/index-before.xml"
grep -q 'changelist-00001.xml' "$work/index-before.xml" && pass ||
  failed "retention: the first list is there before it expires"
sleep 3  # past the retention and a rescan
get "$base/short/.resourcesync/changelist.xml" >"$work/index-after.xml"
if grep -q 'changelist-00001.xml' "$work/index-after.xml"; then
  failed "retention: the expired list is still in the index"
else
  pass
fi
code=$(get -o /dev/null -w '%{http_code}' "$base/short/.resourcesync/changelist-00001.xml")
[ "$code" = 404 ] && pass || failed "retention: the expired list is gone (got $code)"
from_before=$(grep -o 'capability="changelist" from="[^"]*"' "$work/index-before.xml")
from_after=$(grep -o 'capability="changelist" from="[^"]*"' "$work/index-after.xml")
[ -n "$from_after" ] && [ "$from_before" != "$from_after" ] && pass ||
  failed "retention: the earliest from moved forward ($from_before, then $from_after)"
check "retention: the index is still valid" "$bin" sitemap check "$work/index-after.xml"
check "SIGTERM stops the retention server" stop_server

echo "serve: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
