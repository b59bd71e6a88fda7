#!/usr/bin/env bash
# sluice-proxy as a sidecar (BPF-redirected, SO_ORIGINAL_DST) against direct
# connections, HAProxy (TCP mode and HTTP mode) and nginx stream, side by
# side in one run, one worker / one thread each (a benchmark, not a test;
# needs root for the interception):
#
#   keep-alive   wrk -t1 -cCONNECTIONS --latency (requests/s, p99)
#   new-conn     the same with `Connection: close` (to the proxy; Sluice's
#                HTTP paths pool their upstream connections as Envoy does,
#                HAProxy's HTTP mode runs with `http-reuse always`, its
#                pooling; TCP modes connect upstream per client connection)
#   bulk         iperf3 -t DURATION, one stream, client -> server (Gbit/s);
#                "pass-small" is the passthrough sidecar without its bulk
#                ring (--bulk-buffers 0), to show what that ring is worth
#   idle         RSS of the proxy per idle connection, IDLE connections held
#   cpu us/req   the proxy process's CPU time per request (Sluice, HAProxy)
#   host us/req  all CPUs' busy time per request (wrk, nginx, the proxy and
#                the kernel's TCP work): requests/s = CPUs / host us/req when
#                the machine is saturated, so the proxy's share of it bounds
#                what a cheaper proxy can show in requests/s
#   wrk us/req   the client's own CPU time per request (with the kernel's work
#   wrk busy     done in its context: connect, the SYN/ACK handling of both
#                ends of a loopback hop, the BPF interception) and how busy
#                that one thread was (% of a CPU). Near 100 % wrk is the
#                bottleneck: requests/s is then 1 / wrk us/req whatever the
#                proxy costs, and a proxy shows only through what it makes
#                the client pay
#
# Sluice runs twice: "passthrough" (ALLOW_ANY, no ServiceEntry: sniffed,
# every HTTP request checked, sent to the original destination) and
# "policy" (REGISTRY_ONLY with a ServiceEntry: HTTP port 80 by Host,
# STATIC endpoint; TCP ports by address) — the second is compared with
# HAProxy in HTTP mode, as the issue asks. Each also runs with the agent's
# --socket-redirect true ("pass-sk", "policy-sk"): the workload <-> sidecar
# hop goes socket to socket (sk_msg) instead of through loopback TCP/IP —
# the same interception, an extra kernel fast path HAProxy cannot have as a
# plain listener.
#
#   sudo bench/proxy.sh [BUILD_DIR]     (default: build)
# Env: DURATION (5) seconds per run, CONNECTIONS (50), IDLE (9000: every
# relayed connection costs the proxy two descriptors, and the open-files hard
# limit here is 20000; the figure is per connection either way),
# SIDECAR_ARGS (extra sluice-proxy flags, e.g. "--bulk-buffers 0" for an A/B),
# WARMUP (1) seconds of the same load, unmeasured, before each wrk run,
# PERF (a directory: `perf record -g` of the proxy during each Sluice and
# HAProxy wrk run, one file per row, e.g. keepalive.pass.data).
# All inside one network namespace and one cgroup the script creates
# (servers on 10.99.0.1, proxies on 127.0.0.1); removed on exit.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
DURATION=${DURATION:-5}
WARMUP=${WARMUP:-1}
CONNECTIONS=${CONNECTIONS:-50}
IDLE=${IDLE:-9000}
export SLUICE_PYTHON=${SLUICE_PYTHON:-/usr/bin/python3}
export SLUICE_AGENT=$BUILD/agent/sluice-agent
PROXY=$BUILD/userspace-proxy/proxy/sluice-proxy
STREAM_MODULE=/usr/lib/nginx/modules/ngx_stream_module.so
TEST_NAME=proxy-bench
. "$ROOT/tests/kernel/lib.sh"
kt_init nginx wrk haproxy iperf3 python3
[ -x "$PROXY" ] && [ -x "$SLUICE_AGENT" ] || fail "build it first: scripts/setup"
[ -f "$STREAM_MODULE" ] || fail "nginx stream module missing: apt-get install libnginx-mod-stream"
ulimit -n "$(ulimit -Hn)"

NS="sluice-${ID}-bench"
kt_netns "$NS"
kt_cgroups workload proxy other
ip netns exec "$NS" ip addr add 10.99.0.1/32 dev lo
kt_hosts "$NS" "10.99.0.1 bench.example"

# Servers: nginx (HTTP :80, and a stream relay set below), iperf3 :5201, an
# idle-connection sink :5202.
mkdir -p "$TMP/nginx"
{
	echo "load_module $STREAM_MODULE;"
	kt_nginx_conf "$TMP/nginx" | sed 's/worker_connections 256/worker_connections 16384/'
	cat <<NGINX
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 10.99.0.1:80 reuseport backlog=4096;
        location / { return 200 "hello from bench.example\n"; }
    }
}
NGINX
} >"$TMP/nginx/nginx.conf"
kt_bg in_cg_ns other "$NS" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"
kt_bg in_cg_ns other "$NS" iperf3 -s -B 10.99.0.1 -p 5201 >/dev/null 2>&1
cat >"$TMP/sink.py" <<'PY'
import selectors, socket
sel = selectors.DefaultSelector()
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.99.0.1", 5202)); s.listen(4096); s.setblocking(False)
sel.register(s, selectors.EVENT_READ)
while True:
    for key, _ in sel.select():
        if key.fileobj is s:
            try:
                while True:
                    c, _ = s.accept(); c.setblocking(False); sel.register(c, selectors.EVENT_READ)
            except BlockingIOError:
                pass
        else:  # held until the peer closes
            try:
                if key.fileobj.recv(4096):
                    continue
            except OSError:
                pass
            sel.unregister(key.fileobj); key.fileobj.close()
PY
kt_bg in_cg_ns other "$NS" "$SLUICE_PYTHON" "$TMP/sink.py"

# nginx stream (one worker) and HAProxy (one thread, TCP and HTTP mode).
mkdir -p "$TMP/stream"
cat >"$TMP/stream/nginx.conf" <<NGINX
load_module $STREAM_MODULE;
worker_processes 1;
daemon off;
pid $TMP/stream/nginx.pid;
error_log $TMP/stream/error.log;
events { worker_connections 16384; }
stream {
    server { listen 127.0.0.1:28080; proxy_pass 10.99.0.1:80; }
    server { listen 127.0.0.1:28201; proxy_pass 10.99.0.1:5201; }
}
NGINX
kt_bg in_cg_ns other "$NS" nginx -p "$TMP/stream" -c "$TMP/stream/nginx.conf"
cat >"$TMP/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 9600
defaults
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen tcp_http
  mode tcp
  bind 127.0.0.1:18080
  server s1 10.99.0.1:80
listen tcp_bulk
  mode tcp
  bind 127.0.0.1:18201
  server s1 10.99.0.1:5201
listen http_http
  mode http
  option http-keep-alive
  http-reuse always
  bind 127.0.0.1:18081
  server s1 10.99.0.1:80
CONF
kt_bg in_cg_ns other "$NS" haproxy -f "$TMP/haproxy.cfg" -db

# Sluice: the agent redirects the workload cgroup's connections to 10.99.0.1.
CONF="$TMP/config"
mkdir -p "$CONF"
cp "$ROOT/configs/mesh/istio-configmap-allow-any.yaml" "$CONF/istio-configmap.yaml"
printf 'global:\n  proxy:\n    includeIPRanges: "10.99.0.1/32"\n' >"$TMP/values.yaml"
AGENT_ARGS=(--cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --config "$TMP/values.yaml")
kt_agent "${AGENT_ARGS[@]}"
start_sidecar() {  # [extra sluice-proxy flags]
	# shellcheck disable=SC2086
	kt_bg in_cg_ns proxy "$NS" "$PROXY" --config "$CONF" --listen 127.0.0.1:15001 --workers 1 --access-log "" \
		--poll-interval-ms 100 ${SIDECAR_ARGS:-} "$@" 2>>"$TMP/sidecar.err"
}
restart_sidecar() {  # [extra sluice-proxy flags]: a fresh sidecar (its own process: its pid changes)
	kill "$SIDECAR_PID"
	while kill -0 "$SIDECAR_PID" 2>/dev/null; do sleep 0.05; done
	start_sidecar "$@"
	kt_wait_listen "$NS" 127.0.0.1:15001 || fail "the sidecar did not restart"
	SIDECAR_PID=$(kt_listener_pid "$NS" 127.0.0.1:15001)
}
start_sidecar
KT_LOGS+=("$TMP/sidecar.err")
for l in 10.99.0.1:80 10.99.0.1:5201 10.99.0.1:5202 127.0.0.1:28080 127.0.0.1:28201 127.0.0.1:18080 \
	127.0.0.1:18081 127.0.0.1:18201 127.0.0.1:15001; do
	kt_wait_listen "$NS" "$l" || fail "nothing listens on $l"
done
SIDECAR_PID=$(kt_listener_pid "$NS" 127.0.0.1:15001)
HAP_PID=$(kt_listener_pid "$NS" 127.0.0.1:18080)

use_policy() {  # REGISTRY_ONLY + ServiceEntry for the servers
	cp "$ROOT/configs/mesh/istio-configmap-registry-only.yaml" "$CONF/istio-configmap.yaml"
	cat >"$CONF/bench-serviceentry.yaml" <<'YAML'
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: bench}
spec:
  hosts: [bench.example]
  addresses: [10.99.0.1/32]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 5201, name: tcp-iperf, protocol: TCP}
  - {number: 5202, name: tcp-idle, protocol: TCP}
  resolution: STATIC
  endpoints:
  - address: 10.99.0.1
YAML
	for _ in $(seq 60); do grep -q "config generation 2 " "$TMP/sidecar.err" && return 0; sleep 0.1; done
	fail "the sidecar did not load the policy config"
}

wrk_run() {  # CGROUP URL [wrk args]: "rps p99_ms"
	local cg=$1 url=$2
	shift 2
	in_cg_ns "$cg" "$NS" wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -H "Host: bench.example" "$@" "$url" \
		2>/dev/null | awk '
		/Requests\/sec/ { rps = $2 }
		/^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v) } else if (v ~ /s$/) { sub(/s/, "", v); v *= 1000 }; p99 = v }
		END { printf "%d %.2f", rps, p99 }'
}
iperf_run() {  # CGROUP HOST PORT: Gbit/s
	in_cg_ns "$1" "$NS" iperf3 -c "$2" -p "$3" -t "$DURATION" -J 2>/dev/null |
		"$SLUICE_PYTHON" -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$1/status"; }
idle_run() {  # PID_TO_MEASURE CGROUP HOST PORT: KiB per idle connection
	local before after
	before=$(rss_kib "$1")
	in_cg_ns "$2" "$NS" "$SLUICE_PYTHON" - "$3" "$4" "$IDLE" "$TMP/idle.ready" "$TMP/idle.done" <<'PY' &
import os, socket, sys, time
host, port, n, ready, done = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
socks = []
for i in range(n):
    s = socket.create_connection((host, port), timeout=10)
    socks.append(s)
open(ready, "w").close()
while not os.path.exists(done):
    time.sleep(0.05)
PY
	local client=$!
	kt_wait_file "$TMP/idle.ready" 1200 || { kill "$client"; echo "n/a"; return; }
	# Past the sidecar's protocol detection (5 s for an undeclared port): the
	# upstream side of every connection is open too.
	sleep 6
	after=$(rss_kib "$1")
	touch "$TMP/idle.done"
	wait "$client" 2>/dev/null
	rm -f "$TMP/idle.ready" "$TMP/idle.done"
	"$SLUICE_PYTHON" -c "print('%.1f' % ((int('$after') - int('$before')) / $IDLE))"
}
ratio() { "$SLUICE_PYTHON" -c "a,b=float('$1' or 0),float('$2' or 0); print('%.2f' % (a/b) if b else 'n/a')"; }

code=$(in_cg_ns workload "$NS" curl -s -o /dev/null -w '%{http_code}' --max-time 5 http://bench.example/)
[ "$code" = 200 ] || fail "through the sidecar: HTTP $code"

declare -A R P C H W WB
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }  # user nice system irq softirq
measure_http() {  # NAME CGROUP URL [wrk args]
	local name=$1 pid="" before host_before
	shift
	case "${name#*.}" in
	pass* | policy*) pid=$SIDECAR_PID ;;
	hap*) pid=$HAP_PID ;;
	esac
	# A warm-up run first, for every path alike: the measured run then sees
	# processes past their first connections (a proxy just started still
	# faults in its buffers and grows its pools in its first second).
	[ "$WARMUP" -gt 0 ] && DURATION=$WARMUP wrk_run "$@" >/dev/null
	[ -n "$pid" ] && before=$(kt_cpu_ticks "$pid")
	host_before=$(busy_ticks)
	local perf_pid=""
	if [ -n "${PERF:-}" ] && [ -n "$pid" ]; then
		mkdir -p "$PERF"
		perf record -q -F 999 -g -o "$PERF/$name.data" -p "$pid" >/dev/null 2>&1 &
		perf_pid=$!
	fi
	local client_before
	client_before=$(kt_children_ticks)
	wrk_run "$@" >"$TMP/wrk.out"  # in the foreground: its CPU time counts
	W[$name]=$(("$(kt_children_ticks)" - client_before))
	read -r R[$name] P[$name] <"$TMP/wrk.out"
	if [ -n "$perf_pid" ]; then
		kill -INT "$perf_pid" 2>/dev/null
		wait "$perf_pid" 2>/dev/null
	fi
	H[$name]=-
	WB[$name]=-
	if [ "${R[$name]:-0}" -gt 0 ]; then
		WB[$name]=$("$SLUICE_PYTHON" -c "print('%.0f' % (${W[$name]} * 100 / $(getconf CLK_TCK) / $DURATION))")
		W[$name]=$("$SLUICE_PYTHON" -c "print('%.1f' % (${W[$name]} * 1e6 / $(getconf CLK_TCK) / (${R[$name]} * $DURATION)))")
	else
		W[$name]=-
	fi
	if [ "${R[$name]:-0}" -gt 0 ]; then
		H[$name]=$("$SLUICE_PYTHON" -c "print('%.1f' % (($(busy_ticks) - $host_before) * 1e6 / $(getconf CLK_TCK) / (${R[$name]} * $DURATION)))")
	fi
	# The proxy's own CPU per request (us): what it costs, apart from the
	# machine's shared CPUs (wrk, nginx and the kernel's TCP work for every
	# hop compete for the same two).
	C[$name]=-
	if [ -n "$pid" ] && [ "${R[$name]:-0}" -gt 0 ]; then
		C[$name]=$("$SLUICE_PYTHON" -c "print('%.1f' % (($(kt_cpu_ticks "$pid") - $before) * 1e6 / $(getconf CLK_TCK) / (${R[$name]} * $DURATION)))")
	fi
}
echo "sluice-proxy sidecar vs direct / HAProxy 2.6 (1 thread) / nginx stream (1 worker); wrk -t1 -c$CONNECTIONS," \
	"${DURATION}s per run; $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
for kind in keepalive new-conn; do
	extra=()
	[ "$kind" = new-conn ] && extra=(-H "Connection: close")
	measure_http "$kind.direct" other http://10.99.0.1/ "${extra[@]}"
	measure_http "$kind.pass" workload http://10.99.0.1/ "${extra[@]}"
	measure_http "$kind.haptcp" other http://127.0.0.1:18080/ "${extra[@]}"
	measure_http "$kind.haphttp" other http://127.0.0.1:18081/ "${extra[@]}"
	measure_http "$kind.stream" other http://127.0.0.1:28080/ "${extra[@]}"
done
B_direct=$(iperf_run other 10.99.0.1 5201)
B_pass=$(iperf_run workload 10.99.0.1 5201)
B_haptcp=$(iperf_run other 127.0.0.1 18201)
B_stream=$(iperf_run other 127.0.0.1 28201)
I_pass=$(idle_run "$SIDECAR_PID" workload 10.99.0.1 5202)
# What the bulk ring is worth: the same transfer through a sidecar without
# one (--bulk-buffers 0: 16 KiB reads only), then the default sidecar again.
restart_sidecar --bulk-buffers 0
B_pass_small=$(iperf_run workload 10.99.0.1 5201)
restart_sidecar

# The same with the workload <-> sidecar hop socket to socket (sk_msg).
measure_sluice() {  # SUFFIX
	local kind extra
	for kind in keepalive new-conn; do
		extra=()
		[ "$kind" = new-conn ] && extra=(-H "Connection: close")
		measure_http "$kind.$1" workload http://10.99.0.1/ "${extra[@]}"
	done
	B[$1]=$(iperf_run workload 10.99.0.1 5201)
}
declare -A B
kt_agent_restart "${AGENT_ARGS[@]}" --socket-redirect true
measure_sluice pass-sk
kt_agent_restart "${AGENT_ARGS[@]}" --socket-redirect false
use_policy
measure_sluice policy
kt_agent_restart "${AGENT_ARGS[@]}" --socket-redirect true
measure_sluice policy-sk
B_policy=${B[policy]}
B_pass_sk=${B[pass-sk]}
B_policy_sk=${B[policy-sk]}
# Idle memory is measured once per process: a second run in the same
# sidecar would reuse what the first one grew (glibc keeps freed memory), and
# read as ~0.
I_hap=$(idle_run "$HAP_PID" other 127.0.0.1 18080)

printf "\n%-10s %-14s %10s %9s %9s %9s %9s %11s %12s %11s %9s\n" test path "req/s" "p99 ms" "/direct" "/hap-tcp" "/hap-http" \
	"cpu us/req" "host us/req" "wrk us/req" "wrk busy"
for kind in keepalive new-conn; do
	for path in direct pass pass-sk policy policy-sk haptcp haphttp stream; do
		k="$kind.$path"
		printf "%-10s %-14s %10s %9s %9s %9s %9s %11s %12s %11s %8s%%\n" "$kind" "$path" "${R[$k]}" "${P[$k]}" \
			"$(ratio "${R[$k]}" "${R[$kind.direct]}")" "$(ratio "${R[$k]}" "${R[$kind.haptcp]}")" \
			"$(ratio "${R[$k]}" "${R[$kind.haphttp]}")" "${C[$k]}" "${H[$k]}" "${W[$k]}" "${WB[$k]}"
	done
done
echo "cpu us/req: the proxy process's own CPU time (user + system, from /proc) per request; lower is cheaper"
echo "host us/req: every CPU's busy time per request (clients, servers, proxy, kernel); requests/s follows it"
echo "  when the CPUs are saturated: a proxy's saving shows in requests/s as its share of this column"
echo "wrk us/req, wrk busy: the client's CPU per request and its load (% of its one CPU); near 100 % requests/s"
echo "  is 1 / wrk us/req: the client is the bottleneck, and paths differ by what they make it pay"
printf "\n%-10s %-14s %10s %9s %9s\n" test path "Gbit/s" "/direct" "/hap-tcp"
for path in direct pass pass_small pass_sk policy policy_sk haptcp stream; do
	v="B_$path"
	printf "%-10s %-14s %10s %9s %9s\n" bulk "${path//_/-}" "${!v}" "$(ratio "${!v}" "$B_direct")" "$(ratio "${!v}" "$B_haptcp")"
done
echo "pass-small: passthrough with --bulk-buffers 0 (16 KiB reads only); the other Sluice rows use the bulk ring"
printf "\nidle: %s connections held open; RSS growth per connection (KiB): sluice %s, HAProxy %s\n" \
	"$IDLE" "$I_pass" "$I_hap"
kill -USR1 "$SIDECAR_PID"
sleep 0.2
echo "sidecar: $(grep 'counters:' "$TMP/sidecar.err" | tail -1 | sed 's/.*counters: //')"
