// Command load is an end-to-end load generator for the sshchat server.
//
// It connects N clients over real SSH, in line mode or at a PTY (-pty),
// spread round-robin over one or more server addresses, waits for the room
// to go quiet, has the first S of them send timestamped messages at a fixed
// rate, and reports connect rate, time to connect all and to quiet,
// delivery counts, losses, latency percentiles and, given the server's pid,
// its memory per idle session, CPU and write syscalls per delivery. With
// -attackers, hostile connections (unknown keys, passwords or slowloris)
// run during the sending phase, so the figures show what an attack does to
// real users.
//
//	go run ./scripts/load -keys-dir DIR -write-keys     # then start the server with -keys DIR/allowed_keys
//	go run ./scripts/load -keys-dir DIR -n 1000 -senders 20 -pid PID
//	go run ./scripts/load -keys-dir DIR -n 1000 -senders 20 -pty
//	go run ./scripts/load -keys-dir DIR -n 1500 -addr 127.0.0.1:2222,127.0.0.1:2223,127.0.0.1:2224
//	go run ./scripts/load -keys-dir DIR -n 20 -senders 20 -attackers 200 -attack-mode badkey
//	go run ./scripts/load table terminal=a.json line=b.json   # one table of several -json reports
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if os.Getenv(attackChildEnv) != "" {
		os.Exit(runAttackChild(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "table" {
		os.Exit(runTable(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	var cfg config
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addrs := fs.String("addr", "127.0.0.1:2222", "server `addresses`, comma-separated; clients, senders among them, are spread over them round-robin")
	fs.IntVar(&cfg.clients, "n", 100, "clients to connect")
	fs.IntVar(&cfg.senders, "senders", 10, "how many of the clients (the first ones) send")
	fs.Float64Var(&cfg.rate, "rate", 1, "messages per second per sender")
	fs.DurationVar(&cfg.duration, "duration", 10*time.Second, "length of the sending phase")
	fs.DurationVar(&cfg.drain, "drain", 2*time.Second, "longest wait for in-flight deliveries after the senders stop")
	fs.DurationVar(&cfg.quiet, "quiet", time.Second, "after connecting, how long no client may receive anything for the room to count as quiet")
	fs.DurationVar(&cfg.quietTimeout, "quiet-timeout", 5*time.Minute, "longest wait for the room to go quiet before sending anyway")
	pty := fs.Bool("pty", false, "clients ask for a PTY, as people's ssh does, and read the terminal's output")
	termName := fs.String("term", "xterm-256color", "the TERM a -pty client sends (names are coloured unless it is dumb)")
	fs.IntVar(&cfg.dialConcurrency, "dial-concurrency", 64, "connections being set up at once")
	fs.IntVar(&cfg.pid, "pid", 0, "server process id, to report its RSS and CPU (Linux /proc)")
	fs.IntVar(&cfg.attackers, "attackers", 0, "hostile connections kept going during the sending phase, each retrying as soon as the last ends")
	fs.IntVar(&cfg.attackNice, "attack-nice", 19, "niceness of the attackers' process, so they get the CPU the server and the readers leave (0: same as this one)")
	fs.Var(&cfg.attackMode, "attack-mode", "what the attackers do, `mode`: badkey (a key not allowed; the default), password (password auth), slowloris (send the version line, then wait for the server to hang up)")
	keysDir := fs.String("keys-dir", "", "directory for the client keys and the allowed_keys file the server should use (required)")
	writeOnly := fs.Bool("write-keys", false, "only write the client keys and allowed_keys, then exit")
	jsonPath := fs.String("json", "", "also write the report as JSON to this file (- for stdout)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	cfg.addrs = parseAddrs(*addrs)
	if *pty {
		cfg.term = *termName
	}
	if err := cfg.validate(*keysDir); err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 2
	}

	ks, err := ensureKeys(*keysDir, cfg.clients)
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}
	if ks.generated > 0 || ks.allowedChanged {
		fmt.Fprintf(stderr, "load: %d keys in %s (%d new); wrote %s\n", len(ks.keys), ks.keysPath, ks.generated, ks.allowedPath)
	}
	if *writeOnly {
		return 0
	}
	if ks.allowedChanged {
		// A running server picks the new file up by watching it; give it a
		// moment rather than fail the first logins.
		fmt.Fprintf(stderr, "load: waiting %s for the server to reload %s\n", reloadWait, ks.allowedPath)
		time.Sleep(reloadWait)
	}
	cfg.keys = ks.keys[:cfg.clients]
	fileLimit, err := ensureFileLimit(cfg.clients, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
		return 1
	}

	rep := runLoad(cfg, stderr)
	rep.Tool.OpenFilesLimit = fileLimit
	rep.writeSummary(stdout)
	if *jsonPath != "" {
		if err := writeJSON(*jsonPath, rep, stdout); err != nil {
			fmt.Fprintf(stderr, "load: %v\n", err)
			return 1
		}
	}
	if rep.Connect.Connected == 0 {
		return 1
	}
	if a := rep.Attack; a != nil && a.Accepted > 0 {
		fmt.Fprintf(stderr, "load: the server accepted %d %s attempts it must refuse\n", a.Accepted, a.Mode)
		return 1
	}
	if a := rep.Attack; a != nil && a.Error != "" {
		return 1
	}
	return 0
}

// reloadWait is how long a run that changed allowed_keys waits before
// connecting.
const reloadWait = time.Second

// spareFiles is how many open files the tool needs besides its clients'
// sockets: standard streams, /proc reads, the attack process's pipes, the
// runtime's own.
const spareFiles = 32

// ensureFileLimit raises the open files limit as far as it goes and checks
// that it is enough for the clients, before a run that would otherwise fail
// some connections for no fault of the server's.
func ensureFileLimit(clients int, stderr io.Writer) (uint64, error) {
	limit, err := raiseFileLimit()
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
	}
	if need := uint64(clients) + spareFiles; limit < need {
		return limit, fmt.Errorf("%d clients need about %d open files, but the limit is %d: raise the hard limit (ulimit -Hn) or lower -n", clients, need, limit)
	}
	return limit, nil
}

func writeJSON(path string, rep *report, stdout io.Writer) error {
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if path == "-" {
		_, err = stdout.Write(data)
		return err
	}
	return os.WriteFile(path, data, 0o644)
}
