#!/usr/bin/env bash
# Cluster benchmark (issue 14): the same load on one sshchat node and on
# three nodes linked through NATS (scripts/cluster: an embedded NATS server
# with JetStream and three nodes), with real SSH clients from scripts/load
# spread over the nodes round-robin, so that two deliveries in three cross
# NATS. Prints both summaries; the cluster's has the cross-node latency.
#
#   scripts/bench-cluster.sh [OUTDIR]           # 3 × 500 clients, 20 senders × 1 msg/s, 30 s
#   CLIENTS=300 DURATION=10s scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/sshchat-cluster-bench.XXXX)}
mkdir -p "$out"
clients=${CLIENTS:-1500}
senders=${SENDERS:-20}
duration=${DURATION:-30s}
port=2401
# Limits that protect a public server would stop a load test from one IP.
limits=(-rate 0 -max-conns 0 -max-conns-per-ip 0 -max-sessions-per-user 0)

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
go build -o "$out/sshchat" .
go build -o "$out/load" ./scripts/load
go build -o "$out/cluster-demo" ./scripts/cluster
"$out/load" -keys-dir "$out" -n "$clients" -write-keys >/dev/null

load() {
	local name=$1 addrs=$2
	shift 2
	echo "bench: $name" >&2
	"$out/load" -addr "$addrs" -keys-dir "$out" -n "$clients" -senders "$senders" -rate 1 \
		-duration "$duration" -drain 10s "$@" -json "$out/$name.json" >"$out/$name.txt" 2>"$out/$name.log" ||
		echo "bench: $name: the load tool failed; see $out/$name.txt and $out/$name.log" >&2
}

# wait_for FILE PATTERN: until a line of FILE matches, or 20 s.
wait_for() {
	for _ in $(seq 400); do
		grep -q "$2" "$1" 2>/dev/null && return
		sleep 0.05
	done
	echo "bench: no '$2' in $1" >&2
	exit 1
}

# One node, no NATS.
"$out/sshchat" -addr "127.0.0.1:$port" -keys "$out/allowed_keys" -host-key "$out/host_ed25519" \
	-data "$out/data-one" -ops "$out/ops" "${limits[@]}" >"$out/server-one.log" 2>&1 &
pid=$!
wait_for "$out/server-one.log" msg=listening
load one-node "127.0.0.1:$port" -pid "$pid"
kill "$pid"
wait "$pid" || true

# Three nodes and NATS.
"$out/cluster-demo" -dir "$out/cluster" -keys "$out/allowed_keys" -port "$port" -nats-port 4299 \
	-- "${limits[@]}" >"$out/cluster.txt" 2>&1 &
cluster=$!
wait_for "$out/cluster.txt" "^node3: ssh"
for n in 1 2 3; do
	wait_for "$out/cluster/node$n.log" msg=listening
done
load three-nodes "127.0.0.1:$port,127.0.0.1:$((port + 1)),127.0.0.1:$((port + 2))"
kill -INT "$cluster"
wait "$cluster" || true

for name in one-node three-nodes; do
	echo "== $name"
	cat "$out/$name.txt"
done
echo "Reports, summaries and logs: $out"
