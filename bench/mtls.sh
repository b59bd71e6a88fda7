#!/usr/bin/env bash
# The walkthrough's mutual-TLS chain, Sluice against HAProxy, side by side in
# one run (a benchmark, not a test; needs root: it uses the BPF interception
# like a real sidecar):
#
#   direct    wrk -> nginx
#   sluice    wrk -> (BPF connect4 redirect) Sluice sidecar -> ISTIO_MUTUAL,
#             SNI edition.cnn.com -> Sluice egress gateway (MUTUAL) -> nginx,
#             configured by configs/walkthrough as written (REGISTRY_ONLY)
#   haproxy   wrk -> HAProxy "sidecar" (TLS client with a mesh certificate)
#             -> HAProxy "gateway" (TLS server, client certificate required)
#             -> nginx; one thread each, in TCP mode and in HTTP mode (HAProxy has
#             no URI-SAN (SPIFFE) check: it checks the SNI name against a DNS
#             SAN, which the bench's gateway certificate carries for it)
#
#   keep-alive  wrk -t1 -cCONNECTIONS (requests/s and p99 latency)
#   new-conn    the same with `Connection: close`: a TCP connection from the
#               client per request. The mTLS hop: Sluice pools its HTTP/1.1
#               connections to the gateway as Envoy does (the client's
#               `Connection: close` ends only the client's connection), so
#               handshakes happen only while the pool fills; HAProxy's TCP mode
#               makes a TLS connection per request (resumed); its HTTP mode
#               runs with `http-reuse always`, its own connection pooling
#
#   cpu us/req  CPU time of the chain's two proxies per request (/proc)
#   host us/req all CPUs' busy time per request (/proc/stat)
#   segs/req    TCP segments sent per request over every hop (nstat TcpOutSegs)
#   wrk us/req  the client's own CPU per request, and its load (% of its one
#               CPU): near 100 % the client is the bottleneck, requests/s is
#               1 / wrk us/req, and a chain shows only through what it makes
#               the client pay (its BPF interception, wake-ups)
#
#   sudo bench/mtls.sh [BUILD_DIR]    (default: build)
# Env: DURATION seconds per run (5), CONNECTIONS (32), ROUNDS (1; above 1 the medians per
# test follow the rounds), WARMUP (1 s
# of the same load, unmeasured, before each run),
# SOCKET_REDIRECT (1: a last round with the agent's --socket-redirect, the
# workload <-> sidecar hop socket to socket; 0: skip it), PERF (a directory:
# `perf record --call-graph dwarf` of both Sluice proxies during each Sluice run, saved there
# as sluice-<row>.data; read with `perf report -i`).
# Everything runs inside one network namespace and one cgroup it creates
# (nginx 10.99.0.1, gateways 10.99.0.2/.3, sidecar 127.0.0.1:15001) and is
# removed on exit; prints absolute numbers and ratios.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-32}
ROUNDS=${ROUNDS:-1}
WARMUP=${WARMUP:-1}
export SLUICE_AGENT=$BUILD/agent/sluice-agent
PROXY=$BUILD/userspace-proxy/proxy/sluice-proxy
TEST_NAME=mtls-bench
. "$ROOT/tests/kernel/lib.sh"
kt_init nginx wrk haproxy python3
[ -x "$PROXY" ] && [ -x "$SLUICE_AGENT" ] || fail "build it first: scripts/setup"

NS="sluice-${ID}-bench"
kt_netns "$NS"
kt_cgroups workload proxy other
for a in 10.99.0.1 10.99.0.2 10.99.0.3; do ip netns exec "$NS" ip addr add "$a/32" dev lo; done
GW_HOST=istio-egressgateway.istio-system.svc.cluster.local
kt_hosts "$NS" "10.99.0.1 edition.cnn.com" "10.99.0.2 $GW_HOST"

# Certificates: the mesh root, the sidecar's and the gateway's identities.
{
	"$ROOT/scripts/mesh-certs" --dir "$TMP/pki" workload sidecar --ns default --sa sleep &&
		"$ROOT/scripts/mesh-certs" --dir "$TMP/pki" workload gateway --ns istio-system \
			--sa istio-egressgateway-service-account --dns edition.cnn.com
} >"$TMP/pki.log" 2>&1 || { cat "$TMP/pki.log"; fail "mesh-certs"; }
for n in sidecar gateway; do cat "$TMP/pki/$n/cert-chain.pem" "$TMP/pki/$n/key.pem" >"$TMP/pki/$n/haproxy.pem"; done

# nginx: the "internet" host.
mkdir -p "$TMP/nginx"
{
	kt_nginx_conf "$TMP/nginx"
	cat <<NGINX
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 10.99.0.1:80 reuseport backlog=4096;
        location / { return 200 "hello from edition.cnn.com\n"; }
    }
}
NGINX
} >"$TMP/nginx/nginx.conf"
sed -i 's/worker_connections 256/worker_connections 8192/' "$TMP/nginx/nginx.conf"
kt_bg in_cg_ns other "$NS" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"

# Sluice: the walkthrough's resources as written, one worker per proxy. The
# gateway's Gateway names /etc/certs: an overlay /etc gives it that path.
CONF="$TMP/config"
mkdir -p "$CONF" "$TMP/gw/etc/certs" "$TMP/gw/work"
cp "$ROOT/configs/mesh/istio-configmap-registry-only.yaml" "$CONF/istio-configmap.yaml"
cp "$ROOT/configs/walkthrough/serviceentry-cnn.yaml" "$ROOT/configs/walkthrough/egress-gateway.yaml" \
	"$ROOT/configs/walkthrough/virtualservice-cnn.yaml" "$CONF/"
cp "$TMP/pki/gateway/"{cert-chain.pem,key.pem,root-cert.pem} "$TMP/gw/etc/certs/"
cp "/etc/netns/$NS/hosts" "$TMP/gw/etc/hosts"
kt_bg in_cg_ns other "$NS" unshare -m --propagation private sh -c '
	mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/etc,workdir=$1/work" /etc || exit 97
	shift
	exec "$@"' sh "$TMP/gw" "$PROXY" --role gateway --config "$CONF" --listen-address 10.99.0.2 --workers 1 \
	--access-log "" --admin-port 15100 2>"$TMP/gateway.err"
printf 'global:\n  proxy:\n    includeIPRanges: "10.99.0.1/32"\n' >"$TMP/values.yaml"
AGENT_ARGS=(--cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --config "$TMP/values.yaml")
kt_agent "${AGENT_ARGS[@]}"
kt_bg in_cg_ns proxy "$NS" "$PROXY" --config "$CONF" --listen 127.0.0.1:15001 --workers 1 \
	--certs "$TMP/pki/sidecar" --access-log "" 2>"$TMP/sidecar.err"

# HAProxy: the same chain, one thread per proxy.
haproxy_pair() {  # MODE PORT_SIDECAR PORT_GATEWAY
	cat >"$TMP/haproxy-$1.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
  log stderr format raw local0 notice
defaults
  mode $1
  log global
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  $([ "$1" = http ] && printf 'option http-keep-alive\n  http-reuse always')
frontend sidecar
  bind 127.0.0.1:$2
  default_backend to_gateway
backend to_gateway
  server gw 10.99.0.3:$3 ssl crt $TMP/pki/sidecar/haproxy.pem ca-file $TMP/pki/sidecar/root-cert.pem verify required sni str(edition.cnn.com)
CONF
	cat >"$TMP/haproxy-$1-gw.cfg" <<CONF
global
  nbthread 1
  maxconn 4000
  log stderr format raw local0 notice
defaults
  mode $1
  log global
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend gateway
  bind 10.99.0.3:$3 ssl crt $TMP/pki/gateway/haproxy.pem ca-file $TMP/pki/gateway/root-cert.pem verify required
  default_backend nginx
backend nginx
  server n1 10.99.0.1:80
CONF
	kt_bg in_cg_ns other "$NS" haproxy -f "$TMP/haproxy-$1.cfg" -db >"$TMP/haproxy-$1.log" 2>&1
	kt_bg in_cg_ns other "$NS" haproxy -f "$TMP/haproxy-$1-gw.cfg" -db >"$TMP/haproxy-$1-gw.log" 2>&1
}
haproxy_pair tcp 18080 18443
haproxy_pair http 18081 18444
for l in 10.99.0.1:80 10.99.0.2:80 127.0.0.1:15001 127.0.0.1:18080 10.99.0.3:18443 127.0.0.1:18081 10.99.0.3:18444; do
	kt_wait_listen "$NS" "$l" || fail "nothing listens on $l"
done

# wrk_run CGROUP URL [wrk args]: prints "rps p99_ms"
wrk_run() {
	local cg=$1 url=$2
	shift 2
	in_cg_ns "$cg" "$NS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: edition.cnn.com" "$@" "$url" \
		2>/dev/null | awk '
		/Requests\/sec/ { rps = $2 }
		/^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }; p99 = v }
		END { printf "%d %.2f", rps, p99 }'
}
ratio() { python3 -c "import sys; a,b=float('$1' or 0),float('$2' or 0); print('%.2f' % (a/b) if b else 'n/a')"; }

# Sanity: every chain answers.
code=$(in_cg_ns workload "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://edition.cnn.com/)
[ "$code" = 200 ] || fail "the Sluice chain answered $code: $(tail -3 "$TMP/sidecar.err" "$TMP/gateway.err")"
for m in tcp:18080 http:18081; do
	code=$(in_cg_ns other "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: edition.cnn.com" \
		"http://127.0.0.1:${m#*:}/")
	[ "$code" = 200 ] || fail "the HAProxy ${m%%:*} chain answered $code: $(cat "$TMP/haproxy-${m%%:*}.log" \
		"$TMP/haproxy-${m%%:*}-gw.log")"
done

# CPU time (user + system, all threads) of the chain's two proxies, in
# clock ticks; per request it says what the proxies cost apart from the
# machine's two CPUs that wrk, nginx and every hop's TCP work share.
pids_of() { local l; for l in "$@"; do kt_listener_pid "$NS" "$l"; done; }
SL_PIDS=$(pids_of 127.0.0.1:15001 10.99.0.2:80)
HT_PIDS=$(pids_of 127.0.0.1:18080 10.99.0.3:18443)
HH_PIDS=$(pids_of 127.0.0.1:18081 10.99.0.3:18444)
# TCP segments sent in the bench's namespace (every hop is in it): per
# request, what the chain puts on the wire (data, ACKs, SYNs, FINs).
out_segs() { ip netns exec "$NS" nstat -az TcpOutSegs | awk '/TcpOutSegs/ { print $2 }'; }
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }  # user nice system irq softirq
# measure VAR_RPS VAR_P99 VAR_CPU VAR_HOST "PIDS" CGROUP URL [wrk args]
measure() {
	local -n rps_=$1 p99_=$2 cpu_=$3 host_=$4
	local pids=$5 before host_before
	shift 5
	# Unmeasured warm-up, every chain alike (fresh processes fault in
	# buffers and fill their pools in their first second).
	[ "$WARMUP" -gt 0 ] && DURATION=$WARMUP wrk_run "$@" >/dev/null
	# shellcheck disable=SC2086
	[ -n "$pids" ] && before=$(kt_cpu_ticks $pids)
	host_before=$(busy_ticks)
	local segs_before
	segs_before=$(out_segs)
	local perf_pid=""
	if [ -n "${PERF:-}" ] && [ -n "$pids" ] && [ "$pids" = "$SL_PIDS" ]; then
		mkdir -p "$PERF"
		# shellcheck disable=SC2086
		perf record -q -F 999 --call-graph dwarf -o "$PERF/sluice-$PERF_LABEL.data" -p "$(echo $pids | tr ' ' ',')" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	local client_before
	client_before=$(kt_children_ticks)
	wrk_run "$@" >"$TMP/wrk.out"  # in the foreground: its CPU time counts
	local client_ticks=$(("$(kt_children_ticks)" - client_before))
	read -r rps_ p99_ <"$TMP/wrk.out"
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null
		wait "$perf_pid" 2>/dev/null
	fi
	cpu_=- host_=- LAST_SEGS=- LAST_CLIENT=-
	if [ "${rps_:-0}" -gt 0 ]; then
		LAST_CLIENT=$(python3 -c "t = $client_ticks / $(getconf CLK_TCK); print('%.0f(%.0f%%)' % (t * 1e6 / ($rps_ * $DURATION), t * 100 / $DURATION))")
		LAST_SEGS=$(python3 -c "print('%.1f' % (($(out_segs) - $segs_before) / ($rps_ * $DURATION)))")
	fi
	if [ "${rps_:-0}" -gt 0 ]; then
		host_=$(python3 -c "print('%.0f' % (($(busy_ticks) - $host_before) * 1e6 / $(getconf CLK_TCK) / ($rps_ * $DURATION)))")
	fi
	if [ -n "$pids" ] && [ "${rps_:-0}" -gt 0 ]; then
		# shellcheck disable=SC2086
		cpu_=$(python3 -c "print('%.0f' % (($(kt_cpu_ticks $pids) - $before) * 1e6 / $(getconf CLK_TCK) / ($rps_ * $DURATION)))")
	fi
}

echo "mTLS chain, 1 worker/thread per proxy, wrk -t1 -c$CONNECTIONS, ${DURATION}s per run, $ROUNDS round(s)"
printf "%-10s %10s %10s %10s %10s %10s %8s %8s %8s %s %s %s %s\n" test direct sluice hap-tcp hap-http sl/direct sl/tcp \
	sl/http "p99 ms" "  cpu us/req" "  host us/req" "  segs/req" "  wrk us/req(busy)"
# row KIND LABEL: direct, Sluice, HAProxy TCP and HTTP one after the other.
row() {
	local extra=()
	[ "$1" = new-conn ] && extra=(-H "Connection: close")
	PERF_LABEL=$2
	measure d dp dc dh "" other http://10.99.0.1/ "${extra[@]}"
	local dg=$LAST_SEGS dw=$LAST_CLIENT
	measure s sp sc sh "$SL_PIDS" workload http://10.99.0.1/ "${extra[@]}"
	local sg=$LAST_SEGS sw=$LAST_CLIENT
	measure t tp tc th "$HT_PIDS" other http://127.0.0.1:18080/ "${extra[@]}"
	local tg=$LAST_SEGS tw=$LAST_CLIENT
	measure h hp hc hh "$HH_PIDS" other http://127.0.0.1:18081/ "${extra[@]}"
	local hg=$LAST_SEGS hw=$LAST_CLIENT
	printf "%-10s %10s %10s %10s %10s %10s %8s %8s %8s %s %s %s %s\n" "$2" "$d" "$s" "$t" "$h" "$(ratio "$s" "$d")" \
		"$(ratio "$s" "$t")" "$(ratio "$s" "$h")" "$dp/$sp/$tp/$hp" "  $sc/$tc/$hc" "  $dh/$sh/$th/$hh" \
		"  $dg/$sg/$tg/$hg" "  $dw/$sw/$tw/$hw"
	echo "$2 $s $t $h $sc $hc $sh $hh" >>"$TMP/rows.txt"
}
# The median of every round's figures per test: one round's ratio moves by
# +-15 % on a shared 2-CPU machine, so a target is judged on the median.
medians() {
	python3 - "$TMP/rows.txt" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = line.split()
    rows.setdefault(f[0], []).append(f[1:])
def med(vals):
    vals = [float(v) for v in vals if v not in ("-", "0", "")]
    return statistics.median(vals) if vals else float("nan")
for test, rs in rows.items():
    ratios = lambda i: med([float(r[0]) / float(r[i]) for r in rs if float(r[i]) > 0])
    print("%-12s %d rounds: sl/tcp %.2f  sl/http %.2f  (ranges %.2f-%.2f)  cpu us/req sluice %.0f hap-http %.0f  host us/req sluice %.0f hap-http %.0f"
          % (test, len(rs), ratios(1), ratios(2),
             min(float(r[0]) / float(r[2]) for r in rs if float(r[2]) > 0),
             max(float(r[0]) / float(r[2]) for r in rs if float(r[2]) > 0),
             med([r[3] for r in rs]), med([r[4] for r in rs]), med([r[5] for r in rs]), med([r[6] for r in rs])))
PY
}
for round in $(seq "$ROUNDS"); do
	for kind in keepalive new-conn; do row "$kind" "$kind"; done
done
[ "$ROUNDS" -gt 1 ] && { echo "median per test (sl/http range over the rounds):"; medians; }
echo "p99 column: direct/sluice/haproxy-tcp/haproxy-http; cpu us/req: both proxies of the chain (user + system" \
	"from /proc) per request, sluice/haproxy-tcp/haproxy-http; lower is cheaper; host us/req: every CPU's busy" \
	"time per request (direct/sluice/haproxy-tcp/haproxy-http: clients, servers, proxies, kernel) — with the CPUs" \
	"saturated, requests/s = CPUs / host us/req, so a proxy's saving shows as its share of it; segs/req: TCP" \
	"segments sent per request over every hop (nstat TcpOutSegs in the bench's namespace); wrk us/req(busy): the" \
	"client's CPU per request and its load (% of its one CPU) — near 100 % the client is the bottleneck and" \
	"requests/s is 1 / wrk us/req, whatever the proxies cost"
if [ "${SOCKET_REDIRECT:-1}" = 1 ]; then
	# Once more with the agent's --socket-redirect (opt-in: the workload <->
	# sidecar hop socket to socket), HAProxy measured again beside it.
	kt_agent_restart "${AGENT_ARGS[@]}" --socket-redirect true
	echo "with --socket-redirect:"
	for kind in keepalive new-conn; do row "$kind" "$kind-sk"; done
fi
for who in sidecar:127.0.0.1:15001 gateway:10.99.0.2:80; do
	pid=$(kt_listener_pid "$NS" "${who#*:}")
	[ -n "$pid" ] && kill -USR1 "$pid"
done
sleep 0.3
echo "sidecar: $(grep 'counters:' "$TMP/sidecar.err" | tail -1 | sed 's/.*counters: //')"
echo "gateway: $(grep 'counters:' "$TMP/gateway.err" | tail -1 | sed 's/.*counters: //')"
