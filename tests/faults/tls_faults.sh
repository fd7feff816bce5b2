#!/usr/bin/env bash
# Bad TLS on both sides (RELIABILITY.md C12, T1): `shardsync sync` against `shardsync serve
# --tls-cert` with an untrusted, an expired and a wrong-host certificate must fail and write
# nothing; with the right CA it works. The server must refuse TLS 1.0 and 1.1 handshakes even
# from a client that allows them.
#
# Usage: tls_faults.sh SHARDSYNC
set -uo pipefail
bin=$(realpath "$1")
work=$(mktemp -d "${FAULTS_WORK_DIR:-/tmp}/tls_faults.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill -9 "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
passes=0
failures=0
pass() { passes=$((passes + 1)); }
failed() { echo "FAIL: $*"; failures=$((failures + 1)); }
command -v openssl >/dev/null || { echo "SKIP: no openssl"; exit 77; }
cd "$work" || exit 1

# A CA, and leaf certificates it signs: good (127.0.0.1), wrong host, expired (made under
# faketime in 2020, valid one day); and a self-signed one.
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
  -subj "/CN=shardsync test CA" 2>/dev/null
leaf() {  # leaf NAME SAN [faketime prefix...]
  local name=$1 san=$2
  shift 2
  openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2>/dev/null
  printf 'subjectAltName=%s\n' "$san" >"$name.ext"
  "$@" openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
    -out "$name.pem" -days 1 -extfile "$name.ext" 2>/dev/null
}
leaf good "IP:127.0.0.1"
leaf wronghost "DNS:example.org"
if command -v faketime >/dev/null; then leaf expired "IP:127.0.0.1" faketime '2020-01-01 00:00:00'; fi
openssl req -x509 -newkey rsa:2048 -nodes -keyout self.key -out self.pem -days 30 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
[ -s good.pem ] && [ -s self.pem ] || { echo "FAIL: cannot make certificates"; exit 1; }

mkdir -p coll
head -c 100000 /dev/urandom >coll/a.bin
serve() {  # serve CERT: restart the server with that certificate
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -f port
  "$bin" serve --collection "ckpt=$work/coll" --listen 127.0.0.1:0 --port-file port \
    --state-dir state --tls-cert "$1.pem" --tls-key "$1.key" >>server.log 2>&1 &
  server_pid=$!
  for _ in $(seq 1 300); do [ -s port ] && break; sleep 0.1; done
  port=$(cat port)
}
sync_into() {  # sync_into DEST [ARGS...]: exit status of a sync over https
  local dest=$1
  shift
  "$bin" sync "https://127.0.0.1:$port/" "$dest" --collection ckpt -q "$@" >"$dest.out" 2>&1
}
refused() {  # refused NAME DEST [ARGS...]: the sync fails, naming TLS, and writes no file
  local name=$1 dest=$2
  shift 2
  sync_into "$dest" "$@"
  local rc=$?
  [ $rc = 1 ] && pass || failed "$name: exit $rc, expected 1 ($(tail -2 "$dest.out"))"
  grep -qi "certificate\|ssl\|tls" "$dest.out" && pass || failed "$name: the error names TLS: $(tail -2 "$dest.out")"
  [ -z "$(find "$dest" -type f -not -path '*/.shardsync*' 2>/dev/null)" ] && pass ||
    failed "$name: files were written"
}

serve good
sync_into m-good --ca-file ca.pem && cmp -s coll/a.bin m-good/a.bin && pass ||
  failed "the right CA: sync works ($(tail -2 m-good.out))"
refused "no CA given (system store only)" m-noca
serve self
refused "a self-signed certificate" m-self
serve wronghost
refused "a certificate for another host" m-host --ca-file ca.pem
if [ -s expired.pem ]; then
  serve expired
  refused "an expired certificate" m-expired --ca-file ca.pem
fi

# T1: the server speaks TLS 1.2+ only. The probe client allows old protocols (SECLEVEL=0), so
# a refusal is the server's.
serve good
for proto in -tls1 -tls1_1; do
  if echo | openssl s_client -connect "127.0.0.1:$port" "$proto" -cipher 'DEFAULT:@SECLEVEL=0' \
    >"probe$proto.out" 2>&1 && grep -q "^ *Protocol *: TLSv1\(\.1\)\?$" "probe$proto.out"; then
    failed "the server completed a $proto handshake"
  else
    pass
  fi
done
echo | openssl s_client -connect "127.0.0.1:$port" -tls1_2 >probe12.out 2>&1 && pass ||
  failed "a TLS 1.2 handshake works"

echo "tls_faults: $passes passed, $failures failed"
[ "$failures" = 0 ]
