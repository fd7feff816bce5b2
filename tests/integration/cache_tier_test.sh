#!/usr/bin/env bash
# The HTTP cache tier (scripts/cache-tier: Debian's nginx with examples/nginx-cache) in front
# of `shardsync serve`: 16 destinations mirror one collection through it at once; the origin
# must send about one copy (its own byte counter, /metrics), every mirror must verify, and a
# change at the origin must reach a mirror through the cache. Usage: cache_tier_test.sh SHARDSYNC
# (KEEP=1 keeps the work directory).
set -uo pipefail
bin=$(realpath "$1")
here=$(cd "$(dirname "$0")/../.." && pwd)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { echo "SKIP: no nginx"; exit 77; }
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
same_tree() { diff -r --exclude='.shardsync*' "$1" "$2"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sent_bytes() { curl -s "$origin/metrics" | awk '$1 == "shardsync_http_sent_bytes_total" {print $2}'; }

data="$work/data"
mkdir -p "$data/shards"
for i in $(seq -w 1 24); do head -c 524288 /dev/urandom >"$data/shards/part-$i.bin"; done
head -c 4194304 /dev/urandom >"$data/model.bin"
head -c 4194304 /dev/urandom >"$data/optimizer.bin"
touch -d '10 seconds ago' "$data"/shards/* "$data"/*.bin
copy_bytes=$(find "$data" -type f -printf '%s\n' | awk '{s += $1} END {print s}')

cache_port=$(free_port)
cache="http://127.0.0.1:$cache_port"
"$bin" serve --collection "data=$data" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" --rescan-interval 1 --base-url "$cache/" >>"$work/origin.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
origin="http://127.0.0.1:$(cat "$work/port")"
"$here/scripts/cache-tier" --origin "127.0.0.1:$(cat "$work/port")" --listen "127.0.0.1:$cache_port" \
  --dir "$work/nginx" >>"$work/nginx.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -s -o /dev/null "$cache/.well-known/resourcesync" && break; sleep 0.1; done
curl -s -o /dev/null "$cache/.well-known/resourcesync" && pass ||
  failed "the cache tier answers ($(cat "$work/nginx.out"))"

# --- 16 destinations at once, through the cache
before=$(sent_bytes)
mirrors=()
for m in $(seq 1 16); do
  "$bin" sync "$cache/" "$work/m$m" -q >"$work/m$m.out" 2>&1 &
  mirrors+=($!)
done
bad=0
for m in $(seq 1 16); do
  wait "${mirrors[$((m - 1))]}" || { bad=$((bad + 1)); echo "mirror $m: $(cat "$work/m$m.out")"; }
done
[ $bad = 0 ] && pass || failed "$bad of 16 mirrors did not exit 0"
after=$(sent_bytes)
origin_bytes=$((after - before))
ratio=$(python3 -c "print(f'{$origin_bytes / $copy_bytes:.3f}')")
echo "origin sent $origin_bytes bytes for 16 mirrors; one copy of the files is $copy_bytes ($ratio x)"
python3 -c "import sys; sys.exit(0 if $origin_bytes <= 1.1 * $copy_bytes else 1)" && pass ||
  failed "origin bytes $origin_bytes > 1.1 x one copy ($copy_bytes)"
same=0
for m in $(seq 1 16); do same_tree "$data" "$work/m$m" >/dev/null && same=$((same + 1)); done
[ $same = 16 ] && pass || failed "only $same of 16 mirrors equal the source"
audited=0
for m in 1 8 16; do "$bin" audit "$cache/" "$work/m$m" -q >/dev/null 2>&1 && audited=$((audited + 1)); done
[ $audited = 3 ] && pass || failed "audit through the cache: $audited of 3 in sync"

# --- a change at the origin reaches a mirror through the cache (documents revalidated,
# resources by ETag): no stale list, no stale bytes
head -c 524288 /dev/urandom >"$data/shards/part-03.bin.new"
mv "$data/shards/part-03.bin.new" "$data/shards/part-03.bin"
for _ in $(seq 1 80); do
  curl -s "$origin/data/.resourcesync/changelist.xml" | grep -q "part-03" && break
  sleep 0.1
done
converged=0
for _ in $(seq 1 30); do  # the cache may answer from a copy up to 1 s old, then revalidates
  "$bin" sync "$cache/" "$work/m1" -q >/dev/null 2>&1 && same_tree "$data" "$work/m1" >/dev/null &&
    { converged=1; break; }
  sleep 0.2
done
[ $converged = 1 ] && pass || failed "an update at the origin did not reach the mirror via the cache"
cmp -s "$data/shards/part-03.bin" "$work/m1/shards/part-03.bin" && pass ||
  failed "the mirror holds the new bytes of part-03.bin"
# The cache itself: a cached file is served without the origin (HIT), with the origin's ETag.
curl -s -o /dev/null "$cache/data/model.bin"
hdrs=$(curl -s -D - -o /dev/null "$cache/data/model.bin")
grep -qi '^X-Cache-Status: HIT' <<<"$hdrs" && pass || failed "a repeated GET is a cache HIT: $hdrs"
etag_cache=$(grep -i '^ETag:' <<<"$hdrs" | tr -d '\r')
etag_origin=$(curl -s -D - -o /dev/null "$origin/data/model.bin" | grep -i '^ETag:' | tr -d '\r')
[ -n "$etag_cache" ] && [ "$etag_cache" = "$etag_origin" ] && pass ||
  failed "the cache keeps the origin's ETag ($etag_cache vs $etag_origin)"
# Credentials are never answered from, or stored in, the shared cache.
hdrs=$(curl -s -D - -o /dev/null -H 'Authorization: Bearer x' "$cache/data/model.bin")
grep -qi '^X-Cache-Status: BYPASS' <<<"$hdrs" && pass || failed "an authorised GET bypasses the cache: $hdrs"

echo "cache_tier_test: $passes passed, $failures failed"
[ $failures = 0 ]
