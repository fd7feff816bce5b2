#!/usr/bin/env bash
# Disk faults for the client and the server (RELIABILITY.md F7, F8): a full disk (small tmpfs
# mounts) and I/O errors on write and fsync (`fiu-run` from Debian's fiu-utils). Each case
# asserts a clear error and a failing exit (or HTTP status), nothing corrupt under a final
# name, and that the next run, with the fault gone, ends in sync.
#
# Usage: disk_faults.sh SHARDSYNC. Needs root for tmpfs mounts and fiu-run: exits 77 (skip)
# when either is missing.
set -uo pipefail
bin=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
check=("python3" "$here/mirror_check.py")
work=$(mktemp -d "${FAULTS_WORK_DIR:-/tmp}/disk_faults.XXXXXX")
pids=()
mounts=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for m in "${mounts[@]}"; do umount -l "$m" 2>/dev/null; done
  [ -n "${FAULTS_KEEP:-}" ] && echo "kept $work" || rm -rf "$work"
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
small_fs() {  # small_fs DIR SIZE: a tmpfs of SIZE at DIR
  mkdir -p "$1" && mount -t tmpfs -o "size=$2" tmpfs "$1" && mounts+=("$1")
}
[ -e /usr/lib/fiu/fiu_posix_preload.so ] && command -v fiu-ctrl >/dev/null ||
  { echo "SKIP: libfiu (Debian fiu-utils) is not installed"; exit 77; }
small_fs "$work/probe" 1m || { echo "SKIP: cannot mount a tmpfs here (not root?)"; exit 77; }
# What fiu-run does (its preload libraries, the enable commands, the control FIFO), but with
# the sanitizer runtime of a CI build first among the preloads: after fiu's it crashes at
# start. fiu's preload library leaks a string at startup, so no leak checks under it.
fiu_lib=/usr/lib/fiu
asan=$(ldd "$bin" | awk '/libasan/ { print $3 }')
# It execs, so that `under_fiu ... &` gives the program's own pid (fiu-ctrl's); run it in
# the foreground only inside ( ).
under_fiu() {  # under_fiu FIFO_PREFIX ENABLE_COMMAND PROGRAM [ARGS...]
  FIU_CTRL_FIFO="$1" FIU_ENABLE="$2" \
    LD_PRELOAD="${asan:+$asan }$fiu_lib/fiu_run_preload.so $fiu_lib/fiu_posix_preload.so" \
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" exec "${@:3}"
}

# --- a source: one 24 MiB file (streamed, fdatasync'd alone) and 40 small ones (batched)
src="$work/src"
mkdir -p "$src/small"
head -c 25165824 /dev/urandom >"$src/big.bin"
for i in $(seq 1 40); do head -c $((20000 + i)) /dev/urandom >"$src/small/f$i.bin"; done
touch -d '1 minute ago' "$src/big.bin" "$src"/small/*
history="$work/history.json"
"${check[@]}" record "$src" "$history"
"$bin" serve --collection "ckpt=$src" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" >"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
for _ in $(seq 1 300); do
  "${check[@]}" listed "$base/ckpt/.resourcesync/resourcelist.xml" "$src" >/dev/null 2>&1 && break
  sleep 0.1
done

# client_fault NAME DEST FIU_COMMAND [SYNC_FLAG]: a sync under the fault fails clearly and leaves nothing
# corrupt; the rerun without it ends in sync.
client_fault() {
  local name=$1 dest=$2 fault=$3 flags=("${@:4}") rc
  (under_fiu "" "$fault" "$bin" sync "$base/" "$dest" --collection ckpt --parallel 4 "${flags[@]}" \
    >"$work/$name.out" 2>&1)
  rc=$?
  [ $rc = 1 ] || [ $rc = 3 ] && pass || failed "$name: the sync under the fault exits 1 or 3 (rc=$rc)"
  grep -qi "input/output error\|no space left\|disk full" "$work/$name.out" && pass ||
    failed "$name: the error is named: $(tail -3 "$work/$name.out")"
  "${check[@]}" check "$dest" "$history" >"$work/$name.bad" 2>/dev/null && pass ||
    failed "$name: files under a final name differ from the source: $(head -3 "$work/$name.bad")"
  [ "$name" != fdatasync_eio ] || [ ! -e "$dest/big.bin" ] && pass ||
    failed "$name: a file whose fdatasync failed took its final name"
  "$bin" sync "$base/" "$dest" --collection ckpt "${flags[@]}" -q >"$work/$name.rerun" 2>&1
  rc=$?
  [ $rc = 0 ] && "${check[@]}" equal "$dest" "$src" >/dev/null && pass ||
    failed "$name: the rerun ends in sync (rc=$rc: $(tail -3 "$work/$name.rerun"))"
  [ -z "$(find "$dest" -name '.shardsync-part-*')" ] && pass || failed "$name: partials left after the rerun"
}

# EIO / ENOSPC on the streamed data writes (pwrite, O_DIRECT or not): the big file fails
client_fault write_eio "$work/m-eio" 'enable name=posix/io/rw/pwrite,failinfo=5'
client_fault write_enospc "$work/m-enospc" 'enable name=posix/io/rw/pwrite,failinfo=28'
# EIO from fdatasync, which commits a file that arrives alone (a batch gets one syncfs, which
# fiu cannot fail): DEST already holds the small files, so the big one commits alone. Its data
# may be lost, so it must not take its final name. (--baseline: an incremental run trusts its
# saved point and would not notice the removed file.)
mkdir -p "$work/m-fdatasync"
cp -a "$src/small" "$work/m-fdatasync/"
"$bin" sync "$base/" "$work/m-fdatasync" --collection ckpt -q >/dev/null 2>&1
rm "$work/m-fdatasync/big.bin"
client_fault fdatasync_eio "$work/m-fdatasync" 'enable name=posix/io/sync/fdatasync,failinfo=5' --baseline
# EIO from fsync (directories after renames, the state file)
client_fault fsync_eio "$work/m-fsync" 'enable name=posix/io/sync/fsync,failinfo=5'

# --- client: DEST on a full disk (the state dir DEST/.shardsync/ included)
if small_fs "$work/full" 8m; then
  "$bin" sync "$base/" "$work/full/m" --collection ckpt -q >"$work/full.out" 2>&1
  rc=$?
  [ $rc = 1 ] || [ $rc = 3 ] && pass || failed "full DEST: exit 1 or 3 (rc=$rc)"
  grep -qi "disk full\|no space" "$work/full.out" && pass || failed "full DEST: named: $(tail -3 "$work/full.out")"
  "${check[@]}" check "$work/full/m" "$history" >/dev/null 2>&1 && pass || failed "full DEST: corrupt files"
  mount -o remount,size=64m "$work/full"
  "$bin" sync "$base/" "$work/full/m" --collection ckpt -q >/dev/null 2>&1 &&
    "${check[@]}" equal "$work/full/m" "$src" >/dev/null && pass || failed "full DEST: the rerun ends in sync"
fi

# --- the server: the publish root and the state dir on full disks, EIO on fsync
coll="$work/coll"
small_fs "$coll" 4m
small_fs "$work/sstate" 16m
echo "0123456789abcdef-write-token" >"$work/token"
under_fiu "$work/fiu" "" "$bin" serve --collection "pub=$coll" --listen 127.0.0.1:0 \
  --port-file "$work/pport" --state-dir "$work/sstate" --write-token-file "$work/token" \
  >"$work/pserver.log" 2>&1 &
spid=$!
pids+=($spid)
for _ in $(seq 1 300); do [ -s "$work/pport" ] && break; sleep 0.1; done
[ -s "$work/pport" ] || { echo "FAIL: the server under fiu did not start"; tail -5 "$work/pserver.log"; exit 1; }
pbase="http://127.0.0.1:$(cat "$work/pport")"
publish() { "$bin" publish "$pbase/pub/$1" "$2" --token-file "$work/token"; }
listed() {  # the server lists the publish root as it is on disk (within 5 s)
  for _ in $(seq 1 50); do
    "${check[@]}" listed "$pbase/pub/.resourcesync/resourcelist.xml" "$coll" >"$work/listed" 2>&1 && return 0
    sleep 0.1
  done
  return 1
}
head -c 1000000 /dev/urandom >"$work/keep.bin"
head -c 6000000 /dev/urandom >"$work/huge.bin"
publish keep.bin "$work/keep.bin" >/dev/null 2>&1 && pass || failed "server: a first publish works"

publish huge.bin "$work/huge.bin" >"$work/p1.out" 2>&1
rc=$?
[ $rc != 0 ] && pass || failed "server: a publish that does not fit fails (rc=$rc)"
grep -q " 50[0-9]" "$work/p1.out" && pass || failed "server: a 5xx status for a full disk: $(cat "$work/p1.out")"
[ ! -e "$coll/huge.bin" ] && [ -z "$(find "$coll" -name '.shardsync-upload*')" ] && pass ||
  failed "server: the failed upload left nothing behind"
cmp -s "$coll/keep.bin" "$work/keep.bin" && pass || failed "server: the earlier file is intact"
listed && pass || failed "server (full root): log and disk disagree: $(head -3 "$work/listed")"
mount -o remount,size=32m "$coll"
publish huge.bin "$work/huge.bin" >/dev/null 2>&1 && cmp -s "$coll/huge.bin" "$work/huge.bin" &&
  pass || failed "server: with space back the publish works"

# EIO from fsync while an upload commits: a 5xx, and the file is not published
fiu-ctrl -f "$work/fiu" -c 'enable name=posix/io/sync/fsync,failinfo=5' "$spid"
publish eio.bin "$work/keep.bin" >"$work/p2.out" 2>&1
rc=$?
fiu-ctrl -f "$work/fiu" -c 'disable name=posix/io/sync/fsync' "$spid"
[ $rc != 0 ] && grep -q " 50[0-9]" "$work/p2.out" && pass ||
  failed "server: fsync EIO fails the upload with a 5xx (rc=$rc: $(cat "$work/p2.out"))"
[ ! -e "$coll/eio.bin" ] && pass || failed "server: an upload whose fsync failed was published"
listed && pass || failed "server (fsync EIO): log and disk disagree: $(head -3 "$work/listed")"
publish eio.bin "$work/keep.bin" >/dev/null 2>&1 && pass || failed "server: after the EIO a publish works"

# The state dir full: the change log cannot grow; uploads fail, the server keeps serving, and
# once space returns log and disk agree again
head -c 100m /dev/zero >"$work/sstate/filler" 2>/dev/null
publish late.bin "$work/keep.bin" >"$work/p3.out" 2>&1
rc=$?
[ $rc != 0 ] && pass || failed "server: with a full state dir the publish fails (rc=$rc)"
code=$(curl -s -o /dev/null -w '%{http_code}' "$pbase/pub/keep.bin")
[ "$code" = 200 ] && pass || failed "server: with a full state dir it still serves files (got $code)"
rm -f "$work/sstate/filler"
publish late2.bin "$work/keep.bin" >/dev/null 2>&1 && pass || failed "server: with space back publishing works"
for _ in $(seq 1 30); do listed && break; sleep 0.2; done
listed && pass || failed "server (full state dir): log and disk disagree afterwards: $(head -3 "$work/listed")"
kill -0 "$spid" && pass || failed "server: still running after the disk faults"

echo "disk_faults: $passes passed, $failures failed"
[ "$failures" = 0 ]
