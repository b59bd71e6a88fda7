#!/usr/bin/env bash
# Kernel tests of Sluice's BPF interception: real cgroups, network
# namespaces, the built sluice-agent, a stand-in proxy, real clients and
# servers (tests/kernel/testnet.py).
#
#   interception_test.sh CASE
#
# Environment (meson sets it): SLUICE_AGENT, SLUICE_TESTNET,
# SLUICE_FOREIGN_OBJ, SLUICE_PYTHON. CI=true turns a missing capability
# into a failure instead of a skip (exit 77).
#
# Safety rules this script keeps (the machine depends on its own network):
# programs attach only to cgroups this script creates, topology lives only
# in namespaces it creates, the root namespace gets no address or route,
# traffic goes only to addresses inside those namespaces (198.51.100.0/24,
# 203.0.113.0/24, 2001:db8::/32) or loopback, and everything is removed on
# every exit path.
set -u -o pipefail

CASE=${1:?usage: interception_test.sh CASE}
TEST_NAME=$CASE
AGENT=${SLUICE_AGENT:?}
TESTNET=${SLUICE_TESTNET:?}
FOREIGN_OBJ=${SLUICE_FOREIGN_OBJ:-}
PY=${SLUICE_PYTHON:-/usr/bin/python3}

. "$(dirname "$0")/lib.sh"
kt_init

NS_W="sluice-${ID}-w"     # the workload's namespace
NS_N="sluice-${ID}-n"     # the "node": real destinations, node-placed proxy
PIN="/sys/fs/bpf/sluice-test-${ID}"
FOREIGN_PIN="/sys/fs/bpf/sluice-test-${ID}-foreign"
FOREIGN_ATTACHED=""
# The cases run the agent themselves (--once, restarts): the cleanup
# uninstalls whatever they left under PIN.
KT_PIN=$PIN
KT_AGENT=$AGENT

foreign_cleanup() {
	if [ -n "$FOREIGN_ATTACHED" ]; then
		bpftool cgroup detach "$FOREIGN_ATTACHED" connect4 pinned "$FOREIGN_PIN/prog" 2>/dev/null
	fi
	rm -rf "$FOREIGN_PIN" 2>/dev/null
}
KT_CLEANUP_HOOKS+=(foreign_cleanup)

[ -x "$AGENT" ] || fail "agent not built: $AGENT"

# ------------------------------------------------------------ topology
kt_netns "$NS_W" "$NS_N"
kt_cgroups workload proxy other
CG=$KT_CG

nsw() { ip netns exec "$NS_W" "$@"; }
nsn() { ip netns exec "$NS_N" "$@"; }

# Created inside the namespaces: the root namespace never sees the pair.
nsw ip link add vw type veth peer name vn netns "$NS_N"
nsw ip addr add 198.51.100.2/24 dev vw
nsw ip -6 addr add 2001:db8:1::2/64 dev vw nodad
nsw ip link set vw up
nsn ip addr add 198.51.100.1/24 dev vn
nsn ip -6 addr add 2001:db8:1::1/64 dev vn nodad
nsn ip link set vn up
nsw ip route add default via 198.51.100.1
nsw ip -6 route add default via 2001:db8:1::1
# The node answers for every test "internet" destination.
nsn ip addr add 203.0.113.1/24 dev lo
nsn ip -6 route add local 2001:db8:2::/48 dev lo

# Starts a long-running helper; waits until its ready file appears.
start() {
	local name=$1 cg=$2 ns=$3
	shift 3
	in_cg_ns "$cg" "$ns" "$PY" "$TESTNET" "$@" --ready "$TMP/$name.ready" >"$TMP/$name.out" 2>&1 &
	KT_PIDS+=($!)
	for _ in $(seq 100); do
		[ -f "$TMP/$name.ready" ] && return 0
		sleep 0.05
	done
	cat "$TMP/$name.out" >&2
	fail "$name did not start"
}

start_real_servers() {
	start real other "$NS_N" server --listen 0.0.0.0:8080 --listen 0.0.0.0:9090 \
		--listen 0.0.0.0:7070 --listen '[::]:8080' --listen '[::]:9090'
	# Loopback service inside the workload's namespace.
	start real-lo other "$NS_W" server --listen 127.0.0.1:8081 --listen '[::1]:8081'
}

start_sidecar_standin() {
	start standin proxy "$NS_W" standin --listen 127.0.0.1:15001 --listen '[::1]:15001' \
		--log "$TMP/standin.log"
}

# The install options every case uses.
cat >"$TMP/values.yaml" <<'EOF'
global:
  proxy:
    includeIPRanges: "203.0.113.0/24,2001:db8:2::/48"
    excludeIPRanges: "203.0.113.128/25,2001:db8:2:ff::/64"
    includeOutboundPorts: "7070"
    excludeOutboundPorts: "9090"
EOF

agent_once() {
	"$AGENT" --once --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" \
		--config "$TMP/values.yaml" "$@" >>"$TMP/agent.log" 2>&1 ||
		{ cat "$TMP/agent.log" >&2; fail "agent --once failed"; }
}

# probe CGROUP NS HOST PORT [--mark M]: prints the one-line answer.
probe() {
	local cg=$1 ns=$2
	shift 2
	in_cg_ns "$cg" "$ns" "$PY" "$TESTNET" probe "$@"
}

expect_redirected() {  # HOST PORT [extra probe args]
	local out
	out=$(probe workload "$NS_W" "$@")
	case "$out" in
	"ORIG "*" OK") log "ok: $1:$2 redirected, SO_ORIGINAL_DST=${out#ORIG }" ;;
	*) fail "$1:$2 should be redirected with its original destination, got: $out" ;;
	esac
}

expect_direct() {  # HOST PORT [extra probe args]
	local out
	out=$(probe workload "$NS_W" "$@")
	case "$out" in
	"REAL "*) log "ok: $1:$2 reached the real host directly (${out})" ;;
	*) fail "$1:$2 should reach the real host directly, got: $out" ;;
	esac
}

# counter NAME: sum over CPUs of one of enum sluice_counter.
counter() {
	local idx
	case "$1" in
	intercepted) idx=0 ;; excluded_port) idx=1 ;; own_traffic) idx=2 ;; loopback) idx=3 ;;
	excluded_range) idx=4 ;; not_included) idx=5 ;; origdst_answered) idx=6 ;;
	origdst_miss) idx=7 ;; *) fail "unknown counter $1" ;;
	esac
	kt_counter "$idx"
}

sluice_ids() {  # ids of every prog/map/link the pins reference
	local ids=""
	for p in "$PIN"/prog_*; do
		ids+=" prog:$(bpftool -j prog show pinned "$p" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
	done
	for m in "$PIN"/sluice_*; do
		ids+=" map:$(bpftool -j map show pinned "$m" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
	done
	for l in "$PIN"/link_*; do
		ids+=" link:$(bpftool -j link show pinned "$l" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')"
	done
	echo "$ids"
}

# ------------------------------------------------------------ cases
case_redirect() {
	start_real_servers
	start_sidecar_standin
	agent_once
	expect_redirected 203.0.113.10 8080
	expect_redirected 203.0.113.99 443
	expect_redirected 2001:db8:2::10 8080
	expect_redirected 2001:db8:2:1::7 443
	expect_redirected ::ffff:203.0.113.10 8080      # IPv4-mapped on a v6 socket
	expect_redirected 198.51.100.1 7070             # included port, address not included
	# A real client end to end: curl through the stand-in, which relays to
	# the original destination (with the proxy's mark, so not redirected again).
	local body
	body=$(in_cg_ns workload "$NS_W" curl -sS --max-time 5 http://203.0.113.10:8080/) ||
		fail "curl through the proxy failed"
	[ "$body" = "real-server 203.0.113.10:8080" ] || fail "curl got: $body"
	grep -q "RELAY .* orig=203.0.113.10:8080" "$TMP/standin.log" ||
		fail "curl's connection did not go through the stand-in"
	log "ok: curl http://203.0.113.10:8080/ relayed via the stand-in: $body"
	body=$(in_cg_ns workload "$NS_W" curl -sS --max-time 5 'http://[2001:db8:2::10]:8080/') ||
		fail "curl -6 through the proxy failed"
	[ "$body" = "real-server [2001:db8:2::10]:8080" ] || fail "curl -6 got: $body"
	grep -q "RELAY .* orig=\[2001:db8:2::10\]:8080" "$TMP/standin.log" ||
		fail "curl -6 did not go through the stand-in"
	log "ok: curl http://[2001:db8:2::10]:8080/ relayed via the stand-in"
	[ "$(counter intercepted)" -ge 8 ] || fail "intercepted counter $(counter intercepted) < 8"
	[ "$(counter origdst_answered)" -ge 8 ] || fail "origdst_answered $(counter origdst_answered) < 8"
	log "counters: intercepted=$(counter intercepted) origdst_answered=$(counter origdst_answered)"
}

case_passthrough() {
	start_real_servers
	start_sidecar_standin
	agent_once
	expect_direct 203.0.113.200 8080                # excluded range
	expect_direct 2001:db8:2:ff::10 8080            # excluded range v6
	expect_direct ::ffff:203.0.113.200 8080         # excluded range, mapped
	expect_direct 203.0.113.10 9090                 # excluded port
	expect_direct 2001:db8:2::10 9090               # excluded port v6
	expect_direct 127.0.0.1 8081                    # loopback
	expect_direct ::1 8081                          # loopback v6
	expect_direct 198.51.100.1 8080                 # outside the include ranges
	expect_direct 2001:db8:1::1 8080                # outside the include ranges v6
	local body
	body=$(in_cg_ns workload "$NS_W" curl -sS --max-time 5 http://203.0.113.200:8080/) || fail "curl direct failed"
	[ "$body" = "real-server 203.0.113.200:8080" ] || fail "curl got: $body"
	[ "$(counter intercepted)" = 0 ] || fail "intercepted=$(counter intercepted), expected 0"
	[ "$(counter excluded_range)" -ge 4 ] || fail "excluded_range=$(counter excluded_range)"
	[ "$(counter excluded_port)" -ge 2 ] || fail "excluded_port=$(counter excluded_port)"
	[ "$(counter loopback)" -ge 2 ] || fail "loopback=$(counter loopback)"
	[ "$(counter not_included)" -ge 2 ] || fail "not_included=$(counter not_included)"
	log "counters: excluded_range=$(counter excluded_range) excluded_port=$(counter excluded_port) loopback=$(counter loopback) not_included=$(counter not_included)"
}

case_own_traffic() {
	start_real_servers
	start_sidecar_standin
	agent_once
	expect_direct 203.0.113.10 8080 --mark 0x539
	expect_direct 2001:db8:2::10 8080 --mark 0x539
	expect_redirected 203.0.113.10 8080 --mark 0x538   # another mark is not the proxy's
	local out
	out=$(in_cg_ns workload "$NS_W" \
		setpriv --reuid 1337 --regid 2000 --clear-groups "$PY" "$TESTNET" probe 203.0.113.10 8080)
	case "$out" in "REAL "*) log "ok: uid 1337 not redirected ($out)" ;; *) fail "uid 1337: $out" ;; esac
	out=$(in_cg_ns workload "$NS_W" \
		setpriv --reuid 2000 --regid 1337 --clear-groups "$PY" "$TESTNET" probe 203.0.113.10 8080)
	case "$out" in "REAL "*) log "ok: gid 1337 not redirected ($out)" ;; *) fail "gid 1337: $out" ;; esac
	out=$(in_cg_ns workload "$NS_W" \
		setpriv --reuid 2000 --regid 2000 --clear-groups "$PY" "$TESTNET" probe 203.0.113.10 8080)
	case "$out" in "ORIG "*" OK") log "ok: uid/gid 2000 redirected" ;; *) fail "uid 2000: $out" ;; esac
	[ "$(counter own_traffic)" -ge 4 ] || fail "own_traffic=$(counter own_traffic)"
	log "counters: own_traffic=$(counter own_traffic)"
}

case_concurrent() {
	start_sidecar_standin
	agent_once
	local out
	out=$(in_cg_ns workload "$NS_W" "$PY" "$TESTNET" load --count 1000 --procs 8 --base-port 20000 \
		--hosts 203.0.113.10 203.0.113.11 203.0.113.12 2001:db8:2::10 2001:db8:2::11 ::ffff:203.0.113.13) ||
		{ echo "$out" >&2; fail "concurrent connections"; }
	log "$out"
	local good bad
	good=$(grep -c " OK$" "$TMP/standin.log")
	bad=$(grep -c -e "MISMATCH" -e "^MISS" "$TMP/standin.log")
	[ "$good" -ge 1000 ] && [ "$bad" = 0 ] || fail "stand-in saw ok=$good bad=$bad"
	log "ok: the stand-in matched $good original destinations, $bad mismatches"
	# No record outlives its connection: the cookie map is emptied at
	# ESTABLISHED, the tuple map when the proxy's socket closes.
	local pending tuples
	for _ in $(seq 50); do
		pending=$(bpftool -j map dump pinned "$PIN/sluice_orig_ck" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
		tuples=$(bpftool -j map dump pinned "$PIN/sluice_orig_4t" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
		[ "$pending" = 0 ] && [ "$tuples" = 0 ] && break
		sleep 0.1
	done
	[ "$pending" = 0 ] && [ "$tuples" = 0 ] || fail "records left behind: by cookie $pending, by tuple $tuples"
	log "ok: no original-destination records left after the connections closed"
}

case_startup_checks() {
	local rc out
	out=$(setpriv --reuid 65534 --regid 65534 --clear-groups --inh-caps=-all \
		"$AGENT" --once --pin-dir "$PIN" --cgroup "$CG/workload" 2>&1)
	rc=$?
	[ "$rc" = 3 ] && grep -q "no permission to load BPF programs" <<<"$out" ||
		fail "unprivileged start: rc=$rc: $out"
	log "ok: without privileges: exit 3, $(sed 's/.*error: //' <<<"$out")"
	# No cgroup v2: unmounted in a private mount namespace only.
	out=$(unshare -m --propagation private sh -c 'umount "$1" && exec "$2" --once --pin-dir "$3"' \
		sh "$CG2" "$AGENT" "$PIN" 2>&1)
	rc=$?
	[ "$rc" = 3 ] && grep -q "no cgroup v2 hierarchy is mounted" <<<"$out" || fail "no cgroup v2: rc=$rc: $out"
	[ ! -e "$PIN" ] || fail "no cgroup v2 left pins"
	log "ok: without cgroup v2: exit 3"
	out=$("$AGENT" --once --pin-dir "$PIN" --cgroup "$CG/does-not-exist" 2>&1)
	rc=$?
	[ "$rc" = 2 ] && grep -q "does-not-exist" <<<"$out" || fail "missing cgroup: rc=$rc: $out"
	log "ok: missing cgroup: exit 2"
	out=$("$AGENT" --once --pin-dir "$PIN" --cgroup "$CG/workload" \
		--set values.global.proxy.includeIPRanges=10.0.0.0/33 2>&1)
	rc=$?
	[ "$rc" = 2 ] && grep -q "larger than 32" <<<"$out" || fail "bad config: rc=$rc: $out"
	[ -z "$(bpftool cgroup show "$CG/workload")" ] || fail "a bad config attached programs"
	[ ! -e "$PIN" ] || fail "a bad config left pins: $(ls "$PIN")"
	log "ok: bad config: exit 2, nothing attached ($(grep -o 'includeIPRanges.*' <<<"$out" | head -1))"
}

case_direct_to_proxy() {
	start_sidecar_standin
	agent_once
	local out
	for target in "127.0.0.1 15001" "::1 15001"; do
		# shellcheck disable=SC2086
		out=$(probe workload "$NS_W" $target)
		case "$out" in "MISS 2") log "ok: direct $target refused, SO_ORIGINAL_DST failed with ENOENT" ;;
		*) fail "direct connection to the proxy ($target) got: $out" ;; esac
	done
	[ "$(counter origdst_miss)" -ge 2 ] || fail "origdst_miss=$(counter origdst_miss)"
	log "counters: origdst_miss=$(counter origdst_miss)"
}

foreign_hits() {
	bpftool -j map dump pinned "$FOREIGN_PIN/foreign_hits" | "$PY" -c '
import json, sys
e = json.load(sys.stdin)[0]
e = e.get("formatted", e)
print(int(e["value"]))'
}

case_foreign_program() {
	[ -f "$FOREIGN_OBJ" ] || fail "foreign program not built: $FOREIGN_OBJ"
	start_real_servers
	start_sidecar_standin
	mkdir -p "$FOREIGN_PIN"
	bpftool prog load "$FOREIGN_OBJ" "$FOREIGN_PIN/prog" type cgroup/connect4 \
		pinmaps "$FOREIGN_PIN" || fail "cannot load the foreign program"
	# Attached before Sluice, the way other tools do it (multi).
	bpftool cgroup attach "$CG/workload" connect4 pinned "$FOREIGN_PIN/prog" multi ||
		fail "cannot attach the foreign program"
	FOREIGN_ATTACHED="$CG/workload"
	agent_once
	local before after
	before=$(foreign_hits)
	expect_redirected 203.0.113.10 8080
	expect_direct 203.0.113.200 8080
	after=$(foreign_hits)
	[ "$after" -ge $((before + 2)) ] || fail "foreign program did not run: hits $before -> $after"
	log "ok: foreign connect4 still runs next to Sluice (hits $before -> $after)"
	bpftool cgroup show "$CG/workload" | sed "s/^/[$CASE]   /"
	# Sluice's restart and uninstall leave it alone.
	agent_once
	"$AGENT" uninstall --pin-dir "$PIN" >>"$TMP/agent.log" 2>&1 || fail "uninstall failed"
	# Captured first: `producer | grep -q` under pipefail fails when grep exits
	# before the producer has written everything (SIGPIPE).
	grep -q foreign_connect <<<"$(bpftool cgroup show "$CG/workload")" || fail "uninstall removed the foreign program"
	before=$(foreign_hits)
	expect_direct 203.0.113.10 8080
	after=$(foreign_hits)
	[ "$after" -gt "$before" ] || fail "foreign program stopped after Sluice's uninstall"
	log "ok: after uninstall the foreign program still runs (hits $before -> $after), traffic is direct"
}

case_restart() {
	start_real_servers
	start_sidecar_standin
	"$AGENT" --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" \
		--config "$TMP/values.yaml" >>"$TMP/agent.log" 2>&1 &
	local agent_pid=$!
	KT_PIDS+=("$agent_pid")
	for _ in $(seq 100); do [ -e "$PIN/link_$(stat -c %i "$CG/proxy")_sluice_getsockopt" ] && break; sleep 0.05; done
	expect_redirected 203.0.113.10 8080
	local prog_before c_before
	prog_before=$(bpftool -j prog show pinned "$PIN/prog_sluice_connect4" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
	# Continuous traffic across the kill and the restart.
	in_cg_ns workload "$NS_W" "$PY" "$TESTNET" loop 203.0.113.10 8080 --duration 20 --interval 10 \
		--stop-file "$TMP/stop" >"$TMP/loop.out" 2>&1 &
	local loop_pid=$!
	KT_PIDS+=("$loop_pid")
	sleep 0.5
	kill -9 "$agent_pid"
	wait "$agent_pid" 2>/dev/null
	log "agent killed with SIGKILL; traffic continues during the gap"
	c_before=$(counter intercepted)
	sleep 1
	"$AGENT" --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" \
		--config "$TMP/values.yaml" >>"$TMP/agent2.log" 2>&1 &
	agent_pid=$!
	KT_PIDS+=("$agent_pid")
	sleep 1.5
	grep -q "adopting the maps" "$TMP/agent2.log" || { cat "$TMP/agent2.log" >&2; fail "restarted agent did not adopt the pins"; }
	touch "$TMP/stop"
	wait "$loop_pid" || { cat "$TMP/loop.out" >&2; fail "a connection failed across the restart"; }
	log "$(tail -1 "$TMP/loop.out") (every connection redirected across kill -9 and restart)"
	local c_after prog_after
	c_after=$(counter intercepted)
	[ "$c_after" -gt "$c_before" ] || fail "counters reset: $c_before -> $c_after"
	prog_after=$(bpftool -j prog show pinned "$PIN/prog_sluice_connect4" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["id"])')
	[ "$prog_after" != "$prog_before" ] || fail "the restarted agent did not switch the links to its programs"
	grep -q "prog $prog_after" <<<"$(bpftool link show)" || fail "no link runs the new program $prog_after"
	log "ok: counters continued ($c_before -> $c_after), links switched in place to new programs ($prog_before -> $prog_after)"
	# Clean stop (SIGTERM) also leaves interception in place.
	kill -TERM "$agent_pid"
	wait "$agent_pid" 2>/dev/null
	expect_redirected 203.0.113.10 8080
}

case_uninstall() {
	start_real_servers
	start_sidecar_standin
	agent_once
	expect_redirected 203.0.113.10 8080
	local ids
	ids=$(sluice_ids)
	log "installed:$ids"
	"$AGENT" uninstall --pin-dir "$PIN" >>"$TMP/agent.log" 2>&1 || { cat "$TMP/agent.log" >&2; fail "uninstall failed"; }
	[ ! -e "$PIN" ] || fail "$PIN still exists: $(ls "$PIN")"
	# Programs, links and maps are freed once unreferenced (maps a little later).
	local left
	for _ in $(seq 50); do
		left=""
		for obj in $ids; do
			bpftool "${obj%%:*}" show id "${obj#*:}" >/dev/null 2>&1 && left+=" $obj"
		done
		[ -z "$left" ] && break
		sleep 0.1
	done
	[ -z "$left" ] || fail "still present after uninstall:$left"
	for cg in workload proxy; do
		[ -z "$(bpftool cgroup show "$CG/$cg")" ] || fail "cgroup $cg still has programs: $(bpftool cgroup show "$CG/$cg")"
	done
	log "ok: no Sluice prog/link/map/pin left (checked ids:$ids)"
	expect_direct 203.0.113.10 8080
	"$AGENT" uninstall --pin-dir "$PIN" >>"$TMP/agent.log" 2>&1 || fail "second uninstall should succeed"
}

case_node_placement() {
	start_real_servers
	# The proxy runs on the "node" and listens on the node's veth addresses.
	start standin proxy "$NS_N" standin --listen 198.51.100.1:15001 --listen '[2001:db8:1::1]:15001' \
		--log "$TMP/standin.log"
	agent_once --proxy-ipv4 198.51.100.1 --proxy-ipv6 2001:db8:1::1
	expect_redirected 203.0.113.10 8080
	expect_redirected 2001:db8:2::10 8080
	expect_redirected ::ffff:203.0.113.10 8080
	expect_direct 203.0.113.200 8080
	local body
	body=$(in_cg_ns workload "$NS_W" curl -sS --max-time 5 http://203.0.113.10:8080/) || fail "curl failed"
	[ "$body" = "real-server 203.0.113.10:8080" ] || fail "curl got: $body"
	grep -q "RELAY peer=198.51.100.2:[0-9]* orig=203.0.113.10:8080" "$TMP/standin.log" ||
		fail "curl did not go through the node's stand-in"
	log "ok: curl relayed by the node-placed proxy"
	local out
	out=$(probe workload "$NS_W" 198.51.100.1 15001)
	[ "$out" = "MISS 2" ] || fail "direct connection to the node proxy got: $out"
	log "ok: direct connection to the node proxy refused"
}

case_config_watch() {
	start_real_servers
	start_sidecar_standin
	"$AGENT" --pin-dir "$PIN" --cgroup "$CG/workload" --cgroup "$CG/proxy" --poll-interval-ms 200 \
		--config "$TMP/values.yaml" >>"$TMP/agent.log" 2>&1 &
	KT_PIDS+=($!)
	for _ in $(seq 100); do [ -e "$PIN/link_$(stat -c %i "$CG/proxy")_sluice_getsockopt" ] && break; sleep 0.05; done
	expect_redirected 203.0.113.10 8080
	# Exclude the address; keep the rest. Edited in place, as on a VM.
	sed -i 's|excludeIPRanges: "|excludeIPRanges: "203.0.113.10/32,|' "$TMP/values.yaml"
	local out=""
	for _ in $(seq 50); do
		out=$(probe workload "$NS_W" 203.0.113.10 8080)
		case "$out" in "REAL "*) break ;; esac
		sleep 0.1
	done
	case "$out" in "REAL "*) log "ok: after the edit 203.0.113.10 goes direct" ;; *) cat "$TMP/agent.log" >&2; fail "config change not applied: $out" ;; esac
	expect_redirected 203.0.113.11 8080
	# A broken file keeps the last good rules.
	echo 'global: { proxy: { includeIPRanges: "not-a-cidr" } }' >"$TMP/values.yaml"
	sleep 1
	expect_redirected 203.0.113.11 8080
	expect_direct 203.0.113.10 8080
	grep -q "keep the last good" "$TMP/agent.log" || fail "bad config not reported"
	log "ok: a bad config is reported and the last good rules stay"
}

case "$CASE" in
redirect) case_redirect ;;
passthrough) case_passthrough ;;
own-traffic) case_own_traffic ;;
concurrent) case_concurrent ;;
direct-to-proxy) case_direct_to_proxy ;;
foreign-program) case_foreign_program ;;
restart) case_restart ;;
uninstall) case_uninstall ;;
node-placement) case_node_placement ;;
config-watch) case_config_watch ;;
startup-checks) case_startup_checks ;;
*) fail "unknown case $CASE" ;;
esac
log "PASS"
