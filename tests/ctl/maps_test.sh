#!/usr/bin/env bash
# `sluicectl maps` against the maps a real sluice-agent pinned: the agent
# installs (--once) into a test cgroup under a test pin directory with known
# install options; maps must print exactly those ranges, ports and proxy
# settings, and the counters a few connect() calls from the test cgroup (in a
# test network namespace, nothing leaves it) must show up summed. Then the
# error paths: no pin directory, not root, a pin directory without the maps,
# bad flags. Needs root; outside CI it skips (77) without, under CI=true it
# fails. Everything is removed by the EXIT trap (tests/kernel/lib.sh).
set -uo pipefail
CTL=${1:?usage: maps_test.sh PATH_TO_SLUICECTL}
AGENT=${SLUICE_AGENT:?SLUICE_AGENT: path of sluice-agent}
TEST_NAME=ctl-maps
# shellcheck source=../kernel/lib.sh
. "${SLUICE_SOURCE_ROOT:?}/tests/kernel/lib.sh"

PY=${SLUICE_PYTHON:-python3}
kt_init "$PY"
[ -x "$AGENT" ] || fail "agent not built: $AGENT"
[ -x "$CTL" ] || fail "sluicectl not built: $CTL"

kt_cgroups workload
NS="sluice-ctlmaps-$$"
kt_netns "$NS"
PIN="/sys/fs/bpf/sluice-test-ctl-$$"
KT_PIN=$PIN
KT_AGENT=$AGENT

# Includes mix families and an IPv4-mapped range (stored in the v4 trie).
cat >"$TMP/values.yaml" <<'YAML'
global:
  proxy:
    includeIPRanges: "203.0.113.0/24,2001:db8:2::/48,::ffff:198.51.100.0/120"
    excludeIPRanges: "203.0.113.128/25,2001:db8:2:ff::/64"
    includeOutboundPorts: "7070,7071"
    excludeOutboundPorts: "9090"
YAML
KT_LOGS+=("$TMP/agent.log" "$TMP/maps.txt" "$TMP/maps.json")
"$AGENT" --once --pin-dir "$PIN" --cgroup "$KT_CG/workload" --config "$TMP/values.yaml" \
	--proxy-port 15006 --mark 0x1234 --gid none >"$TMP/agent.log" 2>&1 || fail "agent --once failed"

# Connections from the test cgroup: two to loopback (refused, nothing
# listens on port 1), one to an excluded range (no route in the namespace:
# the connect hook runs before routing, so it is counted and nothing is sent).
for _ in 1 2; do
	in_cg_ns workload "$NS" bash -c 'exec 3<>/dev/tcp/127.0.0.1/1' 2>/dev/null
done
in_cg_ns workload "$NS" bash -c 'exec 3<>/dev/tcp/203.0.113.200/80' 2>/dev/null

"$CTL" maps --pin-dir "$PIN" >"$TMP/maps.txt" 2>&1
rc=$?
[ "$rc" = 0 ] || fail "maps exited $rc"
for line in \
	"pin dir: $PIN" \
	"  enabled:     yes" \
	"  proxy IPv4:  127.0.0.1:15006" \
	"  proxy IPv6:  [::1]:15006" \
	"  mark:        0x1234 (4660)" \
	"  uid:         1337" \
	"  gid:         none" \
	"include ranges (sluice_incl_v4, sluice_incl_v6): 3" \
	"exclude ranges (sluice_excl_v4, sluice_excl_v6): 2" \
	"include ports (sluice_incl_pt): 2" \
	"exclude ports (sluice_excl_pt): 1"; do
	grep -qxF -- "$line" "$TMP/maps.txt" || fail "text output lacks the line '$line'"
done
log "ok: text output"

"$CTL" maps --pin-dir "$PIN" -o json >"$TMP/maps.json" || fail "maps -o json exited $?"
"$PY" - "$TMP/maps.json" <<'PYEOF' || fail "JSON output differs from the configuration"
import json, sys
j = json.load(open(sys.argv[1]))
def check(what, got, want):
    if got != want:
        sys.exit(f"{what}: got {got!r}, want {want!r}")
def entries(field, values):
    return [{field: v, "index": i} for i, v in enumerate(values)]
check("include_ranges", j["include_ranges"],
      entries("cidr", ["203.0.113.0/24", "2001:db8:2::/48", "198.51.100.0/24"]))
check("exclude_ranges", j["exclude_ranges"],
      entries("cidr", ["203.0.113.128/25", "2001:db8:2:ff::/64"]))
check("include_ports", j["include_ports"], entries("port", [7070, 7071]))
check("exclude_ports", j["exclude_ports"], entries("port", [9090]))
c = j["config"]
for k, v in {"enabled": True, "proxy_ipv4": "127.0.0.1", "proxy_port4": 15006, "proxy_ipv6": "::1",
             "proxy_port6": 15006, "mark": 0x1234, "uid": 1337, "gid": None,
             "include_all_ports": False, "exclude_all_ports": False, "socket_redirect": False,
             "socket_redirect_queue_limit": None}.items():
    check("config." + k, c[k], v)
names = ["intercepted", "excluded_port", "own_traffic", "loopback", "excluded_range", "not_included",
         "origdst_answered", "origdst_miss", "proxy_address", "no_proxy_family", "record_failed",
         "tuple_failed", "sock_added", "sock_add_failed", "sock_shortcut", "sock_tcp_path",
         "msg_redirected", "sock_queue_full"]
check("counter names", list(j["counters"]), names)
want = dict.fromkeys(names, 0)
want.update(loopback=2, excluded_range=1)
check("counters", j["counters"], want)
check("errors", j["errors"], [])
PYEOF
log "ok: JSON output matches the configuration and the connections made"

# Error paths: each exits 1 and says why.
out=$("$CTL" maps --pin-dir "$PIN-missing" 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "missing pin dir: exit $rc, want 1"
grep -q "does not exist" <<<"$out" || fail "missing pin dir: no reason: $out"
mkdir "$TMP/empty-pins"
out=$("$CTL" maps --pin-dir "$TMP/empty-pins" 2>&1)
rc=$?
[ "$rc" = 1 ] || fail "pin dir without maps: exit $rc, want 1"
grep -q "error: sluice_config: bpf_obj_get" <<<"$out" || fail "pin dir without maps: no reason: $out"
if command -v setpriv >/dev/null; then
	out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$CTL" maps --pin-dir "$PIN" 2>&1)
	rc=$?
	[ "$rc" = 1 ] || fail "as nobody: exit $rc, want 1"
	grep -q "run as root" <<<"$out" || fail "as nobody: no reason: $out"
fi
"$CTL" maps --pin-dir "$PIN" -o yaml >/dev/null 2>&1
rc=$?
[ "$rc" = 2 ] || fail "bad -o: exit $rc, want 2"
log "ok: error paths (exit 1 with the reason, usage 2)"

"$AGENT" uninstall --pin-dir "$PIN" >>"$TMP/agent.log" 2>&1 || fail "uninstall failed"
[ ! -e "$PIN" ] || fail "uninstall left $PIN"
log "PASS"
