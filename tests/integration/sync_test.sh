#!/usr/bin/env bash
# `shardsync sync` and `shardsync audit` end to end, as users run them: the real server on
# 127.0.0.1 (port 0), static documents behind `python3 -m http.server`, real files, real
# SIGKILLs. Usage: sync_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
work=$(mktemp -d)
pids=()
mounted=
cleanup() {
  [ -n "$mounted" ] && umount -l "$mounted" 2>/dev/null
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass; else failed "$what"; fi
}
# Same tree, ignoring the client's own .shardsync* names.
same_tree() { diff -r --exclude='.shardsync*' "$1" "$2"; }
json_field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

data="$work/ckpt"
other="$work/data"
mkdir -p "$data/step-100" "$other"
for i in 1 2 3 4; do head -c $((200000 + i)) /dev/urandom >"$data/step-100/model-0000$i.safetensors"; done
head -c 6000000 /dev/urandom >"$data/step-100/optimizer.bin"
echo '{"layers": 2}' >"$data/step-100/config.json"
echo 'dataset' >"$other/readme.txt"
touch -d '10 seconds ago' "$data"/step-100/* "$other"/*

rm -f "$work/port"
"$bin" serve --collection "ckpt=$data" --collection "data=$other" --listen 127.0.0.1:0 \
  --port-file "$work/port" --state-dir "$work/state" --rescan-interval 1 \
  >>"$work/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
wait_for_change() {  # wait_for_change PATTERN: the server's change list mentions it
  for _ in $(seq 1 80); do
    curl -s "$base/ckpt/.resourcesync/changelist.xml" | grep -q -- "$1" && return 0
    sleep 0.1
  done
  return 1
}

# --- discovery
"$bin" sync "$base/" "$work/m0" -q >"$work/out" 2>"$work/err"
rc=$?
[ $rc = 2 ] && grep -q "ckpt" "$work/err" && grep -q "data" "$work/err" && pass ||
  failed "two sets without --collection: exit 2 listing both (rc=$rc: $(cat "$work/err"))"
check "an unknown --collection is refused" bash -c "! '$bin' sync '$base/' '$work/m0' --collection nope -q"

# --- baseline from the real server
mirror="$work/mirror"
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/b.json" 2>"$work/b.err"
rc=$?
[ $rc = 0 ] && pass || failed "baseline exits 0 (rc=$rc: $(cat "$work/b.err"))"
check "baseline: mirror equals the source" same_tree "$data" "$mirror"
[ "$(json_field mode <"$work/b.json")" = baseline ] && pass || failed "first run is a baseline"
[ "$(json_field fetched <"$work/b.json")" = 6 ] && pass || failed "baseline fetched 6 files"
check "state is kept in DEST/.shardsync/" test -s "$mirror/.shardsync/state.json"
mtime_src=$(stat -c %Y "$data/step-100/config.json")
mtime_dst=$(stat -c %Y "$mirror/step-100/config.json")
[ "$mtime_src" = "$mtime_dst" ] && pass || failed "mtime follows <lastmod>"
check "audit: in sync (exit 0)" "$bin" audit "$base/" "$mirror" --collection ckpt -q

# --- a no-op: nothing fetched
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/n.json" 2>/dev/null
[ "$(json_field mode <"$work/n.json")" = incremental ] && pass || failed "second run is incremental"
[ "$(json_field fetched <"$work/n.json")" = 0 ] && pass || failed "no-op fetches nothing"

# --- incremental: one updated, one created, one deleted
head -c 200001 /dev/urandom >"$data/step-100/model-00001.safetensors.tmp"
mv "$data/step-100/model-00001.safetensors.tmp" "$data/step-100/model-00001.safetensors"
mkdir -p "$data/step-200"
head -c 300000 /dev/urandom >"$data/step-200/model-00001.safetensors"
rm "$data/step-100/model-00004.safetensors"
wait_for_change "step-100/model-00004.safetensors</loc>.*deleted" || failed "server saw the delete"
wait_for_change "step-200/model-00001.safetensors" || failed "server saw the create"
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/i.json" 2>"$work/i.err"
rc=$?
[ $rc = 0 ] && pass || failed "incremental exits 0 (rc=$rc: $(cat "$work/i.err"))"
[ "$(json_field fetched <"$work/i.json")" = 2 ] && pass || failed "incremental fetched 2 ($(cat "$work/i.json"))"
[ "$(json_field deleted <"$work/i.json")" = 0 ] && pass || failed "no deletes without --delete"
check "without --delete the deleted file stays" test -f "$mirror/step-100/model-00004.safetensors"
# A run with --delete applies the deletions it reads (one skipped by an earlier run without
# --delete is applied too when it is at the saved point, else by a baseline with --delete).
rm "$data/step-100/model-00003.safetensors"
wait_for_change "step-100/model-00003.safetensors</loc>.*deleted" || failed "server saw the second delete"
"$bin" sync "$base/" "$mirror" --collection ckpt --delete --json >"$work/d.json" 2>/dev/null
[ "$(json_field deleted <"$work/d.json")" -ge 1 ] && pass || failed "--delete applies the delete: $(cat "$work/d.json")"
check "the deleted file is gone" test ! -e "$mirror/step-100/model-00003.safetensors"
"$bin" sync "$base/" "$mirror" --collection ckpt --baseline --delete -q >/dev/null 2>&1
check "incremental: mirror equals the source" same_tree "$data" "$mirror"
# A no-op is conditional GETs answered 304: a document request or two, no list bytes.
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/n2.json" 2>/dev/null
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/n3.json" 2>/dev/null
[ "$(json_field documents <"$work/n3.json")" -le 2 ] && [ "$(json_field document_bytes <"$work/n3.json")" = 0 ] &&
  pass || failed "a no-op re-reads nothing: $(cat "$work/n3.json")"

# --- audit finds tampering and extra files (exit 3), and changes nothing
printf 'X' | dd of="$mirror/step-100/model-00002.safetensors" bs=1 seek=100 conv=notrunc 2>/dev/null
echo extra >"$mirror/stray.txt"
"$bin" audit "$base/" "$mirror" --collection ckpt -q >"$work/audit.out" 2>&1
rc=$?
[ $rc = 3 ] && pass || failed "audit out of sync exits 3 (rc=$rc)"
grep -q "^hash .*model-00002" "$work/audit.out" && pass || failed "audit names the hash difference"
grep -q "^extra .*stray.txt" "$work/audit.out" && pass || failed "audit names the extra file"
check "audit writes nothing" test -f "$mirror/stray.txt"

# --- --max-delete refuses all deletions past the limit
rm "$mirror/step-100/model-00002.safetensors"
"$bin" sync "$base/" "$mirror" --collection ckpt --baseline --delete --max-delete 0 --json \
  >"$work/md.json" 2>/dev/null
rc=$?
[ $rc = 3 ] && pass || failed "over --max-delete exits 3 (rc=$rc)"
check "over --max-delete nothing is deleted" test -f "$mirror/stray.txt"
check "the damaged file came back" cmp "$data/step-100/model-00002.safetensors" "$mirror/step-100/model-00002.safetensors"
"$bin" sync "$base/" "$mirror" --collection ckpt --baseline --delete -q
check "baseline --delete removes what the source does not list" bash -c "[ ! -e '$mirror/stray.txt' ]"
check "and the mirror equals the source" same_tree "$data" "$mirror"

# --- SIGKILL at random points during a sync of a large file, then a rerun that resumes
head -c 160000000 /dev/urandom >"$data/step-200/big.bin"
wait_for_change "step-200/big.bin" || failed "server saw big.bin"
partials_seen=0
for delay in 0.03 0.06 0.04 0.08 0.05; do
  "$bin" sync "$base/" "$mirror" --collection ckpt --parallel 2 -q >/dev/null 2>&1 &
  p=$!
  sleep "$delay"
  kill -9 $p 2>/dev/null
  wait $p 2>/dev/null
  # Whatever is under a final name is whole.
  if [ -f "$mirror/step-200/big.bin" ]; then
    cmp -s "$data/step-200/big.bin" "$mirror/step-200/big.bin" && pass ||
      failed "a killed sync left a torn big.bin under its final name"
    break
  fi
done
[ -n "$(find "$mirror/step-200" -name '.shardsync-part-*' -size +0)" ] && partials_seen=1
"$bin" sync "$base/" "$mirror" --collection ckpt --json >"$work/k.json" 2>/dev/null
rc=$?
[ $rc = 0 ] && pass || failed "rerun after SIGKILLs exits 0"
check "after SIGKILLs the mirror equals the source" same_tree "$data" "$mirror"
left=$(find "$mirror" -name '.shardsync-part-*' | wc -l)
[ "$left" = 0 ] && pass || failed "no partial files left ($left)"
if [ "$partials_seen" -gt 0 ]; then
  resumed=$(json_field bytes_resumed <"$work/k.json")
  fetched=$(json_field bytes_fetched <"$work/k.json")
  [ "$resumed" -gt 0 ] && [ $((resumed + fetched)) -le $((160000000 + 1048576)) ] && pass ||
    failed "the rerun resumed the partial (resumed $resumed, fetched $fetched)"
else
  echo "note: no partial file was left by the kills; resume not checked here"
fi

# --- a full disk (a 40 MB tmpfs): a clear error, good files kept, then resumable
small="$work/small"
mkdir -p "$small"
if mount -t tmpfs -o size=40m tmpfs "$small" 2>/dev/null; then
  mounted=$small
  "$bin" sync "$base/" "$small/m" --collection ckpt -q >"$work/full.out" 2>&1
  rc=$?
  [ $rc = 3 ] && pass || failed "disk full finishes with exit 3 (rc=$rc)"
  grep -q "disk full" "$work/full.out" && pass || failed "disk full is named: $(cat "$work/full.out")"
  torn=0
  while IFS= read -r f; do
    cmp -s "$data/${f#"$small/m/"}" "$f" || torn=$((torn + 1))
  done < <(find "$small/m" -type f -not -name '.shardsync*' -not -path '*/.shardsync/*')
  [ "$torn" = 0 ] && pass || failed "$torn files under final names differ from the source"
  [ ! -e "$small/m/step-200/big.bin" ] && pass || failed "no big.bin under its final name"
  mount -o remount,size=400m "$small"
  "$bin" sync "$base/" "$small/m" --collection ckpt --json >"$work/full.json" 2>/dev/null
  rc=$?
  [ $rc = 0 ] && pass || failed "after freeing space the rerun ends in sync (rc=$rc)"
  [ "$(json_field bytes_resumed <"$work/full.json")" -gt 0 ] && pass ||
    failed "the rerun resumed the partial big.bin"
  check "after the disk-full run the mirror equals the source" same_tree "$data" "$small/m"
  umount "$small" && mounted=
else
  echo "note: cannot mount a tmpfs here (not root?); disk-full case skipped"
fi

# --- static documents (sitemap build) behind python3 -m http.server
static="$work/static"
mkdir -p "$static/files/sub dir"
for i in 1 2 3; do head -c $((5000 * i)) /dev/urandom >"$static/files/sub dir/f$i.bin"; done
python3 -m http.server 0 --bind 127.0.0.1 --directory "$static" >"$work/http.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "port" "$work/http.log" && break; sleep 0.1; done
sport=$(grep -o 'port [0-9]*' "$work/http.log" | head -1 | cut -d' ' -f2)
sbase="http://127.0.0.1:$sport"
"$bin" sitemap build "$static/files" --base-url "$sbase/files/" --out "$static/files" >/dev/null
"$bin" sync "$sbase/files/resourcelist.xml" "$work/smirror" -q
rc=$?
[ $rc = 0 ] && pass || failed "sync from a static Resource List exits 0 (rc=$rc)"
check "static: mirror holds every file" diff -r "$static/files/sub dir" "$work/smirror/sub dir"
"$bin" sync "$sbase/files/" "$work/smirror2" -q
check "static: discovery by base URL (capabilitylist.xml)" diff -r "$static/files/sub dir" "$work/smirror2/sub dir"

# --- a broken source must not empty the mirror (an empty, a truncated, a 10 % listing)
mass="$static/mass"
mkdir -p "$mass"
for i in $(seq 1 20); do printf 'file %s\n' "$i" >"$mass/f$i.txt"; done
"$bin" sitemap build "$mass" --base-url "$sbase/mass/" --out "$static/massdocs" >/dev/null
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" -q >/dev/null 2>&1
cp "$static/massdocs/resourcelist.xml" "$work/rl-good.xml"
head_and_foot() {  # the document with only its first N <url> entries
  python3 - "$work/rl-good.xml" "$1" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
urls = re.findall(r"<url>.*?</url>", text, re.S)
head = text[: text.index("<url>")]
print(head + "".join(urls[: int(sys.argv[2])]) + "</urlset>")
PY
}
head_and_foot 0 >"$static/massdocs/resourcelist.xml"
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" --delete -q >"$work/mass.out" 2>&1
rc=$?
[ $rc = 3 ] && [ "$(find "$work/mmirror" -name 'f*.txt' | wc -l)" = 20 ] && pass ||
  failed "an empty list deletes nothing (rc=$rc): $(cat "$work/mass.out")"
head_and_foot 2 >"$static/massdocs/resourcelist.xml"
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" --delete -q >/dev/null 2>&1
rc=$?
[ $rc = 3 ] && [ "$(find "$work/mmirror" -name 'f*.txt' | wc -l)" = 20 ] && pass ||
  failed "a 10 % list deletes nothing (rc=$rc)"
head -c 3000 "$work/rl-good.xml" >"$static/massdocs/resourcelist.xml"
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" --delete -q >/dev/null 2>&1
rc=$?
[ $rc = 1 ] && [ "$(find "$work/mmirror" -name 'f*.txt' | wc -l)" = 20 ] && pass ||
  failed "a truncated list is an error and deletes nothing (rc=$rc)"
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" --delete --max-delete 20 -q \
  >/dev/null 2>&1
head_and_foot 2 >"$static/massdocs/resourcelist.xml"
"$bin" sync "$sbase/massdocs/resourcelist.xml" "$work/mmirror" --map "$sbase/mass/=" --delete --max-delete 18 -q >/dev/null 2>&1
rc=$?
[ $rc = 0 ] && [ "$(find "$work/mmirror" -name 'f*.txt' | wc -l)" = 2 ] && pass ||
  failed "--max-delete N allows a real mass deletion (rc=$rc)"

# --- a hostile static source: nothing outside DEST, no good file lost
evil="$static/evil"
mkdir -p "$evil" "$work/sentinel"
echo keep >"$work/sentinel/keep.txt"
cat >"$evil/resourcelist.xml" <<XML
<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:rs="http://www.openarchives.org/rs/terms/">
<rs:md capability="resourcelist" at="2026-01-01T00:00:00Z"/>
<url><loc>$sbase/evil/../../sentinel/keep.txt</loc><rs:md length="4"/></url>
<url><loc>$sbase/evil/%2e%2e/%2e%2e/sentinel/keep.txt</loc><rs:md length="4"/></url>
<url><loc>$sbase/evil/a%2f..%2f..%2fx</loc><rs:md length="4"/></url>
<url><loc>$sbase/evil/.shardsync/state.json</loc><rs:md length="4"/></url>
<url><loc>http://127.0.0.2:$sport/evil/other-host.bin</loc><rs:md length="4"/></url>
<url><loc>$sbase/evil/ok.txt</loc><rs:md length="3"/></url>
</urlset>
XML
printf 'ok\n' | head -c 3 >"$evil/ok.txt"
mkdir -p "$work/emirror"
echo good >"$work/emirror/good.txt"
ln -s "$work/sentinel" "$work/emirror/link"
"$bin" sync "$sbase/evil/resourcelist.xml" "$work/emirror" --delete -q >"$work/evil.out" 2>&1
rc=$?
[ $rc = 3 ] && pass || failed "a hostile list finishes with exit 3 (rc=$rc)"
[ "$(grep -c '^failed' "$work/evil.out")" = 5 ] && pass || failed "five hostile entries refused: $(cat "$work/evil.out")"
check "the good entry arrived" cmp "$evil/ok.txt" "$work/emirror/ok.txt"
check "the sentinel outside DEST is untouched" test "$(cat "$work/sentinel/keep.txt")" = keep
check "no deletions after failures (good.txt kept)" test -f "$work/emirror/good.txt"
check "the planted symlink is left alone" test -L "$work/emirror/link"

echo "sync_test: $passes passed, $failures failed"
[ "$failures" = 0 ]
