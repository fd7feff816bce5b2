#!/usr/bin/env bash
# `shardsync bridge inspect`: output and exit codes on the committed vectors and on bad files.
# Usage: inspect_cli_test.sh SHARDSYNC DATA_DIR
set -u
bin=$1
data=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

for f in "$data"/*.safetensors; do
  out=$("$bin" bridge inspect "$f") || fail "exit $? on $f"
  sum=$(sha256sum "$f" | cut -d' ' -f1)
  grep -qx "sha-256: $sum" <<<"$out" || fail "sha-256 of $f"
  grep -qx "length: $(stat -c %s "$f")" <<<"$out" || fail "length of $f"
  grep -qx "  format: shardsync.diloco.fragment/1" <<<"$out" || fail "format of $f"
done
out=$("$bin" bridge inspect "$data/fp4_edge.safetensors")
grep -qx "wire: fp4-e3m0" <<<"$out" || fail "wire"
grep -qx "block_size: 8" <<<"$out" || fail "block_size"
grep -qx "  r.q U8 \[78\] .*" <<<"$out" || fail "tensor line: $(grep 'r.q' <<<"$out")"
grep -qx "zstd: yes" <<<"$("$bin" bridge inspect "$data/int8_zstd.safetensors")" || fail "zstd"

head -c 100 "$data/int8_edge.safetensors" >"$tmp/truncated"
printf 'not a payload' >"$tmp/junk"
for f in "$tmp/truncated" "$tmp/junk" "$tmp/missing"; do
  "$bin" bridge inspect "$f" >"$tmp/out" 2>"$tmp/err"
  rc=$?
  [ $rc -eq 1 ] || fail "exit $rc on $f"
  [ -s "$tmp/err" ] || fail "no error message for $f"
  [ -s "$tmp/out" ] && fail "stdout output for $f"
done
"$bin" bridge inspect >/dev/null 2>&1
[ $? -eq 2 ] || fail "usage error is not exit 2"
echo ok
