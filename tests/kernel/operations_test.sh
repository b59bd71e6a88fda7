#!/usr/bin/env bash
# Operating the sidecar with the real programs: sluice-agent's BPF programs on
# a cgroup this test creates, sluice-proxy in the workload's network
# namespace, nginx as edition.cnn.com and a pattern-checking TCP server in an
# "internet" namespace.
#
#   operations_test.sh CASE
#     upgrade          long transfers survive, in sequence: a proxy upgrade (a
#                      second proxy on the same --listen, SIGTERM + drain of
#                      the first), a config reload, kill -9 and restart of
#                      sluice-agent; new connections never fail meanwhile
#     least-privilege  the proxy as uid/gid 1337 without any capability
#                      still serves the walkthrough; its admin endpoint is
#                      loopback only and refuses a non-loopback address
#     metrics          a scripted traffic mix (allowed, blocked HTTP, blocked
#                      TCP, passthrough) gives exact counts per Istio label
#                      set in /stats/prometheus, and in a real Prometheus
#                      when /usr/bin/prometheus exists
#
# Topology (namespaces this test creates; the root namespace is untouched):
#   W (workload + sidecar) 198.51.100.2 --veth-- 198.51.100.1 I ("internet":
#   nginx on 203.0.113.10:80 as edition.cnn.com and on 203.0.113.20:80 for
#   any other host; a pattern server on 203.0.113.20:9000)
#
# Environment (meson sets it): SLUICE_AGENT, SLUICE_PROXY, SLUICE_PYTHON,
# SLUICE_CONFIGS. CI=true turns a missing capability into a failure instead of
# a skip (77).
set -u -o pipefail

CASE=${1:?usage: operations_test.sh upgrade|least-privilege|metrics}
TEST_NAME="ops-$CASE"
. "$(dirname "$0")/lib.sh"

PROXY=${SLUICE_PROXY:?}
CONFIGS=${SLUICE_CONFIGS:?}
PY=${SLUICE_PYTHON:-/usr/bin/python3}
: "${SLUICE_AGENT:?}"

case "$CASE" in upgrade | least-privilege | metrics) ;; *) echo "unknown case $CASE" >&2; exit 2 ;; esac
kt_init nginx curl ss setpriv
[ -x "$PROXY" ] || fail "proxy not built: $PROXY"
[ -x "$SLUICE_AGENT" ] || fail "agent not built: $SLUICE_AGENT"
# The least-privilege proxy (uid 1337) reads its config and writes its access
# log under the test's directory.
chmod 0755 "$TMP"

NS_W="sluice-${ID}-w"
NS_I="sluice-${ID}-i"
kt_netns "$NS_W" "$NS_I"
kt_cgroups workload proxy other
kt_link "$NS_W" vw 198.51.100.2/24 "$NS_I" vx 198.51.100.1/24
ip netns exec "$NS_W" ip route add default via 198.51.100.1
ip netns exec "$NS_I" ip addr add 203.0.113.10/32 dev lo
ip netns exec "$NS_I" ip addr add 203.0.113.20/32 dev lo
kt_hosts "$NS_W" "203.0.113.10 edition.cnn.com"

# ------------------------------------------------------------ the internet
mkdir -p "$TMP/nginx"
{
	kt_nginx_conf "$TMP/nginx"
	cat <<NGINX
    log_format peer '\$remote_addr \$host "\$request" \$status';
    access_log $TMP/nginx/access.log peer;
    server {
        listen 203.0.113.10:80;
        server_name edition.cnn.com;
        location = /politics { return 301 https://edition.cnn.com/politics; }
    }
    server {
        listen 203.0.113.20:80 default_server;
        location / { return 200 "other \$host\n"; }
    }
}
NGINX
} >"$TMP/nginx/nginx.conf"
KT_LOGS+=("$TMP/nginx/error.log")
kt_bg in_cg_ns other "$NS_I" nginx -p "$TMP/nginx" -e "$TMP/nginx/error.log" -c "$TMP/nginx/nginx.conf"

# The pattern server: every connection must carry the byte pattern
# k -> k % 251 (a prime, so a lost, duplicated or reordered chunk of any
# power-of-two size shows) from offset 0; at the client's FIN it answers
# "OK <bytes>" (or "BAD ...") and logs the same line.
cat >"$TMP/pattern_server.py" <<'PYEOF'
import socket, sys, threading
PAT = bytes(k % 251 for k in range(251 * 300))  # 75 KiB: covers any 64 KiB read at any phase
log = open(sys.argv[2], "a", buffering=1)
lock = threading.Lock()
def serve(c, peer):
    n, verdict = 0, None
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            ph = n % 251
            if b != PAT[ph:ph + len(b)]:
                i = next(i for i in range(len(b)) if b[i] != (n + i) % 251)
                verdict = "BAD offset %d: got %d, expected %d" % (n + i, b[i], (n + i) % 251)
                break
            n += len(b)
        if verdict is None:
            verdict = "OK %d" % n
        c.sendall((verdict + "\n").encode())
        c.shutdown(socket.SHUT_WR)
    except OSError as e:
        verdict = "ERROR after %d bytes: %r" % (n, e)
    with lock:
        log.write("%s:%d %s\n" % (peer[0], peer[1], verdict))
    c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
host, port = sys.argv[1].rsplit(":", 1)
s.bind((host, int(port)))
s.listen(64)
while True:
    c, peer = s.accept()
    threading.Thread(target=serve, args=(c, peer), daemon=True).start()
PYEOF
: >"$TMP/pattern.log"
KT_LOGS+=("$TMP/pattern.log")
kt_bg in_cg_ns other "$NS_I" "$PY" "$TMP/pattern_server.py" 203.0.113.20:9000 "$TMP/pattern.log"
kt_wait_listen "$NS_I" 203.0.113.10:80 || fail "nginx did not start"
kt_wait_listen "$NS_I" 203.0.113.20:9000 || fail "the pattern server did not start"

# The pattern client: streams the pattern to HOST:PORT for SECONDS at about
# RATE bytes/s, half-closes, and expects "OK <bytes it sent>" back. Exit 0
# only then; a reset or any other error is reported and exits 1. Touches
# READY once the first bytes are out.
cat >"$TMP/pattern_client.py" <<'PYEOF'
import socket, sys, time
host, port, seconds, rate, ready = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
PAT = bytes(k % 251 for k in range(251 * 300))
CHUNK = 16384
sent = 0
try:
    s = socket.create_connection((host, port), timeout=10)
    t0 = time.monotonic()
    while True:
        el = time.monotonic() - t0
        if el >= seconds:
            break
        if sent > rate * el:
            time.sleep(0.005)
            continue
        ph = sent % 251
        s.sendall(PAT[ph:ph + CHUNK])
        sent += CHUNK
        if sent == CHUNK:
            open(ready, "w").close()
    s.shutdown(socket.SHUT_WR)
    reply = b""
    while True:
        b = s.recv(4096)
        if not b:
            break
        reply += b
except OSError as e:
    print("client: %r after %d bytes" % (e, sent))
    sys.exit(1)
reply = reply.decode(errors="replace").strip()
print("client: sent %d bytes in %.1f s, server: %s" % (sent, time.monotonic() - t0, reply))
sys.exit(0 if reply == "OK %d" % sent else 1)
PYEOF

# The burst client: THREADS threads each make back-to-back HTTP/1.1
# requests (a new connection each) to HOST:80 for Host HOST_HEADER until STOP
# exists; prints "<n> requests, <m> failed" and the failures, exit 1 if any.
# A keep-alive client: one request, then it waits for the proxy's end of the
# connection (up to 20 s): "FIN <s>" once read (seconds since the signal
# file appeared), "RESET" or "TIMEOUT" otherwise.
cat >"$TMP/idle_client.py" <<'PYEOF'
import os, socket, sys, time
host, host_header, ready, signal = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
s = socket.create_connection((host, 80), timeout=20)
s.sendall(("GET /politics HTTP/1.1\r\nHost: %s\r\n\r\n" % host_header).encode())
d = b""
while b"\r\n\r\n" not in d:
    b = s.recv(4096)
    if not b:
        sys.exit("closed before the response: %r" % d)
    d += b
open(ready, "w").close()
try:
    while s.recv(4096):
        pass
    if os.path.exists(signal):
        print("FIN %.1f" % (time.time() - os.stat(signal).st_mtime))
    else:
        print("EARLY")
except ConnectionResetError:
    print("RESET")
except socket.timeout:
    print("TIMEOUT")
PYEOF
cat >"$TMP/burst_client.py" <<'PYEOF'
import socket, sys, os, threading, time
host, host_header, threads, stop = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
req = ("GET /politics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host_header).encode()
lock = threading.Lock()
done, failures = [0], []
def run():
    while not os.path.exists(stop):
        try:
            s = socket.create_connection((host, 80), timeout=5)
            s.sendall(req)
            d = b""
            while True:
                b = s.recv(4096)
                if not b:
                    break
                d += b
            s.close()
            err = None if d.startswith(b"HTTP/1.1 301 ") else "got %r" % d[:40]
        except OSError as e:
            err = repr(e)
        with lock:
            done[0] += 1
            if err:
                failures.append("%.3f %s" % (time.time(), err))
ts = [threading.Thread(target=run) for _ in range(threads)]
for t in ts:
    t.start()
for t in ts:
    t.join()
print("%d requests, %d failed" % (done[0], len(failures)))
for f in failures[:20]:
    print("  " + f)
sys.exit(1 if failures or not done[0] else 0)
PYEOF

# ------------------------------------------------------------ helpers
CONF="$TMP/config"
mkdir -p "$CONF"
cat >"$TMP/values.yaml" <<'EOF2'
global:
  proxy:
    includeIPRanges: "*"
EOF2

# start_proxy NAME ADMIN_PORT ARGS...: a sluice-proxy in the proxy cgroup and
# the workload's namespace, logging to $TMP/NAME.err and $TMP/NAME.log
# (access log); waits for its listener; sets PROXY_PID. With PRIV (an array)
# set, the proxy runs under that prefix (setpriv).
PRIV=()
start_proxy() {
	local name=$1 admin=$2
	shift 2
	: >"$TMP/$name.err"
	KT_LOGS+=("$TMP/$name.err")
	local before
	before=$(ip netns exec "$NS_W" ss -Hltnp "src 127.0.0.1:15001" 2>/dev/null | grep -o 'pid=[0-9]*' | sort -u)
	kt_bg in_cg_ns proxy "$NS_W" "${PRIV[@]}" "$PROXY" --config "$CONF" --listen 127.0.0.1:15001 --workers 2 \
		--access-log "$TMP/logs/$name.log" --admin-port "$admin" --detection-timeout 1000 "$@" \
		>"$TMP/$name.out" 2>"$TMP/$name.err"
	local i pid=""
	for i in $(seq 200); do
		grep -q "listening on 127.0.0.1:15001" "$TMP/$name.err" &&
			pid=$(ip netns exec "$NS_W" ss -Hltnp "src 127.0.0.1:15001" 2>/dev/null | grep -o 'pid=[0-9]*' |
				sort -u | grep -vxF "$before" | head -1 | cut -d= -f2) && [ -n "$pid" ] && break
		sleep 0.05
	done
	[ -n "$pid" ] || fail "proxy $name did not start"
	PROXY_PID=$pid
	KT_PIDS+=("$pid")
}
mkdir -p "$TMP/logs"
chown 1337:1337 "$TMP/logs"

http_code() {  # URL [CURL ARGS...]: one request from the workload, prints the status
	local url=$1
	shift
	in_cg_ns workload "$NS_W" curl -s -o /dev/null -w '%{http_code}' --max-time 10 "$@" "$url"
}
admin_get() {  # PATH [PORT]: the admin endpoint, from outside the intercepted cgroups
	in_cg_ns other "$NS_W" curl -s --max-time 5 "http://127.0.0.1:${2:-15000}$1"
}
wait_generation() {  # FILE N: waits up to 3 s for "config generation N" in FILE
	local i
	for i in $(seq 60); do
		grep -q "config generation $2 " "$1" && return 0
		sleep 0.05
	done
	fail "$1: config generation $2 not loaded"
}
# forget_pid PID: PID has exited; the cleanup must not signal whatever
# process reuses the number.
forget_pid() {
	local keep=() p
	for p in "${KT_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	KT_PIDS=("${keep[@]}")
}
lines() { wc -l <"$1" 2>/dev/null || echo 0; }
new_lines() { tail -n +"$(($2 + 1))" "$1" 2>/dev/null; }  # FILE BEFORE
# has PATTERN: whether stdin has a line matching PATTERN. Reads all of stdin
# first: `producer | grep -q` under pipefail fails when grep exits before the
# producer has written everything (SIGPIPE).
has() {
	local text
	text=$(cat)
	grep -q -- "$1" <<<"$text"
}

# ================================================================= upgrade
case_upgrade() {
	cp "$CONFIGS/mesh/istio-configmap-allow-any.yaml" "$CONF/mesh.yaml"
	# A listener closed in an SO_REUSEPORT group resets the connections in its
	# accept queue unless the kernel migrates them to another listener of the
	# group (net.ipv4.tcp_migrate_req, Linux 5.14, per network namespace, off
	# by default). Without it a handover loses the few connections that
	# arrive in the last milliseconds before the old listeners close; the
	# pod's network namespace needs it (set by whoever creates it, as this
	# test does for its own).
	ip netns exec "$NS_W" sysctl -qw net.ipv4.tcp_migrate_req=1 ||
		skip_or_fail "net.ipv4.tcp_migrate_req not available (Linux < 5.14)"
	kt_agent --cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --poll-interval-ms 200 --config "$TMP/values.yaml"
	local agent_pid=${KT_PIDS[-1]}
	start_proxy p1 15000 --drain-seconds 30
	local p1=$PROXY_PID
	[ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "curl through the first proxy"

	# New connections all along: a curl loop in the workload.
	kt_bg in_cg_ns workload "$NS_W" sh -c '
		while [ ! -e "$0" ]; do
			curl -s -o /dev/null -w "%{http_code} %{exitcode}\n" --max-time 5 http://edition.cnn.com/politics
			sleep 0.05
		done' "$TMP/curls.stop" >"$TMP/curls.log" 2>&1
	local curl_loop=${KT_PIDS[-1]}

	# Transfer A: ~3 MB/s for 9 s, on the first proxy across everything.
	kt_bg in_cg_ns workload "$NS_W" "$PY" "$TMP/pattern_client.py" 203.0.113.20 9000 9 3000000 "$TMP/a.ready" \
		>"$TMP/a.out" 2>&1
	local xfer_a=${KT_PIDS[-1]}
	KT_LOGS+=("$TMP/a.out")
	kt_wait_file "$TMP/a.ready" || fail "transfer A did not start: $(cat "$TMP/a.out")"
	sleep 1

	# A keep-alive client idle on the first proxy (its request answered).
	kt_bg in_cg_ns workload "$NS_W" "$PY" "$TMP/idle_client.py" 203.0.113.10 edition.cnn.com "$TMP/idle.ready" \
		"$TMP/p1.term" >"$TMP/idle.out" 2>&1
	local idle_client=${KT_PIDS[-1]}
	KT_LOGS+=("$TMP/idle.out")
	kt_wait_file "$TMP/idle.ready" || fail "the keep-alive client did not get its answer: $(cat "$TMP/idle.out")"

	# (a) upgrade: the new proxy joins the listener's SO_REUSEPORT group, then
	# the old one stops accepting and drains. A burst of back-to-back
	# connections spans the moment the old listeners close: those already in
	# the old listeners' accept queues must not be reset.
	start_proxy p2 15010
	local p2=$PROXY_PID
	local t_up
	t_up=$(lines "$TMP/curls.log")
	KT_LOGS+=("$TMP/burst.out")
	kt_bg in_cg_ns workload "$NS_W" "$PY" "$TMP/burst_client.py" 203.0.113.10 edition.cnn.com 4 "$TMP/burst.stop" \
		>"$TMP/burst.out" 2>&1
	local burst=${KT_PIDS[-1]}
	sleep 0.3
	touch "$TMP/p1.term"
	kill -TERM "$p1"
	for _ in $(seq 40); do grep -q "draining for up to 30 s" "$TMP/p1.err" && break; sleep 0.05; done
	grep -q "draining for up to 30 s" "$TMP/p1.err" || fail "(a) the old proxy did not start draining"
	for _ in $(seq 40); do
		ip netns exec "$NS_W" ss -Hltnp "src 127.0.0.1:15001" | has "pid=$p1," || break
		sleep 0.05
	done
	! ip netns exec "$NS_W" ss -Hltnp "src 127.0.0.1:15001" | has "pid=$p1," ||
		fail "(a) the old proxy still listens after SIGTERM"
	kill -0 "$p1" 2>/dev/null || fail "(a) the old proxy exited before its connection finished"
	sleep 0.3
	touch "$TMP/burst.stop"
	wait "$burst" || fail "(a) connections failed across the upgrade: $(cat "$TMP/burst.out")"
	# Draining, the old proxy ends a keep-alive connection idle between
	# requests at once with a FIN (Envoy's drain), not at its 30 s deadline.
	wait "$idle_client"
	forget_pid "$idle_client"
	case "$(cat "$TMP/idle.out")" in
	"FIN "[0-2].*) ;;
	*) fail "(a) the idle keep-alive client of the draining proxy: $(cat "$TMP/idle.out") (want a FIN within 3 s)" ;;
	esac
	log "ok (a) upgrade: proxy $p2 joined 127.0.0.1:15001, proxy $p1 closed its listeners and drains transfer A;" \
		"burst across the switch: $(head -1 "$TMP/burst.out"); an idle keep-alive client got its FIN $(cut -d' ' -f2 "$TMP/idle.out") s after SIGTERM"

	# Transfer B: starts on the new proxy, runs through (b) and (c).
	kt_bg in_cg_ns workload "$NS_W" "$PY" "$TMP/pattern_client.py" 203.0.113.20 9000 4.5 3000000 "$TMP/b.ready" \
		>"$TMP/b.out" 2>&1
	local xfer_b=${KT_PIDS[-1]}
	KT_LOGS+=("$TMP/b.out")
	kt_wait_file "$TMP/b.ready" || fail "transfer B did not start: $(cat "$TMP/b.out")"
	sleep 0.5

	# (b) reload: the config file is rewritten (replaced, as `kubectl apply`
	# leaves it) with ServiceEntry cnn added.
	{
		cat "$CONFIGS/mesh/istio-configmap-allow-any.yaml"
		echo "---"
		cat "$CONFIGS/walkthrough/serviceentry-cnn.yaml"
	} >"$TMP/mesh.new"
	mv "$TMP/mesh.new" "$CONF/mesh.yaml"
	wait_generation "$TMP/p2.err" 2
	local before
	before=$(lines "$TMP/logs/p2.log")
	[ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "(b) curl after the reload"
	sleep 0.2
	new_lines "$TMP/logs/p2.log" "$before" | has '"GET /politics HTTP/1.1" 301 .* outbound|80||edition.cnn.com ' ||
		fail "(b) the new proxy did not route by the reloaded ServiceEntry: $(new_lines "$TMP/logs/p2.log" "$before")"
	log "ok (b) reload: generation 2 in the new proxy, edition.cnn.com now via outbound|80||edition.cnn.com"

	# (c) the agent dies (kill -9) and comes back; the pins keep interception.
	pinned_links() { (cd "$KT_PIN" && printf '%s ' link_*); }
	local links
	links=$(pinned_links)
	kill -9 "$agent_pid"
	wait "$agent_pid" 2>/dev/null
	forget_pid "$agent_pid"
	before=$(lines "$TMP/logs/p2.log")
	[ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "(c) curl while the agent is dead"
	sleep 0.2
	new_lines "$TMP/logs/p2.log" "$before" | has '"GET /politics HTTP/1.1" 301 .* outbound|80||edition.cnn.com ' ||
		fail "(c) a connection made while the agent was dead was not redirected to the proxy"
	[ "$(pinned_links)" = "$links" ] || fail "(c) pinned links changed: $links -> $(pinned_links)"
	: >"$TMP/agent2.log"
	"$SLUICE_AGENT" --pin-dir "$KT_PIN" --cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --poll-interval-ms 200 \
		--config "$TMP/values.yaml" >>"$TMP/agent2.log" 2>&1 &
	KT_PIDS+=($!)
	KT_LOGS+=("$TMP/agent2.log")
	for _ in $(seq 100); do grep -q "watching" "$TMP/agent2.log" && break; sleep 0.05; done
	grep -q "adopting the maps pinned under $KT_PIN" "$TMP/agent2.log" || fail "(c) the restarted agent did not adopt the pins"
	grep -q "watching" "$TMP/agent2.log" || fail "(c) the restarted agent is not running"
	before=$(lines "$TMP/logs/p2.log")
	[ "$(http_code http://edition.cnn.com/politics)" = 301 ] || fail "(c) curl after the agent's restart"
	sleep 0.2
	new_lines "$TMP/logs/p2.log" "$before" | has 'outbound|80||edition.cnn.com ' ||
		fail "(c) not redirected after the agent's restart"
	log "ok (c) agent kill -9: a new connection was still redirected; the restarted agent adopted the pins"

	# The end: both transfers complete byte-exact; the old proxy exits once
	# its last connection is done (well before its 30 s drain).
	wait "$xfer_b" || fail "transfer B: $(cat "$TMP/b.out")"
	wait "$xfer_a" || fail "transfer A: $(cat "$TMP/a.out")"
	touch "$TMP/curls.stop"
	wait "$curl_loop"
	for _ in $(seq 60); do kill -0 "$p1" 2>/dev/null || break; sleep 0.05; done
	! kill -0 "$p1" 2>/dev/null || fail "the old proxy still runs after its last connection closed"
	forget_pid "$p1"
	[ "$(grep -c ' OK ' "$TMP/pattern.log")" = 2 ] && ! grep -qv ' OK ' "$TMP/pattern.log" ||
		fail "the pattern server saw: $(cat "$TMP/pattern.log")"
	local bytes_a bytes_b
	bytes_a=$(sed -n 's/^client: sent \([0-9]*\) .*/\1/p' "$TMP/a.out")
	bytes_b=$(sed -n 's/^client: sent \([0-9]*\) .*/\1/p' "$TMP/b.out")
	# Which proxy carried which transfer: their access logs' TCP lines
	# (Istio's text format: "- - -" 0 FLAGS DETAILS TERMINATION "FAILURE"
	# BYTES_RECEIVED BYTES_SENT ...).
	local tcp_line='"- - -" 0 [^ ]* [^ ]* [^ ]* "[^"]*"'
	grep -q "$tcp_line $bytes_a .* 203.0.113.20:9000 " "$TMP/logs/p1.log" ||
		fail "transfer A ($bytes_a bytes) is not in the old proxy's access log: $(grep -v GET "$TMP/logs/p1.log")"
	grep -q "$tcp_line $bytes_b .* 203.0.113.20:9000 " "$TMP/logs/p2.log" ||
		fail "transfer B ($bytes_b bytes) is not in the new proxy's access log: $(grep -v GET "$TMP/logs/p2.log")"
	local total bad
	total=$(lines "$TMP/curls.log")
	bad=$(grep -cv '^301 0$' "$TMP/curls.log")
	[ "$bad" = 0 ] || fail "$bad of $total new connections failed: $(grep -v '^301 0$' "$TMP/curls.log" | sort | uniq -c)"
	[ "$total" -ge 20 ] && [ $((total - t_up)) -ge 10 ] || fail "too few requests in the loop: $total ($t_up before the upgrade)"
	local n1 n2
	n1=$(grep -c '"GET /politics' "$TMP/logs/p1.log")
	n2=$(grep -c '"GET /politics' "$TMP/logs/p2.log")
	[ $((n1 + n2)) -ge "$total" ] || fail "the proxies logged $n1 + $n2 requests, the workload made $total"
	log "ok: transfer A $(sed 's/^client: //' "$TMP/a.out") (old proxy)"
	log "ok: transfer B $(sed 's/^client: //' "$TMP/b.out") (new proxy)"
	log "ok: curl loop: $total new connections, all 301; requests logged: $n1 by the old proxy, $n2 by the new;" \
		"the old proxy exited once transfer A was done"
}

# ================================================================= least-privilege
case_least_privilege() {
	# The agent's default exempts uid 1337 (the proxy's) from redirection;
	# no --uid here, so the proxy's upstream connections not being looped
	# back to it is that default at work.
	"$SLUICE_AGENT" --help | has '--uid TEXT=1337' || fail "sluice-agent's --uid default is not 1337"
	cp "$CONFIGS/mesh/istio-configmap-allow-any.yaml" "$CONF/mesh.yaml"
	kt_agent --cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --poll-interval-ms 200 --config "$TMP/values.yaml"
	PRIV=(setpriv --reuid 1337 --regid 1337 --clear-groups --inh-caps=-all --ambient-caps=-all --bounding-set=-all
		--no-new-privs)
	start_proxy lp 15000 --mark 0
	local pid=$PROXY_PID st
	st=$(cat "/proc/$pid/status")
	[ "$(cat "/proc/$pid/comm")" = sluice-proxy ] || fail "pid $pid is $(cat "/proc/$pid/comm")"
	local field
	for field in CapInh CapPrm CapEff CapBnd CapAmb; do
		grep -q "^$field:[[:space:]]*0000000000000000$" <<<"$st" || fail "$field: $(grep "^$field:" <<<"$st")"
	done
	grep -q "^Uid:[[:space:]]*1337[[:space:]]*1337[[:space:]]*1337[[:space:]]*1337$" <<<"$st" || fail "$(grep ^Uid: <<<"$st")"
	grep -q "^Gid:[[:space:]]*1337[[:space:]]*1337[[:space:]]*1337[[:space:]]*1337$" <<<"$st" || fail "$(grep ^Gid: <<<"$st")"
	grep -q "^Groups:[[:space:]]*$" <<<"$st" || fail "$(grep ^Groups: <<<"$st")"
	log "ok: proxy $pid runs as uid/gid 1337, no groups, CapInh/CapPrm/CapEff/CapBnd/CapAmb all 0"

	local out rc
	out=$(in_cg_ns workload "$NS_W" curl -s -o /dev/null -D - --max-time 10 http://edition.cnn.com/politics)
	rc=$?
	[ "$rc" = 0 ] && grep -q "^HTTP/1.1 301" <<<"$out" || fail "walkthrough curl: exit $rc: $out"
	sleep 0.2
	grep -q '"GET /politics HTTP/1.1" 301 .* PassthroughCluster ' "$TMP/logs/lp.log" ||
		fail "no access log line for the request: $(cat "$TMP/logs/lp.log")"
	[ "$(grep -c '"GET /politics' "$TMP/logs/lp.log")" = 1 ] || fail "the request went through the proxy more than once"
	[ "$(grep -c 'GET /politics' "$TMP/nginx/access.log")" = 1 ] || fail "nginx did not see the request exactly once"
	log "ok: curl http://edition.cnn.com/politics through it: 301; one access log line (uid 1337 not redirected)"

	[ "$(admin_get /ready)" = LIVE ] || fail "/ready: $(admin_get /ready)"
	local listening
	listening=$(ip netns exec "$NS_W" ss -Hltnp | grep "pid=$pid," | awk '{ print $4 }' | sort -u | tr '\n' ' ')
	grep -qw "127.0.0.1:15000" <<<"$listening" || fail "no admin listener on 127.0.0.1:15000: $listening"
	for a in $listening; do
		case "$a" in 127.0.0.1:* | '[::1]:'*) ;; *) fail "the proxy listens on $a (all: $listening)" ;; esac
	done
	log "ok: the proxy listens only on loopback: $listening"

	# A non-loopback admin address is refused at startup.
	out=$(in_cg_ns proxy "$NS_W" "${PRIV[@]}" timeout 10 "$PROXY" --config "$CONF" --listen 127.0.0.1:15002 \
		--admin-address 0.0.0.0 --admin-port 15003 --mark 0 --access-log "" 2>&1)
	rc=$?
	[ "$rc" != 0 ] && [ "$rc" != 124 ] || fail "--admin-address 0.0.0.0: exit $rc: $out"
	grep -q "not a loopback address" <<<"$out" || fail "--admin-address 0.0.0.0: no reason given: $out"
	! ip netns exec "$NS_W" ss -Hltn | has ':1500[23] ' || fail "the refused proxy left a listener"
	log "ok: --admin-address 0.0.0.0 refused (exit $rc): $(grep -m1 'not a loopback' <<<"$out" | sed 's/.*error: //')"
}

# ================================================================= metrics
# metric FAMILY [LABEL=VALUE...]: the sum of FAMILY's samples whose labels
# include all the given ones, from the scrape in $TMP/scrape.txt.
metric() {
	"$PY" - "$TMP/scrape.txt" "$@" <<'PYEOF'
import re, sys
path, family, want = sys.argv[1], sys.argv[2], dict(a.split("=", 1) for a in sys.argv[3:])
line_re = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
total = 0.0
for line in open(path):
    m = line_re.match(line.strip())
    if not m or m.group(1) != family:
        continue
    labels = dict(label_re.findall(m.group(2) or ""))
    if all(labels.get(k) == v for k, v in want.items()):
        total += float(m.group(3))
print("%g" % total)
PYEOF
}
expect_metric() {  # EXPECTED FAMILY LABEL=VALUE...
	local want=$1 got
	shift
	got=$(metric "$@")
	[ "$got" = "$want" ] || fail "$* = $got, expected $want; series:
$(grep "^$1{" "$TMP/scrape.txt" | grep -v ' 0$')"
}

case_metrics() {
	cp "$CONFIGS/mesh/istio-configmap-registry-only.yaml" "$CONF/istio-configmap.yaml"
	cp "$CONFIGS/walkthrough/serviceentry-cnn.yaml" "$CONF/serviceentry-cnn.yaml"
	kt_agent --cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --poll-interval-ms 200 --config "$TMP/values.yaml"
	start_proxy m 15000
	local N1=3 N2=4 N3=2 N4=5 i code out

	for i in $(seq $N1); do
		code=$(http_code http://edition.cnn.com/politics)
		[ "$code" = 301 ] || fail "allowed request $i: $code"
	done
	for i in $(seq $N2); do
		code=$(http_code http://203.0.113.20/ -H 'Host: undeclared.example.org')
		[ "$code" = 502 ] || fail "blocked request $i: $code"
	done
	for i in $(seq $N3); do
		out=$(in_cg_ns workload "$NS_W" "$PY" -c '
import socket
s = socket.create_connection(("203.0.113.20", 9000), timeout=5)
try:
    s.sendall(b"\x00\x01\x02\x03")
    s.shutdown(socket.SHUT_WR)
    print("GOT %d" % len(s.recv(100)))
except OSError as e:
    print("CLOSED %s" % e.__class__.__name__)
')
		case "$out" in "GOT 0" | CLOSED*) ;; *) fail "blocked TCP connection $i: $out" ;; esac
	done
	[ ! -s "$TMP/pattern.log" ] || fail "blocked TCP reached the server: $(cat "$TMP/pattern.log")"
	sed 's/mode: REGISTRY_ONLY/mode: ALLOW_ANY/' "$CONF/istio-configmap.yaml" >"$TMP/cm.new"
	mv "$TMP/cm.new" "$CONF/istio-configmap.yaml"
	wait_generation "$TMP/m.err" 2
	for i in $(seq $N4); do
		code=$(http_code http://203.0.113.20/ -H 'Host: undeclared.example.org')
		[ "$code" = 200 ] || fail "passthrough request $i: $code"
	done
	log "traffic: $N1 allowed (301), $N2 blocked HTTP (502), $N3 blocked TCP, then ALLOW_ANY: $N4 passthrough (200)"
	# Metrics are recorded when a connection closes: wait for the last one.
	for _ in $(seq 40); do
		admin_get /stats/prometheus >"$TMP/scrape.txt"
		[ "$(metric istio_requests_total)" = $((N1 + N2 + N4)) ] && break
		sleep 0.05
	done

	local fam
	for fam in istio_requests_total istio_request_duration_milliseconds istio_tcp_connections_opened_total \
		istio_tcp_connections_closed_total istio_tcp_sent_bytes_total istio_tcp_received_bytes_total; do
		grep -q "^# HELP $fam " "$TMP/scrape.txt" || fail "no HELP line for $fam"
	done
	grep -q "^# TYPE istio_requests_total counter$" "$TMP/scrape.txt" || fail "TYPE istio_requests_total"
	grep -q "^# TYPE istio_request_duration_milliseconds histogram$" "$TMP/scrape.txt" || fail "TYPE duration"
	for fam in istio_tcp_connections_opened_total istio_tcp_connections_closed_total istio_tcp_sent_bytes_total \
		istio_tcp_received_bytes_total; do
		grep -q "^# TYPE $fam counter$" "$TMP/scrape.txt" || fail "TYPE $fam"
	done
	local S=reporter=source
	expect_metric $N1 istio_requests_total $S response_code=301 destination_service_name=edition.cnn.com \
		destination_service=edition.cnn.com request_protocol=http response_flags=-
	# Istio (istio.io blog "Monitoring blocked and passthrough external
	# service traffic"): blocked and passthrough HTTP requests carry the
	# cluster in destination_service_name and the request's host in
	# destination_service; a blocked request is always a 502.
	expect_metric $N2 istio_requests_total $S response_code=502 destination_service_name=BlackHoleCluster \
		destination_service=undeclared.example.org request_protocol=http
	expect_metric $N4 istio_requests_total $S response_code=200 destination_service_name=PassthroughCluster \
		destination_service=undeclared.example.org request_protocol=http response_flags=-
	expect_metric $((N1 + N2 + N4)) istio_requests_total
	expect_metric $N1 istio_request_duration_milliseconds_count destination_service_name=edition.cnn.com
	expect_metric $N3 istio_tcp_connections_closed_total $S destination_service_name=BlackHoleCluster \
		destination_service=unknown response_flags=UH request_protocol=tcp
	expect_metric $N3 istio_tcp_connections_closed_total
	# The same blog: a blackholed connection never reaches an upstream, so it
	# is not counted as opened; HTTP traffic is in istio_requests_total only.
	expect_metric 0 istio_tcp_connections_opened_total
	expect_metric 0 istio_tcp_sent_bytes_total destination_service_name=BlackHoleCluster
	# The engine's own counters, one series each: the same accepts as its
	# per-listener family, every connection closed, no buffer left in use.
	local accepted
	accepted=$(metric sluice_engine_accepted_total)
	[ "$accepted" -ge $((N1 + N2 + N3 + N4)) ] || fail "sluice_engine_accepted_total = $accepted"
	expect_metric "$accepted" sluice_engine_stat stat=accepted
	expect_metric "$accepted" sluice_engine_stat stat=closed
	expect_metric 0 sluice_engine_stat stat=buffers_in_use
	expect_metric 0 sluice_engine_stat stat=bulk_buffers_in_use
	grep -q '^sluice_engine_stat{listener="[^"]*",stat="loop_iterations"} [1-9]' "$TMP/scrape.txt" ||
		fail "no sluice_engine_stat loop_iterations series"
	log "ok: /stats/prometheus: sluice_engine_stat{accepted,closed} = $accepted, no buffers held"
	log "ok: /stats/prometheus: istio_requests_total{301,edition.cnn.com}=$N1 {502,BlackHoleCluster}=$N2" \
		"{200,PassthroughCluster}=$N4; istio_tcp_connections_closed_total{BlackHoleCluster,UH}=$N3"

	# A real Prometheus scraping the admin endpoint (from the proxy's netns).
	local prom=/usr/bin/prometheus port=9090
	[ -x "$prom" ] || skip_or_fail "the endpoint checks passed, but $prom is not installed (Debian package prometheus)"
	! ip netns exec "$NS_W" ss -Hltn "src 127.0.0.1:$port" | has . || fail "127.0.0.1:$port is taken in $NS_W"
	mkdir -p "$TMP/prom"
	cat >"$TMP/prom/prometheus.yml" <<EOF2
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: sluice-proxy
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ["127.0.0.1:15000"]
EOF2
	KT_LOGS+=("$TMP/prom/prometheus.log")
	kt_bg in_cg_ns other "$NS_W" "$prom" --config.file="$TMP/prom/prometheus.yml" \
		--storage.tsdb.path="$TMP/prom/data" --web.listen-address="127.0.0.1:$port" \
		>"$TMP/prom/prometheus.log" 2>&1
	kt_wait_listen "$NS_W" "127.0.0.1:$port" 400 || fail "prometheus did not start"
	KT_PIDS+=("$(kt_listener_pid "$NS_W" "127.0.0.1:$port")")
	local q got=""
	for _ in $(seq 60); do
		q=$(in_cg_ns other "$NS_W" curl -s --max-time 5 "http://127.0.0.1:$port/api/v1/query" \
			--data-urlencode 'query=sum(istio_requests_total)')
		got=$("$PY" -c 'import json,sys
r = json.load(sys.stdin)["data"]["result"]
print(r[0]["value"][1] if r else "")' <<<"$q" 2>/dev/null)
		[ -n "$got" ] && break
		sleep 0.25
	done
	[ "$got" = $((N1 + N2 + N4)) ] || fail "prometheus: sum(istio_requests_total) = '$got' ($q)"
	q=$(in_cg_ns other "$NS_W" curl -s --max-time 5 "http://127.0.0.1:$port/api/v1/query" --data-urlencode \
		'query=sum by (destination_service_name, response_code) (istio_requests_total)')
	log "ok: prometheus $("$prom" --version 2>&1 | head -1 | awk '{ print $3 }') scraped it:" \
		"sum(istio_requests_total) = $got; by service/code:" \
		"$("$PY" -c 'import json,sys
print(", ".join("%s/%s=%s" % (r["metric"]["destination_service_name"], r["metric"]["response_code"], r["value"][1])
                for r in json.load(sys.stdin)["data"]["result"]))' <<<"$q")"
}

case "$CASE" in
upgrade) case_upgrade ;;
least-privilege) case_least_privilege ;;
metrics) case_metrics ;;
esac
log "PASS"
