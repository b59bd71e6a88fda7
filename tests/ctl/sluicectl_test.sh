#!/usr/bin/env bash
# sluicectl's contract as a user meets it: exit codes, file:line in messages,
# JSON output, --set, and istioctl-style analysis lines.
set -uo pipefail
ctl=${1:?usage: sluicectl_test.sh PATH_TO_SLUICECTL}
root=${SLUICE_SOURCE_ROOT:?}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
