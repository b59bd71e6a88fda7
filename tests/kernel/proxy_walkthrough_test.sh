#!/usr/bin/env bash
# End-to-end test of the egress walkthrough (shared seed
# egress-walkthrough.md) with the real programs: sluice-agent's BPF programs
# on a cgroup this test creates, sluice-proxy, nginx as "edition.cnn.com"
# in a test "internet" namespace, and curl in the workload.
#
#   proxy_walkthrough_test.sh PLACEMENT
#     workload  the proxy runs in the workload's netns on 127.0.0.1:15001
#     node      the proxy runs in a "node" netns (198.51.100.1:15001), the
#               workload in its own netns
#     supervised  sluice-agent --proxy-binary starts the proxy (in the
#               workload's netns and the proxy cgroup); step (1), then the
#               proxy is killed and must come back
#
# Topology (all in namespaces this test creates; root namespace untouched):
#   W (workload) 198.51.100.2 --veth-- 198.51.100.1 N (node, routes) 192.0.2.1
#       --veth-- 192.0.2.2 I ("internet": 203.0.113.10 nginx as
#       edition.cnn.com on :80 and :443; 203.0.113.20:9000 a byte-counting
#       TCP server)
# /etc/netns/<ns>/hosts maps edition.cnn.com -> 203.0.113.10 and
# resolv.conf points at 127.0.0.1, so no name lookup leaves the machine.
#
# Environment (meson sets it): SLUICE_AGENT, SLUICE_PROXY, SLUICE_PYTHON,
# SLUICE_CONFIGS (the repository's configs/), SLUICE_CTL (sluicectl: each
# step's `sluicectl explain` is checked against the access log). CI=true turns a missing
# capability into a failure instead of a skip (77).
set -u -o pipefail

PLACEMENT=${1:?usage: proxy_walkthrough_test.sh workload|node|supervised}
TEST_NAME=$PLACEMENT
. "$(dirname "$0")/lib.sh"
AGENT=${SLUICE_AGENT:?}
PROXY=${SLUICE_PROXY:?}
CONFIGS=${SLUICE_CONFIGS:?}
PY=${SLUICE_PYTHON:-/usr/bin/python3}
CTL=${SLUICE_CTL:?}

kt_init nginx curl openssl
[ -x "$AGENT" ] || fail "agent not built: $AGENT"
[ -x "$PROXY" ] || fail "proxy not built: $PROXY"
[ -x "$CTL" ] || fail "sluicectl not built: $CTL"
NS_W="sluice-${ID}-w"
NS_N="sluice-${ID}-n"
NS_I="sluice-${ID}-i"
KT_LOGS+=("$TMP/proxy.err" "$TMP/agent.log" "$TMP/nginx/error.log" "$TMP/access.log")

# ------------------------------------------------------------ topology
kt_netns "$NS_W" "$NS_N" "$NS_I"
kt_cgroups workload proxy other
CG=$KT_CG
PIN="/sys/fs/bpf/sluice-test-${ID}"
KT_PIN=$PIN
KT_AGENT=$AGENT
nsw() { ip netns exec "$NS_W" "$@"; }
nsn() { ip netns exec "$NS_N" "$@"; }
nsi() { ip netns exec "$NS_I" "$@"; }
nsw ip link add vw type veth peer name vn netns "$NS_N"
nsw ip addr add 198.51.100.2/24 dev vw
nsw ip link set vw up
nsw ip route add default via 198.51.100.1
nsn ip addr add 198.51.100.1/24 dev vn
nsn ip link set vn up
nsn ip link add vi type veth peer name vx netns "$NS_I"
nsn ip addr add 192.0.2.1/24 dev vi
nsn ip link set vi up
nsn ip route add 203.0.113.0/24 via 192.0.2.2
nsn sysctl -qw net.ipv4.ip_forward=1
nsi ip addr add 192.0.2.2/24 dev vx
nsi ip link set vx up
nsi ip route add default via 192.0.2.1
nsi ip addr add 203.0.113.10/32 dev lo
nsi ip addr add 203.0.113.20/32 dev lo
for ns in "$NS_W" "$NS_N"; do kt_hosts "$ns" "203.0.113.10 edition.cnn.com"; done

# ------------------------------------------------------------ edition.cnn.com
mkdir -p "$TMP/nginx"
(
	cd "$TMP/nginx" || exit 1
	openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Sluice test CA ${ID}" \
		-keyout ca.key -out ca.pem &&
	openssl req -newkey rsa:2048 -nodes -subj "/CN=edition.cnn.com" -keyout server.key -out server.csr &&
	printf 'subjectAltName=DNS:edition.cnn.com\n' >san.ext &&
	openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
		-extfile san.ext -out server.pem
) >"$TMP/openssl.log" 2>&1 || { cat "$TMP/openssl.log" >&2; fail "cannot make the test certificates"; }
export CURL_CA_BUNDLE="$TMP/nginx/ca.pem"

cat >"$TMP/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log;
events { worker_connections 64; }
http {
    access_log $TMP/nginx/access.log;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    server {
        listen 203.0.113.10:80;
        server_name edition.cnn.com;
        location = /politics { return 301 https://edition.cnn.com/politics; }
    }
    server {
        listen 203.0.113.10:443 ssl;
        server_name edition.cnn.com;
        ssl_certificate $TMP/nginx/server.pem;
        ssl_certificate_key $TMP/nginx/server.key;
        location = /politics { return 200 "politics\n"; }
    }
}
NGINX
in_cg_ns other "$NS_I" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf" \
	>"$TMP/nginx/stdout.log" 2>&1 &
KT_PIDS+=($!)

# A TCP server that records how many bytes each connection delivered.
cat >"$TMP/count_server.py" <<'PYEOF'
import socket, sys, threading
log = open(sys.argv[2], "a", buffering=1)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
host, port = sys.argv[1].rsplit(":", 1)
s.bind((host, int(port)))
s.listen(16)
open(sys.argv[3], "w").close()
def serve(c):
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    log.write("BYTES %d\n" % n)
    c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PYEOF
in_cg_ns other "$NS_I" "$PY" "$TMP/count_server.py" 203.0.113.20:9000 "$TMP/count.log" "$TMP/count.ready" \
	>"$TMP/count.out" 2>&1 &
KT_PIDS+=($!)
for _ in $(seq 100); do
	[ -f "$TMP/nginx/nginx.pid" ] && [ -f "$TMP/count.ready" ] && break
	sleep 0.05
done
[ -f "$TMP/nginx/nginx.pid" ] || fail "nginx did not start: $(cat "$TMP/nginx/stdout.log")"
[ -f "$TMP/count.ready" ] || fail "count server did not start: $(cat "$TMP/count.out")"

# ------------------------------------------------------------ config, agent, proxy
mkdir -p "$TMP/config"
cp "$CONFIGS/mesh/istio-configmap-allow-any.yaml" "$TMP/config/istio-configmap.yaml"
cat >"$TMP/values.yaml" <<'EOF2'
global:
  proxy:
    includeIPRanges: "*"
EOF2

case "$PLACEMENT" in workload | node | supervised) ;; *) fail "unknown placement $PLACEMENT" ;; esac
if [ "$PLACEMENT" = node ]; then
	PROXY_NS=$NS_N
	PROXY_LISTEN=(--listen 198.51.100.1:15001)
	AGENT_PROXY=(--proxy-ipv4 198.51.100.1 --proxy-ipv6 none)
else
	PROXY_NS=$NS_W
	PROXY_LISTEN=(--listen 127.0.0.1:15001 --listen '[::1]:15001')
	AGENT_PROXY=()
fi

wait_attached() {
	for _ in $(seq 100); do
		[ -e "$PIN/link_$(stat -c %i "$CG/proxy")_sluice_getsockopt" ] && break
		sleep 0.05
	done
	[ -e "$PIN/link_$(stat -c %i "$CG/proxy")_sluice_getsockopt" ] || fail "agent did not attach"
}
wait_proxy() {  # waits for a sluice-proxy in the proxy cgroup other than pid $1; sets PROXY_PID
	local pid
	for _ in $(seq 200); do
		pid=$(head -1 "$CG/proxy/cgroup.procs" 2>/dev/null)
		if [ -n "$pid" ] && [ "$pid" != "$1" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = sluice-proxy ] &&
			[ "$(grep -c "listening on" "$TMP/proxy.err" 2>/dev/null)" -gt "$2" ]; then
			PROXY_PID=$pid
			return 0
		fi
		sleep 0.05
	done
	fail "no proxy is running in the proxy cgroup"
}
PROXY_ARGS=(--config "$TMP/config" "${PROXY_LISTEN[@]}" --workers 2 --access-log "$TMP/access.log"
	--detection-timeout 1000)
if [ "$PLACEMENT" = supervised ]; then
	# The agent starts the proxy (in the proxy cgroup) and restarts it. The
	# agent runs in the workload's netns (nsenter: /sys stays visible), so
	# the proxy it starts listens there.
	ln -s agent.log "$TMP/proxy.err"
	nsenter --net="/run/netns/$NS_W" "$AGENT" --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" \
		--poll-interval-ms 200 --config "$TMP/values.yaml" --proxy-binary "$PROXY" --proxy-cgroup "$CG/proxy" \
		"${PROXY_ARGS[@]/#/--proxy-arg=}" >>"$TMP/agent.log" 2>&1 &
	AGENT_PID=$!
	KT_PIDS+=("$AGENT_PID")
	wait_attached
	wait_proxy "" 0
else
	"$AGENT" --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" --poll-interval-ms 200 \
		--config "$TMP/values.yaml" "${AGENT_PROXY[@]}" >>"$TMP/agent.log" 2>&1 &
	KT_PIDS+=($!)
	wait_attached
	in_cg_ns proxy "$PROXY_NS" "$PROXY" "${PROXY_ARGS[@]}" >"$TMP/proxy.out" 2>"$TMP/proxy.err" &
	KT_PIDS+=($!)
	# $! is the backgrounded shell function; the proxy is the only process
	# in the test's proxy cgroup.
	wait_proxy "" 0
fi
log "proxy: $(grep -m1 'config generation' "$TMP/proxy.err" | sed 's/.*info: //')"

# The walkthrough's command, from the workload.
walkthrough_curl() {
	in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$CURL_CA_BUNDLE" \
		curl -sL -o /dev/null -D - --max-time 10 http://edition.cnn.com/politics
}
# raw_tcp HOST PORT: sends 16 bytes, half-closes, prints "SENT n GOT m" or "CLOSED".
raw_tcp() {
	in_cg_ns workload "$NS_W" "$PY" -c '
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
try:
    s.sendall(b"\x00\x01raw-tcp-bytes!")
    s.shutdown(socket.SHUT_WR)
    got = s.recv(100)
    print("SENT 16 GOT %d" % len(got))
except OSError as e:
    print("CLOSED %s" % e.__class__.__name__)
' "$1" "$2"
}
count_bytes() { awk '{ n += $2 } END { print n + 0 }' "$TMP/count.log" 2>/dev/null || echo 0; }
wait_generation() {  # N: waits up to 2 s for "config generation N"
	for _ in $(seq 40); do
		grep -q "config generation $1 " "$TMP/proxy.err" && return 0
		sleep 0.05
	done
	fail "the proxy did not load config generation $1"
}
# proxy_counters: the proxy's counters line, asked for now (SIGUSR1).
proxy_counters() {
	kill -USR1 "$PROXY_PID"
	sleep 0.2
	grep 'counters:' "$TMP/proxy.err" | tail -1
}
# flaky_routes: writes the VirtualService "flaky" with the http routes on
# stdin, then a catch-all route to flaky.example.
flaky_routes() {
	{
		printf '%s\n' 'apiVersion: networking.istio.io/v1alpha3' 'kind: VirtualService' 'metadata:' '  name: flaky' \
			'spec:' '  hosts:' '  - flaky.example' '  http:'
		cat
		printf '%s\n' '  - route:' '    - destination: {host: flaky.example}'
	} >"$TMP/config/virtualservice-flaky.yaml"
}

# ------------------------------------------------------------ sluicectl explain
# seen_line FILE MARK DEST: the last access log line of FILE after line MARK
# for a connection whose original destination (%DOWNSTREAM_LOCAL_ADDRESS%,
# the third field after the last quoted one) is DEST; empty if none.
seen_line() {
	tail -n +"$(($2 + 1))" "$1" 2>/dev/null |
		awk -v d="$3" '{ n = split($0, q, "\""); split(q[n], f, " "); if (f[3] == d) l = $0 } END { if (l != "") print l }'
}
# explain_matches DEST [EXPLAIN_ARGS...] SEEN: `sluicectl explain` for DEST,
# against the files the proxy and the agent read at this moment, must say
# what the data plane did. SEEN is the proxy's access log line for that
# connection (seen_line): same cluster, same response flags, and for a local
# reply the same status; SEEN empty (the proxy never saw the connection):
# explain must say the kernel does not intercept it.
explain_matches() {
	local seen=${!#} args=("${@:1:$#-1}") json rc said
	json=$("$CTL" explain "${args[@]}" -o json "$TMP/config" "$TMP/values.yaml")
	rc=$?
	[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "sluicectl explain ${args[*]}: exit $rc"
	said=$("$PY" - "$json" "$seen" 2>&1 <<'PYEOF'
import json, re, sys
e, seen = json.loads(sys.argv[1]), sys.argv[2]
o = e["outcome"]
said = (o["result"], o["cluster"], o["response_flags"], o.get("status"))
if not seen:
    did, what = ("direct", "-", "-", None), "the proxy logged nothing"
else:
    m = re.match(r'\[[^]]*\] "[^"]*" (\d+) (\S+) (\S+) ', seen)
    if not m:
        sys.exit("unparsable access log line: " + seen)
    code, flags, details = int(m[1]), m[2], m[3]
    cluster = seen.rsplit('"', 1)[1].split()[0]
    if details == "direct_response":
        did = ("local-reply", cluster, flags, code)
    else:
        did = ("forward" if flags == "-" else "closed", cluster, flags, None)
    what = "access log %s %d %s %s" % (cluster, code, flags, details)
if said != did:
    sys.exit("explain says %s, the data plane did %s (%s)" % (said, did, seen or "no access log line"))
print("%s; %s" % (o["summary"], what))
PYEOF
	) || fail "sluicectl explain ${args[*]} disagrees with the data plane: $said"
	log "ok explain ${args[*]}: $said"
}

# ------------------------------------------------------------ (1) ALLOW_ANY
out=$(walkthrough_curl)
rc=$?
[ "$rc" = 0 ] || fail "(1) ALLOW_ANY: curl exit $rc: $out"
grep -q "^HTTP/1.1 301" <<<"$out" && grep -q "^HTTP/1.1 200" <<<"$out" || fail "(1) ALLOW_ANY: got $out"
sleep 0.2
grep -q '"GET /politics HTTP/1.1" 301 .* PassthroughCluster ' "$TMP/access.log" ||
	fail "(1) no HTTP access log line for the redirect"
grep -q '"- - -" 0 .* PassthroughCluster .* edition.cnn.com ' "$TMP/access.log" ||
	fail "(1) no TCP access log line with SNI edition.cnn.com"
grep -q "GET /politics" "$TMP/nginx/access.log" || fail "(1) nginx did not see the request"
out=$(raw_tcp 203.0.113.20 9000)
sleep 0.3
[ "$(count_bytes)" = 16 ] || fail "(1) raw TCP under ALLOW_ANY: server got $(count_bytes) bytes ($out)"
log "ok (1) ALLOW_ANY: 301 then 200; access log:"
sed "s/^/[$PLACEMENT]     /" "$TMP/access.log"
explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/access.log" 0 203.0.113.10:80)"
explain_matches 203.0.113.10:443 --sni edition.cnn.com "$(seen_line "$TMP/access.log" 0 203.0.113.10:443)"
explain_matches 203.0.113.20:9000 "$(seen_line "$TMP/access.log" 0 203.0.113.20:9000)"

if [ "$PLACEMENT" = supervised ]; then
	old=$PROXY_PID
	kill -9 "$PROXY_PID"
	wait_proxy "$old" 1
	grep -q "proxy pid $old killed by signal.*restarting in" "$TMP/agent.log" || fail "the agent did not report the proxy's death"
	out=$(walkthrough_curl)
	rc=$?
	[ "$rc" = 0 ] && grep -q "^HTTP/1.1 200" <<<"$out" || fail "after the restart: exit $rc: $out"
	log "ok: proxy killed (pid $old), restarted by the agent (pid $PROXY_PID) in $CG/proxy; curl 200 again"
	kill -TERM "$AGENT_PID"
	wait "$AGENT_PID" 2>/dev/null
	[ ! -e "/proc/$PROXY_PID" ] || [ "$(cat "/proc/$PROXY_PID/comm" 2>/dev/null)" != sluice-proxy ] ||
		fail "the proxy outlived the agent's SIGTERM"
	log "ok: SIGTERM to the agent stopped the proxy it supervises"
	log "PASS"
	exit 0
fi

# ------------------------------------------------------------ (2) REGISTRY_ONLY
# A connection established under ALLOW_ANY keeps going after the switch:
# 20 bytes before, 20 after, the server must count 40 on one connection.
in_cg_ns workload "$NS_W" "$PY" -c '
import os, socket, sys, time
s = socket.create_connection(("203.0.113.20", 9000), timeout=10)
s.sendall(b"\x00" + b"b" * 19)
open(sys.argv[1], "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
s.sendall(b"a" * 20)
s.shutdown(socket.SHUT_WR)
s.recv(1)
' "$TMP/long.open" "$TMP/long.go" >"$TMP/long.out" 2>&1 &
LONG_PID=$!
KT_PIDS+=("$LONG_PID")
for _ in $(seq 100); do [ -f "$TMP/long.open" ] && break; sleep 0.05; done
[ -f "$TMP/long.open" ] || fail "(2) the long-lived connection did not open: $(cat "$TMP/long.out")"
sed 's/mode: ALLOW_ANY/mode: REGISTRY_ONLY/g' "$TMP/config/istio-configmap.yaml" >"$TMP/cm.new"
mv "$TMP/cm.new" "$TMP/config/istio-configmap.yaml"   # replaced, as `kubectl replace` does
t0=$(date +%s%N)
wait_generation 2
t1=$(date +%s%N)
log "REGISTRY_ONLY picked up in $(((t1 - t0) / 1000000)) ms (after the replace was written)"
touch "$TMP/long.go"
wait "$LONG_PID" || fail "(2) the established connection failed after the switch: $(cat "$TMP/long.out")"
sleep 0.2
grep -q "^BYTES 40$" "$TMP/count.log" || fail "(2) the established connection did not deliver all 40 bytes: $(cat "$TMP/count.log")"
log "ok (2) a connection established under ALLOW_ANY delivered all its bytes after the switch"
mark=$(wc -l <"$TMP/access.log")
out=$(in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$CURL_CA_BUNDLE" \
	curl -s -o /dev/null -D - --max-time 10 https://edition.cnn.com/politics)
rc=$?
[ "$rc" = 35 ] || fail "(2) https under REGISTRY_ONLY: expected curl exit 35, got $rc: $out"
out=$(walkthrough_curl)
rc=$?
[ "$rc" != 0 ] && ! grep -q "^HTTP/1.1 200" <<<"$out" || fail "(2) walkthrough curl under REGISTRY_ONLY: exit $rc: $out"
kill -0 "$PROXY_PID" || fail "(2) the proxy is gone"
grep -q 'BlackHoleCluster' "$TMP/access.log" || fail "(2) no BlackHoleCluster line"
grep -q ' UH ' "$TMP/access.log" || fail "(2) no UH flag"
log "ok (2) REGISTRY_ONLY without restart: https exits 35, the walkthrough command exits $rc (blackholed: no ServiceEntry declares port 80 yet)"
sleep 0.2
explain_matches 203.0.113.10:443 --sni edition.cnn.com "$(seen_line "$TMP/access.log" "$mark" 203.0.113.10:443)"
explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/access.log" "$mark" 203.0.113.10:80)"

# ------------------------------------------------------------ (3) ServiceEntry cnn
cat >"$TMP/config/serviceentry-cnn.yaml" <<'EOF2'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: cnn
spec:
  hosts:
  - edition.cnn.com
  ports:
  - number: 80
    name: http-port
    protocol: HTTP
  - number: 443
    name: https
    protocol: HTTPS
  resolution: DNS
EOF2
wait_generation 3
mark=$(wc -l <"$TMP/access.log")
out=$(walkthrough_curl)
rc=$?
[ "$rc" = 0 ] && grep -q "^HTTP/1.1 200" <<<"$out" || fail "(3) with ServiceEntry cnn: exit $rc: $out"
sleep 0.2
grep -q '"GET /politics HTTP/1.1" 301 .* outbound|80||edition.cnn.com ' "$TMP/access.log" ||
	fail "(3) no outbound|80||edition.cnn.com line"
grep -q 'outbound|443||edition.cnn.com .* edition.cnn.com ' "$TMP/access.log" ||
	fail "(3) no outbound|443||edition.cnn.com line"
log "ok (3) ServiceEntry cnn: 200 again, routed via outbound|80|| and outbound|443||edition.cnn.com"
explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/access.log" "$mark" 203.0.113.10:80)"
explain_matches 203.0.113.10:443 --sni edition.cnn.com "$(seen_line "$TMP/access.log" "$mark" 203.0.113.10:443)"
mark=$(wc -l <"$TMP/access.log")

# ------------------------------------------------------------ (3b) per request
# One keep-alive connection, requests for different hosts: each goes to its
# own upstream (Envoy picks one per request), and a 503 from one endpoint of
# a two-endpoint ServiceEntry is retried on the other (Istio's default retry
# policy). Run once (workload placement): the proxy code is the same in all.
if [ "$PLACEMENT" = workload ]; then
	nsi ip addr add 203.0.113.30/32 dev lo
	nsi ip addr add 203.0.113.31/32 dev lo
	cat >"$TMP/status_server.py" <<'PYEOF'
import hashlib, http.server, sys, time
status = int(sys.argv[2])
log = open(sys.argv[3], "a", buffering=1)
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):  # (3e): logs the body's length and digest
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        log.write("%s %s %d %s\n" % (self.headers.get("Host"), self.path, len(body),
                                     hashlib.sha256(body).hexdigest()[:16]))
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def do_GET(self):
        log.write("%s %s\n" % (self.headers.get("Host"), self.path))
        if status != 200 and self.path.startswith("/slow"):
            time.sleep(3)  # (3c): later than the route's perTryTimeout
        body = b"status %d\n" % status
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
host, port = sys.argv[1].rsplit(":", 1)
srv = http.server.ThreadingHTTPServer((host, int(port)), H)
open(sys.argv[4], "w").close()
srv.serve_forever()
PYEOF
	in_cg_ns other "$NS_I" "$PY" "$TMP/status_server.py" 203.0.113.30:8080 503 "$TMP/s503.log" "$TMP/s503.ready" \
		>"$TMP/s503.out" 2>&1 &
	KT_PIDS+=($!)
	in_cg_ns other "$NS_I" "$PY" "$TMP/status_server.py" 203.0.113.31:8080 200 "$TMP/s200.log" "$TMP/s200.ready" \
		>"$TMP/s200.out" 2>&1 &
	KT_PIDS+=($!)
	kt_wait_file "$TMP/s503.ready" || fail "(3b) 503 server did not start: $(cat "$TMP/s503.out")"
	kt_wait_file "$TMP/s200.ready" || fail "(3b) 200 server did not start: $(cat "$TMP/s200.out")"
	cat >"$TMP/config/serviceentry-flaky.yaml" <<'EOF2'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: flaky
spec:
  hosts:
  - flaky.example
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 8080
  resolution: STATIC
  endpoints:
  - address: 203.0.113.30
  - address: 203.0.113.31
---
# (3e) mirrors to it: the 503 server, which logs the Host of each request.
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: shadow
spec:
  hosts:
  - shadow.example
  ports:
  - number: 80
    name: http
    protocol: HTTP
    targetPort: 8080
  resolution: STATIC
  endpoints:
  - address: 203.0.113.30
EOF2
	wait_generation 4
	cat >"$TMP/keepalive_client.py" <<'PYEOF'
import http.client
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=5)
ports = set()
for host, path in [("edition.cnn.com", "/politics"), ("flaky.example", "/a"), ("flaky.example", "/b"),
                   ("edition.cnn.com", "/politics")]:
    c.request("GET", path, headers={"Host": host})
    r = c.getresponse()
    r.read()
    ports.add(c.sock.getsockname()[1])
    print("%s%s %d" % (host, path, r.status))
print("connections %d" % len(ports))
PYEOF
	mark=$(wc -l <"$TMP/access.log")
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/keepalive_client.py" 2>&1) || fail "(3b) client: $out"
	expected=$'edition.cnn.com/politics 301\nflaky.example/a 200\nflaky.example/b 200\nedition.cnn.com/politics 301\nconnections 1'
	[ "$out" = "$expected" ] || fail "(3b) one keep-alive connection, four requests: $out"
	sleep 0.3
	n503=$(wc -l <"$TMP/s503.log")
	n200=$(wc -l <"$TMP/s200.log")
	[ "$n200" = 2 ] && [ "$n503" -ge 1 ] ||
		fail "(3b) the 200 endpoint saw $n200 requests (want 2), the 503 one $n503 (want >= 1)"
	seen=$(tail -n +"$((mark + 1))" "$TMP/access.log")
	grep -q '"GET /a HTTP/1.1" 200 - via_upstream .* outbound|80||flaky.example' <<<"$seen" &&
		grep -q '"GET /b HTTP/1.1" 200 - via_upstream .* outbound|80||flaky.example' <<<"$seen" ||
		fail "(3b) no 200 lines for flaky.example: $seen"
	! grep -q '" 503 ' <<<"$seen" || fail "(3b) a retried 503 was logged: $seen"
	[ "$(grep -c '"GET /politics HTTP/1.1" 301 .* outbound|80||edition.cnn.com' <<<"$seen")" = 2 ] ||
		fail "(3b) both cnn requests should be logged: $seen"
	counters=$(proxy_counters)
	grep -q "upstream_changed=[2-9]" <<<"$counters" && grep -q "retries=$n503 " <<<"$counters" ||
		fail "(3b) counters: $counters (503 endpoint hit $n503 times)"
	log "ok (3b) one keep-alive connection: cnn -> flaky.example -> flaky.example -> cnn, each to its upstream; $n503 503(s) retried on the other endpoint, all 200/301"

	# (3c) retries.perTryTimeout: the 503 endpoint answers /slow after 3 s;
	# a try that lands there is given up after 0.5 s and retried on the
	# other endpoint, well inside the route's 5 s timeout.
	flaky_routes <<'EOF2'
  - match:
    - uri: {prefix: /slow}
    timeout: 5s
    retries: {attempts: 2, perTryTimeout: 0.5s, retryOn: "reset,503"}
    route:
    - destination: {host: flaky.example}
EOF2
	wait_generation 5
	slow0=$(grep -c ' /slow' "$TMP/s503.log")
	retries0=$(sed -n 's/.* retries=\([0-9]*\) .*/\1/p' <<<"$counters")
	mark=$(wc -l <"$TMP/access.log")
	cat >"$TMP/slow_client.py" <<'PYEOF'
import http.client, time
for i in range(4):
    t0 = time.time()
    c = http.client.HTTPConnection("203.0.113.10", 80, timeout=10)
    c.request("GET", "/slow/%d" % i, headers={"Host": "flaky.example"})
    r = c.getresponse()
    r.read()
    c.close()
    print("%d %.1f" % (r.status, time.time() - t0))
PYEOF
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/slow_client.py" 2>&1) || fail "(3c) client: $out"
	while read -r status secs; do
		[ "$status" = 200 ] || fail "(3c) a /slow request answered $status: $out"
		"$PY" -c "import sys; sys.exit(0 if float('$secs') < 2.5 else 1)" ||
			fail "(3c) a /slow request took ${secs}s: the late try was not given up at 0.5 s ($out)"
	done <<<"$out"
	slow=$(($(grep -c ' /slow' "$TMP/s503.log") - slow0))
	[ "$slow" -ge 1 ] || fail "(3c) no /slow request reached the slow endpoint: round robin should send one there"
	seen=$(tail -n +"$((mark + 1))" "$TMP/access.log")
	[ "$(grep -c '"GET /slow/[0-9] HTTP/1.1" 200 - via_upstream' <<<"$seen")" = 4 ] ||
		fail "(3c) four 200 lines expected for /slow: $seen"
	counters=$(proxy_counters)
	grep -q "retries=$((retries0 + slow)) " <<<"$counters" ||
		fail "(3c) counters: $counters (want retries=$((retries0 + slow)): $slow late tries)"
	log "ok (3c) perTryTimeout 0.5s: $slow of 4 /slow requests hit the 3 s endpoint, were given up and retried on the other, all 200 in $(tr '\n' ' ' <<<"$out" | awk '{ for (i = 2; i <= NF; i += 2) printf "%ss ", $i }')"

	# (3d) fault injection on one keep-alive connection: a request without a
	# fault, one delayed 1 s (then forwarded: flag DI), one aborted with 418
	# and Envoy's "fault filter abort" body (flag FI, never sent upstream).
	flaky_routes <<'EOF2'
  - match:
    - uri: {prefix: /fault/delay}
    fault:
      delay: {fixedDelay: 1s, percentage: {value: 100}}
    route:
    - destination: {host: flaky.example}
  - match:
    - uri: {prefix: /fault/abort}
    fault:
      abort: {httpStatus: 418, percentage: {value: 100}}
    route:
    - destination: {host: flaky.example}
EOF2
	wait_generation 6
	mark=$(wc -l <"$TMP/access.log")
	cat >"$TMP/fault_client.py" <<'PYEOF'
import http.client, time
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=10)
ports = set()
for path in ["/plain", "/fault/delay", "/fault/abort"]:
    t0 = time.time()
    c.request("GET", path, headers={"Host": "flaky.example"})
    r = c.getresponse()
    body = r.read()
    ports.add(c.sock.getsockname()[1] if c.sock else None)
    print("%s %d %.1f %s" % (path, r.status, time.time() - t0, body.decode().strip().replace(" ", "_")))
print("connections %d" % len(ports - {None}))
PYEOF
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/fault_client.py" 2>&1) || fail "(3d) client: $out"
	grep -q '^/plain [25]0[03] ' <<<"$out" || fail "(3d) the request without a fault: $out"
	read -r _ dstatus dsecs _ < <(grep '^/fault/delay ' <<<"$out")
	[ "$dstatus" = 200 ] && "$PY" -c "import sys; sys.exit(0 if 0.95 <= float('$dsecs') < 2.5 else 1)" ||
		fail "(3d) the delayed request should be answered 200 after ~1 s: $out"
	grep -q '^/fault/abort 418 [0-9.]* fault_filter_abort$' <<<"$out" || fail "(3d) the aborted request: $out"
	grep -q '^connections 1$' <<<"$out" || fail "(3d) the delay should keep the keep-alive connection: $out"
	! grep -q '/fault/abort' "$TMP/s200.log" "$TMP/s503.log" || fail "(3d) an aborted request reached an endpoint"
	seen=$(tail -n +"$((mark + 1))" "$TMP/access.log")
	grep -q '"GET /fault/delay HTTP/1.1" 200 DI via_upstream .* outbound|80||flaky.example' <<<"$seen" ||
		fail "(3d) no DI line for the delayed request: $seen"
	grep -q '"GET /fault/abort HTTP/1.1" 418 FI fault_filter_abort .* outbound|80||flaky.example' <<<"$seen" ||
		fail "(3d) no FI line for the aborted request: $seen"
	counters=$(proxy_counters)
	grep -q "faults_delayed=1 faults_aborted=1 " <<<"$counters" || fail "(3d) counters: $counters"
	log "ok (3d) fault injection on one keep-alive connection: /fault/delay 200 after ${dsecs}s (DI), /fault/abort 418 \"fault filter abort\" (FI), nothing of it upstream"

	# (3e) mirror: every /mirror request is also copied to shadow.example
	# (the 503 server) with Host "flaky.example-shadow"; the client sees only
	# the original's answer and the access log only the original.
	flaky_routes <<'EOF2'
  - match:
    - uri: {prefix: /mirror}
    mirror: {host: shadow.example}
    route:
    - destination: {host: flaky.example}
EOF2
	wait_generation 7
	mark=$(wc -l <"$TMP/access.log")
	cat >"$TMP/mirror_client.py" <<'PYEOF'
import http.client
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=10)
for path in ["/mirror/1", "/mirror/2"]:
    c.request("GET", path, headers={"Host": "flaky.example"})
    r = c.getresponse()
    print(path, r.status, r.read().decode().strip().replace(" ", "_"))
PYEOF
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/mirror_client.py" 2>&1) || fail "(3e) client: $out"
	[ "$out" = $'/mirror/1 200 status_200\n/mirror/2 200 status_200' ] || fail "(3e) the originals: $out"
	for _ in $(seq 40); do
		[ "$(grep -c '^flaky.example-shadow /mirror/' "$TMP/s503.log")" -ge 2 ] && break
		sleep 0.05
	done
	shadows=$(grep '^flaky.example-shadow /mirror/' "$TMP/s503.log" | sort | tr '\n' ' ')
	[ "$shadows" = "flaky.example-shadow /mirror/1 flaky.example-shadow /mirror/2 " ] ||
		fail "(3e) the shadow endpoint saw: '$shadows'"
	seen=$(tail -n +"$((mark + 1))" "$TMP/access.log")
	[ "$(grep -c '"GET /mirror/[12] HTTP/1.1" 200 ' <<<"$seen")" = 2 ] && ! grep -q 'shadow' <<<"$seen" ||
		fail "(3e) the access log should have the two originals only: $seen"
	counters=$(proxy_counters)
	grep -q " mirrored=2 mirror_skipped=0 " <<<"$counters" || fail "(3e) counters: $counters"
	log "ok (3e) mirror: /mirror/1 and /mirror/2 answered 200 by flaky.example, copies reached shadow.example as \"flaky.example-shadow\", only the originals logged"
	# A 150 KB upload: more than arrives with the head, so its body is
	# streamed to the copy as the original's is forwarded (and within what
	# the copy's socket holds while the copy connects).
	cat >"$TMP/upload_client.py" <<'PYEOF'
import hashlib, http.client, os
body = os.urandom(150000)
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=10)
c.request("POST", "/mirror/upload", body=body, headers={"Host": "flaky.example"})
r = c.getresponse()
r.read()
print(r.status, len(body), hashlib.sha256(body).hexdigest()[:16])
PYEOF
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/upload_client.py" 2>&1) || fail "(3e) upload client: $out"
	read -r ustatus ulen uhash <<<"$out"
	case "$ustatus" in 200 | 503) ;; *) fail "(3e) the upload: $out" ;; esac  # either flaky.example endpoint
	for _ in $(seq 60); do
		grep -q "^flaky.example-shadow /mirror/upload " "$TMP/s503.log" && break
		sleep 0.05
	done
	grep -q "^flaky.example /mirror/upload $ulen $uhash\$" "$TMP/s200.log" "$TMP/s503.log" ||
		fail "(3e) the original upload did not arrive whole: $(grep -h /mirror/upload "$TMP/s200.log" "$TMP/s503.log")"
	grep -q "^flaky.example-shadow /mirror/upload $ulen $uhash\$" "$TMP/s503.log" ||
		fail "(3e) the copy of the upload: $(grep -h /mirror/upload "$TMP/s503.log")"
	counters=$(proxy_counters)
	grep -q " mirrored=3 mirror_skipped=0 mirror_cut=0 " <<<"$counters" || fail "(3e) counters: $counters"
	log "ok (3e) a 150000-byte upload to /mirror/upload ($ustatus): its copy reached shadow.example whole (sha256 $uhash), streamed"

	# (3f) The Sidecar resource of the workload's namespace (the proxy's
	# --namespace, default "default"). Its outboundTrafficPolicy ALLOW_ANY
	# wins over the mesh's REGISTRY_ONLY: raw TCP to an undeclared IP:port
	# passes through. Then egress hosts that leave edition.cnn.com out
	# (istio-system/* only) with REGISTRY_ONLY: the ServiceEntry still exists
	# but this workload does not see it, so the walkthrough is blocked again.
	# Removed: 200 again.
	cat >"$TMP/config/sidecar.yaml" <<'EOF2'
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  outboundTrafficPolicy: {mode: ALLOW_ANY}
EOF2
	wait_generation 8
	grep "config generation 8 " "$TMP/proxy.err" | grep -q 'Sidecar default/default' ||
		fail "(3f) the load line does not name the Sidecar: $(grep 'config generation 8 ' "$TMP/proxy.err")"
	before=$(count_bytes)
	mark=$(wc -l <"$TMP/access.log")
	out=$(raw_tcp 203.0.113.20 9000)
	sleep 0.3
	[ "$(count_bytes)" = $((before + 16)) ] || fail "(3f) Sidecar ALLOW_ANY: raw TCP $out, server got $(( $(count_bytes) - before ))"
	tail -n +"$((mark + 1))" "$TMP/access.log" | grep -q 'PassthroughCluster - 203.0.113.20:9000 ' ||
		fail "(3f) no PassthroughCluster line for :9000"
	explain_matches 203.0.113.20:9000 "$(seen_line "$TMP/access.log" "$mark" 203.0.113.20:9000)"
	cat >"$TMP/config/sidecar.yaml" <<'EOF2'
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
EOF2
	wait_generation 9
	mark=$(wc -l <"$TMP/access.log")
	out=$(walkthrough_curl)
	blocked_rc=$?
	[ "$blocked_rc" != 0 ] || fail "(3f) egress hosts without edition.cnn.com: the walkthrough still succeeded: $out"
	sleep 0.3
	# No ServiceEntry this workload sees declares port 80: REGISTRY_ONLY's
	# blackhole (as for an undeclared destination), logged UH.
	line=$(seen_line "$TMP/access.log" "$mark" 203.0.113.10:80)
	grep -q ' UH .*BlackHoleCluster' <<<"$line" || fail "(3f) the blocked request's line: $line"
	explain_matches 203.0.113.10:80 --host edition.cnn.com "$line"
	rm "$TMP/config/sidecar.yaml"
	wait_generation 10
	out=$(walkthrough_curl)
	rc=$?
	[ "$rc" = 0 ] && grep -q "^HTTP/1.1 200" <<<"$out" || fail "(3f) without the Sidecar: exit $rc: $out"
	log "ok (3f) Sidecar resource: its ALLOW_ANY passed raw TCP through under the mesh's REGISTRY_ONLY; egress hosts istio-system/* hid ServiceEntry cnn (curl exit $blocked_rc); removed, 200 again"
fi

# ------------------------------------------------------------ (4) unknown destinations
code=$(in_cg_ns workload "$NS_W" curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
	-H 'Host: unknown.example.org' http://203.0.113.20/)
[ "$code" = 502 ] || fail "(4) HTTP to an undeclared host: expected 502, got $code"
grep -q '"GET / HTTP/1.1" 502 - direct_response .* BlackHoleCluster .* block_all' "$TMP/access.log" ||
	fail "(4) no block_all 502 line"
# The 502 keeps the client's connection (Envoy keeps an HTTP/1.1 connection
# after a local reply): the next request on it, for a declared host, goes
# through on the same socket.
cat >"$TMP/keepalive_client.py" <<'PYEOF'
import http.client
c = http.client.HTTPConnection("203.0.113.10", 80, timeout=10)
c.request("GET", "/", headers={"Host": "unknown.example.org"})
r1 = c.getresponse()
r1.read()
port1 = c.sock.getsockname()[1] if c.sock else None
c.request("GET", "/politics", headers={"Host": "edition.cnn.com"})
r2 = c.getresponse()
r2.read()
port2 = c.sock.getsockname()[1] if c.sock else None
print(r1.status, r2.status, "same" if port1 is not None and port1 == port2 else "reconnected")
PYEOF
out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/keepalive_client.py" 2>&1) || fail "(4) keep-alive client: $out"
[ "$out" = "502 301 same" ] || fail "(4) a 502 then a declared host on one connection: $out (want: 502 301 same)"
# Pipelined in one write (the proxy's first read holds them all): the
# declared request is forwarded and answered, the undeclared one after it
# gets its 502 behind that answer, in order, and the connection goes on: the
# third request (the last: Connection: close) is decided afresh and answered.
cat >"$TMP/pipelined_client.py" <<'PYEOF'
import re, socket
s = socket.create_connection(("203.0.113.10", 80), timeout=10)
s.sendall(b"GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\n\r\n"
          b"GET /p HTTP/1.1\r\nHost: unknown.example.org\r\n\r\n"
          b"GET /politics HTTP/1.1\r\nHost: edition.cnn.com\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    data += chunk
print(" ".join(m.decode() for m in re.findall(rb"^HTTP/1\.1 (\d+)", data, re.M)))
PYEOF
out=$(in_cg_ns workload "$NS_W" "$PY" "$TMP/pipelined_client.py" 2>&1) || fail "(4) pipelined client: $out"
[ "$out" = "301 502 301" ] || fail "(4) three pipelined requests, the second undeclared: $out (want: 301 502 301)"
grep -q '"GET /p HTTP/1.1" 502 - direct_response .* BlackHoleCluster' "$TMP/access.log" ||
	fail "(4) no 502 line for the pipelined undeclared request"
before=$(count_bytes)
out=$(raw_tcp 203.0.113.20 9000)
sleep 0.3
case "$out" in "SENT 16 GOT 0"|CLOSED*) ;; *) fail "(4) raw TCP to an undeclared IP:port: $out" ;; esac
[ "$(count_bytes)" = "$before" ] || fail "(4) the server received $(( $(count_bytes) - before )) bytes"
log "ok (4) plain HTTP to an undeclared host: 502 (the connection kept: the next request on it 301; pipelined between declared ones: 301 502 301); raw TCP to 203.0.113.20:9000 closed, server received 0 bytes"
explain_matches 203.0.113.20:80 --host unknown.example.org "$(seen_line "$TMP/access.log" "$mark" 203.0.113.20:80)"
explain_matches 203.0.113.20:9000 "$(seen_line "$TMP/access.log" "$mark" 203.0.113.20:9000)"

# ------------------------------------------------------------ (5) includeIPRanges
sed -i 's|includeIPRanges: "\*"|includeIPRanges: "10.244.0.0/16,10.240.0.0/16"|' "$TMP/values.yaml"
ok=""
for _ in $(seq 40); do
	out=$(raw_tcp 203.0.113.20 9000)
	[ "$out" = "SENT 16 GOT 0" ] && [ "$(count_bytes)" -gt "$before" ] && { ok=1; break; }
	sleep 0.1
done
[ -n "$ok" ] || fail "(5) includeIPRanges change not applied by the agent: $out"
lines=$(wc -l <"$TMP/access.log")   # probes before the agent's update went through the proxy
before=$(count_bytes)
out=$(raw_tcp 203.0.113.20 9000)
sleep 0.3
[ "$(count_bytes)" = $((before + 16)) ] || fail "(5) raw TCP outside includeIPRanges: $out, server got $(( $(count_bytes) - before ))"
out=$(walkthrough_curl)
rc=$?
[ "$rc" = 0 ] && grep -q "^HTTP/1.1 200" <<<"$out" || fail "(5) direct curl: exit $rc: $out"
sleep 0.2
[ "$(wc -l <"$TMP/access.log")" = "$lines" ] || fail "(5) the proxy saw traffic outside includeIPRanges"
log "ok (5) includeIPRanges 10.244.0.0/16,10.240.0.0/16: direct (raw TCP delivered, curl 200), proxy access log unchanged"
explain_matches 203.0.113.20:9000 "$(seen_line "$TMP/access.log" "$lines" 203.0.113.20:9000)"
explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/access.log" "$lines" 203.0.113.10:80)"

# ------------------------------------------------------------ no open relay
if [ "$PLACEMENT" = node ]; then
	out=$(in_cg_ns other "$NS_W" curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://198.51.100.1:15001/)
else
	out=$(in_cg_ns other "$NS_W" curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://127.0.0.1:15001/)
fi
[ "$out" = 000 ] || fail "a direct connection to the proxy got HTTP $out"
kill -USR1 "$PROXY_PID"
sleep 0.2
grep -q "no_original_dst=[1-9]" "$TMP/proxy.err" || fail "no_original_dst not counted"
log "ok: a direct connection to the proxy is refused; $(grep 'counters:' "$TMP/proxy.err" | tail -1 | sed 's/.*counters: //')"
log "PASS"
