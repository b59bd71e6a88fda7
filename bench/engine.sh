#!/usr/bin/env bash
# The engine's relay against direct and against HAProxy (TCP mode, 1 thread),
# side by side in one run, on 127.0.0.1 (a benchmark, not a test):
#
#   keep-alive   wrk -t1 -c50 against nginx (small body)
#   new-conn     the same with `Connection: close` (one TCP connection per request)
#   bulk         iperf3, one stream, client -> server
#
#   bench/engine.sh [BUILD_DIR]        (default: build)
# Env: DURATION seconds per run (5), CONNECTIONS (50), ROUNDS (1), WORKERS (1).
# Starts its own nginx, iperf3, haproxy and relay_demo on free high ports and
# stops exactly those on exit. Prints absolute numbers and ratios to direct.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
RELAY=$BUILD/userspace-proxy/engine/relay_demo
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-50}
ROUNDS=${ROUNDS:-1}
WORKERS=${WORKERS:-1}
TMP=$(mktemp -d /tmp/sluice-engine-bench.XXXXXX)
PIDS=()

die() { echo "engine.sh: $*" >&2; exit 1; }
cleanup() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ -x "$RELAY" ] || die "build it first: scripts/setup"
for tool in wrk nginx iperf3 haproxy python3; do command -v "$tool" >/dev/null || die "$tool is not installed"; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# Checks the listen table rather than connecting (a probe would be a bogus
# iperf3 control connection).
wait_port() {
	for _ in $(seq 200); do ss -Hltn "sport = :$1" | grep -q . && return 0; sleep 0.1; done
	die "nothing listens on $1 ($2)"
}

NGINX_PORT=$(free_port); IPERF_PORT=$(free_port)
RELAY_HTTP=$(free_port); RELAY_BULK=$(free_port)
HAP_HTTP=$(free_port); HAP_BULK=$(free_port)

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
error_log $TMP/nginx/logs/error.log crit;
pid $TMP/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NGINX_PORT reuseport backlog=4096;
    location / { return 200 "hello from nginx\n"; }
  }
}
CONF
nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" & PIDS+=($!)
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 & PIDS+=($!)
"$RELAY" "127.0.0.1:$RELAY_HTTP" "127.0.0.1:$NGINX_PORT" "$WORKERS" >"$TMP/relay_http.log" 2>&1 & PIDS+=($!)
"$RELAY" "127.0.0.1:$RELAY_BULK" "127.0.0.1:$IPERF_PORT" "$WORKERS" >"$TMP/relay_bulk.log" 2>&1 & PIDS+=($!)
cat >"$TMP/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 60s
  timeout server 60s
listen http
  bind 127.0.0.1:$HAP_HTTP
  server s1 127.0.0.1:$NGINX_PORT
listen bulk
  bind 127.0.0.1:$HAP_BULK
  server s1 127.0.0.1:$IPERF_PORT
CONF
haproxy -f "$TMP/haproxy.cfg" -db >/dev/null 2>&1 & PIDS+=($!)
wait_port "$NGINX_PORT" nginx; wait_port "$IPERF_PORT" iperf3
wait_port "$RELAY_HTTP" relay_demo; wait_port "$RELAY_BULK" relay_demo
wait_port "$HAP_HTTP" haproxy; wait_port "$HAP_BULK" haproxy

wrk_rps() {  # port [extra wrk args...]
	local port=$1; shift
	wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" "$@" "http://127.0.0.1:$port/" 2>/dev/null |
		awk '/Requests\/sec/ { printf "%d", $2 }'
}
iperf_gbps() {
	iperf3 -c 127.0.0.1 -p "$1" -t "$DURATION" -J 2>/dev/null |
		python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}
ratio() { python3 -c "import sys; a,b=float('$1' or 0),float('$2' or 0); print('%.2f' % (a/b) if b else 'n/a')"; }

printf "relay_demo: %s (workers=%s); %ss per run, %s rounds\n" "$(head -1 "$TMP/relay_http.log")" "$WORKERS" "$DURATION" "$ROUNDS"
printf "%-12s %12s %12s %12s %10s %10s\n" test direct haproxy sluice sl/direct sl/haproxy
for round in $(seq "$ROUNDS"); do
	d=$(wrk_rps "$NGINX_PORT"); h=$(wrk_rps "$HAP_HTTP"); s=$(wrk_rps "$RELAY_HTTP")
	printf "%-12s %12s %12s %12s %10s %10s\n" "keepalive" "$d" "$h" "$s" "$(ratio "$s" "$d")" "$(ratio "$s" "$h")"
	d=$(wrk_rps "$NGINX_PORT" -H "Connection: close"); h=$(wrk_rps "$HAP_HTTP" -H "Connection: close")
	s=$(wrk_rps "$RELAY_HTTP" -H "Connection: close")
	printf "%-12s %12s %12s %12s %10s %10s\n" "new-conn" "$d" "$h" "$s" "$(ratio "$s" "$d")" "$(ratio "$s" "$h")"
	d=$(iperf_gbps "$IPERF_PORT"); h=$(iperf_gbps "$HAP_BULK"); s=$(iperf_gbps "$RELAY_BULK")
	printf "%-12s %11sG %11sG %11sG %10s %10s\n" "bulk" "$d" "$h" "$s" "$(ratio "$s" "$d")" "$(ratio "$s" "$h")"
done
