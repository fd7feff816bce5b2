#!/usr/bin/env bash
# The server killed and restarted under a running mirror (RELIABILITY.md F2): `shardsync
# serve` gets SIGKILL at random points while `shardsync sync` downloads from it and comes back
# on the same port after 0-1 s. The sync must finish (its retries, or one rerun: its retry
# budget, about 1.75 s, is shorter than a restart with its first scan, so a file may fail with
# exit 3), the mirror must equal the source with no file under a final name the source never
# had, and bytes kept before the kills must be resumed (Range + If-Range), not fetched again.
#
# Usage: server_restart.sh SHARDSYNC [KILLS [SEED]]   (CI: 3 kills; run-long: more)
set -uo pipefail
bin=$(realpath "$1")
kills=${2:-3}
seed=${3:-$$}
here=$(dirname "$(realpath "$0")")
check=("python3" "$here/mirror_check.py")
work=$(mktemp -d "${FAULTS_WORK_DIR:-/tmp}/server_restart.XXXXXX")
server_pid=
sync_pid=
cleanup() {
  [ -n "$sync_pid" ] && kill -9 "$sync_pid" 2>/dev/null && wait "$sync_pid" 2>/dev/null
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "${FAULTS_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
RANDOM=$seed
echo "server_restart: $kills kills, seed $seed (rerun: $0 $1 $kills $seed)"
failures=0
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }

src="$work/src"
mkdir -p "$src/small"
head -c 200000000 /dev/urandom >"$src/big.bin"
for i in $(seq 1 20); do head -c $((100000 + i)) /dev/urandom >"$src/small/f$i.bin"; done
"${check[@]}" record "$src" "$work/history.json"

listen=127.0.0.1:0
start_server() {
  rm -f "$work/port"
  "$bin" serve --collection "ckpt=$src" --listen "$listen" --port-file "$work/port" \
    --state-dir "$work/state" >>"$work/server.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
  [ -s "$work/port" ] || { echo "FAIL: the server did not come back"; tail -3 "$work/server.log"; exit 1; }
  listen=127.0.0.1:$(cat "$work/port")  # the same port after each restart
}
start_server
base="http://$listen"
for _ in $(seq 1 300); do
  "${check[@]}" listed "$base/ckpt/.resourcesync/resourcelist.xml" "$src" >/dev/null 2>&1 && break
  sleep 0.1
done

dest="$work/mirror"
# One transfer at a time and a large file, so the kills land mid-transfer.
("$bin" sync "$base/" "$dest" --collection ckpt --parallel 1 --json >"$work/sync.json" \
  2>"$work/sync.err") &
sync_pid=$!
killed=0
for _ in $(seq 1 "$kills"); do
  sleep "0.$((RANDOM % 6 + 2))"
  kill -0 "$sync_pid" 2>/dev/null || break
  kill -9 "$server_pid"
  wait "$server_pid" 2>/dev/null
  killed=$((killed + 1))
  sleep "0.$((RANDOM % 10))"
  start_server
done
wait "$sync_pid"
rc=$?
sync_pid=
"${check[@]}" check "$dest" "$work/history.json" >"$work/bad" 2>/dev/null ||
  failed "files under a final name the source never had: $(head -3 "$work/bad")"
if [ $rc != 0 ]; then  # the retries ran out during a restart: one rerun must finish
  echo "note: the sync under kills exited $rc ($(tail -1 "$work/sync.err")); rerunning"
  "$bin" sync "$base/" "$dest" --collection ckpt --json >"$work/rerun.json" 2>"$work/rerun.err" ||
    failed "the rerun after the restarts failed: $(tail -2 "$work/rerun.err")"
fi
"${check[@]}" equal "$dest" "$src" >"$work/diff" || failed "the mirror differs: $(head -3 "$work/diff")"
[ -z "$(find "$dest" -name '.shardsync-part-*')" ] || failed "partial files left"
[ -s "$work/rerun.json" ] || echo '{"bytes_fetched": 0, "bytes_resumed": 0}' >"$work/rerun.json"
fetched=$(python3 -c 'import json,sys; print(sum(json.load(open(f))["bytes_fetched"] for f in sys.argv[1:]))' \
  "$work"/sync.json "$work"/rerun.json 2>/dev/null || echo 0)
resumed=$(python3 -c 'import json,sys; print(sum(json.load(open(f))["bytes_resumed"] for f in sys.argv[1:]))' \
  "$work"/sync.json "$work"/rerun.json 2>/dev/null || echo 0)
total=$(du -sb "$src" | cut -f1)
# Resumed in the run (Range after a retry) or by the rerun (bytes_resumed): either way the
# bytes fetched stay within 5 % of the source's size.
[ "$fetched" -le $((total + total / 20)) ] || failed "fetched $fetched bytes for $total: kept bytes fetched again"
echo "server_restart: $killed server SIGKILLs under a running sync of $((total / 1000000)) MB:" \
  "sync exit $rc, $fetched bytes fetched in all for $total (the rerun reused $resumed kept bytes)," \
  "$(grep -c 'resuming at [1-9]' "$work/sync.err") in-run resumes, $failures failures"
[ $failures = 0 ]
