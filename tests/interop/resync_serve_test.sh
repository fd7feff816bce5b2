#!/usr/bin/env bash
# The reference client, resync 2.x, mirrors from `shardsync serve`: a baseline from the
# Resource List, then an incremental sync from the Change List (changelist.xml is the list
# itself while the history fits one list; resync cannot read a Change List Index) after files
# are created, updated and deleted; the mirror must end equal to the source, and resync's audit in sync.
# Usage: resync_serve_test.sh [SHARDSYNC]. Exits 77 (skipped) without resync (see
# resync_env.sh for where it is looked for).
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$repo/build/bin/shardsync}
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
python=${SHARDSYNC_RESYNC_PYTHON:-/usr/bin/python3}
[ -x "$python" ] || { echo "skipped: no Python at $python"; exit 77; }

work=$(mktemp -d "${TMPDIR:-/tmp}/resync-serve.XXXXXX") || exit 1
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
. "$here/resync_env.sh"

passes=0
failures=0
pass() { echo "PASS: $1"; passes=$((passes + 1)); }
fail() { echo "FAIL: $1"; failures=$((failures + 1)); }

data=$work/source
dest=$work/mirror
mkdir -p "$data/step-1" "$dest"
for i in 1 2 3; do head -c $((20000 + i)) /dev/urandom >"$data/step-1/shard-$i.bin"; done
echo '{"lr": 0.1}' >"$data/step-1/config.json"
touch -d '10 seconds ago' "$data"/step-1/*

"$bin" serve --collection "ckpt=$data" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { cat "$work/server.log"; echo "resync serve interop: the server did not start"; exit 1; }
base="http://127.0.0.1:$(cat "$work/port")/ckpt/"
docs="${base}.resourcesync/"

resync_sync() {  # runs resync-sync in $work/client (it keeps its state in the CWD)
  mkdir -p "$work/client"
  (cd "$work/client" && py "$resync/resync-sync" "$@" "$base" "$dest") >"$work/resync.log" 2>&1
}
same_tree() { diff -r --exclude='.resync*' "$data" "$dest" >/dev/null 2>&1; }

# resync's default starting point for --incremental is the newest <lastmod> it saw in the
# baseline, a ResourceSync 1.0 habit: in 1.1 a change's datetime is not the file's lastmod,
# and resync would then drop a create+delete pair of a file it already has. A destination
# should resume from the Resource List's `at`, so pass that with --from, as a user would.
at=$(curl -s "${docs}resourcelist.xml" | grep -o 'capability="resourcelist" at="[^"]*"' | sed 's/.*at="\([^"]*\)"/\1/')
resync_sync --baseline --sitemap "${docs}resourcelist.xml"
if same_tree; then pass "resync-sync --baseline mirrors the collection"; else
  fail "baseline mirror differs"; tail -20 "$work/resync.log"
fi
resync_sync --audit --sitemap "${docs}resourcelist.xml"
if grep -Eq "Status: +IN SYNC" "$work/resync.log"; then pass "resync audit after the baseline: IN SYNC"; else
  fail "audit after baseline"; tail -5 "$work/resync.log"
fi

# Changes: one updated, one created, one deleted; wait until the server lists them.
sleep 1.1  # resync's incremental compares whole-second timestamps with its stored state
head -c 30000 /dev/urandom >"$data/step-1/shard-2.bin"
head -c 1000 /dev/urandom >"$data/step-1/shard-4.bin"
rm "$data/step-1/config.json"
for _ in $(seq 1 50); do
  curl -s "${docs}changelist-00001.xml" | grep -q 'config.json</loc><rs:md change="deleted"' && break
  sleep 0.1
done
resync_sync --incremental --delete --from "$at" --changelist-uri "${docs}changelist.xml" \
  --sitemap "${docs}resourcelist.xml"
if same_tree; then pass "resync-sync --incremental --delete applies the changes"; else
  fail "incremental mirror differs"; diff -r --exclude='.resync*' "$data" "$dest" | head; tail -20 "$work/resync.log"
fi
resync_sync --audit --sitemap "${docs}resourcelist.xml"
if grep -Eq "Status: +IN SYNC" "$work/resync.log"; then pass "resync audit after the incremental sync: IN SYNC"; else
  fail "audit after incremental"; tail -5 "$work/resync.log"
fi

for doc in .well-known/resourcesync ckpt/capabilitylist.xml ckpt/.resourcesync/resourcelist.xml \
           ckpt/.resourcesync/changelist.xml ckpt/.resourcesync/changelist-00001.xml; do
  if "$bin" sitemap check "http://127.0.0.1:$(cat "$work/port")/$doc" >"$work/check.log" 2>&1; then
    pass "sitemap check $doc"
  else
    fail "sitemap check $doc"; cat "$work/check.log"
  fi
done

echo "resync serve interop: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
