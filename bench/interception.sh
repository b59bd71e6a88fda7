#!/usr/bin/env bash
# New-connection rate through three interception paths, side by side, in one
# run (a benchmark, not a test):
#
#   direct    client -> 203.0.113.10:8080 (nothing intercepts)
#   bpf       client in a Sluice-managed cgroup: cgroup/connect4 rewrites
#             203.0.113.10:8080 to 127.0.0.1:15001, sockops records the tuple
#   iptables  nat OUTPUT REDIRECT 203.0.113.10:8080 -> :15001 (Istio's way;
#             conntrack + NAT on every packet)
#
# The same nginx answers on 8080 and 15001 ("proxy"). The client is wrk with
# `Connection: close`, so every request is a new TCP connection. Each mode
# runs in its own network namespace (so conntrack is only active for the
# iptables one), rounds are interleaved, and the median is reported.
#
#   sudo bench/interception.sh [BUILD_DIR]     (default: build)
# Env: ROUNDS (3), DURATION seconds per run (5), CONNECTIONS (16), THREADS (1).
# Uses only namespaces and a cgroup it creates; removes them on exit.
set -u -o pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
AGENT=$BUILD/agent/sluice-agent
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
ID="b$$"
PIN=/sys/fs/bpf/sluice-bench-$ID
TMP=$(mktemp -d "/tmp/sluice-bench-$ID.XXXXXX")
MODES=(direct bpf iptables)
CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
CG="$CG2/sluice-bench-$ID"
PIDS=()

die() { echo "interception.sh: $*" >&2; exit 1; }

cleanup() {
	set +e
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
	[ -d "$PIN" ] && "$AGENT" uninstall --pin-dir "$PIN" >/dev/null 2>&1
	if [ -d "$CG" ]; then
		for sub in "$CG"/*/; do echo 1 >"$sub/cgroup.kill" 2>/dev/null; done
		sleep 0.1
		for sub in "$CG"/*/; do rmdir "$sub" 2>/dev/null; done
		rmdir "$CG"
	fi
	for m in "${MODES[@]}"; do ip netns del "sluice-$ID-$m" 2>/dev/null; done
	rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

[ "$(id -u)" = 0 ] || die "needs root"
[ -x "$AGENT" ] || die "build the agent first: scripts/setup"
[ -n "$CG2" ] || die "no cgroup v2 mount"
for tool in wrk nginx iptables; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
grep -q " /sys/fs/bpf bpf " /proc/self/mounts || mount -t bpf bpf /sys/fs/bpf

mkdir -p "$CG"
for m in "${MODES[@]}"; do
	ns="sluice-$ID-$m"
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add 203.0.113.10/32 dev lo
	mkdir -p "$CG/$m" "$TMP/$m"
	cat >"$TMP/$m/nginx.conf" <<EOF
worker_processes 1;
pid $TMP/$m/nginx.pid;
error_log $TMP/$m/error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_timeout 0;
  client_body_temp_path $TMP/$m; proxy_temp_path $TMP/$m; fastcgi_temp_path $TMP/$m;
  uwsgi_temp_path $TMP/$m; scgi_temp_path $TMP/$m;
  server {
    listen 8080 reuseport backlog=4096;
    listen 15001 reuseport backlog=4096;
    location / { return 200 "ok\n"; }
  }
}
EOF
	ip netns exec "$ns" nginx -c "$TMP/$m/nginx.conf" -e "$TMP/$m/error.log" &
	PIDS+=($!)
done
ip netns exec "sluice-$ID-iptables" iptables -t nat -A OUTPUT -p tcp -d 203.0.113.10 --dport 8080 \
	-j REDIRECT --to-ports 15001 || die "iptables REDIRECT rule failed"
"$AGENT" --once --pin-dir "$PIN" --cgroup "$CG/bpf" --proxy-ipv6 none \
	--set values.global.proxy.includeIPRanges=203.0.113.0/24 >"$TMP/agent.log" 2>&1 ||
	{ cat "$TMP/agent.log" >&2; die "agent failed"; }
sleep 0.5

run_wrk() {  # MODE -> requests/sec
	local m=$1
	sh -c 'echo $$ > "$0/cgroup.procs" && exec nsenter --net="/run/netns/$1" wrk -t"$2" -c"$3" -d"$4"s -H "Connection: close" http://203.0.113.10:8080/' \
		"$CG/$m" "sluice-$ID-$m" "$THREADS" "$CONNECTIONS" "$DURATION" >"$TMP/wrk.out" 2>&1
	local errors
	errors=$(grep -E "Socket errors|Non-2xx" "$TMP/wrk.out")
	[ -n "$errors" ] && echo "  ($m: $errors)" >&2
	awk '/Requests\/sec/ { print $2 }' "$TMP/wrk.out"
}

echo "kernel $(uname -r), $(nproc) CPUs, load $(cut -d' ' -f1-3 /proc/loadavg); wrk -t$THREADS -c$CONNECTIONS -d${DURATION}s, Connection: close, $ROUNDS rounds"
declare -A results
for r in $(seq "$ROUNDS"); do
	line="round $r:"
	for m in "${MODES[@]}"; do
		rps=$(run_wrk "$m")
		[ -n "$rps" ] || { cat "$TMP/wrk.out" >&2; die "wrk failed in mode $m"; }
		results[$m]+="$rps "
		line+=" $m=$rps"
	done
	echo "$line"
done

intercepted=$(bpftool -j map dump pinned "$PIN/sluice_counters" | python3 -c '
import json, sys
for e in json.load(sys.stdin):
    e = e.get("formatted", e)
    if int(e["key"]) == 0:
        print(sum(int(v["value"]) for v in e["values"]))')
echo "sluice intercepted counter: $intercepted connections"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
d=$(echo "${results[direct]}" | median)
b=$(echo "${results[bpf]}" | median)
i=$(echo "${results[iptables]}" | median)
printf '\nmedian new connections/s:  direct %s   bpf %s   iptables %s\n' "$d" "$b" "$i"
awk -v d="$d" -v b="$b" -v i="$i" 'BEGIN {
	printf "ratios: bpf/direct %.3f   iptables/direct %.3f   bpf/iptables %.3f\n", b / d, i / d, b / i }'
