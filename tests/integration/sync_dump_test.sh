#!/usr/bin/env bash
# `shardsync sync --via-dump` end to end: documents and ZIP packages served statically by
# `python3 -m http.server` (packages made here with python's zipfile, stored and deflated,
# manifest first), a baseline from the Resource Dump into an empty DEST ending byte-identical
# without one GET of a resource, a second run that changes nothing, a hostile package that
# touches nothing outside DEST, an incremental run caught up by a Change Dump, the fallback
# to the Resource List, and — when the reference
# implementation is at hand — a dump written by resync-build. Usage: sync_dump_test.sh SHARDSYNC
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(realpath "$1")
py3=/usr/bin/python3
work=$(mktemp -d)
server=
cleanup() {
  [ -n "$server" ] && kill -9 "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
check() {  # check DESCRIPTION COMMAND...
  local what=$1
  shift
  if "$@" >/dev/null 2>&1; then pass; else failed "$what"; fi
}
same_tree() { diff -r --exclude='.shardsync*' "$1" "$2"; }
json_field() { $py3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

www="$work/www"
mkdir -p "$www"
: >"$work/http.log"
$py3 -m http.server 0 --bind 127.0.0.1 --directory "$www" >"$work/http.log" 2>&1 &
server=$!
for _ in $(seq 1 100); do grep -q "port" "$work/http.log" && break; sleep 0.1; done
port=$(grep -o 'port [0-9]*' "$work/http.log" | head -1 | cut -d' ' -f2)
[ -n "$port" ] || { echo "http.server did not start"; exit 1; }
origin="http://127.0.0.1:$port"

# make_set NAME: writes www/NAME/{capabilitylist,resourcelist,changelist,resourcedump}.xml
# and its packages from www/NAME/ (the resources themselves), per the spec in $work/NAME.spec:
# one line per package "stored|deflated FILE..." (paths relative to the set).
make_set() {
  $py3 - "$www" "$origin" "$1" "$work/$1.spec" <<'PY'
import hashlib, os, sys, zipfile
www, origin, name, spec = sys.argv[1:5]
root = os.path.join(www, name)
base = f"{origin}/{name}/"
at = "2026-01-01T00:00:00Z"
head = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/'
        'sitemap/0.9" xmlns:rs="http://www.openarchives.org/rs/terms/">\n')
def md(path):
    data = open(os.path.join(root, path), "rb").read()
    return len(data), hashlib.sha256(data).hexdigest()
def lastmod(path):
    import datetime
    t = os.stat(os.path.join(root, path)).st_mtime
    return datetime.datetime.utcfromtimestamp(int(t)).strftime("%Y-%m-%dT%H:%M:%SZ")
files = []
dump = head + f'<rs:md capability="resourcedump" at="{at}" completed="{at}"/>\n'
os.makedirs(os.path.join(root, ".dump"), exist_ok=True)
for n, line in enumerate(open(spec).read().split("\n")):
    if not line.strip():
        continue
    mode, *paths = line.split()
    manifest = head + f'<rs:md capability="resourcedump-manifest" at="{at}"/>\n'
    for p in paths:
        if not p.startswith("!"):
            files.append(p)
    zname = f".dump/part{n}.zip"
    with zipfile.ZipFile(os.path.join(root, zname), "w",
                         zipfile.ZIP_STORED if mode == "stored" else zipfile.ZIP_DEFLATED) as z:
        entries = []
        for p in paths:
            if p.startswith("!"):  # hostile: "!LOC!ENTRY!DATA" or "!LOC!ENTRY!symlink"
                _, loc, entry, data = p.split("!")
                manifest += (f'<url><loc>{base}{loc}</loc><rs:md path="/{entry}" length="{len(data)}"'
                             f' hash="sha-256:{hashlib.sha256(data.encode()).hexdigest()}"/></url>\n')
                entries.append((entry, data))
                continue
            length, digest = md(p)
            manifest += (f'<url><loc>{base}{p}</loc><lastmod>{lastmod(p)}</lastmod><rs:md path="/files/{p}"'
                         f' length="{length}" hash="sha-256:{digest}" type="application/octet-stream"/></url>\n')
        manifest += "</urlset>\n"
        z.writestr("manifest.xml", manifest)
        for p in paths:
            if not p.startswith("!"):
                z.write(os.path.join(root, p), "files/" + p)
        for entry, data in entries:
            if data == "symlink":
                info = zipfile.ZipInfo(entry)
                info.external_attr = (0o120777 << 16)
                info.create_system = 3
                z.writestr(info, "../../outside/sentinel")
            else:
                z.writestr(entry, data)
    open(os.path.join(root, f".dump/part{n}.xml"), "w").write(manifest)
    zdata = open(os.path.join(root, zname), "rb").read()
    link = f'<rs:ln rel="contents" href="{base}.dump/part{n}.xml" type="application/xml"/>' if n % 2 else ""
    dump += (f'<url><loc>{base}{zname}</loc><rs:md type="application/zip" length="{len(zdata)}"'
             f' hash="sha-256:{hashlib.sha256(zdata).hexdigest()}"/>{link}</url>\n')
open(os.path.join(root, ".dump/resourcedump.xml"), "w").write(dump + "</urlset>\n")
rl = head + f'<rs:md capability="resourcelist" at="{at}"/>\n'
for p in files:
    length, digest = md(p)
    rl += f'<url><loc>{base}{p}</loc><lastmod>{lastmod(p)}</lastmod><rs:md length="{length}" hash="sha-256:{digest}"/></url>\n'
open(os.path.join(root, ".dump/resourcelist.xml"), "w").write(rl + "</urlset>\n")
open(os.path.join(root, ".dump/changelist.xml"), "w").write(
    head + f'<rs:md capability="changelist" from="{at}"/>\n</urlset>\n')
caps = head + '<rs:md capability="capabilitylist"/>\n'
for cap, doc in (("resourcelist", "resourcelist"), ("changelist", "changelist"),
                 ("resourcedump", "resourcedump")):
    if cap == "resourcedump" and os.environ.get("NO_DUMP"):
        continue
    caps += f'<url><loc>{base}.dump/{doc}.xml</loc><rs:md capability="{cap}"/></url>\n'
open(os.path.join(root, "capabilitylist.xml"), "w").write(caps + "</urlset>\n")
PY
}

# --- a good set: two packages (stored, deflated), nested paths, an empty file
src="$www/ckpt"
mkdir -p "$src/step-1/shards"
for i in 1 2 3; do head -c $((100000 * i + 7)) /dev/urandom >"$src/step-1/shards/shard-$i.bin"; done
printf '{"layers": 2}\n' >"$src/step-1/config.json"
: >"$src/step-1/empty.txt"
yes 'compressible line' | head -c 200000 >"$src/notes.txt"
touch -d '2025-06-01 12:00:00 UTC' "$src"/step-1/shards/* "$src"/step-1/*.* "$src/notes.txt"
cat >"$work/ckpt.spec" <<'EOF'
stored step-1/shards/shard-1.bin step-1/shards/shard-2.bin step-1/config.json
deflated step-1/shards/shard-3.bin step-1/empty.txt notes.txt
EOF
make_set ckpt || { echo "could not write the dump"; exit 1; }
# The tree to compare with: the resources only.
mkdir -p "$work/expect" && cp -a "$src/step-1" "$src/notes.txt" "$work/expect/"
caps="$origin/ckpt/capabilitylist.xml"

mirror="$work/mirror"
lines_before=$(wc -l <"$work/http.log")
"$bin" sync "$caps" "$mirror" --via-dump --json >"$work/b.json" 2>"$work/b.err"
rc=$?
[ $rc = 0 ] && pass || failed "dump baseline exits 0 (rc=$rc: $(cat "$work/b.err") $(cat "$work/b.json"))"
check "dump baseline: mirror equals the source" same_tree "$work/expect" "$mirror"
[ "$(json_field mode <"$work/b.json")" = baseline ] && pass || failed "first run is a baseline"
[ "$(json_field fetched <"$work/b.json")" = 6 ] && pass || failed "6 files unpacked: $(cat "$work/b.json")"
[ "$(json_field bytes_fetched <"$work/b.json")" -gt 0 ] && pass || failed "package bytes counted"
tail -n +"$((lines_before + 1))" "$work/http.log" >"$work/b.requests"
grep -q 'GET /ckpt/.dump/part0.zip' "$work/b.requests" && pass || failed "packages fetched"
grep -q 'GET /ckpt/.dump/part1.xml' "$work/b.requests" && pass || failed "the advertised manifest copy fetched"
! grep -Eq 'GET /ckpt/(step-1|notes)' "$work/b.requests" && pass ||
  failed "no resource fetched one by one: $(grep -E 'GET /ckpt/(step-1|notes)' "$work/b.requests" | head -3)"
check "packages removed after unpacking" bash -c "[ -z \"\$(ls -A '$mirror/.shardsync/dumps')\" ]"
mtime_src=$(stat -c %Y "$src/step-1/config.json")
[ "$mtime_src" = "$(stat -c %Y "$mirror/step-1/config.json")" ] && pass || failed "mtime follows <lastmod>"
check "audit agrees" "$bin" audit "$caps" "$mirror" -q
[ "$($py3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["baseline_complete"], s["cursor"], s["baseline_at"])' "$mirror/.shardsync/state.json")" = "True 2026-01-01T00:00:00Z 2026-01-01T00:00:00Z" ] &&
  pass || failed "state after a dump baseline: complete, cursor = the dump's at: $(cat "$mirror/.shardsync/state.json")"

# --- a second run changes nothing (incremental from the Change List, as after any baseline)
"$bin" sync "$caps" "$mirror" --via-dump --json >"$work/n.json" 2>"$work/n.err"
rc=$?
[ $rc = 0 ] && pass || failed "second run exits 0 (rc=$rc: $(cat "$work/n.err"))"
[ "$(json_field mode <"$work/n.json")" = incremental ] && pass || failed "second run is incremental: $(cat "$work/n.json")"
[ "$(json_field fetched <"$work/n.json")" = 0 ] && pass || failed "second run fetches nothing"
check "still the same tree" same_tree "$work/expect" "$mirror"

# --- a forced dump baseline over a current mirror: nothing unpacked, an extra file deleted
echo stray >"$mirror/stray.txt"
"$bin" sync "$caps" "$mirror" --via-dump --baseline --delete --json >"$work/r.json" 2>"$work/r.err"
rc=$?
[ $rc = 0 ] && pass || failed "re-baseline exits 0 (rc=$rc: $(cat "$work/r.err"))"
[ "$(json_field up_to_date <"$work/r.json")" = 6 ] && pass || failed "all 6 current: $(cat "$work/r.json")"
[ "$(json_field fetched <"$work/r.json")" = 0 ] && pass || failed "nothing unpacked again"
[ "$(json_field deleted <"$work/r.json")" = 1 ] && pass || failed "--delete removed the extra file"
check "same tree after --delete" same_tree "$work/expect" "$mirror"

# --- incremental from a Change Dump: the source's Change List now starts after DEST's cursor,
# so only the dump's package can bring DEST forward (one resource changed twice in it, one
# created, one deleted); without --via-dump the same DEST would need a new baseline.
cp -a "$mirror" "$work/mirror-nodump"
yes 'second version' | head -c 150000 >"$src/notes.txt"
mkdir -p "$src/step-2" && head -c 70000 /dev/urandom >"$src/step-2/new.bin"
rm "$src/step-1/empty.txt"
$py3 - "$src" "$origin/ckpt/" <<'PY'
import hashlib, os, sys, zipfile
src, base = sys.argv[1:3]
head = ('<?xml version="1.0" encoding="UTF-8"?>\n<urlset xmlns="http://www.sitemaps.org/schemas/'
        'sitemap/0.9" xmlns:rs="http://www.openarchives.org/rs/terms/">\n')
frm, until = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"
first = b"an intermediate version\n"
final = open(os.path.join(src, "notes.txt"), "rb").read()
new = open(os.path.join(src, "step-2/new.bin"), "rb").read()
def url(loc, change, when, path=None, data=None):
    md = f'change="{change}" datetime="{when}"'
    if path:
        md += f' path="/{path}" length="{len(data)}" hash="sha-256:{hashlib.sha256(data).hexdigest()}"'
    return f"<url><loc>{base}{loc}</loc><rs:md {md}/></url>\n"
manifest = (head + f'<rs:md capability="changedump-manifest" from="{frm}" until="{until}"/>\n'
            + url("notes.txt", "updated", "2026-01-01T10:00:00Z", "c1/notes.txt", first)
            + url("step-2/new.bin", "created", "2026-01-01T10:30:00Z", "c2/new.bin", new)
            + url("step-1/empty.txt", "deleted", "2026-01-01T10:45:00Z")
            + url("notes.txt", "updated", "2026-01-01T11:00:00Z", "c3/notes.txt", final)
            + "</urlset>\n")
with zipfile.ZipFile(os.path.join(src, ".dump/changes0.zip"), "w", zipfile.ZIP_DEFLATED) as z:
    z.writestr("manifest.xml", manifest)
    z.writestr("c1/notes.txt", first)
    z.writestr("c2/new.bin", new)
    z.writestr("c3/notes.txt", final)
zdata = open(os.path.join(src, ".dump/changes0.zip"), "rb").read()
open(os.path.join(src, ".dump/changedump.xml"), "w").write(
    head + f'<rs:md capability="changedump" from="{frm}" until="{until}"/>\n'
    f'<url><loc>{base}.dump/changes0.zip</loc><rs:md type="application/zip" length="{len(zdata)}"'
    f' hash="sha-256:{hashlib.sha256(zdata).hexdigest()}" from="{frm}" until="{until}"/></url>\n</urlset>\n')
open(os.path.join(src, ".dump/changelist.xml"), "w").write(
    head + f'<rs:md capability="changelist" from="{until}"/>\n</urlset>\n')
caps = open(os.path.join(src, "capabilitylist.xml")).read().replace(
    "</urlset>", f'<url><loc>{base}.dump/changedump.xml</loc><rs:md capability="changedump"/></url>\n</urlset>')
open(os.path.join(src, "capabilitylist.xml"), "w").write(caps)
PY
rm -rf "$work/expect" && mkdir -p "$work/expect" && cp -a "$src/step-1" "$src/step-2" "$src/notes.txt" "$work/expect/"
"$bin" sync "$caps" "$mirror" --via-dump --delete --json >"$work/cd.json" 2>"$work/cd.err"
rc=$?
[ $rc = 0 ] && pass || failed "change dump: exit 0 (rc=$rc: $(cat "$work/cd.err") $(cat "$work/cd.json"))"
[ "$(json_field mode <"$work/cd.json")" = incremental ] && pass || failed "change dump run is incremental: $(cat "$work/cd.json")"
[ -z "$(json_field rebaseline_reason <"$work/cd.json")" ] && pass || failed "no re-baseline: $(cat "$work/cd.json")"
[ "$(json_field fetched <"$work/cd.json")" = 2 ] && pass || failed "2 files unpacked (the last notes.txt, new.bin): $(cat "$work/cd.json")"
[ "$(json_field deleted <"$work/cd.json")" = 1 ] && pass || failed "1 deletion made"
check "change dump: mirror equals the source" same_tree "$work/expect" "$mirror"
[ "$($py3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cursor"])' "$mirror/.shardsync/state.json")" = 2026-01-02T00:00:00Z ] &&
  pass || failed "cursor moved to the package's until: $(cat "$mirror/.shardsync/state.json")"
"$bin" sync "$caps" "$mirror" --via-dump --delete --json >"$work/cd2.json" 2>/dev/null
[ "$(json_field fetched <"$work/cd2.json")" = 0 ] && [ "$(json_field mode <"$work/cd2.json")" = incremental ] &&
  pass || failed "after the change dump, a rerun is a no-op: $(cat "$work/cd2.json")"
"$bin" sync "$caps" "$work/mirror-nodump" --json >"$work/nd.json" 2>/dev/null
[ -n "$(json_field rebaseline_reason <"$work/nd.json")" ] && pass ||
  failed "without --via-dump the gap forces a re-baseline: $(cat "$work/nd.json")"

# --- a corrupted package: its hash no longer matches the dump's, nothing from it is used
printf 'X' | dd of="$src/.dump/part1.zip" bs=1 seek=100 conv=notrunc 2>/dev/null
rm -rf "$work/m3"
"$bin" sync "$caps" "$work/m3" --via-dump --json >"$work/c.json" 2>"$work/c.err"
rc=$?
[ $rc = 3 ] && pass || failed "a corrupted package: exit 3 (rc=$rc: $(cat "$work/c.err"))"
grep -q 'part1.zip' "$work/c.json" && pass || failed "the failure names the package"
check "the other package still unpacked" cmp "$src/step-1/config.json" "$work/m3/step-1/config.json"
check "nothing from the corrupted one" test ! -e "$work/m3/notes.txt"
state_of() { $py3 -c 'import json,sys; s=json.load(open(sys.argv[1])); print(s["baseline_complete"], s["cursor"])' "$1/.shardsync/state.json"; }
[ "$(state_of "$work/m3")" = "False None" ] && pass ||
  failed "an incomplete dump baseline sets no cursor: $(state_of "$work/m3")"

# --- a hostile set: traversal in <loc>, an escaping entry name, a symlink entry
hs="$www/hostile"
mkdir -p "$hs"
printf 'fine\n' >"$hs/ok.txt"
cat >"$work/hostile.spec" <<'EOF'
deflated ok.txt !../../outside/sentinel!x!pwned !%2e%2e/%2e%2e/outside/sentinel!y!pwned !link.txt!lnk!symlink !z.txt!../../outside/sentinel!pwned
EOF
make_set hostile || { echo "could not write the hostile dump"; exit 1; }
mkdir -p "$work/h/outside" "$work/h/dest"
echo keep >"$work/h/outside/sentinel"
echo 'old good' >"$work/h/dest/ok.txt"
"$bin" sync "$origin/hostile/capabilitylist.xml" "$work/h/dest" --via-dump --json >"$work/h.json" 2>"$work/h.err"
rc=$?
[ $rc = 3 ] && pass || failed "hostile dump: exit 3 (rc=$rc: $(cat "$work/h.err"))"
[ "$(cat "$work/h/outside/sentinel")" = keep ] && pass || failed "the sentinel outside DEST is untouched"
[ "$(ls -A "$work/h/outside")" = sentinel ] && pass || failed "nothing new outside DEST"
[ "$(ls -A "$work/h")" = "dest
outside" ] && pass || failed "nothing new beside DEST: $(ls -A "$work/h")"
check "the good resource unpacked" cmp "$hs/ok.txt" "$work/h/dest/ok.txt"
check "no symlink made" test ! -L "$work/h/dest/link.txt"
check "the refused symlink wrote nothing" test ! -e "$work/h/dest/link.txt"
[ "$($py3 -c 'import json,sys; print(len(json.load(sys.stdin)["failures"]))' <"$work/h.json")" = 3 ] &&
  pass || failed "three entries refused: $(cat "$work/h.json")"
check "z.txt unpacked from its escaping entry name, inside DEST" test "$(cat "$work/h/dest/z.txt")" = pwned

# --- no Resource Dump offered: the Resource List does the baseline, and says so
fb="$www/fallback"
mkdir -p "$fb"
head -c 5000 /dev/urandom >"$fb/one.bin"
echo 'stored one.bin' >"$work/fallback.spec"
NO_DUMP=1 make_set fallback || { echo "could not write the fallback set"; exit 1; }
"$bin" sync "$origin/fallback/capabilitylist.xml" "$work/fb" --via-dump --json >"$work/f.json" 2>"$work/f.err"
rc=$?
[ $rc = 0 ] && pass || failed "fallback exits 0 (rc=$rc: $(cat "$work/f.err"))"
grep -q 'no resource dump' "$work/f.err" && pass || failed "the fallback is logged: $(cat "$work/f.err")"
check "fallback: the file arrived" cmp "$fb/one.bin" "$work/fb/one.bin"

# --- the reference implementation's dump writer (resync-build --write-resourcedump)
repo=$(cd "$here/../.." && pwd)
python=$py3
resync=
# resync_env.sh finds (or exports) resync and checks its Python, exiting through skip():
# in a subshell, so a missing resync skips only this part.
(
  skip() {
    echo "resync part skipped: $*" >&2
    exit 77
  }
  # shellcheck source=../interop/resync_env.sh
  . "$here/../interop/resync_env.sh" >/dev/null && echo "$resync" >"$work/resync.path"
)
[ -s "$work/resync.path" ] && resync=$(cat "$work/resync.path")
if [ -n "$resync" ]; then
  echo "resync part: resync from $resync"
  rs="$www/rs"
  mkdir -p "$rs/data/sub" "$rs/docs"
  for i in 1 2; do head -c $((4000 * i)) /dev/urandom >"$rs/data/part-$i.bin"; done
  printf 'alpha\n' >"$rs/data/sub/a.txt"
  (cd "$resync" && $py3 ./resync-build --write-resourcedump --hash sha-256 \
    --outfile "$rs/docs/rd_" "$origin/rs/data/=$rs/data") >"$work/rs.log" 2>&1
  if [ -f "$rs/docs/rd_00000.zip" ]; then
    $py3 - "$rs/docs" "$origin/rs" <<'PY'
import hashlib, os, sys
docs, base = sys.argv[1:3]
z = open(os.path.join(docs, "rd_00000.zip"), "rb").read()
ns = ('<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
      'xmlns:rs="http://www.openarchives.org/rs/terms/">\n')
open(os.path.join(docs, "resourcedump.xml"), "w").write(
    ns + '<rs:md capability="resourcedump" at="2026-01-01T00:00:00Z"/>\n'
    f'<url><loc>{base}/docs/rd_00000.zip</loc><rs:md type="application/zip" length="{len(z)}" '
    f'hash="sha-256:{hashlib.sha256(z).hexdigest()}"/></url>\n</urlset>\n')
open(os.path.join(docs, "capabilitylist.xml"), "w").write(
    ns + '<rs:md capability="capabilitylist"/>\n'
    f'<url><loc>{base}/docs/resourcedump.xml</loc><rs:md capability="resourcedump"/></url>\n</urlset>\n')
PY
    "$bin" sync "$origin/rs/docs/capabilitylist.xml" "$work/rsm" --via-dump \
      --map "$origin/rs/data/=" --json >"$work/rs.json" 2>"$work/rs.err"
    rc=$?
    [ $rc = 0 ] && pass || failed "resync's dump: exit 0 (rc=$rc: $(cat "$work/rs.err") $(cat "$work/rs.json"))"
    check "resync's dump: mirror equals its data" same_tree "$rs/data" "$work/rsm"
  else
    failed "resync-build wrote no dump: $(cat "$work/rs.log")"
  fi
fi

echo "sync_dump_test: $passes passed, $failures failed"
[ "$failures" = 0 ]
