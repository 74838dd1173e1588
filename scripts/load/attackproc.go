package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The attackers run in a child process, this program run again with
// attackChildEnv set, so that they cannot starve the readers: within one
// Go runtime, a reader with a line to read queues for a CPU behind
// attacker goroutines, and a connection cap makes attackers anything but
// idle (each refusal is instant, so each attacker spins through thousands
// of connections a second). In their own process, at a lower priority,
// they get the CPU the server and the readers leave, as an attacker on
// another machine would, and the latency figures measure the server, not
// this tool.
//
// The child attacks from start until its stdin closes, then writes its
// attackReport as JSON to stdout.
const attackChildEnv = "SSHCHAT_LOAD_ATTACK_CHILD"

// runAttackChild is the child's main.
func runAttackChild(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	var (
		addr string
		n    int
		mode attackMode
	)
	fs := flag.NewFlagSet("load attacker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&addr, "addr", "", "server addresses, comma-separated")
	fs.IntVar(&n, "attackers", 0, "attackers")
	fs.Var(&mode, "attack-mode", "attack mode")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	addrs := parseAddrs(addr)
	if len(addrs) == 0 || n < 1 || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "load attacker: want -addr and -attackers ≥ 1")
		return 2
	}
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, stdin)
		stop()
	}()
	before, errBefore := readProc("self")
	at := startAttack(ctx, addrs, mode, n)
	<-ctx.Done()
	rep := at.wait(time.Now())
	if after, err := readProc("self"); errBefore == nil && err == nil {
		cpu := after.cpu - before.cpu
		rep.CPUSeconds = cpu.Seconds()
		rep.CPUCores = cpu.Seconds() / after.sample.Sub(before.sample).Seconds()
	}
	if err := json.NewEncoder(stdout).Encode(rep); err != nil {
		fmt.Fprintf(stderr, "load attacker: %v\n", err)
		return 1
	}
	return 0
}

// attackProcess is a running attack child.
type attackProcess struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout bytes.Buffer
	nice   int
}

// startAttackProcess starts n attackers, spread over addrs, in a child
// process at the given niceness (0: this process's), and stops them when
// ctx is done.
func startAttackProcess(ctx context.Context, addrs []string, mode attackMode, n, nice int, stderr io.Writer) (*attackProcess, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("attackers: %w", err)
	}
	name, args := exe, []string{"-addr", strings.Join(addrs, ","), "-attackers", strconv.Itoa(n), "-attack-mode", mode.String()}
	if nice != 0 {
		path, err := exec.LookPath("nice")
		if err != nil {
			return nil, fmt.Errorf("attackers: -attack-nice %d: %w (-attack-nice 0 runs them without)", nice, err)
		}
		name, args = path, append([]string{"-n", strconv.Itoa(nice), exe}, args...)
	}
	p := &attackProcess{cmd: exec.Command(name, args...), nice: nice}
	p.cmd.Env = append(os.Environ(), attackChildEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, stderr
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("attackers: %w", err)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("attackers: %w", err)
	}
	context.AfterFunc(ctx, func() { p.stdin.Close() })
	return p, nil
}

// wait waits for the child, which was told to stop at stoppedAt, and
// returns its report.
func (p *attackProcess) wait(stoppedAt time.Time) *attackReport {
	werr := p.cmd.Wait()
	stop := max(time.Since(stoppedAt), 0)
	rep, err := parseAttackReport(p.stdout.Bytes())
	if werr != nil {
		err = errors.Join(fmt.Errorf("attack process: %w", werr), err)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	rep.StopSeconds, rep.Nice = stop.Seconds(), p.nice
	return rep
}

// parseAttackReport reads the child's output; a report that cannot be
// read comes back empty but for its error.
func parseAttackReport(out []byte) (*attackReport, error) {
	var rep attackReport
	if err := json.Unmarshal(out, &rep); err != nil {
		return &attackReport{}, fmt.Errorf("attack process output %q: %w", truncate(string(out), 200), err)
	}
	return &rep, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "..."
}
