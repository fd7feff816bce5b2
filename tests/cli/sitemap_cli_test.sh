#!/usr/bin/env bash
# The `shardsync sitemap` contract: output lines, exit codes (0 ok, 1 errors, 2 usage),
# files and URLs. Usage: sitemap_cli_test.sh SHARDSYNC DATA_DIR SHARED_DIR
set -uo pipefail
bin=$1
data=$2
shared=$3
work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
failures=0
passes=0

expect_exit() {  # expect_exit CODE DESCRIPTION -- COMMAND...
  local want=$1 what=$2
  shift 3
  "$@" >"$work/stdout" 2>"$work/err"
  local got=$?
  if [ "$got" -eq "$want" ]; then
    passes=$((passes + 1))
  else
    echo "FAIL: $what: exit $got, expected $want"
    sed 's/^/  out: /' "$work/stdout" | head -20
    sed 's/^/  err: /' "$work/err" | head -20
    failures=$((failures + 1))
  fi
}

expect_output() {  # expect_output DESCRIPTION PATTERN (extended regex over $work/stdout)
  if grep -Eq -- "$2" "$work/stdout"; then
    passes=$((passes + 1))
  else
    echo "FAIL: $1: no line matches /$2/"
    sed 's/^/  out: /' "$work/stdout" | head -20
    failures=$((failures + 1))
  fi
}

cat >"$work/good.xml" <<'XML'
<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" xmlns:rs="http://www.openarchives.org/rs/terms/">
  <rs:ln rel="up" href="http://example.com/capabilitylist.xml"/>
  <rs:md capability="changelist" from="2013-01-03T00:00:00Z"/>
  <url><loc>http://example.com/a</loc><rs:md change="created" datetime="2013-01-03T10:00:00Z"/></url>
</urlset>
XML
sed 's/ datetime="2013-01-03T10:00:00Z"//' "$work/good.xml" >"$work/warn.xml"
sed 's/ from="2013-01-03T00:00:00Z"//' "$work/good.xml" >"$work/error.xml"

expect_exit 0 "a valid document" -- "$bin" sitemap check "$work/good.xml"
expect_output "a summary line" "good.xml: checked, 1 entries: 0 errors, 0 warnings"
expect_exit 0 "warnings alone still pass" -- "$bin" sitemap check "$work/warn.xml"
expect_output "the warning line format" "^WARNING line 5: datetime-recommended: "
expect_exit 1 "--strict makes warnings errors" -- "$bin" sitemap check --strict "$work/warn.xml"
expect_output "strict lines say ERROR" "^ERROR line 5: datetime-recommended: "
expect_exit 1 "a MUST violation" -- "$bin" sitemap check "$work/error.xml"
expect_output "the error line format" "^ERROR line 4: from-required: "
expect_exit 2 "no document is a usage error" -- "$bin" sitemap check
expect_exit 2 "an unknown flag is a usage error" -- "$bin" sitemap check --bogus "$work/good.xml"
expect_exit 2 "no subcommand is a usage error" -- "$bin" sitemap
expect_exit 0 "--version" -- "$bin" --version
expect_output "the version" "^shardsync [0-9]+\.[0-9]+\.[0-9]+"
expect_exit 1 "a missing file" -- "$bin" sitemap check "$work/nope.xml"

printf '<!DOCTYPE x [<!ENTITY a "b">]>\n<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"/>' \
  >"$work/doctype.xml"
expect_exit 1 "a DOCTYPE" -- "$bin" sitemap check "$work/doctype.xml"
expect_output "parse errors print like findings" "^ERROR line 1: doctype-refused: "

gzip -c "$work/good.xml" >"$work/good.xml.gz"
expect_exit 0 "a gzip-compressed document" -- "$bin" sitemap check "$work/good.xml.gz"

expect_exit 0 "show" -- "$bin" sitemap show "$work/good.xml"
expect_output "show names the document type" "^type: +Change List \(changelist, <urlset>\)"
expect_output "show gives the time range" "^time range: 2013-01-03T10:00:00Z \.\. 2013-01-03T10:00:00Z"
expect_output "show counts changes" "^changes: +created 1"
expect_exit 1 "show on a broken document" -- "$bin" sitemap show "$work/doctype.xml"

# Every fixture under tests/data/invalid fails on the rule it is named after.
if [ -d "$data/invalid" ]; then
  for f in "$data"/invalid/*.xml; do
    rule=$(basename "$f" .xml)
    expect_exit 1 "invalid/$rule" -- "$bin" sitemap check "$f"
    expect_output "invalid/$rule names its rule" "^ERROR line [0-9]+: $rule: "
  done
fi

# Every error rule the validator has is covered by a fixture (the two size rules, which need
# 50,000 entries or 50 MB, are covered by the unit tests).
validator_source="$(dirname "$0")/../../sitemap/src/validator.cpp"
if [ -f "$validator_source" ]; then
  rules=$(tr -d '\n' <"$validator_source" | grep -oE 'error\([a-z_]+, *"[a-z0-9-]+"' |
          sed -E 's/.*"([a-z0-9-]+)"/\1/' | sort -u)
  [ -n "$rules" ] || { echo "FAIL: no error rules found in validator.cpp"; failures=$((failures + 1)); }
  for rule in $rules; do
    case $rule in too-many-entries | document-too-large) continue ;; esac
    if [ -f "$data/invalid/$rule.xml" ]; then
      passes=$((passes + 1))
    else
      echo "FAIL: error rule $rule has no fixture tests/data/invalid/$rule.xml"
      failures=$((failures + 1))
    fi
  done
fi

# Spec Example 27 is flagged for its non-hex sha-256 values.
if [ -f "$shared/resourcesync-examples/resourcesync_ex_27.xml" ]; then
  expect_exit 1 "spec example 27" -- "$bin" sitemap check "$shared/resourcesync-examples/resourcesync_ex_27.xml"
  expect_output "example 27's hashes" "^ERROR line 10: hash-not-hex: sha-256 digest"
  expect_exit 0 "spec example 21" -- "$bin" sitemap check "$shared/resourcesync-examples/resourcesync_ex_21.xml"
fi

# sitemap build publishes a tree; the documents it writes pass --strict.
mkdir -p "$work/tree/sub dir"
for i in 1 2 3 4 5; do echo "shard $i" >"$work/tree/sub dir/shard-$i.bin"; done
echo '{}' >"$work/tree/config.json"
ln -s /etc/passwd "$work/tree/link-outside"
expect_exit 0 "sitemap build" -- "$bin" sitemap build "$work/tree" --base-url http://127.0.0.1:8080/data \
  --out "$work/site" --describedby http://127.0.0.1:8080/about.html
for doc in resourcelist.xml capabilitylist.xml description.xml; do
  expect_exit 0 "build wrote a valid $doc" -- "$bin" sitemap check --strict "$work/site/$doc"
done
expect_exit 0 "show the built list" -- "$bin" sitemap show "$work/site/resourcelist.xml"
expect_output "six files, the symlink left out" "^entries: +6$"
expect_output "names are percent-encoded" "sample: +http://127.0.0.1:8080/data/sub%20dir/shard-1.bin"
sha=$(sha256sum "$work/tree/config.json" | cut -d' ' -f1)
grep -q "sha-256:$sha" "$work/site/resourcelist.xml" && passes=$((passes + 1)) ||
  { echo "FAIL: build hashes files with sha-256"; failures=$((failures + 1)); }
expect_exit 0 "build splits past --max-entries" -- "$bin" sitemap build "$work/tree" \
  --base-url http://127.0.0.1:8080/data/ --out "$work/split" --max-entries 4
expect_exit 0 "show the index" -- "$bin" sitemap show "$work/split/resourcelist.xml"
expect_output "an index" "^type: +Resource List Index"
expect_exit 0 "the second part is valid" -- "$bin" sitemap check --strict "$work/split/resourcelist-00002.xml"
expect_exit 2 "build without --base-url" -- "$bin" sitemap build "$work/tree"

# URLs: a real HTTP server on loopback.
cp "$work/good.xml" "$work/tree/good.xml"
(cd "$work/tree" && exec python3 -m http.server 0 --bind 127.0.0.1 >"$work/http.log" 2>&1) &
server_pid=$!
port=
for _ in $(seq 1 100); do
  port=$(sed -n 's/.*port \([0-9]*\).*/\1/p' "$work/http.log" | head -1)
  [ -n "$port" ] && break
  sleep 0.1
done
if [ -n "$port" ]; then
  expect_exit 0 "check over HTTP" -- "$bin" sitemap check "http://127.0.0.1:$port/good.xml"
  expect_exit 1 "HTTP 404" -- "$bin" sitemap check "http://127.0.0.1:$port/missing.xml"
  expect_exit 0 "show over HTTP" -- "$bin" sitemap show "http://127.0.0.1:$port/good.xml"
else
  echo "FAIL: the loopback HTTP server did not start"
  failures=$((failures + 1))
fi

echo "cli: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
