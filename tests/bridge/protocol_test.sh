#!/usr/bin/env bash
# The trainer bridge over loopback: M=3 `shardsync bridge worker` processes train through real
# `shardsync serve` instances (one each, then one shared), and every worker must end each sync
# with the same global-fragment sha-256. Fault: SIGKILL one worker mid-run; the others commit
# with K < M and the restarted worker rejoins from the checkpoint + commits.
# Usage: protocol_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; done
  wait 2>/dev/null
  if [ -n "${KEEP:-}" ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
echo "0123456789abcdef-bridge-token" >"$work/token"

# start_server NAME [FLAGS...]: a server with collection "bridge"; sets $url
start_server() {
  local name=$1
  shift
  mkdir -p "$work/$name/data"
  "$bin" serve --collection "bridge=$work/$name/data" --listen 127.0.0.1:0 \
    --port-file "$work/$name/port" --state-dir "$work/$name/state" --rebuild-delay-ms 5 \
    --write-token-file "$work/token" "$@" 2>"$work/$name/server.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/$name/port" ] && break; sleep 0.05; done
  url="http://127.0.0.1:$(cat "$work/$name/port")/bridge"
}

# globals RUN W: "fragment sync sha" of every applied sync worker W reported
globals() {
  grep '^sync ' "$work/$1-$2.out" | grep -v 'global=-' |
    sed -E 's/.*fragment=([0-9]+) sync=([0-9]+) .*global=([0-9a-f]+) .*/\1 \2 \3/' | sort
}
# same_globals RUN FIRST OTHERS...: every sync an other worker landed has FIRST's global
# sha-256 (an other may have missed syncs while it was down), and the final models agree
same_globals() {
  local run=$1 first=$2 w ok=1
  shift 2
  for w in "$@"; do
    [ -n "$(globals "$run" "$w")" ] || ok=0
    [ -z "$(comm -23 <(globals "$run" "$w") <(globals "$run" "$first"))" ] || ok=0
    diff <(grep '^final ' "$work/$run-$w.out") <(grep '^final ' "$work/$run-$first.out") \
      >/dev/null || ok=0
  done
  [ $ok = 1 ]
}

common=(--token-file "$work/token" --workers 3 --min-workers 2)

# --- 1. one server per worker; commits on w0's server --------------------------------------
start_server s0; u0=$url
start_server s1; u1=$url
start_server s2; u2=$url
follow=(--follow "$u0" --follow "$u1" --follow "$u2" --commit-url "$u0")
"$bin" bridge worker --url "$u0" "${follow[@]}" "${common[@]}" --run own --worker w0 \
  --grace-ms 1500 --coordinator --steps 30 --H 10 >"$work/own-w0.out" 2>"$work/own-w0.err" &
p0=$!
"$bin" bridge worker --url "$u1" "${follow[@]}" "${common[@]}" --run own --worker w1 \
  --grace-ms 1500 --check-state --steps 30 --H 10 >"$work/own-w1.out" 2>"$work/own-w1.err" &
p1=$!
"$bin" bridge worker --url "$u2" "${follow[@]}" "${common[@]}" --run own --worker w2 \
  --grace-ms 1500 --steps 30 --H 10 >"$work/own-w2.out" 2>"$work/own-w2.err" &
p2=$!
pids+=($p0 $p1 $p2)
ok=1
for p in $p0 $p1 $p2; do wait $p || ok=0; done
[ $ok = 1 ] && pass || { failed "own servers: a worker failed"; tail -n 5 "$work"/own-*.err; }
for w in w0 w1 w2; do
  [ "$(grep -c '^sync .* skipped=0' "$work/own-$w.out")" = 3 ] && pass ||
    { failed "own servers: $w landed 3 applied syncs"; cat "$work/own-$w.out"; }
done
same_globals own w0 w1 w2 && pass || failed "own servers: global sha-256 differ between workers"
grep -q 'included=w0,w1,w2' "$work/own-w1.out" && pass ||
  failed "own servers: a commit included all three workers"
grep -q '^state_dict bytes=[1-9][0-9]* roundtrip=ok' "$work/own-w1.out" && pass ||
  failed "own servers: state_dict() round-trips through load_state_dict()"
[ -f "$work/s0/data/runs/own/final/model.safetensors" ] && pass ||
  failed "own servers: the final model is published"
[ -f "$work/s0/data/runs/own/ckpt/00000003/outer_state.safetensors" ] && pass ||
  failed "own servers: checkpoint 3 is published"

# --- 2. one shared server, Streaming: P=2, tau=1, fp4-e3m0 + zstd -------------------------
start_server shared; us=$url
for w in w0 w1 w2; do
  extra=()
  [ $w = w0 ] && extra=(--coordinator)
  "$bin" bridge worker --url "$us" "${common[@]}" --run shared --worker $w "${extra[@]}" --grace-ms 1500 \
    --steps 40 --H 10 --P 2 --tau 1 --wire fp4-e3m0 --zstd >"$work/shared-$w.out" \
    2>"$work/shared-$w.err" &
  pids+=($!)
  eval "q_$w=$!"
done
ok=1
for p in $q_w0 $q_w1 $q_w2; do wait $p || ok=0; done
[ $ok = 1 ] && pass || { failed "shared server: a worker failed"; tail -n 5 "$work"/shared-*.err; }
same_globals shared w0 w1 w2 && pass || failed "shared server: global sha-256 differ"
[ "$(grep -c '^sync ' "$work/shared-w2.out")" -ge 8 ] && pass ||
  failed "shared server: 8 syncs of two fragments (+ final syncs)"

# --- 3. SIGKILL one worker mid-run; it restarts from ckpt + commits -----------------------
start_server k0; k0=$url
start_server k1; k1=$url
start_server k2; k2=$url
follow=(--follow "$k0" --follow "$k1" --follow "$k2" --commit-url "$k0")
kill_common=(--run kill --steps 80 --H 10 --step-ms 25 --grace-ms 600)
"$bin" bridge worker --url "$k0" "${follow[@]}" "${common[@]}" "${kill_common[@]}" --worker w0 \
  --coordinator >"$work/kill-w0.out" 2>"$work/kill-w0.err" &
r0=$!
"$bin" bridge worker --url "$k1" "${follow[@]}" "${common[@]}" "${kill_common[@]}" --worker w1 \
  >"$work/kill-w1.out" 2>"$work/kill-w1.err" &
r1=$!
"$bin" bridge worker --url "$k2" "${follow[@]}" "${common[@]}" "${kill_common[@]}" --worker w2 \
  >"$work/kill-w2.out" 2>"$work/kill-w2.err" &
r2=$!
pids+=($r0 $r1 $r2)
for _ in $(seq 1 200); do grep -qs '^sync .*sync=2 ' "$work/kill-w2.out" && break; sleep 0.05; done
kill -9 $r2
wait $r2 2>/dev/null
# Let the others commit at least one sync without it.
for _ in $(seq 1 200); do grep -q 'included=w0,w1 ' "$work/kill-w0.out" && break; sleep 0.05; done
grep -q 'included=w0,w1 ' "$work/kill-w0.out" && pass ||
  failed "kill: the survivors commit with K=2 < M=3"
"$bin" bridge worker --url "$k2" "${follow[@]}" "${common[@]}" "${kill_common[@]}" --worker w2 \
  >"$work/kill-w2b.out" 2>"$work/kill-w2b.err" &
r2b=$!
pids+=($r2b)
ok=1
for p in $r0 $r1 $r2b; do wait $p || ok=0; done
[ $ok = 1 ] && pass || { failed "kill: a worker failed"; tail -n 5 "$work"/kill-*.err; }
start=$(sed -nE 's/^start worker=w2 step=([0-9]+)/\1/p' "$work/kill-w2b.out")
[ "${start:-0}" -gt 0 ] && pass || failed "kill: the restarted worker resumed at step ${start:-0}"
grep -q 'restored checkpoint' "$work/kill-w2b.err" && pass ||
  failed "kill: the restarted worker restored a checkpoint"
same_globals kill w0 w1 w2b && pass || failed "kill: the rejoined worker's global sha-256 differ"

# --- 4. faults on one server: w2's payloads are corrupted in transit (a proxy flips a byte
# of them; the server lists its files under the proxy with --base-url), a forged payload has
# the wrong base, and w3 is delayed by tau+2 steps before sending sync 2.
here=$(dirname "$(realpath "$0")")
mkdir -p "$work/f0"
python3 "$here/corrupt_proxy.py" "$work/f0/port" /worker/w2.safetensors >"$work/proxy.port" &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/proxy.port" ] && break; sleep 0.05; done
start_server f0 --base-url "http://127.0.0.1:$(cat "$work/proxy.port")/"
uf=$url
fault_common=(--run faults --steps 30 --H 10 --tau 1 --step-ms 200)
fault_pids=()
for w in w0 w1 w2 w3; do
  extra=(--grace-ms 250 --workers 4)
  [ $w = w0 ] && extra+=(--coordinator)
  [ $w = w3 ] && extra+=(--stall-step 20 --stall-ms 600)  # (tau + 2) * step-ms
  # w2 holds its own payload intact and would commit it: it never decides first here.
  [ $w = w2 ] && extra=(--grace-ms 5000 --workers 5)
  "$bin" bridge worker --url "$uf" --token-file "$work/token" --min-workers 2 "${fault_common[@]}" --worker $w "${extra[@]}" \
    >"$work/faults-$w.out" 2>"$work/faults-$w.err" &
  pids+=($!)
  fault_pids+=($!)
done
# A payload for sync 3 forged from w0's sync-1 payload, claiming another base.
first="$work/f0/data/runs/faults/frag/0/00000001/worker/w0.safetensors"
for _ in $(seq 1 200); do [ -s "$first" ] && break; sleep 0.05; done
python3 "$here/forge_payload.py" "$first" "$work/forged.safetensors" outer_step=3 worker_id=w9 \
  base_sha256=0000000000000000000000000000000000000000000000000000000000000000
curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary @"$work/forged.safetensors" \
  -H "Authorization: Bearer $(cat "$work/token")" \
  "$uf/runs/faults/frag/0/00000003/worker/w9.safetensors" | grep -q 201 && pass ||
  failed "faults: the forged payload is published"
ok=1
for p in "${fault_pids[@]}"; do wait $p || ok=0; done
[ $ok = 1 ] && pass || { failed "faults: a worker failed"; tail -n 5 "$work"/faults-*.err; }
grep -q 'rejected .*/worker/w2.safetensors: .*sha-256' "$work/faults-w0.err" && pass ||
  failed "faults: w2's corrupted payload is rejected by hash"
# Whichever worker examines the forged payload first rejects it (under load that need not be w1).
cat "$work"/faults-w[013].err | grep -q 'rejected .*/worker/w9.safetensors: wrong base' && pass ||
  failed "faults: the payload with the wrong base is rejected"
grep '^sync ' "$work/faults-w0.out" | grep -qE 'included=[^ ]*(w2|w9)' &&
  failed "faults: a commit included a rejected payload" || pass
grep -qE '^sync fragment=0 sync=2 .* late=1 ' "$work/faults-w3.out" && pass ||
  { failed "faults: w3, delayed by tau+2 steps, is late at sync 2"; cat "$work/faults-w3.out"; }
[ "$(grep -c '^sync ' "$work/faults-w3.out")" = 3 ] && pass ||
  failed "faults: the late worker merges and continues to the end"
same_globals faults w0 w1 w2 w3 && pass || failed "faults: global sha-256 differ"

# --- 5. aggregator topology: one aggregator reduces, quantizes Δ̄ once (int8) and commits;
# the workers fetch one reduced file per sync.
start_server a0; ua=$url
agg=(--token-file "$work/token" --run agg --steps 30 --min-workers 2 --grace-ms 1500)
"$bin" bridge aggregate --url "$ua" "${agg[@]}" --workers 3 >"$work/agg-aggregator.out" \
  2>"$work/agg-aggregator.err" &
pids+=($!)
agg_pids=($!)
for w in w0 w1 w2; do
  extra=()
  [ $w = w0 ] && extra=(--coordinator)
  "$bin" bridge worker --url "$ua" "${agg[@]}" --worker $w "${extra[@]}" --topology aggregator \
    --H 10 --wire int8 >"$work/agg-$w.out" 2>"$work/agg-$w.err" &
  pids+=($!)
  agg_pids+=($!)
done
ok=1
for p in "${agg_pids[@]}"; do wait $p || ok=0; done
[ $ok = 1 ] && pass || { failed "aggregator: a process failed"; tail -n 5 "$work"/agg-*.err; }
[ "$(grep -c '^sync .* skipped=0' "$work/agg-aggregator.out")" = 3 ] && pass ||
  failed "aggregator: three applied syncs"
same_globals agg aggregator w0 w1 w2 && pass || failed "aggregator: global sha-256 differ"
for n in 1 2 3; do
  d="$work/a0/data/runs/agg/frag/0/0000000$n"
  [ -s "$d/reduced.safetensors" ] && grep -q '"committer": "aggregator"' "$d/commit.json" &&
    pass || failed "aggregator: sync $n has reduced.safetensors and the aggregator's commit"
done

echo "$passes passed, $failures failed"
[ "$failures" -eq 0 ]
