#!/usr/bin/env bash
# Interop with the reference implementation, resync 2.x (resync/resync, Python), both ways:
#   1. resync writes -> shardsync reads: resync-build (and resync's Dump API) write every
#      document kind it can; `shardsync sitemap check` must parse each one, and report
#      exactly the findings that resync's known defects explain (listed per document).
#   2. shardsync writes -> resync reads: `shardsync sitemap build` publishes a tree (whole,
#      and split into an index plus parts); resync's Python API reads every document, and
#      resync-sync mirrors the tree over HTTP (loopback, port 0) and audits it.
# Usage: resync_documents_test.sh [SHARDSYNC]   (default: build/bin/shardsync)
# resync comes from $SHARDSYNC_RESYNC (a source tree or a bare git repo), else ../resync
# beside this repository, else /work/.mirror/resync+resync/repo. Python is
# $SHARDSYNC_RESYNC_PYTHON (default /usr/bin/python3, which needs python3-dateutil and
# python3-defusedxml). Exits 77 (skipped) when resync or its dependencies are missing.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
bin=${1:-$repo/build/bin/shardsync}
python=${SHARDSYNC_RESYNC_PYTHON:-/usr/bin/python3}

skip() {
  echo "skipped: $*"
  exit 77
}

if [ ! -x "$bin" ] || [ -d "$bin" ]; then
  echo "resync interop: no shardsync binary at $bin" >&2
  exit 1
fi
bin=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")
for tool in timeout cmp; do
  command -v "$tool" >/dev/null || skip "'$tool' is not installed"
done
[ -x "$python" ] || skip "no Python at $python (set SHARDSYNC_RESYNC_PYTHON)"

work=$(mktemp -d "${TMPDIR:-/tmp}/resync-interop.XXXXXX") || exit 1
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

. "$here/resync_env.sh"

# --- Bookkeeping -----------------------------------------------------------------------
passes=0
failures=0
pass() {
  echo "PASS: $1"
  passes=$((passes + 1))
}
fail() {
  echo "FAIL: $1"
  failures=$((failures + 1))
}
show() {  # show LABEL FILE: indent a log's last lines into the output after a failure
  tail -n 25 "$2" | sed "s/^/  $1: /"
}

# The parser's rules (app/sitemap_command.cpp rule_for()): any of these means shardsync
# could not read the document at all. Everything else is a validator finding.
parse_rules='malformed-xml|doctype-refused|limit-exceeded|invalid-utf8|unsupported-encoding|not-a-sitemap|multiple-roots|duplicate-attribute|invalid-value|structure|truncated|decompression-failed|io-error|parse'

# check_doc FILE ENTRIES EXPECTED: `shardsync sitemap check FILE` must parse FILE, count
# ENTRIES entries, report exactly the set EXPECTED of "LEVEL rule" findings (';'-separated,
# empty for none) and exit 1 exactly when one of them is an ERROR.
check_doc() {
  local file=$1 entries=$2 expected=$3 name rc got want want_rc
  name=$(basename "$file")
  if [ ! -s "$file" ]; then
    fail "$name: resync did not write it"
    return
  fi
  timeout 30 "$bin" sitemap check "$file" >"$work/check.out" 2>"$work/check.err"
  rc=$?
  if grep -Eq "^(ERROR|WARNING) line [0-9]+: ($parse_rules): " "$work/check.out"; then
    fail "$name: shardsync cannot parse it"
    show out "$work/check.out"
    return
  fi
  pass "$name: shardsync parses it"
  if grep -Fq "$file: checked, $entries entries: " "$work/check.out"; then
    pass "$name: entry count $entries"
  else
    fail "$name: entry count, expected $entries"
    show out "$work/check.out"
  fi
  got=$(sed -nE 's/^(ERROR|WARNING) line [0-9]+: ([a-z0-9-]+): .*/\1 \2/p' "$work/check.out" |
    sort -u | paste -sd ';')
  want=$(tr ';' '\n' <<<"$expected" | sed '/^$/d' | sort -u | paste -sd ';')
  want_rc=0
  grep -q 'ERROR' <<<"$want" && want_rc=1
  if [ "$got" = "$want" ] && [ "$rc" -eq "$want_rc" ]; then
    pass "$name: findings {${want}} (exit $rc)"
  else
    fail "$name: findings {${got}} exit $rc, expected {${want}} exit $want_rc"
    show out "$work/check.out"
    show err "$work/check.err"
  fi
}

# run_driver LOG ARGS...: run resync_driver.py and count its PASS/FAIL lines.
run_driver() {
  local log=$1 rc line
  shift
  py "$here/resync_driver.py" "$@" >"$log" 2>&1
  rc=$?
  while IFS= read -r line; do
    case $line in
      PASS:\ *) pass "${line#PASS: }" ;;
      FAIL:\ *) fail "${line#FAIL: }" ;;
    esac
  done <"$log"
  if [ "$rc" -ne 0 ] && ! grep -q '^FAIL: ' "$log"; then
    fail "resync_driver.py $1 exited $rc"
    show log "$log"
  fi
}

# make_tree DIR: a small tree with a space and an '&' in file names and a subdirectory.
# mtimes carry fractional seconds so lastmod precision is exercised.
make_tree() {
  mkdir -p "$1/sub"
  printf 'alpha\n' >"$1/a.txt"
  printf 'ampersand\n' >"$1/a&b.txt"
  printf 'bravo bravo\n' >"$1/file with space.txt"
  printf 'charlie\n' >"$1/sub/c.txt"
  printf '{"d": 1}\n' >"$1/sub/d.json"
  printf '\000\001\002\377' >"$1/e.bin"
  mkdir -p "$1/sub/deep"
  printf 'foxtrot\n' >"$1/sub/deep/f.txt"
  find "$1" -type f -exec touch -d '2024-05-01 12:00:00.123456789 UTC' {} +
}

# ======================================================================================
# 1. resync writes, shardsync reads
# ======================================================================================
echo "--- resync writes, shardsync reads"
src=$work/source
docs=$work/source/rs
mkdir -p "$docs"
make_tree "$src/data"
data_uri=http://example.org/data/
docs_uri=http://example.org/rs/
caplist_uri=${docs_uri}capabilitylist.xml
mapping=("${data_uri}=$src/data" "${docs_uri}=$docs")

# resync_build NAME ARGS...: resync-build exits 0 even on fatal errors (it prints
# "FatalError" or a traceback on stderr), so judge it by its stderr.
resync_build() {
  local name=$1
  shift
  if ! py "$resync/resync-build" "$@" >"$work/$name.log" 2>&1 ||
    grep -Eq 'FatalError|Traceback' "$work/$name.log"; then
    fail "resync-build $name"
    show log "$work/$name.log"
  fi
}

resync_build resourcelist --write-resourcelist --hash md5 --hash sha-256 \
  --capabilitylist-link "$caplist_uri" --paths "$src/data" \
  --outfile "$docs/resourcelist.xml" "${mapping[@]}"
# The outfile must lie under a mapping: resync derives the parts' URIs from it.
resync_build split --write-resourcelist --hash md5 --hash sha-256 --max-sitemap-entries 2 \
  --capabilitylist-link "$caplist_uri" --paths "$src/data" \
  --outfile "$docs/split.xml" "${mapping[@]}"
resync_build capabilitylist \
  --write-capabilitylist "resourcelist=${docs_uri}resourcelist.xml,changelist=${docs_uri}changelist.xml,resourcedump=${docs_uri}resourcedump.xml" \
  --sourcedescription-link "http://example.org/.well-known/resourcesync" \
  --describedby-link "http://example.org/about" \
  --outfile "$docs/capabilitylist.xml" "${mapping[@]}"
resync_build description --write-sourcedescription "$caplist_uri" \
  --describedby-link "http://example.org/about" \
  --outfile "$docs/description.xml" "${mapping[@]}"

# A change list: the reference list against a scan of a modified copy of the tree
# (one update, one delete, one create).
cp -a "$src/data" "$src/data2"
printf 'alpha, updated\n' >"$src/data2/a.txt"
rm "$src/data2/e.bin"
printf 'new\n' >"$src/data2/new.txt"
touch -d '2024-05-02 08:30:00 UTC' "$src/data2/a.txt" "$src/data2/new.txt"
resync_build changelist --write-changelist --reference "$docs/resourcelist.xml" \
  --hash md5 --hash sha-256 --capabilitylist-link "$caplist_uri" --paths "$src/data2" \
  --outfile "$docs/changelist.xml" "${data_uri}=$src/data2" "${docs_uri}=$docs"

# A resource dump: resync-build --write-resourcedump is unimplemented in 2.0.1 (it prints
# "OOPS - FIXME"), so resync_driver.py calls resync's Dump class directly.
run_driver "$work/dump.log" dump "$src/data" "$data_uri" "$docs" "$docs_uri" "$caplist_uri"

# Expected findings, each explained by a resync defect; anything else fails the test.
# - loc-absolute: resync writes file names into <loc> verbatim, so "file with space.txt"
#   becomes a <loc> with literal spaces, which is not a URI (RFC 3986; resync maps
#   URI <-> path by plain prefix substitution without percent-encoding).
check_doc "$docs/resourcelist.xml" 7 "ERROR loc-absolute"
# The index's parts hold two entries each in URI order: a&b.txt a.txt | e.bin
# "file with space.txt" | sub/c.txt sub/d.json | sub/deep/f.txt; only the second part
# has the bad <loc>.
check_doc "$docs/split.xml" 4 ""
check_doc "$docs/split00000.xml" 2 ""
check_doc "$docs/split00001.xml" 2 "ERROR loc-absolute"
check_doc "$docs/split00002.xml" 2 ""
check_doc "$docs/split00003.xml" 1 ""
check_doc "$docs/capabilitylist.xml" 3 ""
# - describedby-recommended: resync can put rs:ln only on the document, never on a Source
#   Description's entries, so the capability list entry lacks rel="describedby" (§8 SHOULD).
check_doc "$docs/description.xml" 1 "WARNING describedby-recommended"
# - from-required: resync never writes `from` on a change list's <rs:md> (a MUST, §12).
# - datetime-recommended: built from two snapshots, resync's 1.1 change entries carry only
#   <lastmod>, no `datetime` -- which resync-sync --incremental itself then refuses
#   ("Entry ... has no update datetime/timestamp").
check_doc "$docs/changelist.xml" 3 "ERROR from-required;WARNING datetime-recommended"
# Dump manifests (the copy inside the ZIP declares encoding='utf-8', lower case):
# - at-required: resync writes no `at` on a manifest's <rs:md> (a MUST, §11.2).
# - up-required: nor a rel="up" link (Dump builds its manifests with no links).
# - type-recommended: resync's disk scan never sets a media type.
# - loc-absolute: the <loc> with literal spaces again.
# - path-leading-slash (ZIP copy only): paths are relative to the package ("a.txt"),
#   not "/a.txt" as in the spec's examples; both occur, so it is only a warning.
# resync's separate copy (resourcedump00000.xml) is written before the paths are made
# package-relative, so its `path`s are this machine's absolute file names: no warning,
# but useless to a reader.
manifest_findings="ERROR at-required;ERROR up-required;WARNING type-recommended;ERROR loc-absolute"
check_doc "$docs/manifest.xml" 7 "$manifest_findings;WARNING path-leading-slash"
check_doc "$docs/resourcedump00000.xml" 7 "$manifest_findings"
check_doc "$docs/resourcedump.xml" 1 ""

# ======================================================================================
# 2. shardsync writes, resync reads and mirrors
# ======================================================================================
echo "--- shardsync writes, resync reads"
www=$work/www
make_tree "$www/tree"
# Only the server's stdout is read for the port; -u so the line is not buffered.
timeout 120 "$python" -u -m http.server 0 --bind 127.0.0.1 --directory "$www" \
  >"$work/server.out" 2>"$work/server.err" &
server_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -nE 's/^Serving HTTP on .* port ([0-9]+) .*/\1/p' "$work/server.out")
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.05
done
if [ -z "$port" ]; then
  fail "http.server on 127.0.0.1 did not start"
  show err "$work/server.err"
  echo "resync interop: $passes passed, $failures failed"
  exit 1
fi
site=http://127.0.0.1:$port
tree_uri=$site/tree/

# sync_and_audit LABEL SITEMAP_URI [resync-sync options...]: baseline-sync the tree into
# a fresh directory, compare it with the tree, then audit it.
sync_and_audit() {
  local label=$1 sitemap=$2 run=$work/sync-$1 loc rel mirrored n_tree n_mirror n_locs bad=
  shift 2
  mkdir -p "$run"
  # resync-sync keeps .resync-client-status.cfg in the current directory; exits 0 even on
  # errors, so its output is what counts.
  (cd "$run" && py "$resync/resync-sync" --baseline --sitemap "$sitemap" "$@" \
    "$tree_uri" "$run/mirror") >"$run/baseline.log" 2>&1
  if grep -Eq '^Status: +SYNCED \(same=0, created=7, updated=0, deleted=0\)' "$run/baseline.log" &&
    ! grep -Eq 'FatalError|Traceback|Failed' "$run/baseline.log"; then
    pass "$label: resync-sync --baseline created 7 resources"
  else
    fail "$label: resync-sync --baseline"
    show log "$run/baseline.log"
  fi
  # resync maps URI to path by prefix substitution without percent-decoding, so a file
  # lands under its <loc>'s escaped name: "file with space.txt" as
  # "file%20with%20space.txt" (RESOURCESYNC.md §4.1). Every <loc> of the list must name a
  # tree file once decoded, and that file must arrive byte for byte under the escaped name.
  # (Both builds list the same <loc>s; the unsplit list is the easier one to read.)
  while IFS= read -r loc; do
    mirrored=${loc#"$tree_uri"}
    rel=$(printf '%b' "${mirrored//%/\\x}")
    if [ "$mirrored" = "$loc" ] || [ ! -f "$www/tree/$rel" ]; then
      bad="$bad <loc> $loc names no tree file;"
    elif ! cmp -s "$www/tree/$rel" "$run/mirror/$mirrored"; then
      bad="$bad '$rel' differs or is missing as '$mirrored';"
    fi
  done < <(grep -o '<loc>[^<]*' "$www/docs/resourcelist.xml" | sed 's/^<loc>//; s/&amp;/\&/g')
  n_tree=$(find "$www/tree" -type f | wc -l)
  n_mirror=$(find "$run/mirror" -type f 2>/dev/null | wc -l)
  n_locs=$(grep -c '<loc>' "$www/docs/resourcelist.xml")
  if [ -z "$bad" ] && [ "$n_tree" -eq "$n_mirror" ] && [ "$n_tree" -eq "$n_locs" ]; then
    pass "$label: the mirror equals the tree byte for byte ($n_mirror files)"
  else
    fail "$label: mirror differs:${bad:- } ($n_mirror files, $n_locs <loc>s, tree has $n_tree)"
  fi
  # resync-sync --hash is no use here: Client.prune_hashes() drops exactly the hash types
  # the source *does* list, so resync never compares hashes on a list that has them.
  # resync_driver.py compares our hashes with the files instead.
  (cd "$run" && py "$resync/resync-sync" --audit --sitemap "$sitemap" "$@" "$tree_uri" "$run/mirror") >"$run/audit.log" 2>&1
  if grep -Eq '^Status: +IN SYNC \(same=7, to create=0, to update=0, to delete=0\)' "$run/audit.log"; then
    pass "$label: resync-sync --audit reports IN SYNC"
  else
    fail "$label: resync-sync --audit"
    show log "$run/audit.log"
  fi
}

# Normal build: one resource list.
timeout 30 "$bin" sitemap build "$www/tree" --base-url "$tree_uri" --documents-url "$site/docs/" \
  --describedby "$site/about.html" --out "$www/docs" >"$work/build.log" 2>&1 ||
  { fail "shardsync sitemap build"; show log "$work/build.log"; }
# Split build: an index plus parts of at most 3 entries (7 files -> 3 parts).
timeout 30 "$bin" sitemap build "$www/tree" --base-url "$tree_uri" --documents-url "$site/split/" \
  --max-entries 3 --out "$www/split" >"$work/build-split.log" 2>&1 ||
  { fail "shardsync sitemap build --max-entries 3"; show log "$work/build-split.log"; }
if [ -s "$www/split/resourcelist-00003.xml" ] && [ ! -e "$www/split/resourcelist-00004.xml" ]; then
  pass "split build wrote 3 parts"
else
  fail "split build wrote 3 parts: $(cd "$www/split" && printf '%s ' *)"
fi

for set in docs split; do
  parts=0
  [ "$set" = split ] && parts=3
  run_driver "$work/read-$set-rl.log" resourcelist "$site/$set/resourcelist.xml" \
    "$www/tree" "$tree_uri" "$site/$set/capabilitylist.xml" "$parts"
  run_driver "$work/read-$set-cl.log" capabilitylist "$site/$set/capabilitylist.xml" \
    "$site/$set/resourcelist.xml" "$site/$set/description.xml"
  run_driver "$work/read-$set-sd.log" description "$site/$set/description.xml" \
    "$site/$set/capabilitylist.xml"
done

sync_and_audit normal "$site/docs/resourcelist.xml"
sync_and_audit split "$site/split/resourcelist.xml"

# Discovery: resync must find the resource list (and the index's parts) through our
# capability list alone.
for set in docs split; do
  run=$work/sync-normal
  (cd "$run" && py "$resync/resync-sync" --audit --capabilitylist "$site/$set/capabilitylist.xml" \
    "$tree_uri" "$run/mirror") >"$work/discover-$set.log" 2>&1
  if grep -Eq '^Status: +IN SYNC \(same=7, to create=0, to update=0, to delete=0\)' "$work/discover-$set.log"; then
    pass "$set: resync-sync --audit --capabilitylist finds the list and reports IN SYNC"
  else
    fail "$set: resync-sync --audit --capabilitylist"
    show log "$work/discover-$set.log"
  fi
done

echo "resync interop: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
