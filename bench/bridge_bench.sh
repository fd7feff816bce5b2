#!/usr/bin/env bash
# Trainer-bridge figures over loopback (not a test; CTest does not run it):
#  1. bytes on the wire per worker per sync for each wire format, with and without zstd, vs
#     f32: two `shardsync bridge worker`s on one server, a 213,060-parameter model (--hidden
#     16,389; the DILOCO.md §4 model has 220,544), the size of one worker's payload file for
#     sync 2 (what every other worker downloads from it).
#  2. time from publish to all-fetched for a ~100 MB fragment (25M fp32 parameters) with 4
#     workers, each with its own server: the training thread's block at the sync (payload
#     encoded, PUT, the three others fetched + verified, reduced, stepped, commit agreed).
# Usage: bench/bridge_bench.sh [SHARDSYNC] [--skip-large]
set -uo pipefail
bin=$(realpath "${1:-build/bin/shardsync}")
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
echo "0123456789abcdef-bridge-token" >"$work/token"
start_server() {
  mkdir -p "$work/$1/data"
  "$bin" serve --collection "bridge=$work/$1/data" --listen 127.0.0.1:0 \
    --port-file "$work/$1/port" --state-dir "$work/$1/state" --rebuild-delay-ms 5 \
    --write-token-file "$work/token" 2>"$work/$1/server.log" &
  pids+=($!)
  for _ in $(seq 1 100); do [ -s "$work/$1/port" ] && break; sleep 0.05; done
  url="http://127.0.0.1:$(cat "$work/$1/port")/bridge"
}

echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| wire | zstd | payload bytes / worker / sync | vs f32 | f32 / this |"
echo "|---|---|---|---|---|"
start_server small
f32=
for wire in f32 bf16 int8 fp4-e3m0; do
  for z in no yes; do
    run="b-$wire-$z"
    flags=()
    [ $z = yes ] && flags=(--zstd)
    for w in w0 w1; do
      extra=()
      [ $w = w0 ] && extra=(--coordinator)
      "$bin" bridge worker --url "$url" --token-file "$work/token" --run "$run" --worker $w \
        "${extra[@]}" "${flags[@]}" --workers 2 --min-workers 2 --steps 10 --H 5 --wire "$wire" \
        --hidden 16389 >"$work/$run-$w.out" 2>"$work/$run-$w.err" &
      eval "pid_$w=$!"
    done
    wait "$pid_w0" "$pid_w1"
    size=$(stat -c %s "$work/small/data/runs/$run/frag/0/00000002/worker/w0.safetensors")
    [ -z "$f32" ] && f32=$size
    awk -v w="$wire" -v z="$z" -v s="$size" -v f="$f32" \
      'BEGIN { printf "| %s | %s | %d | %.4f | %.2f |\n", w, z, s, s / f, f / s }'
  done
done

[ "${2:-}" = "--skip-large" ] && exit 0
echo
urls=()
for s in l0 l1 l2 l3; do
  start_server $s
  urls+=("$url")
done
follow=()
for u in "${urls[@]}"; do follow+=(--follow "$u"); done
start=$(date +%s.%N)
for i in 0 1 2 3; do
  extra=()
  [ $i = 0 ] && extra=(--coordinator)
  "$bin" bridge worker --url "${urls[$i]}" "${follow[@]}" --commit-url "${urls[0]}" \
    --token-file "$work/token" --run large --worker w$i "${extra[@]}" --workers 4 --min-workers 4 \
    --grace-ms 600000 --commit-timeout-ms 600000 --steps 2 --H 2 --hidden 1923077 \
    --checkpoint-every 0 >"$work/large-w$i.out" 2>"$work/large-w$i.err" &
  eval "lpid_$i=$!"
done
wait "$lpid_0" "$lpid_1" "$lpid_2" "$lpid_3"
end=$(date +%s.%N)
size=$(stat -c %s "$work/l0/data/runs/large/frag/0/00000001/worker/w0.safetensors")
echo "100 MB fragment, 4 workers, one server each: payload $size bytes; load $(cut -d' ' -f1-3 /proc/loadavg)"
for i in 0 1 2 3; do
  sed -nE "s/^sync .* wait=([0-9.]+) up=([0-9]+) down=([0-9]+).*/w$i: publish to all-fetched and applied \1 s (up \2 B, down \3 B)/p" \
    "$work/large-w$i.out"
done
grep -h ERROR "$work"/large-*.err | head -5
awk -v a="$start" -v b="$end" 'BEGIN { printf "whole run (4 bootstraps of 100 MB + 2 steps + 1 sync): %.1f s\n", b - a }'
