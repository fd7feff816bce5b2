#!/usr/bin/env bash
# `shardsync serve --dumps` end to end: a real server on 127.0.0.1 (port 0), curl as the
# client, Python's zipfile (stdlib) as an independent ZIP reader. Checks the Capability List,
# the Resource Dump and its package and manifest copy (sitemap check, every file against the
# source, stored entries, manifest.xml first), a Range GET on a package, a new dump replacing
# the old one after a change, and a Change Dump for a closed Change List.
# Usage: dump_serve_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
py=/usr/bin/python3
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null
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
get() { curl -sS --max-time 10 "$@"; }
# poll SECONDS COMMAND...: until COMMAND succeeds or the deadline passes.
poll() {
  local deadline=$((SECONDS + $1))
  shift
  while [ $SECONDS -lt $deadline ]; do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

data="$work/ckpt"
state="$work/state"
mkdir -p "$data/step-100" "$data/odd names"
for i in 1 2 3; do head -c $((200000 + i)) /dev/urandom >"$data/step-100/model-0000$i.safetensors"; done
echo '{"layers": 2}' >"$data/step-100/config.json"
echo 'space' >"$data/odd names/a b.txt"
touch -d '10 seconds ago' "$data"/step-100/* "$data/odd names"/*

"$bin" serve --collection "ckpt=$data" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$state" --rescan-interval 1 --list-entries 3 \
  --dumps --dump-delay 1 --dump-package-size 300000 >>"$work/server.log" 2>&1 &
server_pid=$!
poll 10 test -s "$work/port" || failed "the server writes its port file"
base="http://127.0.0.1:$(cat "$work/port" 2>/dev/null)"
docs="$base/ckpt/.resourcesync"

has_dump() { get -f "$base/ckpt/capabilitylist.xml" | grep -q 'resourcedump.xml'; }
poll 20 has_dump && pass || failed "the Capability List advertises a Resource Dump"
check "Capability List" get -f "$base/ckpt/capabilitylist.xml" -o "$work/caps.xml"
check "Resource Dump" get -f "$docs/resourcedump.xml" -o "$work/rd.xml"
for doc in caps rd; do
  check "sitemap check passes $doc.xml" "$bin" sitemap check "$work/$doc.xml"
done
for cap in resourcelist changelist resourcedump resourcelist-archive resourcedump-archive \
  changelist-archive; do
  grep -q "capability=\"$cap\"" "$work/caps.xml" && pass || failed "Capability List lacks $cap"
done
for archive in resourcelist-archive resourcedump-archive changelist-archive; do
  if get -f "$docs/$archive.xml" -o "$work/$archive.xml"; then
    check "sitemap check passes $archive.xml" "$bin" sitemap check "$work/$archive.xml"
  else
    failed "GET $archive.xml"
  fi
done

# Packages of at most 300,000 bytes: the three 200 kB models need three.
packages=$(grep -o '<loc>[^<]*\.zip</loc>' "$work/rd.xml" | sed 's/<[^>]*>//g')
[ "$(echo "$packages" | wc -l)" -ge 3 ] && pass || failed "the size bound splits the dump"

# Every package, read by Python's zipfile: manifest.xml first, entries stored, every file equal
# to the source and to the manifest's length and sha-256; the contents link equals the manifest.
cat >"$work/verify.py" <<'EOF'
import hashlib, re, sys, urllib.parse, zipfile
import xml.etree.ElementTree as ET
zip_path, copy_path, data, base = sys.argv[1:5]
ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "rs": "http://www.openarchives.org/rs/terms/"}
z = zipfile.ZipFile(zip_path)
names = z.namelist()
assert names[0] == "manifest.xml", names
manifest = z.read("manifest.xml")
assert manifest == open(copy_path, "rb").read(), "the contents copy differs from manifest.xml"
root = ET.fromstring(manifest)
assert root.find("rs:md", ns).get("capability") == "resourcedump-manifest"
seen = []
for info in z.infolist():
    assert info.compress_type == zipfile.ZIP_STORED, info.filename
for url in root.findall("s:url", ns):
    loc = url.find("s:loc", ns).text
    md = url.find("rs:md", ns)
    path = md.get("path")
    assert path.startswith("/"), path
    body = z.read(path[1:])
    assert len(body) == int(md.get("length")), path
    assert "sha-256:" + hashlib.sha256(body).hexdigest() in md.get("hash").split(), path
    assert body == open(data + path, "rb").read(), path + " differs from the source"
    assert urllib.parse.unquote(loc[len(base):]) == path[1:], (loc, path)
    seen.append(path)
assert sorted(seen) == sorted("/" + n for n in names[1:]), (seen, names)
print("\n".join(seen))
EOF
: >"$work/packed"
n=0
for url in $packages; do
  n=$((n + 1))
  manifest_url=$(grep -F "<loc>$url</loc>" "$work/rd.xml" | grep -o 'rel="contents" href="[^"]*"' |
    sed 's/.*href="//; s/"$//')
  get -f "$url" -o "$work/p$n.zip" || failed "GET $url"
  get -f "$manifest_url" -o "$work/p$n-manifest.xml" || failed "GET $manifest_url"
  check "sitemap check passes the manifest of package $n" "$bin" sitemap check "$work/p$n-manifest.xml"
  if $py "$work/verify.py" "$work/p$n.zip" "$work/p$n-manifest.xml" "$data" "$base/ckpt/" \
    >>"$work/packed" 2>"$work/verify.err"; then
    pass
  else
    failed "package $n: $(cat "$work/verify.err")"
  fi
  length=$(grep -F "<loc>$url</loc>" "$work/rd.xml" | grep -o 'length="[0-9]*"' | tr -dc 0-9)
  [ "$(stat -c %s "$work/p$n.zip")" = "$length" ] && pass || failed "package $n length"
done
[ "$(sort "$work/packed" | tr '\n' ' ')" = "/odd names/a b.txt /step-100/config.json /step-100/model-00001.safetensors /step-100/model-00002.safetensors /step-100/model-00003.safetensors " ] &&
  pass || failed "the packages hold every file once: $(tr '\n' ' ' <"$work/packed")"

# Range GET on a package: 206 with the right bytes; HEAD carries the ETag.
first=$(echo "$packages" | head -1)
code=$(get -o "$work/range.bin" -w '%{http_code}' -H 'Range: bytes=100-199' "$first")
[ "$code" = 206 ] && cmp -s "$work/range.bin" <(tail -c +101 "$work/p1.zip" | head -c 100) && pass ||
  failed "Range GET on a package (got $code)"
etag=$(get -I "$first" | tr -d '\r' | sed -n 's/^[Ee][Tt]ag: //p')
code=$(get -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$first")
[ -n "$etag" ] && [ "$code" = 304 ] && pass || failed "conditional GET on a package (got $code)"

# A change: a new dump replaces the old one, whose package goes away.
old_at=$(grep -o 'capability="resourcedump" at="[^"]*"' "$work/rd.xml")
echo '{"layers": 3}' >"$work/config.json" && mv "$work/config.json" "$data/step-100/config.json"
new_dump() { ! get -f "$docs/resourcedump.xml" | grep -qF "$old_at"; }
poll 20 new_dump && pass || failed "a new Resource Dump after a change"
get -f "$docs/resourcedump.xml" -o "$work/rd2.xml"
check "sitemap check passes the new Resource Dump" "$bin" sitemap check "$work/rd2.xml"
code=$(get -o /dev/null -w '%{http_code}' "$first")
[ "$code" = 404 ] && pass || failed "the replaced package is gone (got $code)"
n=0
for url in $(grep -o '<loc>[^<]*\.zip</loc>' "$work/rd2.xml" | sed 's/<[^>]*>//g'); do
  n=$((n + 1))
  manifest_url=$(grep -F "<loc>$url</loc>" "$work/rd2.xml" | grep -o 'rel="contents" href="[^"]*"' |
    sed 's/.*href="//; s/"$//')
  get -f "$url" -o "$work/q$n.zip" && get -f "$manifest_url" -o "$work/q$n-manifest.xml" &&
    $py "$work/verify.py" "$work/q$n.zip" "$work/q$n-manifest.xml" "$data" "$base/ckpt/" \
      >/dev/null 2>"$work/verify.err" && pass || failed "new package $n: $(cat "$work/verify.err")"
done

# Change Dumps: three changes per list, so the first scan (5 files) closed list 1 and these
# close more; each closed list whose files still hold the logged bytes gets a package.
for i in 1 2 3 4; do echo "new $i" >"$work/n$i" && mv "$work/n$i" "$data/new-$i.txt"; done
has_change_dump() { get -f "$docs/changedump.xml" -o "$work/cd.xml"; }
if poll 20 has_change_dump; then
  pass
  check "sitemap check passes changedump.xml" "$bin" sitemap check "$work/cd.xml"
  cd_zip=$(grep -o '<loc>[^<]*\.zip</loc>' "$work/cd.xml" | head -1 | sed 's/<[^>]*>//g')
  cd_manifest=$(grep -o 'rel="contents" href="[^"]*"' "$work/cd.xml" | head -1 |
    sed 's/.*href="//; s/"$//')
  get -f "$cd_zip" -o "$work/cd.zip" && get -f "$cd_manifest" -o "$work/cd-manifest.xml" ||
    failed "GET the change dump package"
  check "sitemap check passes the change dump manifest" "$bin" sitemap check "$work/cd-manifest.xml"
  $py - "$work/cd.zip" "$work/cd-manifest.xml" <<'EOF' 2>"$work/verify.err" && pass ||
import hashlib, sys, zipfile
import xml.etree.ElementTree as ET
ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9", "rs": "http://www.openarchives.org/rs/terms/"}
z = zipfile.ZipFile(sys.argv[1])
assert z.namelist()[0] == "manifest.xml"
assert z.read("manifest.xml") == open(sys.argv[2], "rb").read()
root = ET.fromstring(z.read("manifest.xml"))
md = root.find("rs:md", ns)
assert md.get("capability") == "changedump-manifest" and md.get("from") and md.get("until")
for url in root.findall("s:url", ns):
    m = url.find("rs:md", ns)
    if m.get("change") == "deleted":
        continue
    body = z.read(m.get("path")[1:])
    assert "sha-256:" + hashlib.sha256(body).hexdigest() in m.get("hash").split()
    assert z.getinfo(m.get("path")[1:]).compress_type == zipfile.ZIP_STORED
EOF
    failed "change dump package: $(cat "$work/verify.err")"
else
  failed "a Change Dump after a Change List closed"
fi

# Wait for the dump of the newest log position (its `at` is the Resource List's).
dump_current() {
  get -f "$docs/resourcedump.xml" -o "$work/last-rd.xml" &&
    list_at=$(get -f "$docs/resourcelist.xml" | grep -o ' at="[^"]*"' | head -1) &&
    grep -qF "capability=\"resourcedump\"$list_at" "$work/last-rd.xml"
}
poll 20 dump_current && pass || failed "a Resource Dump of the newest log position"
kill -TERM "$server_pid"
wait "$server_pid" && pass || failed "SIGTERM stops the server"
server_pid=

# A restart serves the dumps it had (catalog.json), without packing them again.
rm -f "$work/port"
"$bin" serve --collection "ckpt=$data" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$state" --rescan-interval 1 --list-entries 3 \
  --dumps --dump-delay 1 --dump-package-size 300000 >>"$work/server2.log" 2>&1 &
server_pid=$!
poll 10 test -s "$work/port" || failed "the restarted server writes its port file"
base="http://127.0.0.1:$(cat "$work/port" 2>/dev/null)"
docs="$base/ckpt/.resourcesync"
if get -f "$docs/resourcedump.xml" -o "$work/rd3.xml"; then
  pass
  last_at=$(grep -o 'capability="resourcedump" at="[^"]*"' "$work/last-rd.xml")
  grep -qF "$last_at" "$work/rd3.xml" && pass || failed "the restart serves the same dump"
  url=$(grep -o '<loc>[^<]*\.zip</loc>' "$work/rd3.xml" | head -1 | sed 's/<[^>]*>//g')
  code=$(get -o /dev/null -w '%{http_code}' "$url")
  [ "$code" = 200 ] && pass || failed "a saved package is served after the restart (got $code)"
else
  failed "the restarted server serves the Resource Dump at once"
fi
grep -q "resource dump ckpt at" "$work/server2.log" &&
  failed "the restart packed the collection again" || pass
kill -TERM "$server_pid"
wait "$server_pid" && pass || failed "SIGTERM stops the restarted server"
server_pid=
# The same from a config file.
echo '{"dumps": true, "dump_delay_s": 0}' >"$work/config.json"
rm -f "$work/port"
"$bin" serve --config "$work/config.json" --collection "ckpt=$data" --listen 127.0.0.1:0 \
  --port-file "$work/port" --state-dir "$work/state3" >>"$work/server3.log" 2>&1 &
server_pid=$!
poll 10 test -s "$work/port" || failed "the configured server writes its port file"
base="http://127.0.0.1:$(cat "$work/port" 2>/dev/null)"
poll 20 has_dump && pass || failed "\"dumps\": true in --config enables dumps"
# The whole path: this server's dump into an empty mirror with `shardsync sync --via-dump`,
# without a GET of any file, then a no-op.
mirror="$work/mirror"
"$bin" sync "$base/" "$mirror" --via-dump --json >"$work/via.json" 2>"$work/via.err"
rc=$?
[ $rc = 0 ] && pass || failed "sync --via-dump from serve --dumps exits 0 (rc=$rc: $(tail -3 "$work/via.err"))"
diff -r --exclude='.shardsync*' "$data" "$mirror" >/dev/null && pass ||
  failed "the mirror made from the dump equals the collection"
grep -q "baseline from the resource dump" "$work/via.err" && pass ||
  failed "the baseline came from the resource dump: $(tail -3 "$work/via.err")"
"$bin" audit "$base/" "$mirror" -q >/dev/null 2>&1 && pass || failed "audit agrees with the dump's mirror"
"$bin" sync "$base/" "$mirror" --via-dump --json >"$work/via2.json" 2>/dev/null
python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if d["fetched"] == 0 and d["in_sync"] else 1)' \
  <"$work/via2.json" && pass || failed "a second --via-dump run fetches nothing: $(cat "$work/via2.json")"
kill -TERM "$server_pid"
wait "$server_pid"
server_pid=

if [ "$failures" -ne 0 ]; then
  echo "--- server log"
  tail -30 "$work/server.log" "$work/server2.log" 2>/dev/null
fi
echo "dump_serve: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
