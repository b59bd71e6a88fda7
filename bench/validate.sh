#!/usr/bin/env bash
# How long `sluicectl validate` and `analyze` take on a directory of N
# resources (default 1,000: ServiceEntries, DestinationRules, VirtualServices
# and Gateways in equal parts, cross-referencing each other so that analysis
# has real work). Prints the best and median of R runs.
#
#   bench/validate.sh [N] [R]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}; runs=${2:-7}
ctl=build/ctl/sluicectl
[ -x "$ctl" ] || { echo "build first: scripts/setup" >&2; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT

groups=$((n / 4))
for i in $(seq 1 "$groups"); do
  f="$dir/svc-$((i % 50)).yaml"   # 50 files, multi-document each
  cat >> "$f" <<YAML
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata:
  name: ext-$i
  namespace: bench
spec:
  hosts: [api-$i.example.com]
  ports:
  - {number: 80, name: http, protocol: HTTP}
  - {number: 443, name: https, protocol: HTTPS}
  resolution: DNS
---
apiVersion: networking.istio.io/v1beta1
kind: Gateway
metadata:
  name: gw-$i
  namespace: bench
spec:
  selector: {istio: egressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: [api-$i.example.com]
    tls: {mode: PASSTHROUGH}
---
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: dr-$i
  namespace: bench
spec:
  host: api-$i.example.com
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    connectionPool: {tcp: {maxConnections: 100, connectTimeout: 5s}}
  subsets:
  - name: v1
    labels: {version: v1}
---
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: vs-$i
  namespace: bench
spec:
  hosts: [api-$i.example.com]
  gateways: [mesh, gw-$i]
  http:
  - match:
    - uri: {prefix: /v1}
      gateways: [mesh]
    route:
    - destination: {host: api-$i.example.com, subset: v1, port: {number: 80}}
      weight: 90
    - destination: {host: api-$i.example.com, port: {number: 80}}
      weight: 10
    timeout: 5s
  tls:
  - match:
    - sniHosts: [api-$i.example.com]
      gateways: [gw-$i]
      port: 443
    route:
    - destination: {host: api-$i.example.com, port: {number: 443}}
YAML
done

measure() {  # measure COMMAND: prints best and median wall time in ms
  local times=()
  for _ in $(seq 1 "$runs"); do
    local s e
    s=$(date +%s%N); "$@" >/dev/null; e=$(date +%s%N)
    times+=($(( (e - s) / 1000000 )))
  done
  printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {printf "best %d ms, median %d ms\n", a[1], a[int((NR+1)/2)]}'
}

count=$($ctl validate -o json "$dir" | python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["resources"], j["errors"], j["warnings"])')
echo "resources errors warnings: $count (in $(ls "$dir" | wc -l) files)"
echo "sluicectl validate: $(measure "$ctl" validate "$dir")"
echo "sluicectl analyze:  $(measure "$ctl" analyze "$dir")"
