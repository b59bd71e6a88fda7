# Shared pieces of the kernel end-to-end tests (sourced, not run).
#
# A test sets TEST_NAME, then calls `kt_init`; everything it creates through
# these helpers (namespaces, the test cgroup, the agent's pin directory,
# background processes, /etc/netns/<ns>/ files, the temp directory) is
# removed by the EXIT trap, whatever the exit path.
#
# Rules these tests keep (shared docs interception.md): BPF programs attach
# only to the cgroup the test creates; addresses and routes exist only inside
# the namespaces the test creates; traffic goes to loopback or to those
# namespaces; processes are ended by pid.

KT_PIDS=()
KT_NAMESPACES=()
KT_LOGS=()   # files whose tails `fail` prints
KT_CG=""
KT_PIN=""
KT_AGENT=""
KT_CLEANUP_HOOKS=()  # functions kt_cleanup runs once the processes are gone

log() { echo "[${TEST_NAME}] $*"; }
fail() {
	echo "[${TEST_NAME}] FAIL: $*" >&2
	local f
	for f in "${KT_LOGS[@]}"; do
		[ -s "$f" ] && { echo "--- ${f#"$TMP"/}" >&2; tail -40 "$f" >&2; }
	done
	exit 1
}
# Outside CI a missing capability skips (77); under CI=true it fails.
skip_or_fail() {
	if [ "${CI:-}" = "true" ]; then
		echo "[${TEST_NAME}] FAIL (CI=true, not skipping): $*" >&2
		exit 1
	fi
	echo "[${TEST_NAME}] SKIP: $*"
	exit 77
}

kt_cleanup() {
	local rc=$? pid ns sub l id hook
	set +e
	for pid in "${KT_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
	for pid in "${KT_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for hook in "${KT_CLEANUP_HOOKS[@]}"; do "$hook"; done
	if [ -n "$KT_PIN" ] && [ -d "$KT_PIN" ]; then
		[ -n "$KT_AGENT" ] && "$KT_AGENT" uninstall --pin-dir "$KT_PIN" >/dev/null 2>&1
		for l in "$KT_PIN"/link_*; do
			[ -e "$l" ] || continue
			id=$(bpftool -j link show pinned "$l" 2>/dev/null |
				"${SLUICE_PYTHON:-python3}" -c 'import json,sys; print(json.load(sys.stdin)["id"])' 2>/dev/null)
			[ -n "$id" ] && bpftool link detach id "$id" 2>/dev/null
		done
		rm -rf "$KT_PIN"
	fi
	if [ -n "$KT_CG" ] && [ -d "$KT_CG" ]; then
		# SIGKILL is asynchronous, and a process started in the background just
		# before the exit may join its cgroup after the first kill: kill again
		# until every sub-cgroup stays empty (up to 2 s), or rmdir fails with
		# EBUSY and the cgroup (and that process) is left behind.
		for _ in $(seq 20); do
			for sub in "$KT_CG"/*/; do
				[ -f "$sub/cgroup.kill" ] && echo 1 >"$sub/cgroup.kill"
			done
			sleep 0.1
			grep -q "populated 1" "$KT_CG"/*/cgroup.events 2>/dev/null || break
		done
		for sub in "$KT_CG"/*/; do rmdir "$sub" 2>/dev/null; done
		rmdir "$KT_CG" 2>/dev/null
	fi
	for ns in "${KT_NAMESPACES[@]}"; do
		ip netns del "$ns" 2>/dev/null
		rm -rf "/etc/netns/$ns"
	done
	[ -n "${TMP:-}" ] && rm -rf "$TMP"
	exit $rc
}

# kt_init: root, tools, cgroup v2, bpffs; sets ID, TMP, CG2 and the traps.
kt_init() {
	ID="k$$"
	TMP=$(mktemp -d "/tmp/sluice-${TEST_NAME}-${ID}.XXXXXX")
	trap kt_cleanup EXIT
	trap 'exit 130' INT TERM
	[ "$(id -u)" = 0 ] || skip_or_fail "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)"
	local tool
	for tool in bpftool ip "$@"; do
		command -v "$tool" >/dev/null || skip_or_fail "$tool not installed"
	done
	CG2=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)
	[ -n "$CG2" ] || skip_or_fail "no cgroup v2 mount"
	if ! grep -q " /sys/fs/bpf bpf " /proc/self/mounts; then
		mount -t bpf bpf /sys/fs/bpf || skip_or_fail "cannot mount bpffs at /sys/fs/bpf"
	fi
}

# kt_netns NAME...: creates namespaces (lo up), removed on exit.
kt_netns() {
	local ns
	for ns in "$@"; do
		ip netns add "$ns" || skip_or_fail "cannot create network namespace $ns"
		KT_NAMESPACES+=("$ns")
		ip netns exec "$ns" ip link set lo up
	done
}

# kt_link NS_A IF_A ADDR_A/LEN NS_B IF_B ADDR_B/LEN: a veth pair between two
# test namespaces.
kt_link() {
	ip netns exec "$1" ip link add "$2" type veth peer name "$5" netns "$4" || fail "veth $2-$5"
	ip netns exec "$1" ip addr add "$3" dev "$2"
	ip netns exec "$1" ip link set "$2" up
	ip netns exec "$4" ip addr add "$6" dev "$5"
	ip netns exec "$4" ip link set "$5" up
}

# kt_hosts NS LINE...: the namespace's /etc/hosts (ip netns exec binds it)
# and a resolv.conf that keeps every lookup on the machine.
kt_hosts() {
	local ns=$1
	shift
	mkdir -p "/etc/netns/$ns"
	{
		printf '127.0.0.1 localhost\n::1 localhost\n'
		printf '%s\n' "$@"
	} >"/etc/netns/$ns/hosts"
	printf 'nameserver 127.0.0.1\n' >"/etc/netns/$ns/resolv.conf"
}

# kt_cgroups SUB...: the test's cgroup with sub-cgroups.
kt_cgroups() {
	KT_CG="$CG2/sluice-test-${ID}"
	local sub
	for sub in "$@"; do mkdir -p "$KT_CG/$sub" || fail "mkdir $KT_CG/$sub"; done
}

# in_cg_ns CGROUP NS CMD...: runs CMD in sub-cgroup CGROUP of the test cgroup
# and namespace NS (cgroup first: `ip netns exec` remounts /sys).
in_cg_ns() {
	local cg=$1 ns=$2
	shift 2
	sh -c 'echo $$ > "$0/cgroup.procs" && exec ip netns exec "$@"' "$KT_CG/$cg" "$ns" "$@"
}

# kt_bg CMD...: starts CMD in the background and records its pid for cleanup.
kt_bg() {
	"$@" &
	KT_PIDS+=($!)
}

# kt_wait_file FILE [TRIES]: waits (50 ms steps) for FILE to exist.
kt_wait_file() {
	local i
	for i in $(seq "${2:-100}"); do
		[ -e "$1" ] && return 0
		sleep 0.05
	done
	return 1
}

# kt_wait_listen NS ADDR:PORT [TRIES]: waits for a TCP listener in NS.
kt_wait_listen() {
	local i
	for i in $(seq "${3:-200}"); do
		[ -n "$(ip netns exec "$1" ss -Hltn "src $2" 2>/dev/null)" ] && return 0
		sleep 0.05
	done
	return 1
}

# kt_listener_pid NS ADDR:PORT: the pid of the process listening there (the
# pid `$!` gives for a backgrounded shell function is the subshell's).
kt_listener_pid() {
	ip netns exec "$1" ss -Hltnp "src $2" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -1
}

# kt_agent ARGS...: starts sluice-agent (pins under a test-only directory) and
# waits until its programs are attached to the first --cgroup's getsockopt.
kt_agent() {
	KT_AGENT=${SLUICE_AGENT:?}
	KT_PIN="/sys/fs/bpf/sluice-test-${ID}"
	"$KT_AGENT" --pin-dir "$KT_PIN" "$@" >>"$TMP/agent.log" 2>&1 &
	KT_AGENT_PID=$!
	KT_PIDS+=($!)
	KT_LOGS+=("$TMP/agent.log")
	local cg
	for cg in "$KT_CG"/*/; do
		cg=${cg%/}
		case " $* " in *" $cg "*) ;; *) continue ;; esac
		local i
		for i in $(seq 100); do
			[ -e "$KT_PIN/link_$(stat -c %i "$cg")_sluice_getsockopt" ] && return 0
			sleep 0.05
		done
		fail "agent did not attach to $cg"
	done
}

# kt_counter INDEX: one entry of the pinned sluice_counters map (enum
# sluice_counter in bpf/sluice_maps.h), summed over CPUs.
kt_counter() {
	bpftool -j map dump pinned "$KT_PIN/sluice_counters" | "${SLUICE_PYTHON:-python3}" -c '
import json, sys
idx = int(sys.argv[1])
for e in json.load(sys.stdin):
    e = e.get("formatted", e)
    if int(e["key"]) == idx:
        print(sum(int(v["value"]) for v in e["values"]))
' "$1"
}

# kt_cpu_ticks PID...: CPU time (user + system, all threads) of the
# processes, summed, in clock ticks (getconf CLK_TCK per second).
kt_cpu_ticks() {
	local p t=0
	for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done
	echo "$t"
}

# kt_children_ticks: the CPU ticks (user + system) of this shell's children
# that ended and were waited for (a benchmark's client: run it in the
# foreground, not in a process substitution, and take the difference).
kt_children_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

# kt_config_flags: the flags word of the pinned sluice_config map (decimal).
kt_config_flags() {
	bpftool -j map dump pinned "$KT_PIN/sluice_config" 2>/dev/null |
		"${SLUICE_PYTHON:-python3}" -c 'import json,sys; print(json.load(sys.stdin)[0]["formatted"]["value"]["flags"])'
}

# kt_agent_restart ARGS...: stops the agent kt_agent started (its pins stay)
# and starts it again with ARGS; waits until the new one has attached
# everything ("watching ..." logged once more) and is still running, and
# the running config's SLUICE_F_SOCKET_REDIRECT is as ARGS ask.
kt_agent_restart() {
	local want=0 i flags watching
	case " $* " in *" --socket-redirect true "*) want=256 ;; esac
	kill "$KT_AGENT_PID" 2>/dev/null
	wait "$KT_AGENT_PID" 2>/dev/null
	watching=$(grep -c "sluice-agent info: watching" "$TMP/agent.log")
	kt_agent "$@"
	for i in $(seq 100); do
		[ "$(grep -c "sluice-agent info: watching" "$TMP/agent.log")" -gt "$watching" ] && break
		sleep 0.05
	done
	kill -0 "$KT_AGENT_PID" 2>/dev/null || fail "the restarted agent exited"
	flags=$(kt_config_flags) || fail "cannot read sluice_config"
	[ $((flags & 256)) = "$want" ] || fail "the restarted agent did not set socket_redirect=$want (flags $flags)"
}

# kt_nginx_conf DIR: the http{} preamble of an nginx config rooted in DIR.
kt_nginx_conf() {
	cat <<NGINX
worker_processes 1;
daemon off;
pid $1/nginx.pid;
error_log $1/error.log;
events { worker_connections 256; }
http {
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
NGINX
}
