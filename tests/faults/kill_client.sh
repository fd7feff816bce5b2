#!/usr/bin/env bash
# SIGKILL `shardsync sync` at random points while it mirrors a real `shardsync serve` over
# loopback, many times, and verify after every kill:
#   - no file under a final name in DEST holds bytes the source never had at that path
#     (sha-256 against every version the source had: mirror_check.py check);
#   - nothing was written outside DEST (a sentinel tree beside it, `find -newer` a marker;
#     HOME and TMPDIR of the client point into that tree too);
#   - the next run resumes to in sync: exit 0, `shardsync audit` exit 0, DEST equals the source.
# Every round but the first changes the source (rewrites, creates, deletes and renames a few
# files) so that each kill lands in real work, incremental runs included.
#
# Usage: kill_client.sh SHARDSYNC [TOTAL_MIB [KILLS [SEED]]]
#   CI (the ctest faults.kill_client): 192 MiB, 5 kills. Offline: tests/faults/run-long.
set -uo pipefail
bin=$(realpath "$1")
total_mib=${2:-192}
kills=${3:-5}
seed=${4:-$$}
here=$(dirname "$(realpath "$0")")
check=("python3" "$here/mirror_check.py")
work=$(mktemp -d "${FAULTS_WORK_DIR:-/tmp}/kill_client.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  [ -n "${FAULTS_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
RANDOM=$seed
echo "kill_client: $total_mib MiB, $kills kills, seed $seed (rerun: $0 $1 $total_mib $kills $seed)"

# --- the source: half in 4 big files, half in 64 small ones (kills land in both)
src="$work/src"
mkdir -p "$src/big" "$src/small/a" "$src/small/b" "$work/staging"
big=$((total_mib * 1024 * 1024 / 8))
small=$((total_mib * 1024 * 1024 / 128))
put() {  # put PATH BYTES: new random content, moved into place (the server never sees it torn)
  head -c "$2" /dev/urandom >"$work/staging/f" && mkdir -p "$(dirname "$src/$1")" &&
    mv "$work/staging/f" "$src/$1"
}
for i in 1 2 3 4; do put "big/model-0000$i.safetensors" $((big + i)); done
for i in $(seq 1 64); do put "small/$([ $((i % 2)) = 0 ] && echo a || echo b)/shard-$i.bin" $((small + i)); done
history="$work/history.json"
"${check[@]}" record "$src" "$history"
export MIRROR_CHECK_CACHE="$work/cache.json" MIRROR_CHECK_SKIP=planted-link

"$bin" serve --collection "ckpt=$src" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" --rescan-interval 2 >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 600); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "FAIL: the server did not start"; cat "$work/server.log"; exit 1; }
base="http://127.0.0.1:$(cat "$work/port")"
served_as_on_disk() {  # wait until the server lists the source's current files and bytes
  for _ in $(seq 1 600); do
    "${check[@]}" listed "$base/ckpt/.resourcesync/resourcelist.xml" "$src" >"$work/listed" && return 0
    sleep 0.1
  done
  echo "FAIL: the server never listed the source as it is:"; head "$work/listed"
  return 1
}
served_as_on_disk || exit 1

# --- DEST inside a sentinel tree; anything newer than the marker outside DEST is a fault
root="$work/root"
dest="$root/dest"
mkdir -p "$root/sentinel/deep" "$root/home" "$root/tmp" "$dest"
echo keep >"$root/sentinel/keep.txt"
echo keep >"$root/sentinel/deep/keep.bin"
ln -s ../sentinel "$dest/planted-link"  # the client must never follow it
touch -d '1 minute ago' "$root" "$root"/* "$root"/sentinel/* "$dest/planted-link" 2>/dev/null
touch "$work/marker"
sleep 0.01
outside_root() {
  find "$root" -newer "$work/marker" -not -path "$dest" -not -path "$dest/*" | grep -v '^$'
}
client() { HOME="$root/home" TMPDIR="$root/tmp" "$bin" "$@"; }

mutate() {  # rewrite a big file and 4 small ones, create 2, delete 1, rename 1
  local n i
  n=$((RANDOM % 4 + 1)); put "big/model-0000$n.safetensors" $((big + RANDOM))
  for _ in 1 2 3 4; do
    i=$((RANDOM % 64 + 1))
    [ -e "$src/small/a/shard-$i.bin" ] && put "small/a/shard-$i.bin" $((small + RANDOM))
    [ -e "$src/small/b/shard-$i.bin" ] && put "small/b/shard-$i.bin" $((small + RANDOM))
  done
  put "small/new/r$round-1.bin" $((small / 2 + RANDOM))
  put "small/new/r$round-2.bin" $((RANDOM))
  mapfile -t files < <(cd "$src/small" && find . -type f | sort)
  rm -f "$src/small/${files[$((RANDOM % ${#files[@]}))]}"
  mapfile -t files < <(cd "$src/small" && find . -type f | sort)
  mv "$src/small/${files[$((RANDOM % ${#files[@]}))]}" "$src/small/new/renamed-$round.bin"
  "${check[@]}" record "$src" "$history"
}

corrupt=0 outside=0 resumed=0 failed_rounds=0 partial_kills=0 finished_early=0
window_ms=300  # kills fall uniformly in [0, window]; the window follows the last full run
for round in $(seq 1 "$kills"); do
  if [ "$round" -gt 1 ]; then
    mutate
    served_as_on_disk || exit 1
  fi
  # exec: $! must be the client itself, not a subshell the SIGKILL would leave it orphaned by
  (HOME="$root/home" TMPDIR="$root/tmp" exec "$bin" sync "$base/" "$dest" --collection ckpt \
    --delete -q >"$work/killed.out" 2>&1) &
  pid=$!
  delay_ms=$(((RANDOM * 32768 + RANDOM) % window_ms))
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  if kill -9 "$pid" 2>/dev/null; then wait "$pid" 2>/dev/null; else
    wait "$pid" 2>/dev/null
    finished_early=$((finished_early + 1))
  fi
  pgrep -f "sync $base/ $dest " >/dev/null && { echo "FAIL: the killed client still runs"; exit 1; }
  [ -n "$(find "$dest" -name '.shardsync-part-*' -size +0 2>/dev/null)" ] &&
    partial_kills=$((partial_kills + 1))

  if ! "${check[@]}" check "$dest" "$history" >"$work/bad" 2>/dev/null; then
    corrupt=$((corrupt + 1))
    echo "FAIL round $round (kill after ${delay_ms} ms): files under a final name the source never had:"
    head -5 "$work/bad"
  fi
  if [ -n "$(outside_root)" ]; then
    outside=$((outside + 1))
    echo "FAIL round $round: written outside DEST:"; outside_root | head -5
  fi

  start=$(date +%s%N)
  client sync "$base/" "$dest" --collection ckpt --delete --json >"$work/resume.json" 2>"$work/resume.err"
  rc=$?
  window_ms=$(((($(date +%s%N) - start) / 1000000) + 50))
  client audit "$base/" "$dest" --collection ckpt -q >"$work/audit.out" 2>&1
  arc=$?
  if [ $rc = 0 ] && [ $arc = 0 ] && "${check[@]}" equal "$dest" "$src" >"$work/diff" &&
    [ -z "$(find "$dest" -name '.shardsync-part-*')" ]; then
    resumed=$((resumed + 1))
  else
    failed_rounds=$((failed_rounds + 1))
    echo "FAIL round $round (kill after ${delay_ms} ms): the next run did not end in sync" \
      "(sync exit $rc, audit exit $arc)"
    head -5 "$work/resume.err" "$work/audit.out" "$work/diff"
  fi
  [ -n "$(outside_root)" ] && { outside=$((outside + 1)); echo "FAIL round $round: the resume wrote outside DEST"; }
done

[ "$(cat "$root/sentinel/keep.txt")" = keep ] && [ -L "$dest/planted-link" ] ||
  { echo "FAIL: the sentinel or the planted link changed"; outside=$((outside + 1)); }
echo "kill_client: $kills SIGKILLs during a $total_mib MiB mirror (+ changes each round):" \
  "$corrupt corrupt, $outside outside root, $resumed/$kills resumed" \
  "($partial_kills left partial files, $finished_early finished before the kill)"
[ $corrupt = 0 ] && [ $outside = 0 ] && [ $resumed = "$kills" ]
