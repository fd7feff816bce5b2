#!/usr/bin/env bash
# Interop, client side: `shardsync sync` mirrors a tree whose documents the reference
# implementation (resync 2.x, `resync-build`) wrote, served statically by
# `python3 -m http.server`: a baseline from its Resource List, then an incremental sync from
# its Change List (one update, one delete, one create), each ending byte for byte equal,
# and `shardsync audit` agreeing. Usage: resync_client_test.sh SHARDSYNC
# resync and its Python are found as in resync_env.sh; exits 77 (skipped) without them.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=$(realpath "$1")
python=${SHARDSYNC_RESYNC_PYTHON:-/usr/bin/python3}
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
# shellcheck source=resync_env.sh
. "$here/resync_env.sh"

passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }
resync_build() {  # resync-build exits 0 on fatal errors: judge it by its output too
  py "$resync/resync-build" "$@" >"$work/build.log" 2>&1 &&
    ! grep -Eq 'FatalError|Traceback' "$work/build.log" || {
    failed "resync-build $*"
    cat "$work/build.log"
  }
}

root="$work/www"
mkdir -p "$root/data/sub" "$root/docs"
for i in 1 2 3; do head -c $((3000 * i)) /dev/urandom >"$root/data/shard-$i.bin"; done
printf 'alpha\n' >"$root/data/a.txt"
head -c 7000 /dev/urandom >"$root/data/sub/e.bin"
touch -d '2024-05-01 12:00:00 UTC' "$root/data"/*.* "$root/data/sub/e.bin"

python3 -m http.server 0 --bind 127.0.0.1 --directory "$root" >"$work/http.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q "port" "$work/http.log" && break; sleep 0.1; done
port=$(grep -o 'port [0-9]*' "$work/http.log" | head -1 | cut -d' ' -f2)
data_uri="http://127.0.0.1:$port/data/"
docs_uri="http://127.0.0.1:$port/docs/"

resync_build --write-resourcelist --hash md5 --hash sha-256 \
  --capabilitylist-link "${docs_uri}capabilitylist.xml" --paths "$root/data" \
  --outfile "$root/docs/resourcelist.xml" "${data_uri}=$root/data" "${docs_uri}=$root/docs"
resync_build --write-capabilitylist \
  "resourcelist=${docs_uri}resourcelist.xml,changelist=${docs_uri}changelist.xml" \
  --outfile "$root/docs/capabilitylist.xml" "${data_uri}=$root/data" "${docs_uri}=$root/docs"

# The Capability List sits in docs/, the resources in data/: --map puts data/ at DEST's root.
mirror="$work/mirror"
"$bin" sync "${docs_uri}capabilitylist.xml" "$mirror" --map "${data_uri}=" --json \
  >"$work/b.json" 2>"$work/b.err"
rc=$?
[ $rc = 0 ] && pass || failed "baseline from resync's documents exits 0 (rc=$rc): $(cat "$work/b.err")"
[ "$(json_field mode <"$work/b.json" 2>/dev/null)" = baseline ] && pass || failed "first run is a baseline"
diff -r --exclude=.shardsync "$root/data" "$mirror" && pass || failed "baseline: mirror equals the tree"

# The tree changes; resync-build writes a Change List against its Resource List.
printf 'alpha, updated\n' >"$root/data/a.txt"
rm "$root/data/sub/e.bin" && rmdir "$root/data/sub"  # the mirror prunes emptied directories too
printf 'new\n' >"$root/data/new.txt"
resync_build --write-changelist --reference "$root/docs/resourcelist.xml" --hash md5 \
  --hash sha-256 --capabilitylist-link "${docs_uri}capabilitylist.xml" --paths "$root/data" \
  --outfile "$root/docs/changelist.xml" "${data_uri}=$root/data" "${docs_uri}=$root/docs"
"$bin" sync "${docs_uri}capabilitylist.xml" "$mirror" --map "${data_uri}=" --delete --json \
  >"$work/i.json" 2>"$work/i.err"
rc=$?
[ $rc = 0 ] && pass || failed "incremental from resync's Change List exits 0 (rc=$rc): $(cat "$work/i.err")"
[ "$(json_field mode <"$work/i.json" 2>/dev/null)" = incremental ] && pass ||
  failed "second run is incremental: $(cat "$work/i.json")"
[ "$(json_field fetched <"$work/i.json" 2>/dev/null)" = 2 ] && pass ||
  failed "incremental fetched the 2 changed files: $(cat "$work/i.json")"
[ "$(json_field deleted <"$work/i.json" 2>/dev/null)" = 1 ] && pass || failed "incremental applied the delete"
diff -r --exclude=.shardsync "$root/data" "$mirror" && pass || failed "incremental: mirror equals the tree"

# audit against a fresh Resource List of the changed tree
resync_build --write-resourcelist --hash md5 --hash sha-256 \
  --capabilitylist-link "${docs_uri}capabilitylist.xml" --paths "$root/data" \
  --outfile "$root/docs/resourcelist.xml" "${data_uri}=$root/data" "${docs_uri}=$root/docs"
"$bin" audit "${docs_uri}capabilitylist.xml" "$mirror" --map "${data_uri}=" -q >"$work/audit.out" 2>&1 &&
  pass || failed "audit: in sync: $(cat "$work/audit.out")"

echo "resync_client_test: $passes passed, $failures failed"
[ "$failures" = 0 ]
