#!/usr/bin/env bash
# Kernel test of the agent's --socket-redirect: the workload <-> sidecar hop
# of a redirected connection goes socket to socket (sockops puts both
# sockets in the sluice_socks SOCKHASH, an sk_msg program hands each send to
# the peer's receive queue) while the sidecar still sees, decides and relays
# every byte. Real BPF, the real sluice-proxy (ALLOW_ANY passthrough), nginx,
# curl and python peers, all in one namespace and one cgroup tree this script
# creates; everything removed on exit.
#
#   socket_redirect_test.sh
#
# Shows: (1) a 24 MiB download (IPv4 and IPv6) and (2) a 16 MiB upload (client half-close,
# the answer after it) arrive intact through the shortcut; (7) a download read
# slowly moves its sender to TCP (sock_queue_full) and arrives intact; (8) an
# upload to an upstream that stalls is held back (well under 24 MiB in flight,
# where the unbounded shortcut queued 400 MiB), then arrives intact; (3) 40 concurrent
# keep-alive clients, 5 requests each, all answered, every sending socket on
# a path (the shortcut, or TCP when its first bytes beat the proxy's
# socket), most on the shortcut; (4) an upstream reset reaches the client
# as a reset; (5) the sidecar saw every connection (its counters); (6) with
# --socket-redirect false (agent restarted, pins adopted) new connections
# take the TCP path again and still work.
set -u -o pipefail

TEST_NAME=socket-redirect
PROXY=${SLUICE_PROXY:?}
export SLUICE_PYTHON=${SLUICE_PYTHON:-/usr/bin/python3}
PY=$SLUICE_PYTHON
. "$(dirname "$0")/lib.sh"
kt_init nginx curl "$PY" sha256sum
[ -x "$PROXY" ] || fail "proxy not built: $PROXY"
: "${SLUICE_AGENT:?}"
: "${SLUICE_CONFIGS:?}"

NS="sluice-${ID}-sr"
kt_netns "$NS"
kt_cgroups workload proxy other
ip netns exec "$NS" ip addr add 10.99.0.1/32 dev lo
ip netns exec "$NS" ip -6 addr add fd00:99::1/128 dev lo nodad
kt_hosts "$NS" "10.99.0.1 files.example" "fd00:99::1 files6.example"

# nginx: a 24 MiB file and a small page.
mkdir -p "$TMP/nginx/www"
head -c $((24 << 20)) /dev/urandom >"$TMP/nginx/www/big.bin"
echo small >"$TMP/nginx/www/small.txt"
chmod o+rx "$TMP" "$TMP/nginx" "$TMP/nginx/www"  # nginx's workers are www-data
chmod o+r "$TMP/nginx/www/"*
{
	kt_nginx_conf "$TMP/nginx"
	cat <<NGINX
    access_log off;
    server {
        listen 10.99.0.1:80;
        listen [fd00:99::1]:80;
        root $TMP/nginx/www;
    }
}
NGINX
} >"$TMP/nginx/nginx.conf"
kt_bg in_cg_ns other "$NS" nginx -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf"

# A TCP peer on :9000: reads to EOF, answers "<bytes> <sha256>" and closes;
# on :9001: reads one line and resets the connection; on :9002: reads
# nothing for 2.5 s, then as :9000.
cat >"$TMP/peer.py" <<'PY'
import hashlib, socket, struct, sys, threading, time
def serve(port, handler):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("10.99.0.1", port)); s.listen(128)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handler, args=(c,), daemon=True).start()
def digest(c):
    h, n = hashlib.sha256(), 0
    while True:
        b = c.recv(1 << 16)
        if not b:
            break
        h.update(b); n += len(b)
    c.sendall(("%d %s\n" % (n, h.hexdigest())).encode()); c.close()
def reset(c):
    c.recv(100)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)); c.close()
def stall(c):
    time.sleep(2.5)
    digest(c)
threading.Thread(target=serve, args=(9001, reset), daemon=True).start()
threading.Thread(target=serve, args=(9002, stall), daemon=True).start()
open(sys.argv[1], "w").close()
serve(9000, digest)
PY
kt_bg in_cg_ns other "$NS" "$PY" "$TMP/peer.py" "$TMP/peer.ready"
kt_wait_file "$TMP/peer.ready" 100 || fail "the TCP peer did not start"

CONF="$TMP/config"
mkdir -p "$CONF"
cp "$SLUICE_CONFIGS/mesh/istio-configmap-allow-any.yaml" "$CONF/istio-configmap.yaml"
printf 'global:\n  proxy:\n    includeIPRanges: "10.99.0.1/32,fd00:99::1/128"\n' >"$TMP/values.yaml"
AGENT_ARGS=(--cgroup "$KT_CG/workload" --cgroup "$KT_CG/proxy" --config "$TMP/values.yaml")
kt_agent "${AGENT_ARGS[@]}" --socket-redirect true
kt_bg in_cg_ns proxy "$NS" "$PROXY" --config "$CONF" --listen 127.0.0.1:15001 --listen '[::1]:15001' --workers 1 \
	--access-log "" 2>"$TMP/sidecar.err"
KT_LOGS+=("$TMP/sidecar.err")
for l in 10.99.0.1:80 '[fd00:99::1]:80' 127.0.0.1:15001 '[::1]:15001'; do kt_wait_listen "$NS" "$l" || fail "nothing listens on $l"; done
SIDECAR_PID=$(kt_listener_pid "$NS" 127.0.0.1:15001)
[ $(($(kt_config_flags) & 256)) = 256 ] || fail "sluice_config lacks socket_redirect"
if [ -n "${SLUICE_CTL:-}" ]; then
	"$SLUICE_CTL" maps --pin-dir "$KT_PIN" | grep -q "socket redirect: on" ||
		fail "sluicectl maps does not show socket redirect on"
fi

# counter NAME: a sluice_counters entry summed over CPUs (enum sluice_counter).
counter() {
	local idx
	case "$1" in
	intercepted) idx=0 ;; sock_added) idx=12 ;; sock_add_failed) idx=13 ;; sock_shortcut) idx=14 ;;
	sock_tcp_path) idx=15 ;; msg_redirected) idx=16 ;; sock_queue_full) idx=17 ;; *) fail "unknown counter $1" ;;
	esac
	kt_counter "$idx"
}
sidecar_counter() {  # NAME: from the sidecar's SIGUSR1 counters line
	local before
	before=$(grep -c 'counters:' "$TMP/sidecar.err")
	kill -USR1 "$SIDECAR_PID"
	for _ in $(seq 40); do
		[ "$(grep -c 'counters:' "$TMP/sidecar.err")" -gt "$before" ] && break
		sleep 0.05
	done
	grep 'counters:' "$TMP/sidecar.err" | tail -1 | tr ' ' '\n' | sed -n "s/^$1=//p"
}
wl() { in_cg_ns workload "$NS" "$@"; }
# mark_paths / sent_sockets: how many sockets chose a path (shortcut or
# TCP) since mark_paths, and how many of them the shortcut. A workload
# socket whose first bytes beat the proxy's accepted socket into the map
# takes TCP for good (rare on loopback); the proxy's socket always finds
# the workload's.
mark_paths() { P_SC=$(counter sock_shortcut); P_TCP=$(counter sock_tcp_path); }
sent_sockets() { echo "$(($(counter sock_shortcut) - P_SC + $(counter sock_tcp_path) - P_TCP)) $(($(counter sock_shortcut) - P_SC))"; }
expect_paths() {  # STEP MIN_SOCKETS MIN_SHORTCUT
	local n sc
	read -r n sc < <(sent_sockets)
	[ "$n" -ge "$2" ] && [ "$sc" -ge "$3" ] ||
		fail "($1) $n sockets chose a path ($sc the shortcut); expected >= $2 ($3)"
}

# (1) download
want=$(sha256sum <"$TMP/nginx/www/big.bin" | cut -d' ' -f1)
mark_paths
got=$(wl curl -sSf --max-time 30 http://files.example/big.bin 2>"$TMP/curl.err" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "(1) $(cat "$TMP/curl.err"); the 24 MiB download through the shortcut differs ($got, want $want)"
expect_paths 1 2 1
log "ok (1) 24 MiB download intact; sock_added=$(counter sock_added) sock_shortcut=$(counter sock_shortcut)" \
	"msg_redirected=$(counter msg_redirected)"
# The same over IPv6 (the proxy's [::1]:15001; the tuple keys are 16 bytes).
mark_paths
got=$(wl curl -sSf --max-time 30 http://files6.example/big.bin 2>"$TMP/curl.err" | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "(1) IPv6: $(cat "$TMP/curl.err"); the download differs"
expect_paths 1 2 1
log "ok (1) the same over IPv6 through the shortcut"

# (2) upload with a half-close: the answer comes after the client's FIN.
cat >"$TMP/upload.py" <<'PY'
import hashlib, os, socket, sys
data = os.urandom(16 << 20)
s = socket.create_connection(("10.99.0.1", 9000), timeout=30)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
reply = b""
while True:
    b = s.recv(4096)
    if not b:
        break
    reply += b
want = "%d %s" % (len(data), hashlib.sha256(data).hexdigest())
print("ok" if reply.decode().strip() == want else "got %r want %r" % (reply, want))
PY
mark_paths
out=$(wl "$PY" "$TMP/upload.py" 2>&1)
[ "$out" = ok ] || fail "(2) upload through the shortcut: $out"
expect_paths 2 2 1
log "ok (2) 16 MiB upload intact, the peer's answer after the client's half-close"

# (3) many concurrent keep-alive clients
cat >"$TMP/many.py" <<'PY'
import http.client, sys, threading
errors = []
def client(i):
    try:
        c = http.client.HTTPConnection("files.example", 80, timeout=20)
        for _ in range(5):
            c.request("GET", "/small.txt")
            r = c.getresponse()
            body = r.read()
            if r.status != 200 or body != b"small\n":
                errors.append("%d: %d %r" % (i, r.status, body))
        c.close()
    except Exception as e:
        errors.append("%d: %s" % (i, e))
ts = [threading.Thread(target=client, args=(i,)) for i in range(40)]
[t.start() for t in ts]
[t.join() for t in ts]
print("ok" if not errors else "; ".join(errors[:5]))
PY
added0=$(counter sock_added)
mark_paths
out=$(wl "$PY" "$TMP/many.py" 2>&1)
[ "$out" = ok ] || fail "(3) concurrent keep-alive clients: $out"
added=$(($(counter sock_added) - added0))
[ "$added" -ge 80 ] || fail "(3) 40 connections should add 80 sockets to sluice_socks, added $added"
expect_paths 3 80 40
log "ok (3) 40 concurrent keep-alive clients x 5 requests answered; +$added sockets;" \
	"sock_shortcut=$(counter sock_shortcut) sock_tcp_path=$(counter sock_tcp_path) sock_add_failed=$(counter sock_add_failed)"

# (4) an upstream reset reaches the client
cat >"$TMP/reset.py" <<'PY'
import socket
s = socket.create_connection(("10.99.0.1", 9001), timeout=10)
s.sendall(b"hello\n")
try:
    b = s.recv(100)
    print("eof" if not b else "data %r" % b)
except ConnectionResetError:
    print("reset")
PY
mark_paths
out=$(wl "$PY" "$TMP/reset.py" 2>&1)
expect_paths 4 1 0
[ "$out" = reset ] || fail "(4) an upstream reset should reach the client as a reset, got: $out"
log "ok (4) the upstream's reset reached the client as a reset"

# (5) the sidecar relayed every one of them
accepted=$(sidecar_counter accepted)
[ "${accepted:-0}" -ge 44 ] || fail "(5) the sidecar accepted ${accepted:-none} connections, expected >= 44"
log "ok (5) the sidecar accepted $accepted connections (decided and relayed them; only the hop changed)"

# (7) a reader that falls behind moves its sender to TCP, bytes in order.
# The download read slowly: the sidecar's socket hands curl's socket up to
# the queue limit unread, then continues over TCP.
cat >"$TMP/slow_get.py" <<'PY'
import hashlib, socket, sys, time
s = socket.create_connection(("10.99.0.1", 80), timeout=30)
s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: files.example\r\nConnection: close\r\n\r\n")
time.sleep(0.5)  # the whole queue limit arrives unread
data = bytearray()
while True:
    b = s.recv(1 << 16)
    if not b:
        break
    data += b
    time.sleep(0.002)
body = data.split(b"\r\n\r\n", 1)[1]
print(len(body), hashlib.sha256(body).hexdigest())
PY
full0=$(counter sock_queue_full)
out=$(wl "$PY" "$TMP/slow_get.py" 2>&1)
[ "$out" = "$((24 << 20)) $want" ] || fail "(7) the slowly read download differs: $out"
[ "$(counter sock_queue_full)" -gt "$full0" ] ||
	fail "(7) the slow reader never moved its sender off the shortcut (sock_queue_full=$(counter sock_queue_full))"
log "ok (7) a download read slowly arrived intact; its sender left the shortcut for TCP" \
	"(sock_queue_full $full0 -> $(counter sock_queue_full))"

# (8) a stalled upstream: the client's upload is held back (the shortcut's
# queue limit, then TCP's buffers), not queued without end; the upstream
# then reads it all, intact. Without the limit the kernel queued 400 MiB in
# 1.6 s here.
cat >"$TMP/stall.py" <<'PY'
import hashlib, socket, time
data = open("/dev/urandom", "rb").read(48 << 20)
s = socket.create_connection(("10.99.0.1", 9002), timeout=30)
s.setblocking(False)
sent, t0 = 0, time.time()
while time.time() - t0 < 1.5:  # the peer reads nothing for 2.5 s
    try:
        sent += s.send(data[sent:sent + (1 << 16)])
    except BlockingIOError:
        time.sleep(0.001)
stalled = sent
s.setblocking(True); s.settimeout(30)
s.sendall(data[sent:]); s.shutdown(socket.SHUT_WR)
reply = s.makefile("rb").read()
ok = reply.decode().strip() == "%d %s" % (len(data), hashlib.sha256(data).hexdigest())
print("ok" if ok else "bad reply %r" % reply, stalled)
PY
full0=$(counter sock_queue_full)
read -r verdict stalled < <(wl "$PY" "$TMP/stall.py" 2>&1)
[ "$verdict" = ok ] || fail "(8) the upload to a stalled upstream: $verdict $stalled"
[ "$stalled" -lt $((24 << 20)) ] ||
	fail "(8) the client put $stalled bytes in flight while the upstream read nothing: the shortcut is not bounded"
[ "$(counter sock_queue_full)" -gt "$full0" ] || fail "(8) the client never left the shortcut (sock_queue_full)"
log "ok (8) while the upstream stalled the client got $((stalled >> 20)) MiB in flight (queue limit 4 MiB, then" \
	"TCP's buffers), then all 48 MiB arrived intact"

# The sockets' addresses (sluice_sock_addr) go with their connections: the
# proxy side's close deletes both entries.
left=""
for _ in $(seq 20); do
	left=$(bpftool map dump pinned "$KT_PIN/sluice_sock_addr" -j | "$PY" -c 'import json, sys; print(len(json.load(sys.stdin)))')
	[ "$left" -le 4 ] && break
	sleep 0.1
done
[ "$left" -le 4 ] || fail "sluice_sock_addr keeps $left entries after $(counter sock_added) sockets came and went"
log "ok sluice_sock_addr: $left entries left after $(counter sock_added) sockets (deleted at close)"

# (6) turned off: new connections take TCP again
kt_agent_restart "${AGENT_ARGS[@]}" --socket-redirect false
added0=$(counter sock_added)
got=$(wl curl -sf --max-time 30 http://files.example/big.bin | sha256sum | cut -d' ' -f1)
[ "$got" = "$want" ] || fail "(6) the download without the shortcut differs"
[ "$(counter sock_added)" = "$added0" ] || fail "(6) sockets still added with --socket-redirect false"
log "ok (6) --socket-redirect false: new connections on TCP (no socket added), download intact"
log PASS
