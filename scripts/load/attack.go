package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// attackMode is what every attacker connection does.
type attackMode int

const (
	attackBadKey    attackMode = iota // public key auth with a key not in allowed_keys
	attackPassword                    // password auth, which the server must never accept
	attackSlowloris                   // send the version line, then nothing, until the server hangs up
)

var attackModeNames = []string{"badkey", "password", "slowloris"}

func (m attackMode) String() string {
	if m < 0 || int(m) >= len(attackModeNames) {
		return fmt.Sprintf("attackMode(%d)", int(m))
	}
	return attackModeNames[m]
}

// Set makes attackMode a flag.Value.
func (m *attackMode) Set(s string) error {
	i := slices.Index(attackModeNames, s)
	if i < 0 {
		return fmt.Errorf("unknown attack mode %q, want one of %s", s, strings.Join(attackModeNames, ", "))
	}
	*m = attackMode(i)
	return nil
}

// attackTimeout bounds one login attempt's dial and handshake, and a
// slowloris connection's dial. A slowloris hold is bounded only by the
// server and the end of the sending phase: how long the server waits is
// what it measures.
const attackTimeout = 10 * time.Second

const (
	attackUser      = "root" // what password guessers try; sshchat names users by key anyway
	guessedPassword = "123456"
	// slowlorisVersion is a valid client identification line, so the
	// server answers with its own and its key exchange offer and then
	// waits for ours, which never comes.
	slowlorisVersion = "SSH-2.0-load_slowloris\r\n"
)

// outcome is how one attacker connection ended.
type outcome int

const (
	outRefused    outcome = iota // authentication failed, as it must
	outAccepted                  // authentication succeeded: a security bug
	outHeld                      // slowloris: the server greeted, waited, then hung up
	outFailed                    // anything else: refused by a connection cap, reset, timed out
	outUnfinished                // cut short by the end of the sending phase
	numOutcomes
)

// attacker runs hostile connections one after another. Each has its own
// tally, merged at the end, so counting needs no locks.
type attacker struct {
	addr  string
	mode  attackMode
	tally attackTally
}

// run attacks until ctx is done; the connection in progress then is closed
// at once and counted as unfinished.
func (a *attacker) run(ctx context.Context) {
	for !stopped(ctx) {
		var (
			o    outcome
			err  error
			held time.Duration
		)
		if a.mode == attackSlowloris {
			o, held, err = a.slowloris(ctx)
		} else {
			o, err = a.login(ctx)
		}
		a.tally.add(o, err, held)
	}
}

// dial connects to the server, and arranges for the connection to be
// closed when ctx is done: stop undoes that.
func (a *attacker) dial(ctx context.Context) (conn net.Conn, stop func() bool, err error) {
	d := net.Dialer{Timeout: attackTimeout}
	conn, err = d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dial: %w", err)
	}
	return conn, context.AfterFunc(ctx, func() { conn.Close() }), nil
}

// login makes one login attempt the server must refuse.
func (a *attacker) login(ctx context.Context) (outcome, error) {
	conn, stop, err := a.dial(ctx)
	if err != nil {
		return unlessDone(ctx, outFailed, err)
	}
	defer stop()
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(attackTimeout))
	var auth ssh.AuthMethod
	switch a.mode {
	case attackBadKey:
		// A fresh key each time, as a key-spraying client would: a random
		// ed25519 key is never one of the allowed ones, so any
		// acceptance is the server's fault.
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return outFailed, err
		}
		signer, err := ssh.NewSignerFromKey(priv)
		if err != nil {
			return outFailed, err
		}
		auth = ssh.PublicKeys(signer)
	case attackPassword:
		// x/crypto only sends a method the server lists, so against a
		// public-key-only server this ends after the "none" probe; the
		// refusal is the same either way.
		auth = ssh.Password(guessedPassword)
	default:
		return outFailed, fmt.Errorf("login: mode %v", a.mode)
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, a.addr, &ssh.ClientConfig{
		User:            attackUser,
		Auth:            []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	})
	if err == nil {
		ssh.NewClient(cc, chans, reqs).Close()
		return outAccepted, nil
	}
	if isAuthFailure(err) {
		return outRefused, err
	}
	return unlessDone(ctx, outFailed, err)
}

// isAuthFailure reports whether a client handshake error says the server
// refused authentication, rather than the connection failing.
func isAuthFailure(err error) bool {
	s := err.Error()
	return strings.Contains(s, "ssh: unable to authenticate") ||
		strings.Contains(s, "too many authentication failures") ||
		strings.Contains(s, "too many authentication attempts")
}

// slowloris opens a connection that never finishes its handshake and
// reports how long the server held it open.
func (a *attacker) slowloris(ctx context.Context) (outcome, time.Duration, error) {
	conn, stop, err := a.dial(ctx)
	if err != nil {
		o, err := unlessDone(ctx, outFailed, err)
		return o, 0, err
	}
	defer stop()
	defer conn.Close()
	start := time.Now()
	if _, err := io.WriteString(conn, slowlorisVersion); err != nil {
		o, err := unlessDone(ctx, outFailed, fmt.Errorf("write version: %w", err))
		return o, 0, err
	}
	greeted, err := readUntilClosed(conn)
	held := time.Since(start)
	switch {
	case stopped(ctx):
		return outUnfinished, held, nil
	case !greeted:
		// What a connection cap looks like: closed before a word is said.
		return outFailed, 0, fmt.Errorf("closed before the server's version line: %w", err)
	}
	return outHeld, held, nil
}

// readUntilClosed reads and discards until the connection ends, and
// reports whether what it read began as an SSH version line.
func readUntilClosed(r io.Reader) (greeted bool, err error) {
	buf := make([]byte, 4096)
	var head []byte
	for {
		n, err := r.Read(buf)
		if len(head) < 4 {
			head = append(head, buf[:min(n, 4-len(head))]...)
			greeted = bytes.Equal(head, []byte("SSH-"))
		}
		if err != nil {
			return greeted, err
		}
	}
}

// stopped reports whether ctx is done or past its deadline. A dial whose
// deadline is ctx's fails with a timeout a moment before ctx's own timer
// marks it done; without the clock check, an attacker would spin through
// thousands of instant "i/o timeout" failures in that moment.
func stopped(ctx context.Context) bool {
	if ctx.Err() != nil {
		return true
	}
	deadline, ok := ctx.Deadline()
	return ok && !time.Now().Before(deadline)
}

// unlessDone returns o and err, or outUnfinished if the failure came from
// the attack being stopped.
func unlessDone(ctx context.Context, o outcome, err error) (outcome, error) {
	if stopped(ctx) {
		return outUnfinished, nil
	}
	return o, err
}

// attackTally counts one or more attackers' connections.
type attackTally struct {
	counts    [numOutcomes]int64
	errors    map[string]int64 // outFailed, by errorKind
	refusedAs string           // the first refusal, to show what the server said
	holds     histogram        // µs, outHeld only
	// longestOpen is the longest slowloris hold still open when the attack
	// stopped: a lower bound on the server's patience if it never hung up.
	longestOpen time.Duration
}

func (t *attackTally) add(o outcome, err error, held time.Duration) {
	t.counts[o]++
	switch o {
	case outRefused:
		if t.refusedAs == "" && err != nil {
			t.refusedAs = err.Error()
		}
	case outFailed:
		if t.errors == nil {
			t.errors = make(map[string]int64)
		}
		kind := "unknown error"
		if err != nil {
			kind = errorKind(err)
		}
		t.errors[kind]++
	case outHeld:
		t.holds.record(uint64(held.Microseconds()))
	case outUnfinished:
		t.longestOpen = max(t.longestOpen, held)
	}
}

func (t *attackTally) merge(o *attackTally) {
	for i, n := range o.counts {
		t.counts[i] += n
	}
	for kind, n := range o.errors {
		if t.errors == nil {
			t.errors = make(map[string]int64)
		}
		t.errors[kind] += n
	}
	if t.refusedAs == "" {
		t.refusedAs = o.refusedAs
	}
	t.holds.merge(&o.holds)
	t.longestOpen = max(t.longestOpen, o.longestOpen)
}

// addrPattern matches the IP:port pairs that make every network error
// text unique.
var addrPattern = regexp.MustCompile(`\b(?:\d{1,3}\.){3}\d{1,3}:\d+|\[[0-9A-Fa-f:.%\w]*\]:\d+`)

// errorKind is err's text with addresses elided, so that errors of one
// kind count together.
func errorKind(err error) string {
	return addrPattern.ReplaceAllString(err.Error(), "ADDR")
}

// errorList describes the most frequent error kinds, most frequent first.
func errorList(counts map[string]int64) []string {
	kinds := make([]string, 0, len(counts))
	for k := range counts {
		kinds = append(kinds, k)
	}
	slices.SortFunc(kinds, func(a, b string) int {
		return cmp.Or(cmp.Compare(counts[b], counts[a]), strings.Compare(a, b))
	})
	var out []string
	for i, k := range kinds {
		if i == maxErrors {
			out = append(out, fmt.Sprintf("... and %d other kinds", len(kinds)-maxErrors))
			break
		}
		out = append(out, fmt.Sprintf("%d× %s", counts[k], k))
	}
	return out
}

// report summarises the tally of an attack that ran for wall and took stop
// to wind down after it was told to.
func (t *attackTally) report(mode attackMode, attackers int, wall, stop time.Duration) *attackReport {
	r := &attackReport{
		Mode:        mode.String(),
		Attackers:   attackers,
		Refused:     t.counts[outRefused],
		Accepted:    t.counts[outAccepted],
		Held:        t.counts[outHeld],
		OtherErrors: t.counts[outFailed],
		Unfinished:  t.counts[outUnfinished],
		Errors:      errorList(t.errors),
		RefusedAs:   t.refusedAs,
		WallSeconds: wall.Seconds(),
		StopSeconds: stop.Seconds(),
	}
	r.Attempts = r.Refused + r.Accepted + r.Held + r.OtherErrors
	if wall > 0 {
		r.AttemptsPerSec = float64(r.Attempts) / wall.Seconds()
	}
	if t.holds.total > 0 {
		r.HoldP50Seconds = float64(t.holds.percentile(50)) / 1e6
		r.HoldMaxSeconds = float64(t.holds.max) / 1e6
	}
	r.LongestOpenSeconds = t.longestOpen.Seconds()
	return r
}

// attack is a running set of attackers.
type attack struct {
	mode      attackMode
	attackers []*attacker
	wg        sync.WaitGroup
	start     time.Time
}

// startAttack starts n attackers of the given mode, spread over addrs
// round-robin; they stop when ctx is done.
func startAttack(ctx context.Context, addrs []string, mode attackMode, n int) *attack {
	at := &attack{mode: mode, start: time.Now()}
	for i := range n {
		a := &attacker{addr: addrFor(addrs, i), mode: mode}
		at.attackers = append(at.attackers, a)
		at.wg.Go(func() { a.run(ctx) })
	}
	return at
}

// wait waits for the attackers, which were told to stop at stoppedAt, and
// reports.
func (at *attack) wait(stoppedAt time.Time) *attackReport {
	at.wg.Wait()
	var total attackTally
	for _, a := range at.attackers {
		total.merge(&a.tally)
	}
	return total.report(at.mode, len(at.attackers), stoppedAt.Sub(at.start), max(time.Since(stoppedAt), 0))
}
