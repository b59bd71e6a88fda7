#!/usr/bin/env bash
# Regenerates tests/fuzz/corpus/tls_client_hello/ seeds: genuine ClientHellos
# written by `openssl s_client`, captured by a throw-away listener on
# 127.0.0.1 (no TLS server needed: only the client's first flight matters),
# plus the first one re-framed into three TLS records, and its body alone
# for the fuzzer's re-framing mode.
#
#   tests/fuzz/sniff/make_tls_seeds.sh
set -euo pipefail
cd "$(dirname "$0")/../../.."
out=tests/fuzz/corpus/tls_client_hello
mkdir -p "$out"

# capture <file> <s_client args...>: the listener writes its port to a file,
# s_client connects, the listener saves the first record(s) it receives.
capture() {
  local file=$1; shift
  local portfile
  portfile=$(mktemp)
  python3 - "$file" "$portfile" <<'PY' &
import socket, sys
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(1)
open(sys.argv[2], "w").write(str(s.getsockname()[1]))
s.settimeout(10)
c, _ = s.accept()
c.settimeout(2)
data = b""
try:
    while len(data) < 5 or len(data) < 5 + int.from_bytes(data[3:5], "big"):
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
except socket.timeout:
    pass
open(sys.argv[1], "wb").write(data)
PY
  local listener=$!
  for _ in $(seq 50); do [ -s "$portfile" ] && break; sleep 0.1; done
  timeout 5 openssl s_client -connect "127.0.0.1:$(cat "$portfile")" "$@" </dev/null >/dev/null 2>&1 || true
  wait "$listener"
  rm -f "$portfile"
  echo "$file: $(stat -c %s "$file") bytes"
}

capture "$out/openssl_tls13_sni_alpn" -servername edition.cnn.com -alpn h2,http/1.1
capture "$out/openssl_tls12_sni" -tls1_2 -servername edition.cnn.com
capture "$out/openssl_no_sni" -noservername -alpn http/1.1
capture "$out/openssl_tls13_only" -tls1_3 -servername api.example.com

python3 - "$out/openssl_tls13_sni_alpn" "$out/openssl_three_records" "$out/openssl_body_for_framing" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
payload = data[5:5 + int.from_bytes(data[3:5], "big")]
cuts = [0, 3, 60, len(payload)]
out = b"".join(b"\x16\x03\x01" + (cuts[i + 1] - cuts[i]).to_bytes(2, "big") + payload[cuts[i]:cuts[i + 1]]
               for i in range(3))
open(sys.argv[2], "wb").write(out)
# The fuzzer's second mode reads input[0] as a record size and the rest as a
# ClientHello body (without the 4-byte handshake header).
open(sys.argv[3], "wb").write(b"\x07" + payload[4:])
PY
