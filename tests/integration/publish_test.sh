#!/usr/bin/env bash
# Publishing over HTTP: `shardsync publish` PUTs files into a `shardsync serve` collection
# with the write token (and deletes them); the server logs each change once the file is in
# place. Usage: publish_test.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
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
expect_exit() {  # expect_exit CODE DESCRIPTION COMMAND...
  local want=$1 what=$2
  shift 2
  "$@" >"$work/out" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ]; then pass; else
    failed "$what: exit $got, expected $want"
    sed 's/^/  /' "$work/out" | head -10
  fi
}

mkdir -p "$work/data" "$work/upload/step-200"
head -c 300000 /dev/urandom >"$work/upload/step-200/model-00001.safetensors"
head -c 1000 /dev/urandom >"$work/upload/step-200/model-00002.safetensors"
echo '{"step": 200}' >"$work/upload/step-200/config.json"
echo "0123456789abcdef-write-token" >"$work/token"
echo "wrong-token-but-long-enough" >"$work/bad-token"

"$bin" serve --collection "ckpt=$work/data" --listen 127.0.0.1:0 --port-file "$work/port" \
  --state-dir "$work/state" --write-token-file "$work/token" 2>"$work/server.log" &
server_pid=$!
for _ in $(seq 1 100); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"
changes() { curl -s "$base/ckpt/.resourcesync/changelist.xml"; }

expect_exit 0 "publish one file" "$bin" publish "$base/ckpt/step-200/" \
  "$work/upload/step-200/model-00001.safetensors" --token-file "$work/token"
grep -q "201" "$work/out" && pass || failed "a new file answers 201"
cmp -s "$work/data/step-200/model-00001.safetensors" "$work/upload/step-200/model-00001.safetensors" &&
  pass || failed "the file landed in the collection"
sha=$(sha256sum "$work/upload/step-200/model-00001.safetensors" | cut -d' ' -f1)
for _ in $(seq 1 30); do changes | grep -q "sha-256:$sha" && break; sleep 0.1; done
changes | grep -q "sha-256:$sha" && pass || failed "the change list carries the uploaded file's sha-256"

expect_exit 0 "publish a directory" "$bin" publish "$base/ckpt/" "$work/upload/step-200" \
  --token-file "$work/token"
grep -q "3 of 3 published" "$work/out" && pass || failed "three files in the directory"
expect_exit 0 "publish the same file again" "$bin" publish "$base/ckpt/step-200/" \
  "$work/upload/step-200/config.json" --token-file "$work/token"
grep -q " 204" "$work/out" && pass || failed "an update answers 204"

expect_exit 1 "a wrong token" "$bin" publish "$base/ckpt/x/" "$work/upload/step-200/config.json" \
  --token-file "$work/bad-token"
grep -q " 403 (check the write token)" "$work/out" && pass || failed "a wrong token is 403"
expect_exit 1 "no token" "$bin" publish "$base/ckpt/x/" "$work/upload/step-200/config.json"
grep -q " 401" "$work/out" && pass || failed "no token is 401"
[ ! -e "$work/data/x" ] && pass || failed "a refused upload leaves nothing behind"
expect_exit 1 "a reserved name" "$bin" publish "$base/ckpt/capabilitylist.xml" \
  "$work/upload/step-200/config.json" --token-file "$work/token"
code=$(curl -s -o /dev/null -w '%{http_code}' -X PUT --data-binary x \
  -H "Authorization: Bearer $(cat "$work/token")" "$base/ckpt/..%2f..%2fescape.txt")
[ "$code" = 400 ] && pass || failed "an encoded traversal PUT is refused (got $code)"
[ ! -e "$work/escape.txt" ] && pass || failed "nothing was written outside the collection"
ls -a "$work/data/step-200" | grep -q shardsync-upload && failed "an upload temp file was left" || pass

# A client that dies mid-upload leaves nothing published.
head -c 5000000 /dev/urandom >"$work/big.bin"
curl -s -o /dev/null --max-time 10 -X PUT -H "Authorization: Bearer $(cat "$work/token")" \
  -H 'Content-Length: 5000000' --limit-rate 200k -T "$work/big.bin" "$base/ckpt/big.bin" &
curl_pid=$!
sleep 1
kill -9 $curl_pid 2>/dev/null
wait $curl_pid 2>/dev/null
sleep 0.5
[ ! -e "$work/data/big.bin" ] && pass || failed "a torn upload was published"
changes | grep -q 'big.bin' && failed "a torn upload was logged" || pass

expect_exit 0 "delete a file" "$bin" publish --delete "$base/ckpt/" step-200/model-00002.safetensors \
  --token-file "$work/token"
[ ! -e "$work/data/step-200/model-00002.safetensors" ] && pass || failed "the file was deleted"
for _ in $(seq 1 30); do
  changes | grep -q 'model-00002.safetensors</loc><rs:md change="deleted"' && break
  sleep 0.1
done
changes | grep -q 'model-00002.safetensors</loc><rs:md change="deleted"' && pass ||
  failed "the delete is in the change list"
expect_exit 1 "delete a missing file" "$bin" publish --delete "$base/ckpt/" nothing-here.bin \
  --token-file "$work/token"
grep -q " 404" "$work/out" && pass || failed "deleting a missing file is 404"

changes >"$work/cl.xml"
expect_exit 0 "the change list passes sitemap check" "$bin" sitemap check "$work/cl.xml"
kill -TERM "$server_pid"
wait "$server_pid" && pass || failed "clean stop"
server_pid=

echo "publish: $passes passed, $failures failed"
[ "$failures" -eq 0 ]
