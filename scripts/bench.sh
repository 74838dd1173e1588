#!/usr/bin/env bash
# End-to-end benchmark: builds the server, runs it on loopback and drives it
# with real SSH clients (scripts/load), in one go so the figures compare.
#
#   scripts/bench.sh [OUTDIR]
#
# Phases, each against a fresh server process:
#   1. 1000 clients connect (handshakes/s, idle RSS per session), then 20 of
#      them send 1 message/s for 30s (delivery latency, loss).
#   2. 500 clients, 50 senders at 20 messages/s each for 10s (throughput).
# Results (JSON and the human summaries) go to OUTDIR, default a temp dir.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/sshchat-bench.XXXX)}
mkdir -p "$out"
addr=127.0.0.1:2399

go build -o "$out/sshchat" .
go build -o "$out/load" ./scripts/load
"$out/load" -keys-dir "$out" -n 1000 -write-keys >/dev/null

serve() {
	# Limits that protect a public server would stop a load test from one IP.
	"$out/sshchat" -addr "$addr" -keys "$out/allowed_keys" -host-key "$out/host_ed25519" \
		-rate 0 -max-conns-per-ip 0 -max-sessions-per-user 0 >"$out/server-$1.log" 2>&1 &
	pid=$!
	# Wait for the listener rather than guessing how long start-up takes.
	for _ in $(seq 100); do
		grep -q msg=listening "$out/server-$1.log" && return
		sleep 0.05
	done
	echo "server did not start; see $out/server-$1.log" >&2
	exit 1
}

stop() {
	kill "$pid"
	wait "$pid" || true
}

serve latency
"$out/load" -addr "$addr" -keys-dir "$out" -pid "$pid" -n 1000 -senders 20 -rate 1 -duration 30s \
	-json "$out/latency.json" | tee "$out/latency.txt"
stop

serve throughput
"$out/load" -addr "$addr" -keys-dir "$out" -pid "$pid" -n 500 -senders 50 -rate 20 -duration 10s \
	-json "$out/throughput.json" | tee "$out/throughput.txt"
stop

echo "results in $out"
