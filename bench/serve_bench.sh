#!/usr/bin/env bash
# shardsync serve against nginx, on loopback, same box, same files, interleaved pairs:
#   1. a 2 GiB file downloaded with curl to /dev/null: nginx with sendfile vs ours
#      (ratio = our throughput / nginx's; goal >= 1.0)
#   2. GET rate of the Resource List and the open Change List with wrk (64 connections),
#      nginx serving the same bytes as static files (ratio = our req/s / nginx's; goal >= 1.0)
#   3. first scan of 100,000 files (start until the port file appears) and the restart with
#      the hash cache; `sha256sum` over the same files as a reference for the hashing cost.
# Usage: bench/serve_bench.sh [SHARDSYNC] [PAIRS]   (a Release build: build-bench/bin/shardsync)
# SERVE_BENCH_PARTS="1 2 3" picks the parts to run (default: all).
# Needs nginx (nginx-light), curl and wrk. Writes about 2.2 GB under $TMPDIR.
set -euo pipefail
bin=$(realpath "${1:-build-bench/bin/shardsync}")
pairs=${2:-5}
for tool in nginx curl wrk; do
  command -v $tool >/dev/null || { echo "serve_bench: $tool is not installed"; exit 1; }
done
work=$(mktemp -d "${TMPDIR:-/tmp}/serve-bench.XXXXXX")
server=
nginx_pid=
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

median() { sort -g | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
minmax() { sort -g | awk 'NR==1{min=$1} {max=$1} END {printf "min %.3f max %.3f", min, max}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_ours() {  # start_ours DATA_DIR STATE_DIR
  rm -f "$work/port"
  "$bin" serve --collection "data=$1" --listen 127.0.0.1:0 --port-file "$work/port" \
    --state-dir "$2" 2>>"$work/server.log" &
  server=$!
  until [ -s "$work/port" ]; do sleep 0.02; done
  ours="http://127.0.0.1:$(cat "$work/port")"
}
stop_ours() { kill -TERM "$server"; wait "$server" || true; server=; }

start_nginx() {  # start_nginx ROOT
  local port
  port=$(free_port)
  mkdir -p "$work/nginx"
  cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
master_process off;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  types { application/xml xml; }
  default_type application/octet-stream;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$port; root $1; }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
  nginx_pid=$!
  until curl -s -o /dev/null "http://127.0.0.1:$port/"; do sleep 0.05; done
  theirs="http://127.0.0.1:$port"
}

echo "serve_bench: $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $pairs pairs"
echo "versions: $("$bin" --version), $(nginx -v 2>&1), $(curl --version | head -1 | cut -d' ' -f1-2)"

parts=" ${SERVE_BENCH_PARTS:-1 2 3} "
# --- 1. one 2 GiB file -----------------------------------------------------------------
if [[ $parts == *" 1 "* ]]; then
mkdir -p "$work/big"
dd if=/dev/urandom of="$work/big/shard.bin" bs=1M count=2048 status=none
touch -d '1 minute ago' "$work/big/shard.bin"
start_ours "$work/big" "$work/state-big"
start_nginx "$work/big"
download() { curl -s -o /dev/null -w '%{speed_download}\n' "$1/$2"; }
download "$ours" data/shard.bin >/dev/null   # warm the page cache
echo
echo "1. 2 GiB file, curl -o /dev/null (MB/s; ratio = ours / nginx)"
ratios=()
for i in $(seq 1 "$pairs"); do
  if [ $((i % 2)) -eq 1 ]; then
    a=$(download "$ours" data/shard.bin); b=$(download "$theirs" shard.bin)
  else
    b=$(download "$theirs" shard.bin); a=$(download "$ours" data/shard.bin)
  fi
  r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')
  ratios+=("$r")
  printf '  pair %d  ours %7.0f MB/s  nginx %7.0f MB/s  ratio %s  load %s\n' "$i" \
    "$(awk -v x="$a" 'BEGIN{print x/1e6}')" "$(awk -v x="$b" 'BEGIN{print x/1e6}')" "$r" \
    "$(cut -d' ' -f1 /proc/loadavg)"
done
echo "  median ratio $(printf '%s\n' "${ratios[@]}" | median) ($(printf '%s\n' "${ratios[@]}" | minmax))  goal >= 1.0"
stop_ours
kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true; nginx_pid=

fi

# --- 2. document GET rate ----------------------------------------------------------------
if [[ $parts == *" 2 "* ]]; then
mkdir -p "$work/small"
for d in $(seq -w 1 20); do
  mkdir -p "$work/small/part-$d"
  for f in $(seq -w 1 50); do head -c 1024 /dev/urandom >"$work/small/part-$d/f-$f.bin"; done
done
touch -d '1 minute ago' "$work/small"/part-*/*
start_ours "$work/small" "$work/state-small"
mkdir -p "$work/static"
curl -s -o "$work/static/resourcelist.xml" "$ours/data/.resourcesync/resourcelist.xml"
curl -s -o "$work/static/changelist.xml" "$ours/data/.resourcesync/changelist-00001.xml"
start_nginx "$work/static"
rate() { wrk -t2 -c64 -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
for doc in resourcelist changelist; do
  ours_url="$ours/data/.resourcesync/$doc.xml"
  [ $doc = changelist ] && ours_url="$ours/data/.resourcesync/changelist-00001.xml"
  echo
  echo "2. GET $doc ($(stat -c %s "$work/static/$doc.xml") bytes), wrk -t2 -c64 -d5s (req/s; ratio = ours / nginx)"
  ratios=()
  for i in $(seq 1 "$pairs"); do
    if [ $((i % 2)) -eq 1 ]; then a=$(rate "$ours_url"); b=$(rate "$theirs/$doc.xml"); else
      b=$(rate "$theirs/$doc.xml"); a=$(rate "$ours_url"); fi
    r=$(awk -v a="$a" -v b="$b" 'BEGIN {printf "%.3f", a / b}')
    ratios+=("$r")
    printf '  pair %d  ours %8.0f  nginx %8.0f  ratio %s  load %s\n' "$i" "$a" "$b" "$r" \
      "$(cut -d' ' -f1 /proc/loadavg)"
  done
  echo "  median ratio $(printf '%s\n' "${ratios[@]}" | median) ($(printf '%s\n' "${ratios[@]}" | minmax))  goal >= 1.0"
done
stop_ours
kill "$nginx_pid"; wait "$nginx_pid" 2>/dev/null || true; nginx_pid=

fi

# --- 3. first scan of 100,000 files and the restart ------------------------------------
if [[ $parts == *" 3 "* ]]; then
echo
echo "3. 100,000 files of 4 KiB in 100 directories"
mkdir -p "$work/many"
python3 - "$work/many" <<'PY'
import os, sys
root = sys.argv[1]
block = os.urandom(4096)
for d in range(100):
    path = os.path.join(root, "dir-%03d" % d)
    os.makedirs(path, exist_ok=True)
    for f in range(1000):
        with open(os.path.join(path, "f-%04d.bin" % f), "wb") as out:
            out.write(block[f % 64:] + block[:f % 64])
PY
find "$work/many" -type f -exec touch -d '1 minute ago' {} +
find "$work/many" -type f -exec cat {} + >/dev/null   # page cache hot for both
t0=$(date +%s.%N)
find "$work/many" -type f -print0 | xargs -0 sha256sum >/dev/null
t1=$(date +%s.%N)
echo "  sha256sum over the same files: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s"
for run in "first scan" "restart (hash cache)"; do
  t0=$(date +%s.%N)
  start_ours "$work/many" "$work/state-many"
  t1=$(date +%s.%N)
  echo "  $run: $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.2f", b-a}') s to serving; $(grep 'scan data' "$work/server.log" | tail -1 | sed 's/.*scan data: //')"
  stop_ours
done
fi
