#!/usr/bin/env bash
# sluicectl's contract as a user meets it: exit codes, file:line in messages,
# JSON output, --set, istioctl-style analysis lines, explain over the
# walkthrough and its variants, config dump, and status with nothing running
# and against a fake admin endpoint.
set -uo pipefail
ctl=${1:?usage: sluicectl_test.sh PATH_TO_SLUICECTL}
root=${SLUICE_SOURCE_ROOT:?}
tmp=$(mktemp -d)
admin_pid=""
cleanup() {
  if [ -n "$admin_pid" ]; then kill "$admin_pid" 2>/dev/null; wait "$admin_pid" 2>/dev/null; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0; fail=0
check() {  # check NAME CONDITION-COMMAND...
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL: $name"; fi
}

# 1. Shipped configs are clean.
out=$("$ctl" validate "$root/configs/walkthrough"); rc=$?
check "validate walkthrough exits 0" test $rc -eq 0
check "validate walkthrough says clean" grep -q "No validation issues found when validating" <<<"$out"
"$ctl" analyze "$root/configs/default" >/dev/null; check "analyze default exits 0" test $? -eq 0

# 2. A per-resource error: exit 1, file:line:column, resource and Istio's message.
cat > "$tmp/bad-vs.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: weights
  namespace: shop
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 0
    - destination:
        host: reviews
        subset: v2
      weight: 0
YAML
out=$("$ctl" validate "$tmp/bad-vs.yaml"); rc=$?
check "invalid resource exits 1" test $rc -eq 1
check "invalid resource message" grep -q "bad-vs.yaml:10:[0-9]*: error: VirtualService shop/weights: .*total destination weight = 0" <<<"$out"

# 3. Malformed YAML: one error with file:line, exit 1.
printf 'apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata:\n  name: x\nspec:\n  hosts: [a, b\n' > "$tmp/truncated.yaml"
out=$("$ctl" validate "$tmp/truncated.yaml"); rc=$?
check "malformed yaml exits 1" test $rc -eq 1
check "malformed yaml names file:line" grep -q "truncated.yaml:[0-9]*:[0-9]*: error:" <<<"$out"

# 4. Analysis: the walkthrough's VirtualService without its Gateway.
out=$("$ctl" analyze "$root/configs/walkthrough/virtualservice-cnn.yaml" "$root/configs/walkthrough/serviceentry-cnn.yaml"); rc=$?
check "analysis finding exits 1" test $rc -eq 1
check "IST0101 gateway line" grep -q 'Error \[IST0101\] (VirtualService default/direct-cnn-through-egress-gateway .*virtualservice-cnn.yaml:[0-9]*) Referenced gateway not found: "istio-egressgateway"' <<<"$out"
# validate alone does not do cross-resource analysis.
"$ctl" validate "$root/configs/walkthrough/virtualservice-cnn.yaml" >/dev/null; check "validate ignores cross refs" test $? -eq 0

# 5. JSON output.
"$ctl" analyze -o json "$root/configs/walkthrough/virtualservice-cnn.yaml" > "$tmp/out.json"; rc=$?
check "json exits 1 with findings" test $rc -eq 1
check "json parses and has IST0101" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
m=[x for x in j["messages"] if x.get("code")=="IST0101"]
assert j["errors"]>=1 and m and m[0]["origin"]["name"]=="direct-cnn-through-egress-gateway" and m[0]["line"]>0, j
' "$tmp/out.json"

# 6. --set install options are validated too.
out=$("$ctl" validate --set 'values.global.proxy.includeIPRanges=10.244.0.0/16\,10.240.0.0/16' "$root/configs/default"); rc=$?
check "--set valid ranges exit 0" test $rc -eq 0
out=$("$ctl" validate --set 'values.global.proxy.includeIPRanges=10.244.0.0/33' "$root/configs/default"); rc=$?
check "--set invalid range exits 1" test $rc -eq 1
check "--set invalid range message" grep -q '10.244.0.0/33' <<<"$out"

# 7. Warnings: exit 0 by default, 1 with --fail-threshold Warning.
cat > "$tmp/unknown-field.yaml" <<'YAML'
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata:
  name: unknown
spec:
  hosts: [api.example.com]
  colour: blue
  ports:
  - {number: 443, name: tls, protocol: TLS}
  resolution: DNS
YAML
out=$("$ctl" validate "$tmp/unknown-field.yaml"); rc=$?
check "warning alone exits 0" test $rc -eq 0
check "warning names the field" grep -q 'unknown-field.yaml:7:[0-9]*: warning: .*colour' <<<"$out"
"$ctl" validate --fail-threshold Warning "$tmp/unknown-field.yaml" >/dev/null; check "fail-threshold Warning exits 1" test $? -eq 1

# 8. Usage errors exit 2; --help works.
"$ctl" >/dev/null 2>&1; check "no subcommand exits 2" test $? -eq 2
"$ctl" validate >/dev/null 2>&1; check "no path exits 2" test $? -eq 2
"$ctl" --help | grep -q "analyze"; check "--help lists analyze" test $? -eq 0
"$ctl" validate "$tmp/does-not-exist.yaml" > "$tmp/missing.txt"; rc=$?
check "missing file exits 1" test $rc -eq 1
check "missing file named" grep -q "does-not-exist.yaml" "$tmp/missing.txt"

# 9. explain: the walkthrough, step by step.
W=$root/configs/walkthrough
RO=$root/configs/mesh/istio-configmap-registry-only.yaml
out=$("$ctl" explain 151.101.1.67:80 --host example.com "$root/configs/default"); rc=$?
check "explain ALLOW_ANY unknown host exits 0" test $rc -eq 0
check "explain ALLOW_ANY unknown host -> PassthroughCluster" grep -q '^=> forward to cluster PassthroughCluster (route allow_any)' <<<"$out"
check "explain numbers its steps" grep -q '^  1\. \[interception\] cgroup/connect4 intercepts' <<<"$out"
check "explain names the declaring ServiceEntry" grep -q "\[traffic\] the registry declares port 80 HTTP (default/cnn (.*serviceentry-cnn.yaml:4)" <<<"$out"

out=$("$ctl" explain 151.101.1.67:80 --host example.com "$root/configs/default" "$RO"); rc=$?
check "explain REGISTRY_ONLY unknown HTTP exits 3" test $rc -eq 3
check "explain REGISTRY_ONLY unknown HTTP -> 502 block_all" grep -q '^=> local reply 502 (route block_all)' <<<"$out"

out=$("$ctl" explain 151.101.1.67:443 --sni example.com "$root/configs/default" "$RO"); rc=$?
check "explain REGISTRY_ONLY unknown SNI exits 3" test $rc -eq 3
check "explain REGISTRY_ONLY unknown SNI -> closed UH" grep -q '^=> closed (BlackHoleCluster) (flag UH)' <<<"$out"

out=$("$ctl" explain 151.101.1.67:80 --host edition.cnn.com "$root/configs/default" "$RO"); rc=$?
check "explain ServiceEntry cnn exits 0" test $rc -eq 0
check "explain ServiceEntry cnn -> its cluster" grep -q '^=> forward to cluster outbound|80||edition.cnn.com$' <<<"$out"
check "explain shows the DNS name unresolved" grep -q 'DNS name edition.cnn.com:80 - resolved by the proxy when the connection arrives (not resolved here)' <<<"$out"

# The walkthrough intercepts only 10.244/16 and 10.240/16 (install-options.yaml).
out=$("$ctl" explain 203.0.113.10:80 --host edition.cnn.com "$W"); rc=$?
check "explain includeIPRanges: not intercepted exits 0" test $rc -eq 0
check "explain includeIPRanges: not intercepted, direct" grep -q 'does not intercept the connection, rule not-included.*goes directly to 203.0.113.10:80' <<<"$out"
check "explain includeIPRanges: stops after the kernel" test "$(grep -c '^ *[0-9]*\. \[' <<<"$out")" -eq 1
out=$("$ctl" explain 10.244.3.7:80 --host edition.cnn.com "$W" "$RO"); rc=$?
check "explain VirtualService+DR exits 0" test $rc -eq 0
check "explain VirtualService+DR -> egress gateway subset" grep -q '^=> forward to cluster outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local, TLS ISTIO_MUTUAL SNI edition.cnn.com$' <<<"$out"
check "explain names the rule that intercepted" grep -q 'rule included-range: .*(includeIPRanges\[0\] "10.244.0.0/16")' <<<"$out"
check "explain expected peer identity" grep -q 'server identity spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account' <<<"$out"
# --set overrides the files, as for validate.
out=$("$ctl" explain 151.101.1.67:80 --host edition.cnn.com "$W" --set 'values.global.proxy.includeIPRanges=*'); rc=$?
check "explain --set includeIPRanges=* intercepts" grep -q 'includeIPRanges\[0\] "\*"' <<<"$out"

out=$("$ctl" explain 10.0.0.7:80 --role gateway --sni edition.cnn.com "$W"); rc=$?
check "explain gateway port 80 exits 0" test $rc -eq 0
check "explain gateway port 80 -> edition.cnn.com" grep -q '^=> forward to cluster outbound|80||edition.cnn.com$' <<<"$out"
check "explain gateway names the server" grep -q 'selects default/istio-egressgateway server 0 (80/HTTPS), which terminates TLS MUTUAL' <<<"$out"
out=$("$ctl" explain 10.0.0.7:443 --role gateway --sni edition.cnn.com "$W"); rc=$?
check "explain gateway without a server on the port exits 3" test $rc -eq 3
check "explain gateway without a server on the port: refused" grep -q '^=> refused' <<<"$out"

# 10. explain: the variants (variant|arguments|expected outcome line).
V=$root/configs/variants
while IFS='|' read -r name args want; do
  # shellcheck disable=SC2086 # $args is several words on purpose
  out=$("$ctl" explain $args "$V/$name"); rc=$?
  check "explain $name ($args) exits 0" test $rc -eq 0
  check "explain $name ($args) -> $want" grep -qxF "=> forward to cluster $want" <<<"$out"
done <<'VARIANTS'
tls-origination-gateway|151.101.1.67:80 --host edition.cnn.com|outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local, TLS ISTIO_MUTUAL SNI edition.cnn.com
tls-origination-gateway|10.0.0.7:80 --role gateway --sni edition.cnn.com|outbound|443||edition.cnn.com, TLS SIMPLE SNI edition.cnn.com
tls-origination-sidecar|151.101.1.67:80 --host edition.cnn.com|outbound|80||edition.cnn.com, TLS SIMPLE SNI edition.cnn.com
tls-passthrough-gateway|151.101.1.67:443 --sni edition.cnn.com|outbound|443|cnn|istio-egressgateway.istio-system.svc.cluster.local
tls-passthrough-gateway|10.0.0.7:443 --role gateway --sni edition.cnn.com|outbound|443||edition.cnn.com
wildcard-hosts|91.198.174.192:443 --sni en.wikipedia.org|outbound|443|wikipedia|istio-egressgateway.istio-system.svc.cluster.local
wildcard-hosts|10.0.0.7:443 --role gateway --sni en.wikipedia.org|outbound|443||www.wikipedia.org
VARIANTS

# 11. explain -o json: the same content for machines.
"$ctl" explain -o json 10.244.3.7:80 --host edition.cnn.com --header x-user=alice "$W" > "$tmp/explain.json"; rc=$?
check "explain json exits 0" test $rc -eq 0
check "explain json content" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["exit_code"]==0 and j["outcome"]["result"]=="forward", j["outcome"]
assert j["interception"]["intercepted"] and j["interception"]["rule"]=="included-range"
assert j["traffic"]["type"]=="HTTP" and j["traffic"]["declared_protocol"]=="HTTP"
f=j["plan"]["forward"]
assert j["plan"]["cluster"]=="outbound|80|cnn|istio-egressgateway.istio-system.svc.cluster.local"
assert f["tls_mode"]=="ISTIO_MUTUAL" and f["sni"]=="edition.cnn.com"
assert f["expected_sans"]==["spiffe://cluster.local/ns/istio-system/sa/istio-egressgateway-service-account"]
assert f["upstream"]["kind"]=="DNS" and f["upstream"]["endpoints"][0]["resolved"] is False
assert f["policy"]["destination_rule"]["name"]=="default/egressgateway-for-cnn" and f["policy"]["destination_rule"]["line"]>0
assert [s["stage"] for s in j["steps"]][:2]==["interception","traffic"]
assert j["request"]["headers"]==[{"name":"x-user","value":"alice"}]
' "$tmp/explain.json"
"$ctl" explain -o json 151.101.1.67:443 --sni example.com "$root/configs/default" "$RO" > "$tmp/blocked.json"; rc=$?
check "explain json blocked exits 3" test $rc -eq 3
check "explain json blocked content" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["exit_code"]==3 and j["outcome"]["result"]=="closed" and j["outcome"]["response_flags"]=="UH", j["outcome"]
' "$tmp/blocked.json"

# 12. explain: usage and configuration errors exit 2.
"$ctl" explain edition.cnn.com:80 "$W" >/dev/null 2>"$tmp/err.txt"; rc=$?
check "explain DEST must be an IP exits 2" test $rc -eq 2
check "explain DEST message" grep -q 'is not an IP address' "$tmp/err.txt"
"$ctl" explain 10.0.0.1:80 >/dev/null 2>&1; check "explain without paths exits 2" test $? -eq 2
"$ctl" explain 10.0.0.1:80 --label nolabel "$W" >/dev/null 2>&1; check "explain --label needs KEY=VALUE exits 2" test $? -eq 2

# 12b. explain applies the Sidecar resource of the workload's namespace:
# REGISTRY_ONLY over the mesh's ALLOW_ANY, and egress hosts that leave the
# cnn ServiceEntry out (so it is unknown, and blocked), per --namespace.
mkdir -p "$tmp/scoped"
cp "$root/configs/walkthrough/serviceentry-cnn.yaml" "$tmp/scoped/"
cat > "$tmp/scoped/sidecar.yaml" <<'YAML'
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: locked, namespace: shop}
spec:
  egress:
  - hosts: ["istio-system/*"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
YAML
"$ctl" explain 203.0.113.10:80 --host edition.cnn.com --namespace shop "$tmp/scoped" > "$tmp/scoped.txt"; rc=$?
check "explain under a Sidecar: not forwarded" test $rc -ne 0
check "explain names the Sidecar" grep -q 'Sidecar resource (namespace shop): Sidecar shop/locked' "$tmp/scoped.txt"
# No ServiceEntry it sees declares port 80: no HTTP listener, so the
# REGISTRY_ONLY blackhole closes the connection (as Istio's would).
check "explain: REGISTRY_ONLY from the Sidecar blocks the unseen host" grep -q '=> closed (BlackHoleCluster)' "$tmp/scoped.txt"
"$ctl" explain 203.0.113.10:80 --host edition.cnn.com --namespace default "$tmp/scoped" > "$tmp/unscoped.txt"; rc=$?
check "explain in another namespace forwards (exit 0)" test $rc -eq 0
check "explain in another namespace: no Sidecar" grep -q 'no Sidecar applies' "$tmp/unscoped.txt"
"$ctl" config dump --namespace shop "$tmp/scoped" > "$tmp/dump-shop.txt" 2>/dev/null
check "config dump --namespace: the Sidecar's mode" grep -q 'outboundTrafficPolicy.mode: REGISTRY_ONLY (from the Sidecar shop/locked' "$tmp/dump-shop.txt"
check "config dump --namespace: cnn not imported" grep -q '^ServiceEntry (0)' "$tmp/dump-shop.txt"
"$ctl" config dump "$tmp/scoped" > "$tmp/dump-all.txt" 2>/dev/null
check "config dump lists the Sidecar" grep -q 'egress (other ports) istio-system/\*; outboundTrafficPolicy REGISTRY_ONLY' "$tmp/dump-all.txt"
"$ctl" explain 10.0.0.1:80 --host 'a b' "$W" >/dev/null 2>&1; check "explain bad --host exits 2" test $? -eq 2
"$ctl" explain 10.0.0.1:80 --path nope "$W" >/dev/null 2>&1; check "explain bad --path exits 2" test $? -eq 2
"$ctl" explain 10.0.0.1:80 --role egress "$W" >/dev/null 2>&1; check "explain bad --role exits 2" test $? -eq 2
"$ctl" explain 10.0.0.1:80 --host x "$tmp/bad-vs.yaml" >/dev/null 2>"$tmp/err.txt"; rc=$?
check "explain config with errors exits 2" test $rc -eq 2
check "explain config errors on stderr" grep -q "bad-vs.yaml:10:[0-9]*: error:" "$tmp/err.txt"
"$ctl" explain --help > "$tmp/help.txt"; rc=$?
check "explain --help exits 0" test $rc -eq 0
check "explain --help documents exit codes" grep -q '3 it does not (local reply, closed, refused)' "$tmp/help.txt"

# 13. config dump.
out=$("$ctl" config dump "$W" "$RO"); rc=$?
check "config dump exits 0" test $rc -eq 0
check "config dump mode and its source" grep -q 'outboundTrafficPolicy.mode: REGISTRY_ONLY (from the mesh config .*istio-configmap-registry-only.yaml:[0-9]*)' <<<"$out"
check "config dump compiled rules" grep -q '6. included ranges -> proxy: 10.244.0.0/16 (includeIPRanges\[0\]), 10.240.0.0/16 (includeIPRanges\[1\])' <<<"$out"
check "config dump resources with file:line" grep -q 'default/cnn  .*serviceentry-cnn.yaml:4' <<<"$out"
check "config dump gateway servers" grep -q 'port 80: default/istio-egressgateway server 0 (80/HTTPS) TLS-terminate hosts edition.cnn.com TLS MUTUAL' <<<"$out"
"$ctl" config dump -o json --label istio=ingressgateway "$W" > "$tmp/dump.json"; rc=$?
check "config dump json exits 0" test $rc -eq 0
check "config dump json content" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["mesh"]["outbound_traffic_policy"]=={"mode":"ALLOW_ANY","source":"built-in default"}, j["mesh"]
assert j["install"]["include_ip_ranges"]==["10.244.0.0/16","10.240.0.0/16"]
assert [r["cidr"] for r in j["interception"]["include_ranges"]]==["10.244.0.0/16","10.240.0.0/16"]
assert j["interception"]["own_sockets"]=={"mark":"0x539","uid":1337,"gid":1337}
se=j["resources"]["ServiceEntry"][0]
assert se["name"]=="default/cnn" and se["file"].endswith("serviceentry-cnn.yaml") and se["line"]==4, se
assert len(j["resources"]["Gateway"])==1 and j["gateway_servers"]["servers"]==[], j["gateway_servers"]
' "$tmp/dump.json"
"$ctl" config dump "$tmp/bad-vs.yaml" >/dev/null 2>&1; check "config dump with errors exits 2" test $? -eq 2
"$ctl" config >/dev/null 2>&1; check "config without dump exits 2" test $? -eq 2

# 14. status with nothing running: every part says what is missing; exit 1.
free_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
out=$("$ctl" status --admin "http://127.0.0.1:$free_port" --pin-dir "$tmp/no-pins" --certs "$tmp/no-certs"); rc=$?
check "status with nothing running exits 1" test $rc -eq 1
check "status: proxy unavailable" grep -q 'unavailable: connect: Connection refused' <<<"$out"
check "status: no pins" grep -qF "unavailable: $tmp/no-pins does not exist" <<<"$out"
check "status: no certs" grep -qF "unavailable: $tmp/no-certs does not exist" <<<"$out"
"$ctl" status -o json --admin "http://127.0.0.1:$free_port" --pin-dir "$tmp/no-pins" --certs "$tmp/no-certs" > "$tmp/status.json"; rc=$?
check "status json with nothing running exits 1" test $rc -eq 1
check "status json content" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["exit_code"]==1 and j["proxy"]["ready"] is False and "refused" in j["proxy"]["error"], j["proxy"]
assert j["pins"]["error"] and j["certificates"]["error"]
' "$tmp/status.json"
"$ctl" status --admin http://10.1.2.3:15000 >/dev/null 2>&1; check "status non-loopback admin exits 2" test $? -eq 2

# 15. status against a fake admin endpoint (sluice-proxy's /ready and
# /config_dump shapes), on a free loopback port.
cat > "$tmp/fake_admin.py" <<'PY'
import http.server, json, os, sys
port_file, state = sys.argv[1], sys.argv[2]
dump = {"role": "sidecar", "generation": 7,
        "summary": "config generation 7 from /etc/istio/config (1 service entries, outboundTrafficPolicy REGISTRY_ONLY)",
        "source_files": ["/etc/istio/config/mesh", "/etc/sluice/se.yaml"], "outbound_traffic_policy": "REGISTRY_ONLY",
        "service_entries": ["default/cnn"], "virtual_services": [], "destination_rules": [], "gateways": [],
        "gateway_servers": []}
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            code, body, ctype = (200 if state == "LIVE" else 503), state + "\n", "text/plain"
        elif self.path == "/config_dump":
            code, body, ctype = 200, json.dumps(dump), "application/json"
        else:
            code, body, ctype = 404, "not found\n", "text/plain"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
with open(port_file + ".tmp", "w") as f:
    f.write(str(server.server_address[1]))
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
PY
start_admin() {  # start_admin STATE: sets admin_pid and admin_port
  rm -f "$tmp/admin.port"
  python3 "$tmp/fake_admin.py" "$tmp/admin.port" "$1" & admin_pid=$!
  for _ in $(seq 1 200); do [ -s "$tmp/admin.port" ] && break; sleep 0.05; done
  admin_port=$(cat "$tmp/admin.port" 2>/dev/null || echo 0)
}
stop_admin() { kill "$admin_pid" 2>/dev/null; wait "$admin_pid" 2>/dev/null; admin_pid=""; }
start_admin LIVE
out=$("$ctl" status --admin "http://127.0.0.1:$admin_port" --pin-dir "$tmp/no-pins" --certs "$tmp/no-certs"); rc=$?
check "status with a ready proxy exits 0" test $rc -eq 0
check "status: ready" grep -q 'ready: yes (/ready answered 200 LIVE)' <<<"$out"
check "status: generation and mode" grep -q 'role: sidecar; config generation 7; outboundTrafficPolicy REGISTRY_ONLY' <<<"$out"
check "status: source files" grep -q 'source files: /etc/istio/config/mesh, /etc/sluice/se.yaml' <<<"$out"
check "status: resources" grep -q 'ServiceEntry (1): default/cnn' <<<"$out"
"$ctl" status -o json --admin "http://localhost:$admin_port" --pin-dir "$tmp/no-pins" --certs "$tmp/no-certs" > "$tmp/status.json"; rc=$?
check "status json with a ready proxy exits 0" test $rc -eq 0
check "status json carries the config dump" python3 -c '
import json,sys
j=json.load(open(sys.argv[1]))
assert j["proxy"]["ready"] and j["proxy"]["config_dump"]["generation"]==7, j["proxy"]
' "$tmp/status.json"
stop_admin
start_admin DRAINING
out=$("$ctl" status --admin "http://127.0.0.1:$admin_port" --pin-dir "$tmp/no-pins" --certs "$tmp/no-certs"); rc=$?
check "status with a draining proxy exits 1" test $rc -eq 1
check "status: not ready" grep -q 'ready: no (/ready answered 503 DRAINING)' <<<"$out"
stop_admin

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
