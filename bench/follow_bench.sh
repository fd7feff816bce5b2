#!/usr/bin/env bash
# Latency from a file's close on the source to its arrival (final name, verified) in a
# `shardsync sync --follow` mirror, on loopback: push (`serve --notify`, the event stream)
# vs polling the open Change List every POLL seconds (`serve` without --notify, the same
# follower falling back to conditional GETs). Goal (issue 5): push < 200 ms for a small file.
#
#   bench/follow_bench.sh [SHARDSYNC] [PROBES] [POLL]      defaults: 20 probes, poll every 2 s
set -euo pipefail
bin=$(realpath "${1:-build-bench/bin/shardsync}")
probes=${2:-20}
poll=${3:-2}
work=$(mktemp -d "${TMPDIR:-/tmp}/follow-bench.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
echo "follow_bench: $probes probes of 4 KiB, $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg)"

measure() {  # measure NAME SERVE_FLAGS...: one latency (ms) per probe into $work/NAME.ms
  local name=$1
  shift
  local src="$work/$name-src" dst="$work/$name-dst"
  mkdir -p "$src"
  head -c 4096 /dev/urandom >"$src/seed.bin"
  "$bin" serve --collection "c=$src" --listen 127.0.0.1:0 --port-file "$work/$name.port" \
    --state-dir "$work/$name-state" "$@" >>"$work/$name-server.log" 2>&1 &
  pids+=($!)
  until [ -s "$work/$name.port" ]; do sleep 0.05; done
  "$bin" sync "http://127.0.0.1:$(cat "$work/$name.port")/" "$dst" --follow \
    --poll-interval "$poll" -q >>"$work/$name-follow.log" 2>&1 &
  pids+=($!)
  until [ -f "$dst/seed.bin" ]; do sleep 0.05; done
  sleep 1
  /usr/bin/python3 - "$src" "$dst" "$probes" "$poll" >"$work/$name.ms" <<'PY'
import os, random, sys, time
src, dst, probes, poll = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
for i in range(probes):
    data = os.urandom(4096)
    name = "probe-%03d.bin" % i
    tmp = os.path.join(src, "." + name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(src, name))  # the file appears whole, as a publisher writes it
    t0 = time.monotonic()
    target = os.path.join(dst, name)
    deadline = t0 + 10 * poll + 30
    while time.monotonic() < deadline:
        try:
            with open(target, "rb") as f:
                if f.read() == data:
                    break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    else:
        sys.exit("probe %d never arrived" % i)
    print("%.1f" % ((time.monotonic() - t0) * 1000))
    time.sleep(random.uniform(0.2, 0.6))  # independent of any polling phase
PY
}

measure push --notify
measure poll
push=$(cat "$work/push.ms")
polled=$(cat "$work/poll.ms")
/usr/bin/python3 - "$poll" "$push" "$polled" <<'PY'
import statistics, sys
poll = sys.argv[1]
for name, text in (("push (--notify, event stream)", sys.argv[2]),
                   (f"polling every {poll} s", sys.argv[3])):
    v = sorted(float(x) for x in text.split())
    p90 = v[min(len(v) - 1, int(0.9 * len(v)))]
    print(f"  {name:32} median {statistics.median(v):7.1f} ms  p90 {p90:7.1f} ms  "
          f"min {v[0]:6.1f}  max {v[-1]:7.1f}  ({len(v)} probes)")
m = statistics.median(float(x) for x in sys.argv[2].split())
print(f"summary: push median {m:.1f} ms  goal < 200 ms  {'MET' if m < 200 else 'MISSED'}")
PY
