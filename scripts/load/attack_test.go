package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestMain lets the test binary be the attack process, as the load tool is
// its own.
func TestMain(m *testing.M) {
	if os.Getenv(attackChildEnv) != "" {
		os.Exit(runAttackChild(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func TestAttackModeFlag(t *testing.T) {
	for i, name := range attackModeNames {
		var m attackMode
		if err := m.Set(name); err != nil || m != attackMode(i) || m.String() != name {
			t.Errorf("Set(%q) = %v, mode %d %q; want %d", name, err, m, m, i)
		}
	}
	var m attackMode
	if err := m.Set("BadKey"); err == nil || !strings.Contains(err.Error(), "badkey, password, slowloris") {
		t.Errorf("Set(BadKey) = %v, want an error listing the modes", err)
	}
	if m != attackBadKey {
		t.Errorf("a failed Set changed the mode to %v", m)
	}
	if got := attackMode(7).String(); got != "attackMode(7)" {
		t.Errorf("String() of an unknown mode = %q", got)
	}

	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&m, "attack-mode", "")
	if err := fs.Parse([]string{"-attack-mode", "slowloris"}); err != nil || m != attackSlowloris {
		t.Errorf("-attack-mode slowloris: %v, %v", err, m)
	}
	if err := fs.Parse([]string{"-attack-mode", "dos"}); err == nil {
		t.Error("-attack-mode dos: no error")
	}
}

func TestAttackFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{"-keys-dir", "x", "-attackers", "-1"},
		{"-keys-dir", "x", "-attack-mode", "dos"},
		{"-keys-dir", "x", "-attack-mode", ""},
		{"-keys-dir", "x", "-attack-nice", "20"},
		{"-keys-dir", "x", "-attack-nice", "-21"},
	} {
		if code := run(args, io.Discard, io.Discard); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}

func TestErrorKindElidesAddresses(t *testing.T) {
	for in, want := range map[string]string{
		"ssh: handshake failed: read tcp 127.0.0.1:50312->127.0.0.1:2311: read: connection reset by peer": "ssh: handshake failed: read tcp ADDR->ADDR: read: connection reset by peer",
		"dial: dial tcp 127.0.0.1:2311: connect: connection refused":                                      "dial: dial tcp ADDR: connect: connection refused",
		"dial tcp [::1]:2311: connect: connection refused":                                                "dial tcp ADDR: connect: connection refused",
		"ssh: handshake failed: EOF":                                                                      "ssh: handshake failed: EOF",
		"version 1.2.3.4 is not an address":                                                               "version 1.2.3.4 is not an address",
	} {
		if got := errorKind(errors.New(in)); got != want {
			t.Errorf("errorKind(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsAuthFailure(t *testing.T) {
	for text, want := range map[string]bool{
		"ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain": true,
		"ssh: handshake failed: ssh: disconnect, reason 2: too many authentication failures":                                  true,
		"ssh: handshake failed: EOF":                              false,
		"ssh: handshake failed: read tcp ADDR->ADDR: i/o timeout": false,
	} {
		if got := isAuthFailure(errors.New(text)); got != want {
			t.Errorf("isAuthFailure(%q) = %v, want %v", text, got, want)
		}
	}
}

func TestAttackTallyMergesAndReports(t *testing.T) {
	var a, b, empty attackTally
	reset := errors.New("read tcp 127.0.0.1:1000->127.0.0.1:2311: connection reset by peer")
	a.add(outRefused, errors.New("ssh: unable to authenticate (a)"), 0)
	a.add(outRefused, errors.New("ssh: unable to authenticate (second)"), 0)
	a.add(outFailed, reset, 0)
	a.add(outFailed, errors.New("ssh: handshake failed: EOF"), 0)
	a.add(outHeld, nil, 10*time.Second)
	a.add(outUnfinished, nil, 3*time.Second)
	b.add(outRefused, errors.New("ssh: unable to authenticate (b)"), 0)
	b.add(outFailed, errors.New("read tcp 127.0.0.1:2000->127.0.0.1:2311: connection reset by peer"), 0)
	b.add(outFailed, nil, 0)
	b.add(outAccepted, nil, 0)
	b.add(outHeld, nil, 10*time.Second)
	b.add(outHeld, nil, 12*time.Second)
	b.add(outUnfinished, nil, 7*time.Second)
	b.add(outUnfinished, nil, 0) // a login cut short

	var total attackTally
	total.merge(&empty)
	total.merge(&a)
	total.merge(&b)
	r := total.report(attackSlowloris, 2, 4*time.Second, 30*time.Millisecond)

	if r.Mode != "slowloris" || r.Attackers != 2 {
		t.Errorf("mode, attackers = %q, %d", r.Mode, r.Attackers)
	}
	if r.Attempts != 11 || r.Refused != 3 || r.Accepted != 1 || r.Held != 3 || r.OtherErrors != 4 || r.Unfinished != 3 {
		t.Errorf("attempts, refused, accepted, held, other, unfinished = %d, %d, %d, %d, %d, %d; want 11, 3, 1, 3, 4, 3",
			r.Attempts, r.Refused, r.Accepted, r.Held, r.OtherErrors, r.Unfinished)
	}
	if r.AttemptsPerSec != 11.0/4 || r.WallSeconds != 4 || r.StopSeconds != 0.03 {
		t.Errorf("per second, wall, stop = %g, %g, %g; want 2.75, 4, 0.03", r.AttemptsPerSec, r.WallSeconds, r.StopSeconds)
	}
	if want := []string{
		"2× read tcp ADDR->ADDR: connection reset by peer",
		"1× ssh: handshake failed: EOF",
		"1× unknown error",
	}; strings.Join(r.Errors, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors = %q, want %q", r.Errors, want)
	}
	if r.RefusedAs != "ssh: unable to authenticate (a)" {
		t.Errorf("refused as %q, want the first refusal", r.RefusedAs)
	}
	if !within(r.HoldP50Seconds, 10, 0.01) || r.HoldMaxSeconds != 12 || r.LongestOpenSeconds != 7 {
		t.Errorf("hold p50, max, longest open = %g, %g, %g; want 10, 12, 7", r.HoldP50Seconds, r.HoldMaxSeconds, r.LongestOpenSeconds)
	}

	if r := empty.report(attackBadKey, 0, 0, 0); r.Attempts != 0 || r.AttemptsPerSec != 0 || r.Errors != nil || r.HoldMaxSeconds != 0 {
		t.Errorf("empty report = %+v", r)
	}
}

func within(got, want, rel float64) bool {
	return got >= want*(1-rel) && got <= want*(1+rel)
}

func TestErrorListIsMostFrequentFirstAndCapped(t *testing.T) {
	counts := map[string]int64{"b": 5, "a": 5, "c": 9}
	for i := range maxErrors {
		counts[string(rune('p'+i))] = 1
	}
	got := errorList(counts)
	if len(got) != maxErrors+1 || got[0] != "9× c" || got[1] != "5× a" || got[2] != "5× b" || got[maxErrors] != "... and 3 other kinds" {
		t.Errorf("errorList = %q", got)
	}
	if errorList(nil) != nil {
		t.Error("errorList(nil) is not nil")
	}
}

func TestAttackSummary(t *testing.T) {
	rep := &report{Clients: 1, Connect: connectReport{Connected: 1}}
	var out bytes.Buffer
	rep.writeSummary(&out)
	if strings.Contains(out.String(), "attack") {
		t.Errorf("summary without attackers mentions an attack:\n%s", out.String())
	}

	rep.Attack = &attackReport{Mode: "badkey", Attackers: 200, Attempts: 1000, Refused: 990, OtherErrors: 10,
		Errors: []string{"10× ssh: handshake failed: EOF"}, WallSeconds: 20, AttemptsPerSec: 50}
	out.Reset()
	rep.writeSummary(&out)
	for _, want := range []string{
		"attack        badkey ×200: 1000 attempts (50/s over 20.0s): 990 refused, 0 accepted, 0 held, 10 other errors",
		"              10× ssh: handshake failed: EOF",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "SECURITY") || strings.Contains(out.String(), "attack hold") {
		t.Errorf("summary of a refused badkey attack:\n%s", out.String())
	}

	rep.Attack.Accepted = 3
	rep.Attack.Mode, rep.Attack.Held, rep.Attack.HoldP50Seconds, rep.Attack.HoldMaxSeconds = "slowloris", 4, 10, 10.5
	out.Reset()
	rep.writeSummary(&out)
	for _, want := range []string{
		"!!! 3 ACCEPTED: the server let in a slowloris attempt it must refuse. SECURITY BUG !!!",
		"attack hold   server closed idle connections after p50 10.00s, max 10.50s",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, out.String())
		}
	}
}

func TestReadUntilClosed(t *testing.T) {
	for in, want := range map[string]bool{
		"SSH-2.0-sshchat\r\n\x00\x00":  true,
		"SSH-":                         true,
		"SSH":                          false,
		"HTTP/1.1 400 Bad Request\r\n": false,
		"":                             false,
	} {
		// One byte at a time, so the version line spans reads.
		greeted, err := readUntilClosed(iotest.OneByteReader(strings.NewReader(in)))
		if greeted != want || err != io.EOF {
			t.Errorf("readUntilClosed(%q) = %v, %v; want %v, EOF", in, greeted, err, want)
		}
	}
}

// listen serves each connection to 127.0.0.1 with handle until the test
// ends, and returns the address.
func listen(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				handle(c)
			})
		}
	})
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// sshServer handles connections as an SSH server that accepts public keys
// if acceptKeys, and nothing else.
func sshServer(t *testing.T, acceptKeys bool) func(net.Conn) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	host, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
			if acceptKeys {
				return nil, nil
			}
			return nil, errors.New("unknown key")
		},
	}
	cfg.AddHostKey(host)
	return func(c net.Conn) {
		sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
		if err != nil {
			return
		}
		go ssh.DiscardRequests(reqs)
		for ch := range chans {
			ch.Reject(ssh.Prohibited, "no")
		}
		sc.Close()
	}
}

func TestLoginAttempts(t *testing.T) {
	refusing := listen(t, sshServer(t, false))
	accepting := listen(t, sshServer(t, true))
	hangUp := listen(t, func(net.Conn) {}) // a connection cap's treatment
	for _, tc := range []struct {
		name    string
		addr    string
		mode    attackMode
		want    outcome
		wantErr string
	}{
		{"bad key refused", refusing, attackBadKey, outRefused, "unable to authenticate, attempted methods [none publickey]"},
		// The server does not offer passwords, so none is sent.
		{"password refused", refusing, attackPassword, outRefused, "unable to authenticate, attempted methods [none]"},
		{"bad key accepted", accepting, attackBadKey, outAccepted, ""},
		{"hung up on", hangUp, attackBadKey, outFailed, "ssh: handshake failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &attacker{addr: tc.addr, mode: tc.mode}
			o, err := a.login(t.Context())
			if o != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("login = %d, %v; want %d, %q", o, err, tc.want, tc.wantErr)
			}
		})
	}

	t.Run("nothing listening", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		a := &attacker{addr: addr, mode: attackBadKey}
		if o, err := a.login(t.Context()); o != outFailed || err == nil || !strings.HasPrefix(err.Error(), "dial: ") {
			t.Errorf("login = %d, %v; want failed, a dial error", o, err)
		}
	})
}

func TestSlowloris(t *testing.T) {
	const patience = 50 * time.Millisecond
	patient := listen(t, func(c net.Conn) {
		io.WriteString(c, "SSH-2.0-test\r\n")
		time.Sleep(patience)
	})
	hangUp := listen(t, func(net.Conn) {})

	a := &attacker{addr: patient, mode: attackSlowloris}
	o, held, err := a.slowloris(t.Context())
	if o != outHeld || err != nil || held < patience || held > patience+2*time.Second {
		t.Errorf("slowloris against a %s grace = %d, %v, held %s; want held, about %[1]s", patience, o, err, held)
	}

	a = &attacker{addr: hangUp, mode: attackSlowloris}
	o, _, err = a.slowloris(t.Context())
	if o != outFailed || err == nil || !strings.Contains(err.Error(), "closed before the server's version line") {
		t.Errorf("slowloris against a hang-up = %d, %v; want failed, closed before the version line", o, err)
	}
}

// TestAttackStopsPromptly runs every mode against servers that never
// answer or never hang up, and checks that stopping the attack ends every
// connection at once.
func TestAttackStopsPromptly(t *testing.T) {
	silent := listen(t, func(c net.Conn) { io.Copy(io.Discard, c) })
	greetsThenWaits := listen(t, func(c net.Conn) {
		io.WriteString(c, "SSH-2.0-test\r\n")
		io.Copy(io.Discard, c)
	})
	for _, tc := range []struct {
		mode attackMode
		addr string
	}{
		{attackBadKey, silent},
		{attackPassword, silent},
		{attackSlowloris, greetsThenWaits},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			const runFor = 100 * time.Millisecond
			ctx, cancel := context.WithTimeout(t.Context(), runFor)
			defer cancel()
			at := startAttack(ctx, []string{tc.addr}, tc.mode, 5)
			<-ctx.Done()
			stopped := time.Now()
			r := at.wait(stopped)
			if r.StopSeconds > 1 {
				t.Errorf("attackers took %.3fs to stop", r.StopSeconds)
			}
			if r.Unfinished != 5 || r.Attempts != 0 {
				t.Errorf("unfinished, attempts = %d, %d; want 5, 0 (every connection cut short)", r.Unfinished, r.Attempts)
			}
			if tc.mode == attackSlowloris && (r.LongestOpenSeconds < runFor.Seconds()/2 || r.LongestOpenSeconds > 1) {
				t.Errorf("longest open hold %.3fs, want about %s", r.LongestOpenSeconds, runFor)
			}
		})
	}
}

func TestLagProbeStops(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	select {
	case h := <-startLagProbe(ctx):
		if h.total == 0 {
			t.Error("no timer fired in 50ms of 5ms ticks")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the lag probe did not stop")
	}
}

// deadlineOnly is a context past its deadline whose timer has not yet
// marked it done.
type deadlineOnly struct {
	context.Context
	deadline time.Time
}

func (c deadlineOnly) Deadline() (time.Time, bool) { return c.deadline, true }

func TestAttackerStopsAtTheDeadlineBeforeTheContextKnows(t *testing.T) {
	addr := listen(t, func(net.Conn) {})
	ctx := deadlineOnly{t.Context(), time.Now().Add(-time.Millisecond)}
	if !stopped(ctx) || stopped(t.Context()) {
		t.Fatalf("stopped(past deadline), stopped(no deadline) = %v, %v; want true, false", stopped(ctx), stopped(t.Context()))
	}
	a := &attacker{addr: addr, mode: attackBadKey}
	a.run(ctx)
	if a.tally.counts != [numOutcomes]int64{} {
		t.Errorf("an attacker past its deadline attacked: %v", a.tally.counts)
	}
	if o, err := unlessDone(ctx, outFailed, errors.New("i/o timeout")); o != outUnfinished || err != nil {
		t.Errorf("unlessDone past the deadline = %d, %v; want unfinished", o, err)
	}
}

func TestAttackChild(t *testing.T) {
	addr := listen(t, sshServer(t, false))
	stdinR, stdinW := io.Pipe()
	time.AfterFunc(200*time.Millisecond, func() { stdinW.Close() })
	var out, errOut bytes.Buffer
	if code := runAttackChild([]string{"-addr", addr, "-attackers", "2", "-attack-mode", "badkey"}, stdinR, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	rep, err := parseAttackReport(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if rep.Mode != "badkey" || rep.Attackers != 2 || rep.Refused == 0 || rep.Accepted != 0 || rep.Attempts != rep.Refused+rep.OtherErrors {
		t.Errorf("child report = %+v; want some refused badkey attempts from 2 attackers", rep)
	}
	if !strings.Contains(rep.RefusedAs, "unable to authenticate") {
		t.Errorf("refused as %q", rep.RefusedAs)
	}

	for _, args := range [][]string{
		{},
		{"-addr", addr},
		{"-addr", addr, "-attackers", "1", "-attack-mode", "dos"},
		{"-addr", addr, "-attackers", "1", "extra"},
	} {
		if code := runAttackChild(args, strings.NewReader(""), io.Discard, io.Discard); code != 2 {
			t.Errorf("runAttackChild(%q) = %d, want 2", args, code)
		}
	}
}

func TestParseAttackReportRejectsGarbage(t *testing.T) {
	rep, err := parseAttackReport([]byte("panic: oops\n" + strings.Repeat("x", 300)))
	if err == nil || !strings.Contains(err.Error(), `"panic: oops`) || len(err.Error()) > 400 || rep == nil {
		t.Errorf("parseAttackReport(garbage) = %+v, %v; want an empty report and an error quoting the start of the output", rep, err)
	}
}

func TestAttackProcess(t *testing.T) {
	// Each attacker makes one attempt at a time, so once the server has
	// taken more connections than there are attackers, an attempt has
	// finished: then the attack can stop, however slowly the child
	// started on a busy machine.
	const attackers = 3
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	refuse := sshServer(t, false)
	var accepted atomic.Int32
	addr := listen(t, func(c net.Conn) {
		if accepted.Add(1) == attackers+1 {
			cancel()
		}
		refuse(c)
	})
	nice := 19
	if _, err := exec.LookPath("nice"); err != nil {
		nice = 0
	}
	var errOut bytes.Buffer
	p, err := startAttackProcess(ctx, []string{addr}, attackPassword, attackers, nice, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	<-ctx.Done()
	rep := p.wait(time.Now())
	if rep.Error != "" || rep.Refused == 0 || rep.Accepted != 0 || rep.Nice != nice {
		t.Errorf("report = %+v, stderr %q; want refused password attempts at nice %d", rep, errOut.String(), nice)
	}
	if rep.StopSeconds > 2 {
		t.Errorf("the attack process took %.2fs to stop", rep.StopSeconds)
	}
}
