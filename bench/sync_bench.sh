#!/usr/bin/env bash
# shardsync sync (from shardsync serve) against the tools people mirror with today, on loopback,
# same box, same files, interleaved pairs (BENCHMARKS.md §4; the goals are issue 4's):
#   W1  one 2 GiB random shard into an empty DEST, sha-256 verified:
#       vs `curl -o f && openssl dgst -sha256 f` and `aria2c -x4 -s4 --checksum=sha-256=…`
#       (nginx, sendfile on, open_file_cache off). Goal: ours <= 0.6x the faster one's time.
#   W7  the same shard, client killed (-9) at >= 50 %, then run again: bytes fetched beyond what
#       was still missing; vs `curl -C -` and aria2c (their bytes: nginx's $bytes_sent).
#       Goal: 0 (< 1 MiB slack).
#   W2  64 x 32 MiB shards, full sync into an empty DEST: vs `rclone copy --http-url` and
#       `wget2 -m --max-threads=8` (nginx, autoindex on). Goal: <= 0.8x the faster one.
#   W5  1 of those 64 shards rewritten (same size, new content), re-sync: vs an rsync daemon
#       (`rsync -a`). Goals: time <= 1.0x rsync's; bytes (ours: bytes_fetched + document_bytes
#       of --json; rsync: "Total bytes received") <= shard + 64 KiB.
#   W3  20,000 x 16 KiB files in 20 dirs, full sync vs rsync daemon (goal <= 1.0x), then the
#       no-op re-sync vs rsync's no-op (goal <= 0.2x).
#   W4  no-op on a 1,000,000-resource collection vs rsync's no-op on the same tree
#       (goal: ours >= 100x faster, i.e. ratio <= 0.01).
# Every run is followed (outside the timing) by a sha-256 check of the whole destination
# against the source; a mismatch stops the script (exit 1). Client CPU and max RSS come from
# GNU time (`/usr/bin/time`), wall time from the shell's clock around it. Ours fsyncs every
# file it writes, the competitors do not: after each competitor's full sync the script times
# an fsync of what it wrote (`+fsync`, not in its wall time) and prints a second, "durable"
# ratio for information; the goals are judged on wall time.
#
# Usage: bench/sync_bench.sh [SHARDSYNC] [PAIRS]   (a Release build: build-bench/bin/shardsync)
# Environment:
#   SYNC_BENCH=W1,W7,W2,W5,W3,W4   workloads to run (default: all, in this order)
#   W4_FILES=1000000              files of the W4 tree (reduced, with a note, when the disk
#                                 lacks the inodes or space for three copies)
#   W1_MIB=2048 W2_COUNT=64 W2_MIB=32 W3_FILES=20000   data sizes (for quick trial runs)
# Calls `scripts/deps bench` (nginx, curl, rsync, aria2, rclone, wget2, GNU time). Writes
# about 13 GB (W1..W5) plus ~4.5 GB and 3M inodes for the default W4 under $TMPDIR;
# everything is removed at exit.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(realpath "${1:-build-bench/bin/shardsync}")
pairs=${2:-5}
workloads=",${SYNC_BENCH:-W1,W7,W2,W5,W3,W4},"
W1_MIB=${W1_MIB:-2048}
W2_COUNT=${W2_COUNT:-64}
W2_MIB=${W2_MIB:-32}
W3_FILES=${W3_FILES:-20000}
W4_FILES=${W4_FILES:-1000000}

"$here/../scripts/deps" bench
for tool in nginx curl openssl rsync aria2c rclone wget2 python3 /usr/bin/time; do
  command -v $tool >/dev/null || { echo "sync_bench: $tool is not installed"; exit 1; }
done
[ -x "$bin" ] || { echo "sync_bench: $bin is not executable"; exit 1; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sync-bench.XXXXXX")
chmod 755 "$work"
server=
nginx_pid=
rsyncd_pid=
bg_pid=
cleanup() {
  [ -n "$bg_pid" ] && kill -9 "$bg_pid" 2>/dev/null
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  [ -n "$nginx_pid" ] && kill "$nginx_pid" 2>/dev/null && wait "$nginx_pid" 2>/dev/null
  [ -n "$rsyncd_pid" ] && kill "$rsyncd_pid" 2>/dev/null && wait "$rsyncd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/srv" "$work/dst" "$work/tmp" "$work/home"
export HOME=$work/home RCLONE_CONFIG=$work/home/rclone.conf
touch "$RCLONE_CONFIG"

median() { sort -g | awk '{v[NR]=$1} END {if (NR) printf "%.10g\n", (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
minmax() { sort -g | awk 'NR==1{min=$1} {max=$1} END {printf "min %s max %s", min, max}'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
load1() { cut -d' ' -f1 /proc/loadavg; }
fail() { echo "sync_bench: FAILED: $*" >&2; exit 1; }
jget() { jq -r ".$2" "$1"; }
mib() { awk -v b="$1" 'BEGIN {printf "%.1f MiB", b / 1048576}'; }

# The digest of a tree: sha-256 of every regular file (OpenSSL through hashlib), sorted by
# path, hashed again. DEST's `.shardsync` state directory is not part of the mirror.
cat >"$work/digest.py" <<'PY'
import hashlib, os, sys
root = sys.argv[1]
buf = bytearray(4 << 20)
view = memoryview(buf)
lines = []
for d, dirs, files in os.walk(root):
    rel = os.path.relpath(d, root)
    if rel == ".":
        dirs[:] = [x for x in dirs if x != ".shardsync"]
    for f in files:
        h = hashlib.sha256()
        with open(os.path.join(d, f), "rb", buffering=0) as fh:
            while True:
                n = fh.readinto(buf)
                if not n:
                    break
                h.update(view[:n])
        lines.append(os.path.normpath(os.path.join(rel, f)) + " " + h.hexdigest())
lines.sort()
print(len(lines), hashlib.sha256("\n".join(lines).encode()).hexdigest())
PY
tree_digest() { python3 "$work/digest.py" "$1"; }
check_tree() {  # check_tree DEST EXPECTED_DIGEST LABEL
  local got
  got=$(tree_digest "$1")
  [ "$got" = "$2" ] || fail "$3: $1 does not match the source (files + sha-256: $got, want $2)"
}
fresh_dest() { rm -rf "$1"; mkdir -p "$1"; sync; }
# fsync_tree DEST: fsync every file and directory under DEST (what ours does per file before
# it counts it); sets fsync_s to the seconds that took.
fsync_tree() {
  local t0 t1
  t0=$(date +%s%N)
  find "$1" \( -type f -o -type d \) -print0 | xargs -0 sync --
  t1=$(date +%s%N)
  fsync_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
}

# timed OUT CMD...: runs CMD (stdout to OUT, stderr to OUT.err) under GNU time; sets wall (s,
# the shell's clock), cpu (user + sys s of CMD and its children) and rss (max RSS, MiB).
timed() {
  local out=$1 t0 t1 u s m
  shift
  t0=$(date +%s%N)
  if ! /usr/bin/time -f '%U %S %M' -o "$work/time.txt" "$@" >"$out" 2>"$out.err"; then
    tail -5 "$out.err" >&2
    fail "$*"
  fi
  t1=$(date +%s%N)
  wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", (b - a) / 1e9}')
  read -r u s m <<<"$(tail -1 "$work/time.txt")"
  cpu=$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%.2f", u + s}')
  rss=$(awk -v m="$m" 'BEGIN {printf "%.0f", m / 1024}')
}

# --- servers ------------------------------------------------------------------------------
start_ours() {  # start_ours NAME DATA_DIR: our server with one collection, first scan done
  local state=$work/state-$1
  rm -rf "$state" "$work/port"
  "$bin" serve --collection "$1=$2" --listen 127.0.0.1:0 --port-file "$work/port" \
    --state-dir "$state" 2>>"$work/server.log" &
  server=$!
  until [ -s "$work/port" ]; do
    kill -0 "$server" 2>/dev/null || fail "shardsync serve exited: $(tail -3 "$work/server.log")"
    sleep 0.05
  done
  ours="http://127.0.0.1:$(cat "$work/port")/"
}
stop_ours() { kill -TERM "$server"; wait "$server" || true; server=; }

nginx_port=$(free_port)
mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
error_log $work/nginx/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  log_format bytes '\$request_method \$uri \$status \$bytes_sent';
  access_log $work/nginx/access.log bytes;
  sendfile on;
  tcp_nopush on;
  open_file_cache off;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$nginx_port; root $work/srv; autoindex on; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
nginx_pid=$!
until curl -s -o /dev/null "http://127.0.0.1:$nginx_port/"; do sleep 0.05; done
theirs="http://127.0.0.1:$nginx_port"
log_lines() { wc -l <"$work/nginx/access.log"; }
log_bytes_after() { tail -n +"$(($1 + 1))" "$work/nginx/access.log" | awk '{s += $4} END {printf "%.0f\n", s}'; }

rsync_port=$(free_port)
mkdir -p "$work/srv/w2" "$work/srv/w3" "$work/srv/w4"
{
  echo "port = $rsync_port"
  echo "address = 127.0.0.1"
  echo "use chroot = no"
  echo "pid file = $work/rsyncd.pid"
  echo "log file = $work/rsyncd.log"
  [ "$(id -u)" -eq 0 ] && printf 'uid = root\ngid = root\n'
  for m in w2 w3 w4; do printf '[%s]\npath = %s\nread only = yes\n' $m "$work/srv/$m"; done
} >"$work/rsyncd.conf"
rsync --daemon --no-detach --config="$work/rsyncd.conf" &
rsyncd_pid=$!
until rsync "rsync://127.0.0.1:$rsync_port/" >/dev/null 2>&1; do sleep 0.05; done
rsyncd="rsync://127.0.0.1:$rsync_port"
rsync_received() { sed -n 's/^Total bytes received: //p' "$1" | tr -d ,; }

echo "sync_bench: $(nproc) cores, loadavg $(cut -d' ' -f1-3 /proc/loadavg), $pairs pairs, $(date -u +%FT%TZ)"
echo "versions: $("$bin" --version), $(nginx -v 2>&1 | sed 's/.*: //'), $(curl --version | head -1 | cut -d' ' -f1-2)," \
  "$(aria2c --version | head -1 | sed 's/ version//'), $(rclone version | head -1), $(wget2 --version | head -1 | cut -d' ' -f1-3)," \
  "$(rsync --version | head -1 | awk '{print $1, $3}'), $(openssl version | cut -d' ' -f1-2)"
echo "disk: $(df -h --output=avail "$work" | tail -1 | tr -d ' ') free, $(df --output=iavail "$work" | tail -1 | tr -d ' ') inodes free under $work"

# --- the pair engine ----------------------------------------------------------------------
# compare TITLE GOAL OURS THEIRS...: PAIRS pairs; the tools run in the order given in odd
# pairs and reversed in even pairs (ABAB/BABA). Each tool is a function that prepares its
# DEST (outside the timing), runs one command through `timed` and checks the destination; it
# may set `metric` (bytes) and `fsync_s`: for a competitor that leaves its files in the page
# cache, the time `fsync_tree` then took to make them durable (not part of its wall time; ours
# fsyncs every file itself). The ratio of a pair is ours / the fastest competitor of that pair;
# pairs whose 1-minute load moved by more than 2 are discarded. GOAL: the ratio goal
# ("<= 0.6"), or empty. PAIR_SETUP: a function run before each pair (outside the timing).
declare -A label last_metrics
summary=()
compare() {
  local title=$1 goal=$2
  shift 2
  local tools=("$@") order i t l0 l1 best r kept=0 line
  local -A walls cpus rsss metrics ratios
  local all_ratios=() dur_ratios=() metric_seen= dbest dr
  echo
  echo "$title"
  for ((i = 1; i <= pairs; i++)); do
    pair=$i
    [ -n "${PAIR_SETUP:-}" ] && $PAIR_SETUP "$i"
    if ((i % 2)); then order=("${tools[@]}"); else
      order=(); for ((j = ${#tools[@]} - 1; j >= 0; j--)); do order+=("${tools[j]}"); done
    fi
    l0=$(load1)
    local -A w=() c=() m=() x=() f=()
    for t in "${order[@]}"; do
      metric= fsync_s=
      $t
      w[$t]=$wall; c[$t]=$cpu; m[$t]=$rss; x[$t]=$metric f[$t]=$fsync_s
    done
    l1=$(load1)
    best=
    for t in "${tools[@]:1}"; do
      if [ -z "$best" ] || awk -v a="${w[$t]}" -v b="$best" 'BEGIN {exit !(a < b)}'; then best=${w[$t]}; fi
    done
    r=$(awk -v a="${w[${tools[0]}]}" -v b="$best" 'BEGIN {printf "%.3f", a / b}')
    dr=
    if [ -n "${f[${tools[1]}]}" ]; then  # ours / the fastest competitor + its fsync_tree time
      dbest=
      for t in "${tools[@]:1}"; do
        local d
        d=$(awk -v a="${w[$t]}" -v b="${f[$t]}" 'BEGIN {printf "%.3f", a + b}')
        if [ -z "$dbest" ] || awk -v a="$d" -v b="$dbest" 'BEGIN {exit !(a < b)}'; then dbest=$d; fi
      done
      dr=$(awk -v a="${w[${tools[0]}]}" -v b="$dbest" 'BEGIN {printf "%.3f", a / b}')
    fi
    line=$(printf '  pair %d %s' "$i" "$( ((i % 2)) && echo AB || echo BA)")
    for t in "${tools[@]}"; do
      line+=$(printf '  %s %.3f s (%scpu %.2f s, %s MiB%s)' "${label[$t]}" "${w[$t]}" \
        "${f[$t]:++fsync $(printf %.3f "${f[$t]}") s, }" "${c[$t]}" "${m[$t]}" "${x[$t]:+, ${x[$t]} B}")
    done
    line+="  ratio $r${dr:+ (durable $dr)}  load $l0 -> $l1"
    if awk -v a="$l0" -v b="$l1" 'BEGIN {d = b - a; exit !(d > 2 || d < -2)}'; then
      echo "$line  DISCARDED (load moved > 2)"
      continue
    fi
    echo "$line"
    kept=$((kept + 1))
    all_ratios+=("$r")
    [ -n "$dr" ] && dur_ratios+=("$dr")
    for t in "${tools[@]}"; do
      walls[$t]+="${w[$t]} "; cpus[$t]+="${c[$t]} "; rsss[$t]+="${m[$t]} "
      [ -n "${x[$t]}" ] && { metrics[$t]+="${x[$t]} "; metric_seen=1; }
      [ "$t" = "${tools[0]}" ] || ratios[$t]+="$(awk -v a="${w[${tools[0]}]}" -v b="${w[$t]}" 'BEGIN {printf "%.3f", a / b}') "
    done
  done
  [ "$kept" -gt 0 ] || fail "$title: every pair was discarded (load moved > 2)"
  local med verdict=
  med=$(printf '%s\n' "${all_ratios[@]}" | median)
  if [ -n "$goal" ]; then
    verdict=$(awk -v r="$med" -v g="${goal#<= }" 'BEGIN {print (r <= g ? "MET" : "MISSED")}')
  fi
  line="  kept $kept of $pairs pairs; ratio ours / fastest of the others: median $med ($(printf '%s\n' "${all_ratios[@]}" | minmax))${goal:+  goal $goal  $verdict}"
  echo "$line"
  summary+=("$title" "$line")
  if [ ${#dur_ratios[@]} -gt 0 ]; then
    line="  durable: ours / (fastest of the others + fsync of its files afterwards): median $(printf '%s\n' "${dur_ratios[@]}" | median) ($(printf '%s\n' "${dur_ratios[@]}" | minmax))  (information, no goal)"
    echo "$line"
    summary+=("$line")
  fi
  for t in "${tools[@]}"; do
    line=$(printf '    %-14s wall median %s s (%s)  cpu median %s s  max RSS median %s MiB' "${label[$t]}" \
      "$(echo ${walls[$t]} | tr ' ' '\n' | median)" "$(echo ${walls[$t]} | tr ' ' '\n' | minmax)" \
      "$(echo ${cpus[$t]} | tr ' ' '\n' | median)" "$(echo ${rsss[$t]} | tr ' ' '\n' | median)")
    [ "$t" = "${tools[0]}" ] || line+="  ratio ours/this median $(echo ${ratios[$t]} | tr ' ' '\n' | median) ($(echo ${ratios[$t]} | tr ' ' '\n' | minmax))"
    [ -n "$metric_seen" ] && [ -n "${metrics[$t]:-}" ] &&
      line+="  bytes median $(echo ${metrics[$t]} | tr ' ' '\n' | median) ($(echo ${metrics[$t]} | tr ' ' '\n' | minmax))"
    echo "$line"
    summary+=("$line")
  done
  for t in "${tools[@]}"; do last_metrics[$t]=${metrics[$t]:-}; done
  PAIR_SETUP=
}

# Our sync with --json into DEST (W*_ours functions); checks the report says in sync.
ours_sync() {  # ours_sync NAME DEST [flags]
  local name=$1 dest=$2
  shift 2
  timed "$work/ours.json" "$bin" sync "$ours" "$dest" --collection "$name" --json -q "$@"
  [ "$(jget "$work/ours.json" in_sync)" = true ] || fail "ours: not in sync: $(cat "$work/ours.json")"
}

# --- W1 / W7: one 2 GiB shard --------------------------------------------------------------
if [[ $workloads == *,W1,* || $workloads == *,W7,* ]]; then
  echo
  echo "preparing a ${W1_MIB} MiB random shard"
  mkdir -p "$work/srv/w1"
  dd if=/dev/urandom of="$work/srv/w1/shard.bin" bs=1M count="$W1_MIB" status=none
  touch -d '1 minute ago' "$work/srv/w1/shard.bin"
  w1_size=$(stat -c %s "$work/srv/w1/shard.bin")
  w1_hash=$(openssl dgst -sha256 -r "$work/srv/w1/shard.bin" | cut -d' ' -f1)
  w1_digest=$(tree_digest "$work/srv/w1")
  cat "$work/srv/w1/shard.bin" >/dev/null
  start_ours w1 "$work/srv/w1"
  w1_url="$theirs/w1/shard.bin"
  label[w1_ours]=ours label[w1_curl]=curl+openssl label[w1_aria2]=aria2c
fi

if [[ $workloads == *,W1,* ]]; then
  w1_ours() {
    fresh_dest "$work/dst/ours"
    ours_sync w1 "$work/dst/ours"
    check_tree "$work/dst/ours" "$w1_digest" ours
  }
  w1_curl() {
    fresh_dest "$work/dst/curl"
    timed "$work/curl.out" bash -c 'curl -s -o "$1" "$2" && openssl dgst -sha256 -r "$1"' _ \
      "$work/dst/curl/shard.bin" "$w1_url"
    fsync_tree "$work/dst/curl"
    [ "$(cut -d' ' -f1 "$work/curl.out")" = "$w1_hash" ] || fail "curl+openssl: wrong sha-256"
    check_tree "$work/dst/curl" "$w1_digest" curl
  }
  w1_aria2() {
    fresh_dest "$work/dst/aria2"
    timed "$work/aria2.out" aria2c -q -x4 -s4 --file-allocation=falloc --checksum="sha-256=$w1_hash" \
      -d "$work/dst/aria2" -o shard.bin "$w1_url"
    fsync_tree "$work/dst/aria2"
    check_tree "$work/dst/aria2" "$w1_digest" aria2c
  }
  compare "W1: one $(mib "$w1_size") shard into an empty DEST, sha-256 verified (wall s; ratio = ours / faster of curl+openssl, aria2c -x4 -s4)" \
    "<= 0.6" w1_ours w1_curl w1_aria2
  rm -rf "$work/dst"/*
fi

# --- W7: killed at 50 %, resumed ----------------------------------------------------------
if [[ $workloads == *,W7,* ]]; then
  # kill_at_half PID FILE_GLOB [alloc]: kill -9 PID once the file named by FILE_GLOB holds
  # half the shard (allocated blocks: aria2c writes its 4 segments sparsely); sets `have` to
  # the bytes the file then holds (its size, or with `alloc` its allocated bytes).
  kill_at_half() {
    local pid=$1 glob=$2 alloc=${3:-} f
    have=0
    while :; do
      for f in $glob; do [ -f "$f" ] && have=$(($(stat -c '%b * %B' "$f"))); done
      [ "$have" -ge $((w1_size / 2)) ] && break
      kill -0 "$pid" 2>/dev/null || fail "the download of $glob ended before 50 % ($have bytes)"
      sleep 0.005
    done
    kill -9 "$pid"
    wait "$pid" 2>/dev/null || true
    bg_pid=
    sleep 0.5  # nginx logs the aborted requests
    for f in $glob; do
      if [ -n "$alloc" ]; then have=$(($(stat -c '%b * %B' "$f"))); else have=$(stat -c %s "$f"); fi
    done
    [ "$have" -le "$w1_size" ] || have=$w1_size
  }
  w7_ours() {
    local d=$work/dst/ours
    fresh_dest "$d"
    "$bin" sync "$ours" "$d" --collection w1 -q &
    bg_pid=$!
    kill_at_half "$bg_pid" "$d/.shardsync-part-*"
    ours_sync w1 "$d"
    metric=$(($(jget "$work/ours.json" bytes_fetched) - (w1_size - have)))
    echo "    pair $pair ours: ${have} bytes in the partial file, resumed from $(jget "$work/ours.json" bytes_resumed), fetched $(jget "$work/ours.json" bytes_fetched)" >>"$work/w7.log"
    check_tree "$d" "$w1_digest" ours
  }
  w7_curl() {
    local d=$work/dst/curl n
    fresh_dest "$d"
    curl -s -o "$d/shard.bin" "$w1_url" &
    bg_pid=$!
    kill_at_half "$bg_pid" "$d/shard.bin"
    n=$(log_lines)
    timed "$work/curl.out" curl -s -C - -o "$d/shard.bin" "$w1_url"
    sleep 0.2
    metric=$(($(log_bytes_after "$n") - (w1_size - have)))
    echo "    pair $pair curl: ${have} bytes in the partial file, nginx sent $(log_bytes_after "$n") (with headers)" >>"$work/w7.log"
    check_tree "$d" "$w1_digest" curl
  }
  w7_aria2() {
    local d=$work/dst/aria2 n
    fresh_dest "$d"
    aria2c -q -x4 -s4 --file-allocation=none --checksum="sha-256=$w1_hash" -d "$d" -o shard.bin "$w1_url" &
    bg_pid=$!
    kill_at_half "$bg_pid" "$d/shard.bin" alloc
    n=$(log_lines)
    timed "$work/aria2.out" aria2c -q -x4 -s4 --file-allocation=none --checksum="sha-256=$w1_hash" \
      -d "$d" -o shard.bin "$w1_url"
    sleep 0.2
    metric=$(($(log_bytes_after "$n") - (w1_size - have)))
    echo "    pair $pair aria2c: ${have} bytes allocated in the partial file ($(ls "$d" | tr '\n' ' ')), nginx sent $(log_bytes_after "$n") (with headers)" >>"$work/w7.log"
    check_tree "$d" "$w1_digest" aria2c
  }
  label[w7_ours]=ours label[w7_curl]="curl -C -" label[w7_aria2]=aria2c
  : >"$work/w7.log"
  compare "W7: $(mib "$w1_size") shard, client killed at >= 50 %, run again (wall s of the second run; bytes = fetched beyond what the partial file lacked)" \
    "" w7_ours w7_curl w7_aria2
  cat "$work/w7.log"
  w7_max=$(echo ${last_metrics[w7_ours]} | tr ' ' '\n' | sort -g | tail -1)
  line="  W7 goal: ours re-fetches 0 bytes beyond what was missing (< 1 MiB slack): worst $w7_max bytes  $(
    awk -v b="$w7_max" 'BEGIN {print (b < 1048576 ? "MET" : "MISSED")}')"
  echo "$line"
  summary+=("$line")
  rm -rf "$work/dst"/*
fi
if [[ $workloads == *,W1,* || $workloads == *,W7,* ]]; then
  stop_ours
  rm -rf "$work/srv/w1"
fi

# --- W2 / W5: 64 x 32 MiB -------------------------------------------------------------------
if [[ $workloads == *,W2,* || $workloads == *,W5,* ]]; then
  echo
  echo "preparing $W2_COUNT x $W2_MIB MiB shards"
  for k in $(seq -w 1 "$W2_COUNT"); do
    dd if=/dev/urandom of="$work/srv/w2/shard-$k-of-$W2_COUNT.bin" bs=1M count="$W2_MIB" status=none
  done
  touch -d '1 minute ago' "$work/srv/w2"/*
  cat "$work/srv/w2"/* >/dev/null
  w2_digest=$(tree_digest "$work/srv/w2")
  start_ours w2 "$work/srv/w2"
fi

if [[ $workloads == *,W2,* ]]; then
  w2_ours() {
    fresh_dest "$work/dst/ours"
    ours_sync w2 "$work/dst/ours"
    check_tree "$work/dst/ours" "$w2_digest" ours
  }
  w2_rclone() {
    fresh_dest "$work/dst/rclone"
    timed "$work/rclone.out" rclone copy -q --http-url "$theirs/w2/" :http: "$work/dst/rclone"
    fsync_tree "$work/dst/rclone"
    check_tree "$work/dst/rclone" "$w2_digest" rclone
  }
  w2_wget2() {
    fresh_dest "$work/dst/wget2"
    timed "$work/wget2.out" wget2 -m -np -nH --cut-dirs=1 -q -e robots=off --reject='index.html*' \
      --max-threads=8 -P "$work/dst/wget2" "$theirs/w2/"
    find "$work/dst/wget2" -name 'index.html*' -delete  # wget2 keeps the index pages anyway
    fsync_tree "$work/dst/wget2"
    check_tree "$work/dst/wget2" "$w2_digest" wget2
  }
  label[w2_ours]=ours label[w2_rclone]=rclone label[w2_wget2]=wget2
  compare "W2: $W2_COUNT x $W2_MIB MiB shards, full sync into an empty DEST (wall s; ratio = ours / faster of rclone, wget2)" \
    "<= 0.8" w2_ours w2_rclone w2_wget2
  rm -rf "$work/dst"/*
fi

if [[ $workloads == *,W5,* ]]; then
  echo
  echo "W5: baselining both destinations (not timed)"
  "$bin" sync "$ours" "$work/dst/w5-ours" --collection w2 -q
  rsync -a "$rsyncd/w2/" "$work/dst/w5-rsync/"
  shard_bytes=$((W2_MIB * 1048576))
  # Before pair i: shard i gets new content (same size, via rename), and ours is timed only
  # once the server's Change List lists it as updated.
  w5_updates() { curl -s "${ours}w2/.resourcesync/changelist.xml" | grep "/w2/$1</loc>" | grep -c 'change="updated"' || true; }
  w5_setup() {
    local k name n0 n deadline
    k=$(printf '%0*d' ${#W2_COUNT} $(((($1 - 1) % W2_COUNT) + 1)))
    name="shard-$k-of-$W2_COUNT.bin"
    n0=$(w5_updates "$name")
    dd if=/dev/urandom of="$work/tmp/$name" bs=1M count="$W2_MIB" status=none
    mv "$work/tmp/$name" "$work/srv/w2/$name"
    deadline=$((SECONDS + 120))
    while :; do
      n=$(w5_updates "$name")
      [ "$n" -gt "$n0" ] && break
      [ $SECONDS -lt $deadline ] || fail "W5: the server's change list does not list $name after 120 s"
      sleep 0.1
    done
    w5_digest=$(tree_digest "$work/srv/w2")
    sync
  }
  w5_ours() {
    ours_sync w2 "$work/dst/w5-ours"
    [ "$(jget "$work/ours.json" fetched)" -ge 1 ] || fail "ours: W5 fetched nothing: $(cat "$work/ours.json")"
    metric=$(($(jget "$work/ours.json" bytes_fetched) + $(jget "$work/ours.json" document_bytes)))
    check_tree "$work/dst/w5-ours" "$w5_digest" ours
  }
  w5_rsync() {
    timed "$work/rsync.out" rsync -a --stats "$rsyncd/w2/" "$work/dst/w5-rsync/"
    metric=$(rsync_received "$work/rsync.out")
    fsync_tree "$work/dst/w5-rsync"
    check_tree "$work/dst/w5-rsync" "$w5_digest" rsync
  }
  label[w5_ours]=ours label[w5_rsync]="rsync -a"
  PAIR_SETUP=w5_setup
  compare "W5: 1 of $W2_COUNT shards rewritten, re-sync (wall s; ratio = ours / rsync; bytes on the wire)" \
    "<= 1.0" w5_ours w5_rsync
  w5_max=$(echo ${last_metrics[w5_ours]} | tr ' ' '\n' | sort -g | tail -1)
  line="  W5 bytes goal: ours <= shard + 64 KiB = $((shard_bytes + 65536)): worst $w5_max  $(
    awk -v b="$w5_max" -v g=$((shard_bytes + 65536)) 'BEGIN {print (b <= g ? "MET" : "MISSED")}')"
  echo "$line"
  summary+=("$line")
  rm -rf "$work/dst"/*
fi
if [[ $workloads == *,W2,* || $workloads == *,W5,* ]]; then
  stop_ours
  rm -rf "$work/srv/w2"/*
fi

# --- W3: 20,000 x 16 KiB ------------------------------------------------------------------
if [[ $workloads == *,W3,* ]]; then
  echo
  echo "preparing $W3_FILES files of 16 KiB in 20 directories"
  python3 - "$work/srv/w3" "$W3_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "part-%02d" % (i % 20))
    if i < 20:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "sample-%06d.bin" % i), "wb") as f:
        f.write(os.urandom(16384))
PY
  find "$work/srv/w3" -type f -exec touch -d '1 minute ago' {} +
  find "$work/srv/w3" -type f -exec cat {} + >/dev/null
  w3_digest=$(tree_digest "$work/srv/w3")
  start_ours w3 "$work/srv/w3"
  w3_ours() {
    fresh_dest "$work/dst/ours"
    ours_sync w3 "$work/dst/ours"
    check_tree "$work/dst/ours" "$w3_digest" ours
  }
  w3_rsync() {
    fresh_dest "$work/dst/rsync"
    timed "$work/rsync.out" rsync -a --stats "$rsyncd/w3/" "$work/dst/rsync/"
    fsync_tree "$work/dst/rsync"
    check_tree "$work/dst/rsync" "$w3_digest" rsync
  }
  w3_ours_noop() {
    ours_sync w3 "$work/dst/ours"
    [ "$(jget "$work/ours.json" fetched)" -eq 0 ] || fail "ours: the no-op fetched: $(cat "$work/ours.json")"
    check_tree "$work/dst/ours" "$w3_digest" ours
  }
  w3_rsync_noop() {
    timed "$work/rsync.out" rsync -a --stats "$rsyncd/w3/" "$work/dst/rsync/"
    grep -q '^Number of regular files transferred: 0$' "$work/rsync.out" || fail "rsync: the no-op transferred files"
    check_tree "$work/dst/rsync" "$w3_digest" rsync
  }
  label[w3_ours]=ours label[w3_rsync]="rsync -a" label[w3_ours_noop]=ours label[w3_rsync_noop]="rsync -a"
  compare "W3: $W3_FILES x 16 KiB in 20 dirs, full sync into an empty DEST (wall s; ratio = ours / rsync)" \
    "<= 1.0" w3_ours w3_rsync
  # the destinations the last full pair left are the starting point of the no-ops
  compare "W3: no-op re-sync of the same $W3_FILES files (wall s; ratio = ours / rsync)" \
    "<= 0.2" w3_ours_noop w3_rsync_noop
  stop_ours
  rm -rf "$work/dst"/* "$work/srv/w3"/*
fi

# --- W4: no-op on 1,000,000 resources -----------------------------------------------------
if [[ $workloads == *,W4,* ]]; then
  echo
  w4_want=$W4_FILES
  # three copies (source, ours, rsync's) of tiny files: one inode and one 4 KiB block each,
  # plus ~1 KiB per resource for our state and documents; keep 20 % of what is free spare
  ifree=$(df --output=iavail "$work" | tail -1 | tr -d ' ')
  bfree=$(($(df --output=avail -k "$work" | tail -1 | tr -d ' ') * 1024))
  by_inodes=$((ifree * 8 / 10 / 3))
  by_space=$((bfree * 8 / 10 / (3 * 4096 + 1024)))
  [ "$W4_FILES" -le "$by_inodes" ] || W4_FILES=$by_inodes
  [ "$W4_FILES" -le "$by_space" ] || W4_FILES=$by_space
  if [ "$W4_FILES" -lt "$w4_want" ]; then
    echo "W4: REDUCED from $w4_want to $W4_FILES files ($ifree inodes, $((bfree >> 30)) GiB free under $work)"
  fi
  echo "preparing $W4_FILES files of 16 bytes in 1000 directories, two copies for the clients"
  t0=$(date +%s)
  python3 - "$work/srv/w4" "$W4_FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
dirs = 1000
for d in range(min(dirs, n)):
    os.makedirs(os.path.join(root, "d%03d" % d), exist_ok=True)
for i in range(n):
    with open(os.path.join(root, "d%03d" % (i % dirs), "f%07d" % i), "wb") as f:
        f.write(b"%015d\n" % i)
PY
  find "$work/srv/w4" -type f -print0 | xargs -0 touch -d '1 minute ago'
  # The clients' copies are made with cp -a (mtimes kept): ours adopts them in its baseline by
  # size + mtime = lastmod without fetching 1M files; rsync's one baseline run is a no-op too.
  cp -a "$work/srv/w4" "$work/dst/w4-ours"
  cp -a "$work/srv/w4" "$work/dst/w4-rsync"
  echo "  files made in $(($(date +%s) - t0)) s"
  w4_digest=$(tree_digest "$work/srv/w4")
  t0=$(date +%s.%N)
  start_ours w4 "$work/srv/w4"
  echo "  server first scan to serving: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}') s; $(grep 'scan w4' "$work/server.log" | tail -1 | sed 's/.*scan w4: //')"
  timed "$work/ours.json" "$bin" sync "$ours" "$work/dst/w4-ours" --collection w4 --json -q
  echo "  ours baseline (adopting the copy, not in the pairs): $wall s, cpu $cpu s, max RSS $rss MiB: $(jq -c '{mode, listed, fetched, up_to_date, documents, document_bytes}' "$work/ours.json")"
  timed "$work/rsync.out" rsync -a --stats "$rsyncd/w4/" "$work/dst/w4-rsync/"
  echo "  rsync first run (not in the pairs): $wall s, cpu $cpu s, max RSS $rss MiB, $(sed -n 's/^Number of regular files transferred: /transferred /p' "$work/rsync.out")"
  w4_ours() {
    ours_sync w4 "$work/dst/w4-ours"
    [ "$(jget "$work/ours.json" fetched)" -eq 0 ] || fail "ours: the no-op fetched: $(cat "$work/ours.json")"
    metric=$(jget "$work/ours.json" document_bytes)
  }
  w4_rsync() {
    timed "$work/rsync.out" rsync -a --stats "$rsyncd/w4/" "$work/dst/w4-rsync/"
    grep -q '^Number of regular files transferred: 0$' "$work/rsync.out" || fail "rsync: the no-op transferred files"
    metric=$(rsync_received "$work/rsync.out")
  }
  label[w4_ours]=ours label[w4_rsync]="rsync -a"
  compare "W4: no-op on $W4_FILES resources (wall s; ratio = ours / rsync; bytes received)" \
    "<= 0.01" w4_ours w4_rsync
  # 1M files take ~20 s to hash: both destinations are checked once, after all the no-ops
  check_tree "$work/dst/w4-ours" "$w4_digest" ours
  check_tree "$work/dst/w4-rsync" "$w4_digest" rsync
  echo "  both destinations match the source (sha-256 of all $W4_FILES files)"
  stop_ours
  rm -rf "$work/dst"/* "$work/srv/w4"
fi

echo
echo "summary (loadavg now $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%s\n' "${summary[@]}"
