#!/usr/bin/env bash
# Slow HTTP attacks on `shardsync serve` with Debian's slowhttptest (RELIABILITY.md S10, R3,
# F14, F15) while a legitimate client (latency_probe.py) measures the latency of its requests.
# Modes: slowloris (-H), slow body (-B), slow read (-X), range attack (-R). Passes when the
# legitimate client saw no failed request in any mode, its p99 stayed under P99_LIMIT_MS, and
# the slow connections were closed by the server's deadlines (slowloris: by the header
# timeout, 10 s, + 2 s after the last one opened).
#
# Usage: slow_attacks.sh SHARDSYNC [CONNECTIONS [SECONDS]]
#   CI (faults.slow_attacks): 100 connections, 14 s per mode. Offline (run-long): 300, 30 s.
set -uo pipefail
bin=$(realpath "$1")
conns=${2:-100}
secs=${3:-14}
p99_limit=${P99_LIMIT_MS:-1000}
here=$(dirname "$(realpath "$0")")
command -v slowhttptest >/dev/null || { echo "SKIP: slowhttptest is not installed"; exit 77; }
work=$(mktemp -d "${FAULTS_WORK_DIR:-/tmp}/slow_attacks.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }

mkdir -p "$work/coll"
head -c 10000 /dev/urandom >"$work/coll/small.bin"
head -c 16000000 /dev/urandom >"$work/coll/big.bin"
"$bin" serve --collection "ckpt=$work/coll" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
for _ in $(seq 1 100); do curl -sf -o /dev/null "$base/ckpt/big.bin" && break; sleep 0.1; done

# attack NAME SLOWHTTPTEST_ARGS...: the attack and the probe side by side
attack() {
  local name=$1
  shift
  slowhttptest -c "$conns" -r 100 -l "$secs" -p 3 -g -o "$work/$name" "$@" >"$work/$name.out" 2>&1 &
  local attacker=$!
  sleep 2  # let the slow connections pile up first
  python3 "$here/latency_probe.py" "$base/ckpt/small.bin" $((secs - 3)) 20 10000 >"$work/$name.probe"
  wait "$attacker"
  local line p99 fail most last
  line=$(cat "$work/$name.probe")
  p99=$(sed 's/.*p99_ms=\([0-9.]*\).*/\1/' <<<"$line" | cut -d. -f1)
  fail=$(sed 's/.*failed=\([0-9]*\).*/\1/' <<<"$line")
  # slowhttptest's CSV: seconds,closed,pending,connected,service available
  most=$(awk -F, 'NR > 1 && $4 > m { m = $4 } END { print m + 0 }' "$work/$name.csv")
  last=$(awk -F, 'NR > 1 { c = $4 } END { print c + 0 }' "$work/$name.csv")
  echo "slow_attacks $name ($conns connections, $secs s): $line; slow connections open: at most $most, at the end $last"
  [ "$fail" = 0 ] || failed "$name: $fail legitimate requests failed"
  [ "${p99:-99999}" -lt "$p99_limit" ] || failed "$name: p99 ${p99} ms over ${p99_limit} ms"
  grep -q "NO" <(awk -F, 'NR > 1 { print $5 }' "$work/$name.csv") &&
    failed "$name: slowhttptest's own probe found the service unavailable"
  kill -0 "$server_pid" 2>/dev/null || failed "$name: the server died"
  [ "$most" -gt 0 ] || failed "$name: slowhttptest made no connections ($(tail -3 "$work/$name.out"))"
  eval "${name}_last=$last ${name}_most=$most"
}

attack slowloris -H -i 5 -x 24 -u "$base/ckpt/small.bin"
# The header deadline (10 s) closes slowloris connections: all opened in the first ~1-3 s, so
# by the end of a run of 14 s or more, at most the few the attacker reopened are left.
[ "$secs" -lt 14 ] || [ "$slowloris_last" -le $((conns / 2)) ] ||
  failed "slowloris: $slowloris_last of $slowloris_most slow connections still open at the end"
attack slowbody -B -i 2 -s 100000 -x 10 -u "$base/ckpt/small.bin"
attack slowread -X -k 4 -n 1 -w 512 -y 1024 -z 32 -u "$base/ckpt/big.bin"
attack range -R -a 10 -b 3000 -u "$base/ckpt/big.bin"

echo "slow_attacks: $failures failed"
[ "$failures" = 0 ]
