#!/usr/bin/env bash
# Baseline of many small files via a Resource Dump vs via the Resource List, both with
# `shardsync sync` from `shardsync serve --dumps`, on loopback, interleaved pairs (order
# alternating), into an empty DEST each time; prints the median of the per-pair ratios
# (Resource List time / dump time; goal >= 3, issue 5).
#
# Loopback has no round trips to save, and this kernel has no netem: DUMP_RTT_MS=N puts
# bench/delay_proxy.py (N ms added to each round trip, bandwidth untouched) between client and
# server, as between two sites.
#
#   bench/dump_bench.sh [SHARDSYNC] [PAIRS]      DUMP_FILES=20000 DUMP_KIB=16 DUMP_RTT_MS=0
set -euo pipefail
bin=$(realpath "${1:-build-bench/bin/shardsync}")
pairs=${2:-5}
files=${DUMP_FILES:-20000}
kib=${DUMP_KIB:-16}
rtt_ms=${DUMP_RTT_MS:-0}
work=$(mktemp -d "${TMPDIR:-/tmp}/dump-bench.XXXXXX")
server=
proxy=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$proxy" ] && kill "$proxy" 2>/dev/null && wait "$proxy" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

echo "dump_bench: $files x $kib KiB, $pairs pairs, +$rtt_ms ms RTT, $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"
python3 - "$work/src" "$files" "$kib" <<'PY'
import os, sys
root, files, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dirs = max(1, files // 1000)
for i in range(files):
    d = os.path.join(root, "d%02d" % (i % dirs))
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "f%06d.bin" % i), "wb") as f:
        f.write(os.urandom(kib * 1024))
PY
touch -d '1 minute ago' "$work"/src/*/*

base_flags=()
if [ "$rtt_ms" != 0 ]; then
  python3 "$(dirname "$0")/delay_proxy.py" --rtt-ms "$rtt_ms" --target-port-file "$work/port" \
    --listen-port-file "$work/proxy-port" &
  proxy=$!
  until [ -s "$work/proxy-port" ]; do kill -0 "$proxy"; sleep 0.1; done
  base_flags=(--base-url "http://127.0.0.1:$(cat "$work/proxy-port")/")
fi
started=$(date +%s.%N)
"$bin" serve --collection "small=$work/src" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" --dumps --dump-delay 1 "${base_flags[@]}" 2>>"$work/server.log" &
server=$!
until [ -s "$work/port" ]; do kill -0 "$server" || { cat "$work/server.log"; exit 1; }; sleep 0.1; done
port_file=$work/port
[ -n "$proxy" ] && port_file=$work/proxy-port
base="http://127.0.0.1:$(cat "$port_file")/"
until curl -s "${base}small/capabilitylist.xml" | grep -q 'capability="resourcedump"'; do sleep 0.2; done
echo "server: first scan + dump built in $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s" \
  "($(curl -s "${base}small/.resourcesync/resourcedump.xml" | grep -c '<url>') package(s))"

run() {  # run MODE -> wall seconds on stdout
  local dest="$work/dst-$1-$RANDOM"
  local flags=()
  [ "$1" = dump ] && flags=(--via-dump)
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" sync "$base" "$dest" "${flags[@]}" -q >>"$work/client.log" 2>&1
  t1=$(date +%s.%N)
  [ "$(find "$dest" -path "$dest/.shardsync" -prune -o -type f -print | wc -l)" = "$files" ] ||
    { echo "incomplete mirror in $1 mode" >&2; exit 1; }
  # Kept until the end: on ext4 without a journal, files created within seconds of a mass
  # delete pay for skipping the just-freed inodes (recently_deleted()), which would add noise.
  python3 -c "print(f'{$t1 - $t0:.3f}')"
}
run dump >/dev/null; run list >/dev/null   # warm-up, not counted
ratios=()
for p in $(seq 1 "$pairs"); do
  if [ $((p % 2)) = 1 ]; then d=$(run dump); l=$(run list); order=AB; else l=$(run list); d=$(run dump); order=BA; fi
  r=$(python3 -c "print(f'{$l / $d:.2f}')")
  ratios+=("$r")
  echo "  pair $p $order  via dump ${d} s  via resource list ${l} s  ratio list/dump $r  load $(cut -d' ' -f1 /proc/loadavg)"
done
python3 - "${ratios[@]}" <<'PY'
import statistics, sys
r = [float(x) for x in sys.argv[1:]]
m = statistics.median(r)
print(f"summary: resource-list time / dump time, median {m:.2f} (min {min(r):.2f}, max {max(r):.2f})"
      f"  goal >= 3  {'MET' if m >= 3 else 'MISSED'}")
PY
