#!/usr/bin/env bash
# End-to-end benchmark of the performance targets (issue 16): builds the
# server, runs each scenario against a fresh server process on loopback,
# drives it with real SSH clients (scripts/load) and prints one table of
# the figures, so that they all come from one run.
#
#   scripts/bench.sh [OUTDIR]           # full size: 15 minutes or more
#   QUICK=1 scripts/bench.sh [OUTDIR]   # a small smoke run, about a minute
#   DURATION=60s scripts/bench.sh       # longer sending phases
#
# Scenarios, full size (QUICK=1 size in brackets), senders at 0.9 msg/s:
#   terminal    1000 [100] PTY clients, 20 [5] senders
#   idle-fanout 10000 [500] clients connect, 64 handshakes in flight, and
#               the room goes quiet; then 10 [5] of them send. One run, as
#               connecting 10,000 takes minutes: its connect, quiet and
#               KiB/session columns are the idle figures.
#   line        1000 [100] line-mode clients, 20 [5] senders
#   saturation  500 [50] clients, every one of them sending
# Each scenario's JSON report and summary go to OUTDIR (default a temp
# dir), with the server's log.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-$(mktemp -d /tmp/sshchat-bench.XXXX)}
mkdir -p "$out"
addr=127.0.0.1:2399
rate=0.9
# Further server flags, e.g. SERVER_FLAGS="-metrics 127.0.0.1:9222".
read -r -a SERVER_FLAGS <<<"${SERVER_FLAGS:-}"

if [ "${QUICK:-0}" = 1 ]; then
	duration=${DURATION:-5s}
	terminal=100 terminal_senders=5
	fanout=500 fanout_senders=5
	line=100 line_senders=5
	saturation=50
else
	duration=${DURATION:-30s}
	terminal=1000 terminal_senders=20
	fanout=10000 fanout_senders=10
	line=1000 line_senders=20
	saturation=500
fi

# Every client is a socket in the load tool and another in the server: raise
# the soft limit on open files to the hard limit for both (they inherit it;
# the load tool raises its own too and refuses a run it cannot hold).
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ]; then
	hard=$(cat /proc/sys/fs/nr_open 2>/dev/null || echo 1048576)
fi
ulimit -n "$hard" 2>/dev/null || echo "bench: could not raise ulimit -n to $hard; it stays $(ulimit -n)" >&2
files=$(ulimit -n)
[ "$files" = unlimited ] && files=$hard

go build -o "$out/sshchat" .
go build -o "$out/load" ./scripts/load
"$out/load" -keys-dir "$out" -n "$fanout" -write-keys >/dev/null

serve() {
	# Limits that protect a public server would stop a load test from one IP.
	# Each scenario gets a fresh data directory (history, moderation).
	"$out/sshchat" -addr "$addr" -keys "$out/allowed_keys" -host-key "$out/host_ed25519" -data "$out/data-$1" \
		-ops "$out/ops" -rate 0 -max-conns 0 -max-conns-per-ip 0 -max-sessions-per-user 0 "${SERVER_FLAGS[@]}" >"$out/server-$1.log" 2>&1 &
	pid=$!
	# Wait for the listener rather than guessing how long start-up takes.
	for _ in $(seq 200); do
		grep -q msg=listening "$out/server-$1.log" && return
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench: server did not start; see $out/server-$1.log" >&2
	exit 1
}

stop() {
	kill "$pid"
	wait "$pid" || true
}

rows=()
skipped=()

# scenario NAME CLIENTS LOAD-FLAGS...
scenario() {
	local name=$1 clients=$2
	shift 2
	local need=$((clients + 64))
	if [ "$files" -lt "$need" ]; then
		skipped+=("$name: $clients clients need $need open files, ulimit -n is $files (raise ulimit -Hn)")
		return
	fi
	echo "bench: $name" >&2
	serve "$name"
	"$out/load" -addr "$addr" -keys-dir "$out" -pid "$pid" -n "$clients" -rate "$rate" -duration "$duration" \
		-drain 10s "$@" -json "$out/$name.json" >"$out/$name.txt" 2>"$out/$name.log" ||
		echo "bench: $name: the load tool failed; see $out/$name.txt and $out/$name.log" >&2
	stop
	[ -s "$out/$name.json" ] && rows+=("$name=$out/$name.json")
	return 0
}

scenario terminal "$terminal" -pty -senders "$terminal_senders"
scenario idle-fanout "$fanout" -senders "$fanout_senders"
scenario line "$line" -senders "$line_senders"
scenario saturation "$saturation" -senders "$saturation"

echo
if [ ${#rows[@]} -gt 0 ]; then
	"$out/load" table "${rows[@]}"
fi
for s in "${skipped[@]}"; do
	echo "skipped $s"
done
cat <<EOF

Targets (full size): terminal ≤ 12 µs and ≤ 1.1 writes/delivery, p99 < 30 ms, 0 lost;
idle-fanout quiet at < 30 s with all connected, ≤ 56 KiB/session, p99 < 250 ms, 0 lost;
line p99 < 20 ms; saturation ≤ 2.5 µs/delivery, p99 < 50 ms, 0 lost, ≥ 1000 handshakes/s.
"quiet at" counts from the start of connecting; ">" means not quiet within -quiet-timeout.
writes/delivery counts the server's write syscalls (/proc/PID/io syscw) while sending.
Reports, summaries and server logs: $out
EOF
