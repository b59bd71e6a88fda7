#!/usr/bin/env bash
# End-to-end test of the walkthrough's egress-gateway section (shared seed
# egress-walkthrough.md, "Direct all external calls to the Egress Service")
# with the real programs: sluice-agent's BPF programs on a cgroup this test
# creates, a sidecar sluice-proxy in the workload's namespace, two
# sluice-proxy egress-gateway replicas each in its own namespace, nginx as
# edition.cnn.com in an "internet" namespace, curl in the workload.
#
#   gateway_walkthrough_test.sh [CASE]
#     walkthrough   the seed's four resources + ServiceEntry cnn, REGISTRY_ONLY:
#                   200 via the gateways, gateway addresses at nginx, TLS
#                   with SNI on the wire, round robin, mTLS refusals, one
#                   gateway down (default)
#     variants      istio.io's TLS origination at the gateway, TLS
#                   passthrough through the gateway, TLS origination at the
#                   sidecar; a route timeout; fault abort and mirror on the
#                   gateway-bound route
#
# Topology (namespaces this test creates; the root namespace is untouched):
#   W (workload + sidecar) 198.51.100.2 --- 198.51.100.1 N (router)
#   N 10.20.1.1 --- 10.20.1.2 G1 (egress gateway replica 1)
#   N 10.20.2.1 --- 10.20.2.2 G2 (egress gateway replica 2)
#   N 192.0.2.1 --- 192.0.2.2 I ("internet": nginx as edition.cnn.com on
#                             203.0.113.10:80 and :443)
# W's hosts file: edition.cnn.com -> 203.0.113.10 and
# istio-egressgateway.istio-system.svc.cluster.local -> 10.20.1.2, 10.20.2.2.
# Each gateway runs in a private mount namespace whose /etc is an overlay with
# its own hosts file and /etc/certs/{cert-chain.pem,key.pem,root-cert.pem},
# the paths the walkthrough's Gateway names: the resources are applied as
# written.
#
# Environment (meson sets it): SLUICE_AGENT, SLUICE_PROXY, SLUICE_PYTHON,
# SLUICE_CONFIGS, SLUICE_MESH_CERTS (scripts/mesh-certs), SLUICE_CTL
# (sluicectl: `sluicectl explain` is checked against the access logs at each
# hop). CI=true turns a missing capability into a failure instead of a skip
# (77).
set -u -o pipefail

CASE=${1:-walkthrough}
TEST_NAME="gateway-$CASE"
. "$(dirname "$0")/lib.sh"

AGENT=${SLUICE_AGENT:?}
PROXY=${SLUICE_PROXY:?}
CONFIGS=${SLUICE_CONFIGS:?}
MESH_CERTS=${SLUICE_MESH_CERTS:?}
PY=${SLUICE_PYTHON:-/usr/bin/python3}
CTL=${SLUICE_CTL:?}
GW_HOST=istio-egressgateway.istio-system.svc.cluster.local
GW_ID=spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account

kt_init nginx curl openssl tcpdump ss unshare
[ -x "$PROXY" ] || fail "proxy not built: $PROXY"
[ -x "$CTL" ] || fail "sluicectl not built: $CTL"

NS_W="sluice-${ID}-w"
NS_N="sluice-${ID}-n"
NS_G1="sluice-${ID}-g1"
NS_G2="sluice-${ID}-g2"
NS_I="sluice-${ID}-i"
kt_netns "$NS_W" "$NS_N" "$NS_G1" "$NS_G2" "$NS_I"
kt_cgroups workload proxy other
kt_link "$NS_W" vw 198.51.100.2/24 "$NS_N" vn 198.51.100.1/24
kt_link "$NS_N" vg1 10.20.1.1/24 "$NS_G1" vx 10.20.1.2/24
kt_link "$NS_N" vg2 10.20.2.1/24 "$NS_G2" vx 10.20.2.2/24
kt_link "$NS_N" vi 192.0.2.1/24 "$NS_I" vx 192.0.2.2/24
ip netns exec "$NS_N" sysctl -qw net.ipv4.ip_forward=1
ip netns exec "$NS_N" ip route add 203.0.113.0/24 via 192.0.2.2
for ns in "$NS_W" "$NS_G1" "$NS_G2" "$NS_I"; do
	gw=$(ip netns exec "$ns" ip -4 -o addr show dev "$([ "$ns" = "$NS_W" ] && echo vw || echo vx)" |
		awk '{ split($4, a, "/"); split(a[1], o, "."); print o[1] "." o[2] "." o[3] ".1" }')
	ip netns exec "$ns" ip route add default via "$gw"
done
ip netns exec "$NS_I" ip addr add 203.0.113.10/32 dev lo
kt_hosts "$NS_W" "203.0.113.10 edition.cnn.com" "10.20.1.2 $GW_HOST" "10.20.2.2 $GW_HOST"

# ------------------------------------------------------------ certificates
# Mesh CA with three identities, and a separate "public" CA for nginx.
{
	"$MESH_CERTS" --dir "$TMP/pki" workload sidecar --ns default --sa sleep &&
		"$MESH_CERTS" --dir "$TMP/pki" workload gateway --ns istio-system --sa istio-egressgateway-service-account &&
		"$MESH_CERTS" --dir "$TMP/pki" workload impostor --ns default --sa impostor &&
		"$MESH_CERTS" --dir "$TMP/pki" server cnn --dns edition.cnn.com
} >"$TMP/pki.log" 2>&1 || { cat "$TMP/pki.log" >&2; fail "scripts/mesh-certs failed"; }
EXT_CA="$TMP/pki/cnn/root-cert.pem"
[ -f "$EXT_CA" ] || fail "no external CA at $EXT_CA: $(ls -R "$TMP/pki")"

# ------------------------------------------------------------ edition.cnn.com
mkdir -p "$TMP/nginx"
{
	kt_nginx_conf "$TMP/nginx"
	cat <<NGINX
    log_format peer '\$remote_addr \$server_port "\$request" \$status \$http_host';
    log_format conn '\$remote_addr \$connection \$connection_requests "\$request"';
    server {
        listen 203.0.113.10:80;
        server_name edition.cnn.com;
        access_log $TMP/nginx/access80.log peer;
        access_log $TMP/nginx/conn80.log conn;
        location = /politics { return 301 https://edition.cnn.com/politics; }
        location / { return 200 "plain \$request_uri\n"; }
    }
    server {
        listen 203.0.113.10:443 ssl;
        server_name edition.cnn.com;
        access_log $TMP/nginx/access443.log peer;
        ssl_certificate $TMP/pki/cnn/cert-chain.pem;
        ssl_certificate_key $TMP/pki/cnn/key.pem;
        location = /politics { return 200 "politics\n"; }
        location / { return 200 "tls \$request_uri\n"; }
    }
}
NGINX
} >"$TMP/nginx/nginx.conf"
KT_LOGS+=("$TMP/nginx/error.log")
kt_bg in_cg_ns other "$NS_I" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"
kt_wait_listen "$NS_I" 203.0.113.10:443 || fail "nginx did not start"

# ------------------------------------------------------------ config
CONF="$TMP/config"
mkdir -p "$CONF"
cp "$CONFIGS/mesh/istio-configmap-registry-only.yaml" "$CONF/istio-configmap.yaml"
# use_walkthrough_resources [GATEWAY_YAML]: the walkthrough's resources as
# written (its Gateway + DestinationRule file, or GATEWAY_YAML instead).
use_walkthrough_resources() {
	rm -f "$CONF"/*-resources.yaml
	cp "$CONFIGS/walkthrough/serviceentry-cnn.yaml" "$CONF/serviceentry-cnn.yaml"
	cp "${1:-$CONFIGS/walkthrough/egress-gateway.yaml}" "$CONF/egress-gateway.yaml"
	cp "$CONFIGS/walkthrough/virtualservice-cnn.yaml" "$CONF/virtualservice-cnn.yaml"
}
use_walkthrough_resources

# ------------------------------------------------------------ gateways
# etc_root DIR IDENTITY HOSTS_LINE...: DIR/etc is the upper layer of an
# overlay over /etc for one proxy process (a container's view): hosts,
# resolv.conf, /etc/certs with the mesh identity IDENTITY (the walkthrough's
# paths), and /etc/ssl/certs/ca-certificates.crt = the test "public" CA (the
# istio.io variants name that bundle in their DestinationRules).
etc_root() {
	local root=$1 identity=$2
	shift 2
	rm -rf "$root"
	mkdir -p "$root/etc/certs" "$root/etc/ssl/certs" "$root/work"
	cp "$TMP/pki/$identity/cert-chain.pem" "$TMP/pki/$identity/key.pem" "$TMP/pki/$identity/root-cert.pem" \
		"$root/etc/certs/"
	cp "$EXT_CA" "$root/etc/ssl/certs/ca-certificates.crt"
	printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
	printf '%s\n' "$@" >>"$root/etc/hosts"
	printf 'nameserver 127.0.0.1\n' >"$root/etc/resolv.conf"
}
# in_etc_overlay CGROUP NS DIR CMD...: CMD in a private mount namespace whose
# /etc is the overlay of etc_root DIR.
in_etc_overlay() {
	local cg=$1 ns=$2 root=$3
	shift 3
	in_cg_ns "$cg" "$ns" unshare -m --propagation private sh -c '
		mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/work" /etc || exit 97
		shift
		exec "$@"' sh "$root" "$@"
}

# start_gateway N IDENTITY [PORT]: replica N in namespace G<N> with /etc/certs
# from the mesh CA's IDENTITY; waits for its listener on PORT (80); sets
# GW_PID[N].
declare -A GW_PID
start_gateway() {
	local n=$1 identity=$2 port=${3:-80} ns addr root
	ns=$([ "$n" = 1 ] && echo "$NS_G1" || echo "$NS_G2")
	addr="10.20.$n.2"
	root="$TMP/gw$n"
	etc_root "$root" "$identity" "203.0.113.10 edition.cnn.com"
	: >"$root/gateway.err"
	KT_LOGS+=("$root/gateway.err")
	in_etc_overlay other "$ns" "$root" \
		"$PROXY" --role gateway --namespace istio-system \
		--label istio=egressgateway --config "$CONF" --listen-address "$addr" --workers 1 \
		--access-log "$root/access.log" >"$root/gateway.out" 2>"$root/gateway.err" &
	KT_PIDS+=($!)
	kt_wait_listen "$ns" "$addr:$port" || fail "gateway $n does not listen on $addr:$port"
	GW_PID[$n]=$(kt_listener_pid "$ns" "$addr:$port")
	[ -n "${GW_PID[$n]}" ] || fail "no pid for gateway $n"
	KT_PIDS+=("${GW_PID[$n]}")
}
start_gateway 1 gateway
start_gateway 2 gateway

# ------------------------------------------------------------ agent + sidecar
cat >"$TMP/values.yaml" <<'EOF2'
global:
  proxy:
    includeIPRanges: "*"
EOF2
kt_agent --cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --poll-interval-ms 200 --config "$TMP/values.yaml"
KT_LOGS+=("$TMP/sidecar.err" "$TMP/sidecar.log")
# forward-proxy.corp.example: the "tunnel" variant's HTTP forward proxy.
etc_root "$TMP/side" sidecar "203.0.113.10 edition.cnn.com" "10.20.1.2 $GW_HOST" "10.20.2.2 $GW_HOST" \
	"203.0.113.10 forward-proxy.corp.example"
kt_bg in_etc_overlay proxy "$NS_W" "$TMP/side" "$PROXY" --config "$CONF" --listen 127.0.0.1:15001 --workers 2 \
	--access-log "$TMP/sidecar.log" --detection-timeout 1000 >"$TMP/sidecar.out" 2>"$TMP/sidecar.err"
kt_wait_listen "$NS_W" 127.0.0.1:15001 || fail "the sidecar did not start"

walkthrough_curl() {
	in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$EXT_CA" \
		curl -sL -o /dev/null -D - --max-time 10 http://edition.cnn.com/politics
}
http_code() {  # URL: one request from the workload, prints the status
	in_cg_ns workload "$NS_W" curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$1"
}
# wait_generation N: the sidecar and both gateways loaded config generation N.
wait_generation() {
	local f
	for f in "$TMP/sidecar.err" "$TMP/gw1/gateway.err" "$TMP/gw2/gateway.err"; do
		for _ in $(seq 60); do
			grep -q "config generation $1 " "$f" && break
			sleep 0.05
		done
		grep -q "config generation $1 " "$f" || fail "$f: config generation $1 not loaded"
	done
}
# next_generation: the config directory was just changed; waits until every
# proxy loaded it (GENERATION counts the loads).
next_generation() {
	GENERATION=$((GENERATION + 1))
	wait_generation "$GENERATION"
}
# use_variant NAME: the resources of configs/variants/NAME replace the
# current ones (the mesh ConfigMap stays REGISTRY_ONLY).
GENERATION=1
use_variant() {
	rm -f "$CONF/serviceentry-cnn.yaml" "$CONF/egress-gateway.yaml" "$CONF/virtualservice-cnn.yaml" "$CONF"/variant-*.yaml
	cp "$CONFIGS/variants/$1/$1.yaml" "$CONF/variant-$1.yaml"
	next_generation
}
# gateways_listen PORT: both gateways listen on PORT again (a reload that
# adds a Gateway server opens its listener after the load is logged).
gateways_listen() {
	local n ns
	for n in 1 2; do
		ns=$([ "$n" = 1 ] && echo "$NS_G1" || echo "$NS_G2")
		kt_wait_listen "$ns" "10.20.$n.2:$1" || fail "gateway $n does not listen on :$1 after the reload"
	done
}
new_lines() {  # FILE BEFORE: the lines of FILE after line BEFORE
	tail -n +"$(($2 + 1))" "$1" 2>/dev/null
}
peers80() { awk '{ print $1 }' "$TMP/nginx/access80.log" 2>/dev/null | tr '\n' ' '; }

# ------------------------------------------------------------ sluicectl explain
# seen_line FILE MARK DEST: the last access log line of FILE after line MARK
# for a connection whose original destination (%DOWNSTREAM_LOCAL_ADDRESS%,
# the third field after the last quoted one) is DEST; empty if none.
seen_line() {
	tail -n +"$(($2 + 1))" "$1" 2>/dev/null |
		awk -v d="$3" '{ n = split($0, q, "\""); split(q[n], f, " "); if (f[3] == d) l = $0 } END { if (l != "") print l }'
}
lines_of() { cat "$1" 2>/dev/null | wc -l; }
# explain_matches DEST [EXPLAIN_ARGS...] SEEN: `sluicectl explain` for DEST,
# against the files the proxies and the agent read at this moment ($CONF and
# the agent's values), must say what the data plane did. SEEN is the access
# log line of the proxy that handled the connection (seen_line): same
# cluster, same response flags, and for a local reply the same status.
# EXPLAIN_TLS="MODE SNI" in the environment: the upstream TLS explain
# predicts too (what the test's capture saw on the wire).
explain_matches() {
	local seen=${!#} args=("${@:1:$#-1}") json rc said
	json=$("$CTL" explain "${args[@]}" -o json "$CONF" "$TMP/values.yaml")
	rc=$?
	[ "$rc" = 0 ] || [ "$rc" = 3 ] || fail "sluicectl explain ${args[*]}: exit $rc"
	said=$("$PY" - "$json" "$seen" "${EXPLAIN_TLS:-}" 2>&1 <<'PYEOF'
import json, re, sys
e, seen, tls = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
o = e["outcome"]
said = (o["result"], o["cluster"], o["response_flags"], o.get("status"))
m = re.match(r'\[[^]]*\] "[^"]*" (\d+) (\S+) (\S+) ', seen)
if not m:
    sys.exit("no or unparsable access log line: %r" % seen)
code, flags, details = int(m[1]), m[2], m[3]
cluster = seen.rsplit('"', 1)[1].split()[0]
if details == "direct_response":
    did = ("local-reply", cluster, flags, code)
else:
    did = ("forward" if flags == "-" else "closed", cluster, flags, None)
if said != did:
    sys.exit("explain says %s, the data plane did %s (%s)" % (said, did, seen))
what = "access log %s %d %s %s" % (cluster, code, flags, details)
if tls:
    fwd = (e.get("plan") or {}).get("forward") or {}
    if "%s %s" % (fwd.get("tls_mode"), fwd.get("sni")) != tls:
        sys.exit("explain's upstream TLS is %s SNI %r, the wire had %s" % (fwd.get("tls_mode"), fwd.get("sni"), tls))
    what += "; upstream TLS " + tls
print("%s; %s" % (o["summary"], what))
PYEOF
	) || fail "sluicectl explain ${args[*]} disagrees with the data plane: $said"
	log "ok explain ${args[*]}: $said"
}
# explain_at_gateways PORT MARK1 MARK2 [EXPLAIN_ARGS...]: explain_matches
# --role gateway for each replica that logged a connection to its PORT after
# line MARKn of its access log (at least one must have).
explain_at_gateways() {
	local port=$1 n line seen=""
	for n in 1 2; do
		line=$(seen_line "$TMP/gw$n/access.log" "$([ "$n" = 1 ] && echo "$2" || echo "$3")" "10.20.$n.2:$port")
		[ -n "$line" ] || continue
		seen=1
		explain_matches "10.20.$n.2:$port" --role gateway --label istio=egressgateway "${@:4}" "$line"
	done
	[ -n "$seen" ] || fail "no gateway logged a connection on port $port"
}

case "$CASE" in
walkthrough)
	# ------------------------------------------------ (1) + (3) 200, TLS on the wire
	# The workload's own link (W <-> N) carries only its traffic; the
	# gateways' links also carry their plaintext leg to nginx.
	kt_bg ip netns exec "$NS_N" tcpdump -i vn --immediate-mode -U -s 0 -w "$TMP/vn.pcap" tcp port 80 2>"$TMP/vn.tcpdump"
	TCPDUMP_PID=$!
	for _ in $(seq 40); do grep -q listening "$TMP/vn.tcpdump" 2>/dev/null && break; sleep 0.05; done
	out=$(walkthrough_curl)
	rc=$?
	[ "$rc" = 0 ] && grep -q "^HTTP/1.1 301" <<<"$out" && grep -q "^HTTP/1.1 200" <<<"$out" ||
		fail "(1) curl exit $rc: $out"
	log "ok (1) curl -sL http://edition.cnn.com/politics: 301 via the egress gateway, then 200"
	# Two more requests so both gateways are reached (round robin).
	for _ in 1 2; do [ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "(1) repeat"; done
	sleep 0.3
	kill "$TCPDUMP_PID" 2>/dev/null
	wait "$TCPDUMP_PID" 2>/dev/null
	"$PY" - "$TMP/vn.pcap" <<'PYEOF' || fail "(3) capture on the workload's link: $(cat "$TMP/vn.tcpdump")"
import socket, struct, sys
data = open(sys.argv[1], "rb").read()
# pcap: 24-byte header, then (16-byte record header + Ethernet frame) each.
off, payload, peers = 24, b"", set()
while off + 16 <= len(data):
    incl = struct.unpack_from("<I", data, off + 8)[0]
    frame = data[off + 16: off + 16 + incl]
    off += 16 + incl
    if len(frame) < 34 or frame[12:14] != b"\x08\x00":
        continue
    ip = frame[14:]
    ihl = (ip[0] & 15) * 4
    dst = socket.inet_ntoa(ip[16:20])
    tcp = ip[ihl:]
    thl = (tcp[12] >> 4) * 4
    dport = struct.unpack_from(">H", tcp, 2)[0]
    if dport == 80:
        peers.add(dst)
    payload += tcp[thl:]
if not payload:
    sys.exit("no TCP payload captured")
if b"GET /politics" in payload or b"HTTP/1.1 301" in payload:
    sys.exit("plaintext HTTP on the workload->gateway link")
if b"edition.cnn.com" not in payload:
    sys.exit("no SNI edition.cnn.com in the capture")
if b"\x16\x03\x01" not in payload:
    sys.exit("no TLS handshake record")
if peers != {"10.20.1.2", "10.20.2.2"}:
    sys.exit("port-80 connections went to %s, expected both gateways only" % sorted(peers))
PYEOF
	log "ok (3) the workload's port-80 traffic is TLS with SNI edition.cnn.com to 10.20.1.2 and 10.20.2.2, no plaintext HTTP"

	# ------------------------------------------------ (2) gateway addresses at nginx
	p=$(peers80)
	[ -n "$p" ] || fail "(2) nginx saw no request on port 80"
	for a in $p; do
		case "$a" in 10.20.1.2 | 10.20.2.2) ;; *) fail "(2) nginx port 80 saw client $a (expected a gateway): $p" ;; esac
	done
	grep -q 'outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local' "$TMP/sidecar.log" ||
		fail "(2) the sidecar's access log has no outbound|80|cnn|$GW_HOST line"
	log "ok (2) nginx :80 clients: $p(gateways only; :443 went direct per ServiceEntry cnn's HTTPS port)"
	EXPLAIN_TLS="ISTIO_MUTUAL edition.cnn.com" explain_matches 203.0.113.10:80 --host edition.cnn.com \
		"$(seen_line "$TMP/sidecar.log" 0 203.0.113.10:80)"
	explain_matches 203.0.113.10:443 --sni edition.cnn.com "$(seen_line "$TMP/sidecar.log" 0 203.0.113.10:443)"
	explain_at_gateways 80 0 0 --sni edition.cnn.com

	# ------------------------------------------------ (4) round robin
	: >"$TMP/nginx/access80.log.mark"
	before=$(wc -l <"$TMP/nginx/access80.log")
	for _ in 1 2 3 4; do [ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "(4) request failed"; done
	sleep 0.3
	seq4=$(tail -n +"$((before + 1))" "$TMP/nginx/access80.log" | awk '{ print $1 }' | tr '\n' ' ')
	"$PY" -c '
import sys
s = sys.argv[1].split()
if len(s) != 4 or len(set(s)) != 2 or any(a == b for a, b in zip(s, s[1:])):
    sys.exit("not alternating: %s" % s)' "$seq4" || fail "(4) round robin: $seq4"
	log "ok (4) consecutive requests alternate between the gateways: $seq4"

	# The sidecar's admin endpoint (loopback, Envoy's 15000) counts them.
	stats=$(in_cg_ns other "$NS_W" curl -s --max-time 5 http://127.0.0.1:15000/stats/prometheus)
	n=$(grep '^istio_requests_total{' <<<"$stats" | grep 'response_code="301"' |
		grep "destination_service_name=\"$GW_HOST\"" | awk '{ s += $NF } END { print s + 0 }')
	[ "$n" = 7 ] || fail "(4) istio_requests_total for the gateway with 301: $n, expected 7:
$(grep '^istio_requests_total' <<<"$stats")"
	[ "$(in_cg_ns other "$NS_W" curl -s --max-time 5 http://127.0.0.1:15000/ready)" = LIVE ] ||
		fail "(4) the sidecar's /ready is not LIVE"
	log "ok: the sidecar's /stats/prometheus counts istio_requests_total{response_code=\"301\",destination_service_name=\"$GW_HOST\"} = 7"
	# Each gateway's own admin endpoint (its namespace's loopback): together
	# they served the same 7 requests, over mutual TLS, to edition.cnn.com.
	total=0
	for n in 1 2; do
		ns=$([ "$n" = 1 ] && echo "$NS_G1" || echo "$NS_G2")
		gstats=$(in_cg_ns other "$ns" curl -s --max-time 5 http://127.0.0.1:15000/stats/prometheus)
		c=$(grep '^istio_requests_total{' <<<"$gstats" | grep 'response_code="301"' |
			grep 'destination_service_name="edition.cnn.com"' | grep 'connection_security_policy="mutual_tls"' |
			awk '{ s += $NF } END { print s + 0 }')
		[ "$c" -gt 0 ] || fail "(4) gateway $n counted no mutual_tls request to edition.cnn.com:
$(grep '^istio_requests_total' <<<"$gstats")"
		total=$((total + c))
	done
	[ "$total" = 7 ] || fail "(4) the gateways counted $total requests, expected 7"
	log "ok: the gateways' /stats/prometheus count 7 istio_requests_total{destination_service_name=\"edition.cnn.com\",connection_security_policy=\"mutual_tls\",response_code=\"301\"} between them"
	# Envoy's connection pool: the 7 requests came on 7 client connections
	# (curl, one each), the sidecar reused its mTLS connections to the two
	# gateways instead of a handshake per request. Pools are per worker (as
	# Envoy's): at most 2 workers x 2 gateways = 4 connections are made.
	stats=$(in_cg_ns other "$NS_W" curl -s --max-time 5 http://127.0.0.1:15000/stats/prometheus)
	reused=$(grep '^sluice_engine_upstream_pool_total{' <<<"$stats" | grep 'event="reused"' | awk '{ s += $NF } END { print s + 0 }')
	hs=$(grep '^sluice_proxy_events_total{event="tls_handshakes"}' <<<"$stats" | awk '{ print $NF + 0 }')
	[ "$hs" -le 4 ] && [ $((reused + hs)) = 7 ] ||
		fail "(4) pooling: $reused upstream connections reused, $hs TLS handshakes for 7 requests:
$(grep -E '^sluice_engine_upstream_pool|^sluice_proxy_events_total' <<<"$stats")"
	log "ok: 7 client connections went over $hs mTLS connections to the gateways ($reused pooled reuses)"

	# ------------------------------------------------ (5a) no client certificate
	out=$(in_cg_ns other "$NS_W" curl -sk -o /dev/null -w '%{http_code}' --max-time 5 \
		--resolve edition.cnn.com:80:10.20.1.2 https://edition.cnn.com:80/politics)
	rc=$?
	[ "$rc" != 0 ] && [ "$out" = 000 ] || fail "(5) a client without a mesh certificate got HTTP $out (exit $rc)"
	grep -qi "handshake.*\(certificate\|cert\)" "$TMP/gw1/gateway.err" ||
		fail "(5) gateway 1 did not log why the handshake failed"
	log "ok (5) a client without a mesh certificate is refused by the gateway (curl exit $rc): $(grep -im1 handshake "$TMP/gw1/gateway.err")"

	# ------------------------------------------------ (6) one gateway down
	kill "${GW_PID[1]}"
	while kill -0 "${GW_PID[1]}" 2>/dev/null; do sleep 0.05; done
	before=$(wc -l <"$TMP/nginx/access80.log")
	for _ in 1 2 3 4; do
		c=$(http_code http://edition.cnn.com/politics)
		[ "$c" = 301 ] || fail "(6) with gateway 1 down a request got $c"
	done
	sleep 0.3
	rest=$(tail -n +"$((before + 1))" "$TMP/nginx/access80.log" | awk '{ print $1 }' | sort -u | tr '\n' ' ')
	[ "$rest" = "10.20.2.2 " ] || fail "(6) expected only gateway 2 at nginx, got: $rest"
	log "ok (6) gateway 1 down: 4/4 requests succeeded through gateway 2"

	# ------------------------------------------------ (5b) gateway with another identity
	kill "${GW_PID[2]}"
	while kill -0 "${GW_PID[2]}" 2>/dev/null; do sleep 0.05; done
	# Meanwhile no gateway at all: Envoy's 503 reaches the client (not an
	# empty reply) after Istio's default two connect-failure retries, flag
	# UF with URX (retries exhausted).
	ms=$(lines_of "$TMP/sidecar.log")
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}' http://edition.cnn.com/politics)
	case "$out" in "upstream connect error or disconnect/reset before headers. "*"reset reason: "*" 503") ;;
	*) fail "(6) with both gateways down: got \"$out\"" ;; esac
	sleep 0.3
	# (UC: a pooled connection to the gateway just killed, its FIN not yet seen.)
	new_lines "$TMP/sidecar.log" "$ms" | grep -Eq '"GET /politics HTTP/1.1" 503 (UF,URX|UC) ' ||
		fail "(6) with both gateways down, the sidecar logged: $(new_lines "$TMP/sidecar.log" "$ms")"
	log "ok (6) both gateways down: 503 \"${out% 503}\""
	start_gateway 2 impostor
	ms=$(lines_of "$TMP/sidecar.log")
	c=$(http_code http://edition.cnn.com/politics)
	[ "$c" = 503 ] || fail "(5) a gateway with identity spiffe://cluster.local/ns/default/sa/impostor: got $c"
	sleep 0.3
	# A failed handshake is a connection failure to Envoy: Istio's default
	# policy retries it (elsewhere first: gateway 1, down), so the answer is
	# 503 UF,URX with the last try's reason; the impostor saw the sidecar
	# abort its handshakes.
	line=$(new_lines "$TMP/sidecar.log" "$ms" | grep '" 503 UF,URX .*outbound|80|cnn|')
	[ -n "$line" ] || fail "(5) no 503 UF,URX line in the sidecar's access log: $(new_lines "$TMP/sidecar.log" "$ms")"
	grep -q 'TLS handshake with downstream .* failed' "$TMP/gw2/gateway.err" ||
		fail "(5) the impostor gateway saw no failed handshake: $(tail -3 "$TMP/gw2/gateway.err")"
	log "ok (5) a gateway presenting another SPIFFE identity is refused by the sidecar: $line"
	;;
variants)
	# ------------------------------------------------ TLS origination at the gateway
	use_variant tls-origination-gateway
	ms=$(lines_of "$TMP/sidecar.log") m1=$(lines_of "$TMP/gw1/access.log") m2=$(lines_of "$TMP/gw2/access.log")
	b80=$(wc -l <"$TMP/nginx/access80.log" 2>/dev/null || echo 0)
	b443=$(wc -l <"$TMP/nginx/access443.log" 2>/dev/null || echo 0)
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}' http://edition.cnn.com/politics)
	[ "$out" = "politics
 200" ] || fail "TLS origination at the gateway: got \"$out\""
	sleep 0.3
	[ -z "$(new_lines "$TMP/nginx/access80.log" "$b80")" ] || fail "TLS origination at the gateway: nginx :80 was used"
	p=$(new_lines "$TMP/nginx/access443.log" "$b443" | awk '{ print $1 }' | tr '\n' ' ')
	case "$p" in "10.20.1.2 " | "10.20.2.2 ") ;; *) fail "TLS origination at the gateway: nginx :443 clients: $p" ;; esac
	grep -q 'outbound|443||edition.cnn.com' "$TMP/gw1/access.log" "$TMP/gw2/access.log" ||
		fail "TLS origination at the gateway: no outbound|443||edition.cnn.com line at a gateway"
	log "ok TLS origination at the gateway: plain HTTP from the app, mTLS to the gateway, TLS from ${p% } to nginx :443 (200)"
	explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/sidecar.log" "$ms" 203.0.113.10:80)"
	explain_at_gateways 80 "$m1" "$m2" --sni edition.cnn.com

	# ------------------------------------------------ TLS origination at the sidecar
	use_variant tls-origination-sidecar
	ms=$(lines_of "$TMP/sidecar.log")
	b443=$(wc -l <"$TMP/nginx/access443.log")
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}' http://edition.cnn.com/politics)
	[ "$out" = "politics
 200" ] || fail "TLS origination at the sidecar: got \"$out\""
	sleep 0.3
	p=$(new_lines "$TMP/nginx/access443.log" "$b443" | awk '{ print $1 }' | tr '\n' ' ')
	[ "$p" = "198.51.100.2 " ] || fail "TLS origination at the sidecar: nginx :443 clients: $p"
	grep -q '"GET /politics HTTP/1.1" 200 .*outbound|80||edition.cnn.com' "$TMP/sidecar.log" ||
		fail "TLS origination at the sidecar: no outbound|80||edition.cnn.com 200 line"
	log "ok TLS origination at the sidecar: http://edition.cnn.com/politics -> TLS to :443 (targetPort) from the workload (200)"
	explain_matches 203.0.113.10:80 --host edition.cnn.com "$(seen_line "$TMP/sidecar.log" "$ms" 203.0.113.10:80)"

	# ------------------------------------------------ TLS passthrough through the gateway
	use_variant tls-passthrough-gateway
	gateways_listen 443
	b443=$(wc -l <"$TMP/nginx/access443.log")
	ms=$(lines_of "$TMP/sidecar.log") m1=$(lines_of "$TMP/gw1/access.log") m2=$(lines_of "$TMP/gw2/access.log")
	out=$(in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$EXT_CA" curl -s --max-time 10 -w ' %{http_code}' \
		https://edition.cnn.com/politics)
	[ "$out" = "politics
 200" ] || fail "TLS passthrough: got \"$out\""
	sleep 0.3
	p=$(new_lines "$TMP/nginx/access443.log" "$b443" | awk '{ print $1 }' | tr '\n' ' ')
	case "$p" in "10.20.1.2 " | "10.20.2.2 ") ;; *) fail "TLS passthrough: nginx :443 clients: $p" ;; esac
	grep -q 'outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local .* edition.cnn.com' "$TMP/sidecar.log" ||
		fail "TLS passthrough: no outbound|443|cnn|... line with SNI edition.cnn.com at the sidecar"
	log "ok TLS passthrough through the gateway: the app's own TLS reached nginx :443 from ${p% } (200), SNI routed at both hops"
	explain_matches 203.0.113.10:443 --sni edition.cnn.com "$(seen_line "$TMP/sidecar.log" "$ms" 203.0.113.10:443)"
	explain_at_gateways 443 "$m1" "$m2" --sni edition.cnn.com

	# ------------------------------------------------ through an HTTP forward proxy (tunnel)
	# DestinationRule trafficPolicy.tunnel: the app's TLS to edition.cnn.com
	# goes by a tls[] route to forward-proxy.corp.example:3128, a CONNECT
	# proxy in the "internet" that logs each request and lets only
	# edition.cnn.com:443 through (403 otherwise).
	kt_bg in_cg_ns other "$NS_I" "$PY" -c '
import socket, sys, threading
log = open(sys.argv[1], "a", buffering=1)
allowed = {"edition.cnn.com:443": ("203.0.113.10", 443)}
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def serve(c):
    head = b""
    while b"\r\n\r\n" not in head:
        d = c.recv(4096)
        if not d:
            c.close()
            return
        head += d
    line = head.split(b"\r\n")[0].decode()
    log.write(line + "\n")
    parts = line.split()
    if len(parts) != 3 or parts[0] != "CONNECT" or parts[1] not in allowed:
        c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
        c.close()
        return
    u = socket.create_connection(allowed[parts[1]])
    c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
    rest = head[head.index(b"\r\n\r\n") + 4:]
    if rest:
        u.sendall(rest)
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 3128))
s.listen(16)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()' "$TMP/fwproxy.log"
	kt_wait_listen "$NS_I" 203.0.113.10:3128 || fail "the forward proxy did not start"
	use_variant tunnel-sidecar
	b443=$(wc -l <"$TMP/nginx/access443.log")
	ms=$(lines_of "$TMP/sidecar.log")
	out=$(in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$EXT_CA" curl -s --max-time 10 -w ' %{http_code}' \
		https://edition.cnn.com/politics)
	[ "$out" = "politics
 200" ] || fail "tunnel: got \"$out\" (forward proxy log: $(cat "$TMP/fwproxy.log"))"
	sleep 0.3
	[ "$(cat "$TMP/fwproxy.log")" = "CONNECT edition.cnn.com:443 HTTP/1.1" ] ||
		fail "tunnel: the forward proxy saw: $(cat "$TMP/fwproxy.log")"
	p=$(new_lines "$TMP/nginx/access443.log" "$b443" | awk '{ print $1 }' | tr '\n' ' ')
	[ "$p" = "203.0.113.10 " ] || fail "tunnel: nginx :443 clients: $p (the proxy's address expected)"
	line=$(seen_line "$TMP/sidecar.log" "$ms" 203.0.113.10:443)
	grep -q 'outbound|3128|edition-cnn-com-443|forward-proxy.corp.example' <<<"$line" ||
		fail "tunnel: the sidecar's line: $line"
	log "ok tunnel (DestinationRule trafficPolicy.tunnel): TLS to edition.cnn.com through the forward proxy's CONNECT (200), nginx saw the proxy"
	explain_matches 203.0.113.10:443 --sni edition.cnn.com "$line"
	# The proxy refuses another target: the connection fails, UF, with its answer.
	sed 's/targetHost: edition.cnn.com/targetHost: elsewhere.example/' "$CONFIGS/variants/tunnel-sidecar/tunnel-sidecar.yaml" \
		>"$CONF/variant-tunnel-sidecar.yaml"
	next_generation
	ms=$(lines_of "$TMP/sidecar.log")
	in_cg_ns workload "$NS_W" env CURL_CA_BUNDLE="$EXT_CA" curl -s -o /dev/null --max-time 10 https://edition.cnn.com/politics
	rc=$?
	[ "$rc" = 35 ] || fail "tunnel refused by the proxy: curl exit $rc (35 expected: the connection closed in the handshake)"
	sleep 0.3
	line=$(new_lines "$TMP/sidecar.log" "$ms" | grep 'forward-proxy.corp.example' | tail -1)
	grep -q ' UF .*"tunnel: the proxy answered CONNECT elsewhere.example:443 with HTTP/1.1 403 Forbidden"' <<<"$line" ||
		fail "tunnel refused: the sidecar's line: $line"
	log "ok tunnel refused by the proxy (403): curl exit 35, the sidecar logged UF with the proxy's answer"
	use_variant tls-passthrough-gateway  # what the sections below ran with before

	# ------------------------------------------------ a route timeout, for real
	# An "internet" server that accepts and never answers; the route to it
	# has timeout 0.5s: the sidecar's engine timer answers Envoy's 504.
	kt_bg in_cg_ns other "$NS_I" "$PY" -c '
import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 8081))
s.listen(16)
held = []
while True:
    held.append(s.accept()[0])'
	kt_wait_listen "$NS_I" 203.0.113.10:8081 || fail "the silent server did not start"
	cat >"$CONF/variant-timeout.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: slow}
spec:
  hosts: [slow.example]
  ports: [{number: 8081, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.10}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: slow}
spec:
  hosts: [slow.example]
  http:
  - timeout: 0.5s
    route: [{destination: {host: slow.example}}]
YAML
	next_generation
	ms=$(lines_of "$TMP/sidecar.log")
	code=$(in_cg_ns workload "$NS_W" curl -s -o "$TMP/slow.body" -w '%{http_code}' --max-time 10 \
		--resolve slow.example:8081:203.0.113.10 http://slow.example:8081/)
	[ "$code" = 504 ] || fail "route timeout: HTTP $code, expected 504"
	grep -q 'upstream request timeout' "$TMP/slow.body" || fail "route timeout: body $(cat "$TMP/slow.body")"
	sleep 0.3
	line=$(new_lines "$TMP/sidecar.log" "$ms" | grep 'slow.example' | tail -1)
	grep -q '" 504 UT upstream_response_timeout ' <<<"$line" || fail "route timeout: sidecar logged: $line"
	log "ok route timeout 0.5s to a server that never answers: 504 \"upstream request timeout\", logged $(sed 's/.*" 504/504/' <<<"$line" | cut -d' ' -f1-3)"

	# ------------------------------------------------ circuit breaking, for real
	# istio.io's circuit-breaking task, at the sidecar: an "internet" server
	# that answers each request after 1 s, keeping its connections alive,
	# and logs how many requests it has under way as each one arrives.
	# maxConnections 1: three concurrent requests all succeed, one at a time
	# (Envoy's pending queue, not a 503 at once; the upstream connection goes
	# back to the pool at each response end). Adding http1MaxPendingRequests
	# 1: one of three is refused, 503 UO.
	kt_bg in_cg_ns other "$NS_I" "$PY" -c '
import socket, sys, threading, time
log = open(sys.argv[1], "a", buffering=1)
lock = threading.Lock()
busy = [0]
def serve(c):
    data = b""
    try:
        while True:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(4096)
                if not chunk:
                    return
                data += chunk
            data = data[data.index(b"\r\n\r\n") + 4:]
            with lock:
                busy[0] += 1
                log.write("busy %d\n" % busy[0])
            time.sleep(1)
            with lock:
                busy[0] -= 1
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nslow\n")
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("203.0.113.10", 8082))
s.listen(16)
while True:
    threading.Thread(target=serve, args=(s.accept()[0],), daemon=True).start()' "$TMP/breaker.log"
	kt_wait_listen "$NS_I" 203.0.113.10:8082 || fail "the slow server did not start"
	# breaker_config PENDING_LINE: the slow server as httpbin.example with
	# maxConnections 1 (and PENDING_LINE under connectionPool).
	breaker_config() {
		cat >"$CONF/variant-breaker.yaml" <<YAML
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: httpbin}
spec:
  hosts: [httpbin.example]
  ports: [{number: 8082, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.10}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin.example
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
$1
YAML
		next_generation
	}
	# breaker_round: three concurrent curls; prints their codes, sorted.
	breaker_round() {
		local i pids=()
		for i in 1 2 3; do
			in_cg_ns workload "$NS_W" curl -s -o /dev/null -w '%{http_code}\n' --max-time 10 \
				--resolve httpbin.example:8082:203.0.113.10 http://httpbin.example:8082/get >"$TMP/breaker.$i" &
			pids+=($!)
		done
		wait "${pids[@]}"
		sleep 0.3
		cat "$TMP/breaker.1" "$TMP/breaker.2" "$TMP/breaker.3" | sort | tr '\n' ' '
	}
	: >"$TMP/breaker.log"
	ms=$(lines_of "$TMP/sidecar.log")
	breaker_config ""
	codes=$(breaker_round)
	[ "$codes" = "200 200 200 " ] || fail "maxConnections 1: three concurrent requests gave $codes"
	most=$(sed 's/busy //' "$TMP/breaker.log" | sort -n | tail -1)
	[ "$(wc -l <"$TMP/breaker.log")" = 3 ] && [ "$most" = 1 ] ||
		fail "maxConnections 1: the server saw $(tr '\n' ' ' <"$TMP/breaker.log")"
	log "ok maxConnections 1: three concurrent requests all 200, one at a time (the others waited)"
	: >"$TMP/breaker.log"
	ms=$(lines_of "$TMP/sidecar.log")
	breaker_config "      http: {http1MaxPendingRequests: 1}"
	codes=$(breaker_round)
	[ "$codes" = "200 200 503 " ] || fail "http1MaxPendingRequests 1: three concurrent requests gave $codes"
	line=$(new_lines "$TMP/sidecar.log" "$ms" | grep 'httpbin.example' | grep '" 503 ')
	grep -q '" 503 UO .*http1MaxPendingRequests 1 reached' <<<"$line" || fail "pending overflow: sidecar logged: $line"
	most=$(sed 's/busy //' "$TMP/breaker.log" | sort -n | tail -1)
	[ "$most" = 1 ] || fail "http1MaxPendingRequests 1: the server saw $(tr '\n' ' ' <"$TMP/breaker.log")"
	log "ok http1MaxPendingRequests 1: of three concurrent requests one is refused, 503 UO (Envoy's pending overflow)"
	# A client that gives up while queued (curl --max-time closes) leaves the
	# queue: the next one finds room in it (not 503 UO) and is served.
	ms=$(lines_of "$TMP/sidecar.log")
	curl_httpbin() {  # MAX_TIME OUT
		in_cg_ns workload "$NS_W" curl -s -o /dev/null -w '%{http_code}\n' --max-time "$1" \
			--resolve httpbin.example:8082:203.0.113.10 http://httpbin.example:8082/get >"$2"
	}
	curl_httpbin 10 "$TMP/breaker.a" &
	pa=$!
	sleep 0.1
	curl_httpbin 0.2 "$TMP/breaker.b" &
	pb=$!
	sleep 0.5
	curl_httpbin 10 "$TMP/breaker.c" &
	pc=$!
	wait "$pa" "$pb" "$pc"
	codes="$(cat "$TMP/breaker.a") $(cat "$TMP/breaker.b") $(cat "$TMP/breaker.c")"
	[ "$codes" = "200 000 200" ] || fail "a client that gave up while queued: codes (holder, gone, next) $codes"
	sleep 0.3
	new_lines "$TMP/sidecar.log" "$ms" | grep 'httpbin.example' | grep -q '" 0 DC downstream_remote_disconnect ' ||
		fail "the request given up while queued is not logged DC: $(new_lines "$TMP/sidecar.log" "$ms")"
	log "ok a client that left while queued gave its place up (DC): the next one waited and got 200"

	# ------------------------------------------------ a TCP connection's lifetime
	# connectionPool.tcp on a TCP service, as Envoy's tcp_proxy takes it:
	# idleTimeout 500ms closes a silent connection to the slow server after
	# half a second; maxConnectionDuration 1500ms closes one that keeps
	# sending after a second and a half, logged DT.
	cat >"$CONF/variant-breaker.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: slow-tcp}
spec:
  hosts: [slow-tcp.example]
  addresses: [203.0.113.10/32]
  ports: [{number: 8082, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.10}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: slow-tcp}
spec:
  host: slow-tcp.example
  trafficPolicy:
    connectionPool:
      tcp: {idleTimeout: 500ms, maxConnectionDuration: 1500ms}
YAML
	next_generation
	# held_tcp CHATTY: seconds until the sidecar ends the connection, and the
	# bytes then read (a chatty client sends a byte every 0.2 s, never idle).
	held_tcp() {
		in_cg_ns workload "$NS_W" "$PY" -c '
import socket, sys, time
s = socket.create_connection(("203.0.113.10", 8082), timeout=10)
t0 = time.monotonic()
if sys.argv[1] == "1":
    s.settimeout(0.2)
    while True:
        try:
            data = s.recv(1)
            break
        except socket.timeout:
            s.send(b"x")
else:
    data = s.recv(1)
print("%.2f %d" % (time.monotonic() - t0, len(data)))' "$1"
	}
	ms=$(lines_of "$TMP/sidecar.log")
	read -r idle_secs got < <(held_tcp 0) || fail "the silent TCP connection failed"
	[ "$got" = 0 ] && awk -v s="$idle_secs" 'BEGIN { exit !(s >= 0.4 && s < 1.4) }' ||
		fail "idleTimeout 500ms: the silent connection ended after $idle_secs s with $got byte(s)"
	read -r secs got < <(held_tcp 1) || fail "the chatty TCP connection failed"
	[ "$got" = 0 ] && awk -v s="$secs" 'BEGIN { exit !(s >= 1.3 && s < 5) }' ||
		fail "maxConnectionDuration 1500ms: the chatty connection ended after $secs s with $got byte(s)"
	sleep 0.3
	lines=$(new_lines "$TMP/sidecar.log" "$ms" | grep 'outbound|8082||slow-tcp.example')
	[ "$(grep -c ' DT ' <<<"$lines")" = 1 ] || fail "one connection (the chatty one) should be logged DT: $lines"
	log "ok connectionPool.tcp on a TCP service: idleTimeout closed a silent connection after $idle_secs s, maxConnectionDuration a busy one after $secs s (DT)"

	# ------------------------------------------------ fault and mirror at the gateway
	# The walkthrough's resources, with the gateway-bound route split: /teapot
	# is aborted there (fault), the rest goes to edition.cnn.com and is
	# mirrored to shadow.example (the same nginx) with Host
	# edition.cnn.com-shadow, from the gateway.
	rm -f "$CONF"/variant-*.yaml
	use_walkthrough_resources
	cat >"$CONF/virtualservice-cnn.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: shadow}
spec:
  hosts: [shadow.example]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints: [{address: 203.0.113.10}]
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: cnn, port: {number: 80}}
  - match: [{gateways: [istio-egressgateway], port: 80, uri: {prefix: /teapot}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 100}}}
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}}]
  - match: [{gateways: [istio-egressgateway], port: 80, uri: {exact: /scheme}, scheme: {exact: https}}]
    directResponse: {status: 200, body: {string: "https"}}
  - match: [{gateways: [istio-egressgateway], port: 80, uri: {exact: /scheme}}]
    directResponse: {status: 200, body: {string: "http"}}
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}}]
    mirror: {host: shadow.example, port: {number: 80}}
    mirrorPercentage: {value: 100}
YAML
	next_generation
	# The walkthrough's Gateway is back (port 80; the passthrough variant had
	# only 443): its listeners are reconciled after the load.
	gateways_listen 80
	b80=$(wc -l <"$TMP/nginx/access80.log")
	m1=$(lines_of "$TMP/gw1/access.log") m2=$(lines_of "$TMP/gw2/access.log")
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}' http://edition.cnn.com/teapot)
	[ "$out" = "fault filter abort 418" ] || fail "fault at the gateway: got \"$out\""
	line=$( (new_lines "$TMP/gw1/access.log" "$m1"; new_lines "$TMP/gw2/access.log" "$m2") | grep '/teapot')
	grep -q '" 418 FI fault_filter_abort ' <<<"$line" || fail "fault at the gateway: the gateways logged: $line"
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}' http://edition.cnn.com/news)
	[ "$out" = "plain /news
 200" ] || fail "mirror at the gateway: got \"$out\""
	for _ in $(seq 40); do
		[ "$(new_lines "$TMP/nginx/access80.log" "$b80" | wc -l)" -ge 2 ] && break
		sleep 0.05
	done
	got=$(new_lines "$TMP/nginx/access80.log" "$b80")
	grep -q '/teapot' <<<"$got" && fail "fault at the gateway: /teapot reached nginx: $got"
	orig=$(grep -c '^10\.20\.[12]\.2 80 "GET /news HTTP/1.1" 200 edition\.cnn\.com$' <<<"$got")
	shadow=$(grep -c '^10\.20\.[12]\.2 80 "GET /news HTTP/1.1" 200 edition\.cnn\.com-shadow$' <<<"$got")
	[ "$orig" = 1 ] && [ "$shadow" = 1 ] || fail "mirror at the gateway: nginx saw: $got"
	# Only the original is logged at the gateway (Envoy logs no shadow).
	n=$( (new_lines "$TMP/gw1/access.log" "$m1"; new_lines "$TMP/gw2/access.log" "$m2") | grep -c '/news')
	[ "$n" = 1 ] || fail "mirror at the gateway: $n gateway log lines for /news"
	log "ok fault and mirror at the gateway: /teapot answered 418 FI there (never at nginx); /news 200 and its copy" \
		"reached nginx from a gateway as edition.cnn.com-shadow, logged once"
	# Requests arriving over the gateway's TLS (ISTIO_MUTUAL) have scheme
	# https, a connection's later requests too: /news then /scheme on one
	# client connection stay on one sidecar -> gateway connection, where
	# /scheme is a later request (answered at the gateway by its scheme).
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w ' %{http_code}\n' http://edition.cnn.com/scheme \
		http://edition.cnn.com/news http://edition.cnn.com/scheme | tr '\n' '|')
	[ "$out" = "https 200|plain /news| 200|https 200|" ] || fail "match.scheme at the gateway: got \"$out\""
	log "ok match.scheme https at the gateway for a first and a later request on one mTLS connection"

	# ------------------------------------------------ maxRequestsPerConnection at the gateway
	# The gateway terminates the sidecar's mTLS: its upstream connection to
	# nginx serves that one client connection, and still carries at most
	# the DestinationRule's maxRequestsPerConnection. /cap goes through a
	# subset of its own (a cluster of its own at the sidecar: new mTLS
	# connections, whose gateway side is decided under this config; older
	# pooled ones keep the config they started with).
	use_walkthrough_resources
	cat >"$CONF/egress-gateway.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: istio-egressgateway}
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 80, name: https, protocol: HTTPS}
    hosts: [edition.cnn.com]
    tls: {mode: MUTUAL, serverCertificate: /etc/certs/cert-chain.pem, privateKey: /etc/certs/key.pem,
          caCertificates: /etc/certs/root-cert.pem}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: egressgateway-for-cnn}
spec:
  host: istio-egressgateway.istio-system.svc.cluster.local
  subsets:
  - name: cnn
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      portLevelSettings: [{port: {number: 80}, tls: {mode: ISTIO_MUTUAL, sni: edition.cnn.com}}]
  - name: cap
    trafficPolicy:
      loadBalancer: {simple: ROUND_ROBIN}
      portLevelSettings: [{port: {number: 80}, tls: {mode: ISTIO_MUTUAL, sni: edition.cnn.com}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: cnn-pool}
spec:
  host: edition.cnn.com
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 2}}}
YAML
	cat >"$CONF/virtualservice-cnn.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: direct-cnn-through-egress-gateway}
spec:
  hosts: [edition.cnn.com]
  gateways: [istio-egressgateway, mesh]
  http:
  - match: [{gateways: [mesh], port: 80, uri: {prefix: /cap/}}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: cap, port: {number: 80}}
  - match: [{gateways: [mesh], port: 80}]
    route:
    - destination: {host: istio-egressgateway.istio-system.svc.cluster.local, subset: cnn, port: {number: 80}}
  - match: [{gateways: [istio-egressgateway], port: 80}]
    route: [{destination: {host: edition.cnn.com, port: {number: 80}}}]
YAML
	next_generation
	bc=$(wc -l <"$TMP/nginx/conn80.log")
	urls=()
	for i in 1 2 3 4 5 6; do urls+=(-o /dev/null "http://edition.cnn.com/cap/$i"); done
	out=$(in_cg_ns workload "$NS_W" curl -s --max-time 10 -w '%{http_code} ' "${urls[@]}")
	[ "$out" = "200 200 200 200 200 200 " ] || fail "maxRequestsPerConnection at the gateway: got \"$out\""
	sleep 0.3
	got=$(new_lines "$TMP/nginx/conn80.log" "$bc" | grep ' "GET /cap/')
	[ "$(wc -l <<<"$got")" = 6 ] || fail "maxRequestsPerConnection at the gateway: nginx saw $got"
	most=$(awk '{ print $3 }' <<<"$got" | sort -n | tail -1)
	conns=$(awk '{ print $1 " " $2 }' <<<"$got" | sort -u | wc -l)
	[ "$most" -le 2 ] && [ "$conns" -ge 3 ] ||
		fail "maxRequestsPerConnection 2 at the gateway: an nginx connection carried $most requests ($conns connections): $got"
	log "ok maxRequestsPerConnection 2 at the gateways: 6 requests on one client connection reached nginx over $conns connections, at most $most each"

	# ------------------------------------------------ consistentHash to the gateways
	# The sidecar's DestinationRule for the gateways hashes on x-user
	# (Envoy's RING_HASH): each user's requests, on new connections every
	# time, reach nginx from one gateway; the users spread over both. The
	# resources' ROUND_ROBIN (4) would alternate instead. The hash sits in
	# the port's own settings: as in Istio, a port-level entry replaces the
	# subset's policy, loadBalancer included.
	# Edited aside and put in place whole: the watcher never loads a half-way
	# config (the walkthrough's ROUND_ROBIN file alone).
	"$PY" - "$CONFIGS/walkthrough/egress-gateway.yaml" "$TMP/egress-gateway-hash.yaml" <<'PYEOF' ||
import sys
text = open(sys.argv[1]).read()
old = "      loadBalancer:\n        simple: ROUND_ROBIN\n      portLevelSettings:\n      - port:\n          number: 80\n"
assert old in text, text
text = text.replace(old, "      portLevelSettings:\n      - port:\n          number: 80\n"
                         "        loadBalancer:\n          consistentHash: {httpHeaderName: x-user}\n")
open(sys.argv[2], "w").write(text)
PYEOF
		fail "consistentHash: could not edit the DestinationRule"
	use_walkthrough_resources "$TMP/egress-gateway-hash.yaml"
	next_generation
	before=$(wc -l <"$TMP/nginx/access80.log")
	for u in 0 1 2 3 4 5 6 7; do
		for i in 1 2 3; do
			code=$(in_cg_ns workload "$NS_W" curl -s -o /dev/null --max-time 10 -w '%{http_code}' \
				-H "x-user: user-$u" "http://edition.cnn.com/hash/user-$u/$i")
			[ "$code" = 200 ] || fail "consistentHash: user-$u request $i got $code"
		done
	done
	for _ in $(seq 40); do
		got=$(tail -n +"$((before + 1))" "$TMP/nginx/access80.log" | grep ' "GET /hash/.* edition.cnn.com$')
		[ "$(wc -l <<<"$got")" -ge 24 ] && break
		sleep 0.05
	done
	homes=$(
		"$PY" - "$got" <<'PYEOF'
import re, sys
homes = {}
for line in sys.argv[1].splitlines():
    m = re.match(r'(\S+) \S+ "GET /hash/(user-\d)/\d', line)
    if m:
        homes.setdefault(m.group(2), set()).add(m.group(1))
if len(homes) != 8 or sum(1 for _ in sys.argv[1].splitlines()) != 24:
    sys.exit("expected 24 requests of 8 users at nginx, got %d users" % len(homes))
split = {u: g for u, g in homes.items() if len(g) != 1}
if split:
    sys.exit("users reached nginx from more than one gateway: %s" % split)
used = set().union(*homes.values())
if used != {"10.20.1.2", "10.20.2.2"}:
    sys.exit("the users all went to %s" % used)
print(" ".join("%s->%s" % (u, next(iter(g))) for u, g in sorted(homes.items())))
PYEOF
	) || fail "consistentHash: $homes; nginx saw: $got"
	log "ok consistentHash (x-user) to the gateways: each user's 3 requests from one gateway, users over both: $homes"

	# ------------------------------------------------ caCrl at the gateways
	# The Gateway's tls.caCrl (Envoy's crl): a CRL of the mesh CA that
	# revokes the sidecar's certificate makes the gateways refuse it (the
	# sidecar answers 503); the CRL file rotated to one that revokes nothing,
	# with no config change, lets it through again. The sidecar keeps no
	# upstream connection (maxRequestsPerConnection 1), so every request
	# handshakes: a connection made before the CRL goes on, as in Envoy.
	"$MESH_CERTS" --dir "$TMP/pki" crl --ca mesh-ca --revoke sidecar >>"$TMP/pki.log" 2>&1 ||
		fail "mesh-certs crl failed: $(tail -3 "$TMP/pki.log")"
	"$PY" - "$CONFIGS/walkthrough/egress-gateway.yaml" "$TMP/egress-gateway-crl.yaml" "$TMP/pki/mesh-ca/crl.pem" <<'PYEOF' ||
import sys
text = open(sys.argv[1]).read()
old = "      caCertificates: /etc/certs/root-cert.pem\n"
assert old in text, text
text = text.replace(old, old + "      caCrl: " + sys.argv[3] + "\n", 1)
tls = "        tls:\n          mode: ISTIO_MUTUAL\n"
assert tls in text, text
text = text.replace(tls, "        connectionPool: {http: {maxRequestsPerConnection: 1}}\n" + tls, 1)
open(sys.argv[2], "w").write(text)
PYEOF
		fail "caCrl: could not edit the Gateway"
	use_walkthrough_resources "$TMP/egress-gateway-crl.yaml"
	next_generation
	c=$(http_code http://edition.cnn.com/politics)
	[ "$c" = 503 ] || fail "caCrl revoking the sidecar's certificate: got $c"
	why=$(grep -hi "revoked" "$TMP/gw1/gateway.err" "$TMP/gw2/gateway.err" | head -1)
	[ -n "$why" ] || fail "caCrl: no gateway logged a revoked certificate"
	log "ok caCrl at the gateways: the sidecar's revoked certificate is refused (503): $why"
	"$MESH_CERTS" --dir "$TMP/pki" crl --ca mesh-ca >>"$TMP/pki.log" 2>&1 || fail "mesh-certs crl (none revoked) failed"
	for _ in $(seq 50); do
		c=$(http_code http://edition.cnn.com/politics)
		[ "$c" = 301 ] && break
		sleep 0.2
	done
	[ "$c" = 301 ] || fail "caCrl rotated to revoke nothing: still $c"
	log "ok caCrl rotated (nothing revoked, no config change): the sidecar gets through again ($c)"
	use_walkthrough_resources
	;;
*)
	fail "unknown case $CASE"
	;;
esac
log "PASS"
