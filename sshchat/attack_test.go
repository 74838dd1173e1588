package sshchat

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

// Regression tests for issue 15: each replays an attack over real SSH and
// checks the server holds.

// shutdownSlack is how late Shutdown may return after its deadline: time to
// close connections and for their goroutines to end on a busy machine.
const shutdownSlack = 400 * time.Millisecond

// shutdownWithin calls Shutdown with a context of deadline and fails unless it
// returns within the deadline (plus shutdownSlack). It returns Shutdown's
// error.
func shutdownWithin(t *testing.T, ts *testServer, deadline time.Duration) error {
	t.Helper()
	ctx, cancel := contextWithTimeout(deadline)
	defer cancel()
	start := time.Now()
	returned := make(chan error, 1)
	go func() { returned <- ts.Shutdown(ctx) }()
	select {
	case err := <-returned:
		took := time.Since(start)
		t.Logf("Shutdown(%v) = %v after %v", deadline, err, took)
		if took > deadline+shutdownSlack {
			t.Errorf("Shutdown(%v) took %v", deadline, took)
		}
		return err
	case <-time.After(waitLimit):
		t.Fatalf("Shutdown(%v) still running after %v", deadline, waitLimit)
	}
	return nil
}

// expectConnClosed fails unless the server closes client's connection.
func expectConnClosed(t *testing.T, client *gossh.Client) {
	t.Helper()
	closed := make(chan struct{})
	go func() {
		client.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(waitLimit):
		t.Fatalf("connection still open after %v", waitLimit)
	}
}

// windowChangeFlood has c, a PTY session with 900 bytes typed and no Enter,
// send n window changes of alternating widths, then a window change that
// wants a reply. It fails unless the server answers that one: before issue
// 15.1 was fixed, the goroutine answering requests blocked repainting the
// line into the full SSH window, x/crypto's connection loop blocked handing
// it the next request, and nothing on the connection was read again.
func windowChangeFlood(t *testing.T, c *chatter, n int) {
	t.Helper()
	c.typeKeys(strings.Repeat("x", 900))
	answered := make(chan error, 1)
	go func() {
		// The client blocks too once the server stops reading, so this
		// runs apart from the test.
		for i := range n {
			if err := c.session.WindowChange(24, 20+i%2); err != nil {
				answered <- err
				return
			}
		}
		ok, err := c.session.SendRequest("window-change", true, gossh.Marshal(struct{ Columns, Rows, W, H uint32 }{80, 24, 0, 0}))
		if err == nil && !ok {
			err = errors.New("window change refused")
		}
		answered <- err
	}()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatalf("window changes: %v", err)
		}
	case <-time.After(waitLimit):
		t.Fatalf("want-reply request not answered within %v after %d window changes", waitLimit, n)
	}
}

// windowChangeCases: the window-change flood over a pending line alone,
// and with the client's SSH window already full of chat, so that the
// session's writer is blocked throughout.
var windowChangeCases = []struct {
	name string
	fill bool
}{{"pending line", false}, {"window full", true}}

// Issue 15.1: a PTY client that does not read its output and floods window
// changes over a pending line. Its requests are still answered, and once it
// reads again its session works, the line it typed intact.
func TestWindowChangeFloodKeepsSessionAlive(t *testing.T) {
	for _, tt := range windowChangeCases {
		t.Run(tt.name, func(t *testing.T) {
			_, sender, reader, a := windowChangeAttack(t, tt.fill)
			a.startReading()
			sender.say("still there?")
			a.skipPast("still there?")
			a.typeKeys("\r")
			reader.expect("sender: still there?", "alice: "+strings.Repeat("x", 900))
		})
	}
}

// Issue 15.1: the same attack, never reading again; Shutdown still ends
// within its deadline and every goroutine of the session ends
// (startServer's cleanup checks).
func TestWindowChangeFloodShutdown(t *testing.T) {
	for _, tt := range windowChangeCases {
		t.Run(tt.name, func(t *testing.T) {
			ts, _, _, a := windowChangeAttack(t, tt.fill)
			err := shutdownWithin(t, ts, 200*time.Millisecond)
			switch {
			case tt.fill && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("Shutdown = %v; want %v: alice's goodbye cannot be written", err, context.DeadlineExceeded)
			case err != nil && !errors.Is(err, context.DeadlineExceeded):
				t.Fatalf("Shutdown: %v", err)
			}
			expectConnClosed(t, a.client)
		})
	}
}

// windowChangeAttack runs the attack of issue 15.1: alice, in a terminal
// she does not read, types 900 bytes without Enter and floods
// 2,000 window changes, with her window already full if fill is set.
func windowChangeAttack(t *testing.T, fill bool) (ts *testServer, sender, reader, alice *chatter) {
	t.Helper()
	ts = startServer(t, func(c *Config) {
		c.QueueLen, c.History = 4000, 0
		c.WriteTimeout = time.Minute
	})
	cs := ts.joinAll("sender", "reader")
	sender, reader = cs[0], cs[1]
	alice = startChatWith(t, ts.connect(ts.user("alice")), chatRequest{term: "xterm", unread: true})
	sender.expect("alice has arrived")
	reader.expect("alice has arrived")
	if fill {
		fillWindow(t, sender, reader)
	}
	windowChangeFlood(t, alice, 2000)
	return ts, sender, reader, alice
}

// fillWindow has sender flood the room until reader has received 3,000
// long lines: a client that stopped reading then has well over its 2 MiB SSH
// window queued, and its writer is blocked. It returns the other lines
// reader saw meanwhile.
func fillWindow(t *testing.T, sender, reader *chatter) (others []string) {
	t.Helper()
	return flood(t, sender, 3000, 32, reader)
}

// Issue 15.1: a line-mode client that stops reading, sends env requests
// while its writer is blocked, and is then closed by the write watchdog.
// The session ends, the connection closes and its per-IP slot is free.
func TestStalledClientWithRequestsIsFreed(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.QueueLen, c.History = 4000, 0
		c.WriteTimeout = 2 * time.Second // long enough to send the requests while the writer is blocked
		c.MaxConnsPerIP = 3
	})
	alice := ts.user("alice")
	cs := ts.joinAll("sender", "reader")
	sender, reader := cs[0], cs[1]
	a := ts.join(alice)
	sender.expect("alice has arrived")
	reader.expect("alice has arrived")

	a.stopReading()
	others := fillWindow(t, sender, reader)
	for range 20 {
		// Errors are expected once the watchdog has closed the
		// connection.
		a.session.SendRequest("env", false, gossh.Marshal(struct{ Name, Value string }{"LANG", "C"}))
	}
	if !slices.Contains(others, "alice has left") {
		reader.skipUntil("alice has left")
	}
	expectConnClosed(t, a.client)
	// alice's slot is free: a third connection from this IP is accepted.
	ts.join(alice)
}

// Issue 9: Shutdown closes connections that have not joined the chat at
// once, instead of waiting out their login grace.
func TestShutdownClosesIdleConnections(t *testing.T) {
	ts := startServer(t, nil) // login grace 10 s
	conn := ts.rawConn()
	// The server speaks first: reading its version proves it accepted conn.
	conn.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.ReadFull(conn, make([]byte, len("SSH-2.0-"))); err != nil {
		t.Fatal(err)
	}
	if err := shutdownWithin(t, ts, 100*time.Millisecond); err != nil {
		t.Fatalf("Shutdown: %v, want nil: nothing was left to wait for", err)
	}
	expectClosed(t, conn)
}

// Issue 9: a user whose goodbye cannot be written (stopped reading, window
// full, long write timeout) does not hold Shutdown past its deadline, and
// Shutdown says it overran.
func TestShutdownDeadlineWithStalledClient(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.QueueLen, c.History = 4000, 0
		c.WriteTimeout = time.Minute
	})
	cs := ts.joinAll("stalled", "sender", "reader")
	stalled, sender, reader := cs[0], cs[1], cs[2]
	stalled.stopReading()
	fillWindow(t, sender, reader)
	start := time.Now()
	err := shutdownWithin(t, ts, 100*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v after %v, want %v", err, time.Since(start), context.DeadlineExceeded)
	}
	expectConnClosed(t, stalled.client)
}

// failingListener fails every Accept with the next of errs, and then with
// io.ErrClosedPipe.
type failingListener struct {
	mu   sync.Mutex
	errs []error
}

func (l *failingListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.errs) == 0 {
		return nil, io.ErrClosedPipe
	}
	err := l.errs[0]
	l.errs = l.errs[1:]
	return nil, err
}

func (*failingListener) Close() error   { return nil }
func (*failingListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

// Issue 9: Serve retries an accept that failed for want of file
// descriptors, and returns on any other error, as net/http does.
func TestServeReturnsOnPermanentAcceptError(t *testing.T) {
	ts := startServer(t, nil)
	permanent := errors.New("listener broken")
	l := &failingListener{errs: []error{&net.OpError{Op: "accept", Err: syscall.EMFILE}, permanent}}
	served := make(chan error, 1)
	go func() { served <- ts.Serve(l) }()
	select {
	case err := <-served:
		if !errors.Is(err, permanent) {
			t.Fatalf("Serve = %v, want %v", err, permanent)
		}
	case <-time.After(waitLimit):
		t.Fatal("Serve still retrying a permanent accept error")
	}
	if len(l.errs) != 0 {
		t.Fatalf("Serve returned before retrying EMFILE")
	}
}

// Issue 15.2: a PTY client sends 2 MiB without Enter (a whole SSH window)
// and disconnects. The server does not go on processing it: the session
// ends, and the room hears of it, promptly.
func TestTerminalInputAfterDisconnect(t *testing.T) {
	ts := startServer(t, nil)
	b := ts.join(ts.user("bob"))
	a := ts.openTerminal(ts.user("alice"))
	a.readUntil("[alice] ")
	b.expect("alice has arrived")
	a.typeKeys(strings.Repeat("x", 2<<20))
	// The server answers requests in order with the data before them:
	// once this one is answered, all 2 MiB are in the server's buffer.
	// (Otherwise closing a socket with unread output could reset the
	// connection and drop input the server had not yet read.)
	if err := sendRequest(a.session, "window-change", gossh.Marshal(struct{ Columns, Rows, W, H uint32 }{80, 24, 0, 0})); err != nil {
		t.Fatal(err)
	}
	a.client.Close()
	b.expect("alice has left")
}

// Issue 15.2: once a session has ended, what its channel still holds is
// not read.
func TestEndableReader(t *testing.T) {
	ended := false
	r := endableReader{strings.NewReader("abcdef"), func() bool { return ended }}
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("Read = %d, %v before the end", n, err)
	}
	ended = true
	if n, err := r.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v after the end; want 0, EOF", n, err)
	}
}

// Issue 15.2: past -max-line a PTY line stops growing: further keys are
// refused with a bell and the line sent is the first max-line bytes.
func TestTerminalLineStopsAtMaxLine(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxLine = 64 })
	b := ts.join(ts.user("bob"))
	a := ts.openTerminal(ts.user("alice"))
	a.readUntil("[alice] ")
	b.expect("alice has arrived")
	a.typeKeys(strings.Repeat("y", 64))
	a.readUntil(strings.Repeat("y", 64))
	a.typeKeys(strings.Repeat("z", 200))
	a.readUntil("\a")
	// Editing still works at the limit.
	a.typeKeys("\x7f!\r")
	b.expect("alice: " + strings.Repeat("y", 63) + "!")
}

// Issue 15.2: behind the key filter, x/term's line never exceeds the
// limit, Ctrl-C clears it instead of ending the input, and completion runs
// for Tab alone.
func TestKeyFilterCompletesOnlyOnTab(t *testing.T) {
	const max = 64
	keys := strings.Repeat("a", 10_000) + "\x7f\x7f\t" + strings.Repeat("b", 5000) + "\x03" + "hi\t\r"
	var calls []rune
	f := &keyFilter{r: strings.NewReader(keys), bell: io.Discard, max: max}
	f.t = term.NewTerminal(struct {
		io.Reader
		io.Writer
	}{f, io.Discard}, "> ")
	f.complete = func(line string, pos int, key rune) (string, int, bool) {
		calls = append(calls, key)
		if len(line) > max {
			t.Errorf("line of %d bytes handed to completion", len(line))
		}
		return "", 0, false
	}
	line, err := f.t.ReadLine()
	if err != nil {
		t.Fatal(err)
	}
	if line != "hi" {
		t.Fatalf("line = %q, want hi", line)
	}
	if want := []rune{'\t', '\t'}; string(calls) != string(want) {
		t.Fatalf("completion called for %q, want only for the two Tabs", string(calls))
	}
}

// Issue 15.2: a key costs the same however long the line is. x/term hands
// its completion callback a copy of the whole line on every key it is set
// for, so a long line being edited key by key allocated a line's worth per
// key; through the filter, it is a few bytes.
func TestKeyFilterPerKeyCost(t *testing.T) {
	const edits = 5000
	for _, length := range []int{10, 1000} {
		t.Run(fmt.Sprintf("line of %d", length), func(t *testing.T) {
			keys := strings.Repeat("a", length) + strings.Repeat("\x7fb", edits) + "\r"
			f := &keyFilter{r: strings.NewReader(keys), bell: io.Discard, max: 1024}
			f.t = term.NewTerminal(struct {
				io.Reader
				io.Writer
			}{f, io.Discard}, "> ")
			f.complete = func(string, int, rune) (string, int, bool) { return "", 0, false }
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			line, err := f.t.ReadLine()
			runtime.ReadMemStats(&after)
			if want := strings.Repeat("a", length-1) + "b"; err != nil || line != want {
				t.Fatalf("ReadLine = %.20q..., %v; want %.20q...", line, err, want)
			}
			perKey := float64(after.TotalAlloc-before.TotalAlloc) / float64(len(keys))
			t.Logf("%.1f bytes allocated per key", perKey)
			if perKey > 100 {
				t.Fatalf("%.0f bytes allocated per key on a line of %d bytes", perKey, length)
			}
		})
	}
}

// Issue 15.2: holding Tab after @ does not ask the broadcaster for the
// names on every key.
func TestCachedNames(t *testing.T) {
	now := testTime
	fetches := 0
	names := cachedNames(func() []string {
		fetches++
		return []string{fmt.Sprint("user", fetches)}
	}, func() time.Time { return now }, time.Second)
	for range 100 {
		if got := names(); got[0] != "user1" {
			t.Fatalf("names = %q", got)
		}
	}
	now = now.Add(999 * time.Millisecond)
	names()
	if fetches != 1 {
		t.Fatalf("%d fetches within the TTL, want 1", fetches)
	}
	now = now.Add(time.Millisecond)
	if got := names(); got[0] != "user2" || fetches != 2 {
		t.Fatalf("after the TTL: names = %q, %d fetches; want a new fetch", got, fetches)
	}
}

// BenchmarkPTYInput measures what a PTY user streaming keys without Enter
// costs: process CPU (server and its in-process client) per input byte. The
// keys go past -max-line, which is the hostile case of issue 15.2. The same
// bytes from a line-mode session are the baseline: SSH and the line reader
// alone, so the difference is the terminal's cost.
func BenchmarkPTYInput(b *testing.B) {
	for _, mode := range []struct {
		name    string
		pty     bool
		lineEnd string
	}{{"pty", true, "\r"}, {"line-baseline", false, "\n"}} {
		b.Run(mode.name, func(b *testing.B) { benchInput(b, mode.pty, mode.lineEnd) })
	}
}

func benchInput(b *testing.B, pty bool, lineEnd string) {
	srv, addr, stop := benchServer(b, nil)
	defer stop()
	connect := func(name string) *gossh.Session {
		signer := newSigner(b)
		srv.cfg.Auth.(*allowList).set(signer.PublicKey(), name)
		client, err := gossh.Dial("tcp", addr, &gossh.ClientConfig{
			User: "bench", Auth: []gossh.AuthMethod{gossh.PublicKeys(signer)},
			HostKeyCallback: gossh.InsecureIgnoreHostKey(),
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { client.Close() })
		sess, err := client.NewSession()
		if err != nil {
			b.Fatal(err)
		}
		return sess
	}
	watcher := connect("watcher")
	lines := lineChan(b, watcher)
	waitLine(b, lines, "-!- You are watcher")
	typist := connect("typist")
	if pty {
		if err := typist.RequestPty("xterm", 24, 80, nil); err != nil {
			b.Fatal(err)
		}
	}
	typist.Stdout = io.Discard
	keys, err := typist.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := typist.Shell(); err != nil {
		b.Fatal(err)
	}
	waitLine(b, lines, "typist has arrived")

	chunk := bytes.Repeat([]byte("k"), 4096)
	cpu0 := cpuTime()
	b.ResetTimer()
	for sent := 0; sent < b.N; sent += len(chunk) {
		if _, err := keys.Write(chunk[:min(len(chunk), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	// The marker line follows every key sent: when it arrives, all were
	// read.
	io.WriteString(keys, lineEnd+"end"+lineEnd)
	waitLine(b, lines, "typist: end")
	b.StopTimer()
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N), "ns-cpu/byte")
}

// lineChan starts sess as a line-mode session and returns its output lines.
func lineChan(b *testing.B, sess *gossh.Session) <-chan string {
	out, err := sess.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	// Held open: at the end of its input a session ends.
	if _, err := sess.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := sess.Shell(); err != nil {
		b.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		buf := make([]byte, 0, 4096)
		for {
			chunk := make([]byte, 4096)
			n, err := out.Read(chunk)
			buf = append(buf, chunk[:n]...)
			for {
				i := bytes.IndexByte(buf, '\n')
				if i < 0 {
					break
				}
				lines <- string(buf[:i])
				buf = buf[i+1:]
			}
			if err != nil {
				return
			}
		}
	}()
	return lines
}

// waitLine waits for a line starting with prefix.
func waitLine(b *testing.B, lines <-chan string, prefix string) {
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-lines:
			if !ok {
				b.Fatalf("session ended before %q", prefix)
			}
			if strings.HasPrefix(line, prefix) {
				return
			}
		case <-timeout:
			b.Fatalf("no %q", prefix)
		}
	}
}

// Issue 15.3: a removed key loses its whole SSH connection, including one
// shared by several sessions (OpenSSH ControlMaster), and a connection that
// authenticated before the removal cannot start a session after it.
func TestRevocationClosesConnections(t *testing.T) {
	removal := "-!- Your key was removed from the allowed keys; goodbye."
	tests := []struct {
		name string
		// attack has the connection of mallory's key do what it does
		// around revoke, which removes the key.
		attack func(t *testing.T, ts *testServer, client *gossh.Client, revoke func())
	}{
		{"connection whose session ended", func(t *testing.T, ts *testServer, client *gossh.Client, revoke func()) {
			c := startLineChat(t, client)
			c.expectWelcome("mallory", "mallory")
			c.leave()
			revoke()
			ts.Revalidate()
			expectConnClosed(t, client)
		}},
		{"first session after removal", func(t *testing.T, ts *testServer, client *gossh.Client, revoke func()) {
			revoke() // and the server has not been told yet
			startLineChat(t, client).expectEnd(removal)
			expectConnClosed(t, client)
		}},
		{"connection with a session", func(t *testing.T, ts *testServer, client *gossh.Client, revoke func()) {
			c := startLineChat(t, client)
			c.expectWelcome("mallory", "mallory")
			revoke()
			ts.Revalidate()
			c.expectEnd(removal)
			expectConnClosed(t, client)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startServer(t, func(c *Config) { c.LoginGrace = time.Minute })
			mallory := ts.user("mallory")
			tt.attack(t, ts, ts.connect(mallory), func() { ts.allow.set(mallory.PublicKey(), "") })
			if s, err := ts.connect(ts.user("bob")).NewSession(); err != nil {
				t.Fatalf("another user's session refused: %v", err)
			} else {
				s.Close()
			}
		})
	}
}

// Issue 15.5: a user reconnecting in a loop gets no more lines through than
// -rate and -burst allow one user, and the room hears of their arrival only
// a few times.
func TestReconnectLoopKeepsRateLimits(t *testing.T) {
	const rate, burst = 5, 10
	ts := startServer(t, func(c *Config) {
		c.Rate, c.Burst = rate, burst
		c.MaxSessionRate = 0 // every reconnect starts a session
	})
	watcher := ts.join(ts.user("watcher"))
	mallory := ts.user("mallory")
	start := time.Now()
	const sessions, linesEach = 20, 10
	for i := range sessions {
		c := ts.join(mallory)
		for j := range linesEach {
			c.say(fmt.Sprintf("spam %d.%d", i, j))
		}
		c.leave()
		c.client.Close()
	}
	elapsed := time.Since(start)
	ts.join(ts.user("marker")).say("done")

	var delivered, arrivals int
	for line := watcher.next(); line != "marker: done"; line = watcher.next() {
		switch {
		case strings.HasPrefix(line, "mallory: spam "):
			delivered++
		case line == "mallory has arrived":
			arrivals++
		}
	}
	if allowed := burst + int(rate*elapsed.Seconds()) + 1; delivered > allowed {
		t.Errorf("%d of %d lines delivered in %v; the limit allows %d", delivered, sessions*linesEach, elapsed, allowed)
	}
	if allowed := announceBurst + int(elapsed/announceEvery); arrivals > allowed {
		t.Errorf("%d arrivals announced for %d sessions in %v; want at most %d", arrivals, sessions, elapsed, allowed)
	}
	t.Logf("%d lines delivered, %d arrivals announced in %v", delivered, arrivals, elapsed)
}

// Issue 15.5: session starts beyond -max-session-rate are refused, and the
// user is told why.
func TestMaxSessionRate(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxSessionRate = 0.001 // after the burst, none for ages
		c.MaxSessionsPerUser = 2 // the burst
	})
	mallory := ts.user("mallory")
	for range 2 {
		c := ts.join(mallory)
		c.leave()
	}
	ts.openLine(mallory).expectEnd("-!- Too many new sessions for mallory; wait a few seconds and try again.")
}

// Issue 15.6: an authenticated connection is closed once it has gone
// -login-grace without a session, also after its last session ended.
func TestLoginGraceAfterLastSession(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.LoginGrace = time.Second })
	client := ts.connect(ts.user("alice"))
	c := startLineChat(t, client)
	c.expectWelcome("alice", "alice")
	c.leave()
	expectConnClosed(t, client)
}

// A session that ends after its connection closed must not re-arm the
// connection's login grace: the timer would fire, and log, for a connection
// long gone.
func TestClosedConnectionGraceStaysStopped(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	tc := newTrackedConn(server, time.Minute, func(*trackedConn) {}, func(*trackedConn) {})
	if !tc.openSession(0) {
		t.Fatal("session refused")
	}
	tc.Close()
	tc.closeSession()
	if tc.grace.Stop() {
		t.Fatal("login grace re-armed on a closed connection")
	}
}

// Issue 15.6: a connection refused by a cap is told why before the server
// closes it.
func TestRefusedConnectionIsTold(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxConnsPerIP = 1 })
	first := ts.rawConn()
	first.SetReadDeadline(time.Now().Add(waitLimit))
	if _, err := io.ReadFull(first, make([]byte, len("SSH-2.0-"))); err != nil {
		t.Fatal(err)
	}
	second := ts.rawConn()
	second.SetReadDeadline(time.Now().Add(waitLimit))
	got, err := io.ReadAll(second)
	if err != nil {
		t.Fatalf("refused connection not closed: %v", err)
	}
	if want := "sshchat: too many connections from 127.0.0.1 (1); try again later\r\n"; string(got) != want {
		t.Fatalf("refused connection got %q, want %q", got, want)
	}
}

// Issue 15.6: limits below their minimum are refused at start-up, not
// silently taken to mean something else.
func TestConfigRefusesBadLimits(t *testing.T) {
	tests := []struct {
		name  string
		tweak func(*Config)
	}{
		{"max auth tries 0", func(c *Config) { c.MaxAuthTries = 0 }},
		{"max auth tries -1", func(c *Config) { c.MaxAuthTries = -1 }},
		{"max line 0", func(c *Config) { c.MaxLine = 0 }},
		{"queue 0", func(c *Config) { c.QueueLen = 0 }},
		{"login grace 0", func(c *Config) { c.LoginGrace = 0 }},
		{"write timeout -1s", func(c *Config) { c.WriteTimeout = -time.Second }},
		{"history -1", func(c *Config) { c.History = -1 }},
		{"rate -1", func(c *Config) { c.Rate = -1 }},
		{"burst -1", func(c *Config) { c.Burst = -1 }},
		{"sessions per user -1", func(c *Config) { c.MaxSessionsPerUser = -1 }},
		{"session rate -1", func(c *Config) { c.MaxSessionRate = -1 }},
		{"sessions per connection -1", func(c *Config) { c.MaxSessionsPerConn = -1 }},
		{"connections -1", func(c *Config) { c.MaxConns = -1 }},
		{"connections per IP -1", func(c *Config) { c.MaxConnsPerIP = -1 }},
		{"idle timeout -1s", func(c *Config) { c.IdleTimeout = -time.Second }},
		{"auth log rate -1", func(c *Config) { c.AuthLogRate = -1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.HostKey = newSigner(t)
			cfg.Auth = &allowList{}
			srv, err := New(cfg)
			if err != nil {
				t.Fatalf("defaults refused: %v", err)
			}
			srv.Shutdown(context.Background())
			tt.tweak(&cfg)
			if _, err := New(cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Algorithms issue 15.7 removed: SHA-1 key exchange and MACs. Named here
// on purpose, to check that a client insisting on them is refused.
const (
	removedKexDH14SHA1 = "diffie-hellman-group14-sha1"
	removedKexDH1SHA1  = "diffie-hellman-group1-sha1"
	removedMACSHA1     = "hmac-sha1"
	removedMACSHA196   = "hmac-sha1-96"
)

// Issue 15.7: the server offers no SHA-1 and takes no SHA-1 signatures; a
// client limited to a removed algorithm is refused, and modern clients,
// OpenSSH's included, connect.
func TestAlgorithms(t *testing.T) {
	ts := startServer(t, nil)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSigner, err := gossh.NewSignerFromKey(rsaKey)
	if err != nil {
		t.Fatal(err)
	}
	ts.allow.set(rsaSigner.PublicKey(), "rsa-user")
	rsaWith := func(alg string) gossh.Signer {
		s, err := gossh.NewSignerWithAlgorithms(rsaSigner.(gossh.AlgorithmSigner), []string{alg})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	ed := ts.user("ed-user")
	tests := []struct {
		name    string
		config  gossh.Config
		signer  gossh.Signer
		refused string // part of the error; "" if the client must connect
	}{
		{"kex " + removedKexDH14SHA1, gossh.Config{KeyExchanges: []string{removedKexDH14SHA1}}, ed, "no common algorithm for key exchange"},
		{"kex " + removedKexDH1SHA1, gossh.Config{KeyExchanges: []string{removedKexDH1SHA1}}, ed, "no common algorithm for key exchange"},
		{"mac " + removedMACSHA1, gossh.Config{Ciphers: []string{gossh.CipherAES128CTR}, MACs: []string{removedMACSHA1}}, ed, "no common algorithm"},
		{"mac " + removedMACSHA196, gossh.Config{Ciphers: []string{gossh.CipherAES256CTR}, MACs: []string{removedMACSHA196}}, ed, "no common algorithm"},
		{"user signature ssh-rsa", gossh.Config{}, rsaWith(gossh.KeyAlgoRSA), "unable to authenticate"},
		{"user signature rsa-sha2-256", gossh.Config{}, rsaWith(gossh.KeyAlgoRSASHA256), ""},
		{"user signature rsa-sha2-512", gossh.Config{}, rsaWith(gossh.KeyAlgoRSASHA512), ""},
		{"ed25519", gossh.Config{}, ed, ""},
		{"aes-ctr with SHA-2 ETM", gossh.Config{Ciphers: []string{gossh.CipherAES128CTR}, MACs: []string{gossh.HMACSHA256ETM}}, ed, ""},
		{"kex curve25519", gossh.Config{KeyExchanges: []string{gossh.KeyExchangeCurve25519}}, ed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, err := ts.dialConfig(&gossh.ClientConfig{Config: tt.config, Auth: []gossh.AuthMethod{gossh.PublicKeys(tt.signer)}})
			if tt.refused == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				defer client.Close()
				startLineChat(t, client).skipUntil("-!- You are ")
				return
			}
			if err == nil {
				client.Close()
				t.Fatal("connected; want refused")
			}
			if !strings.Contains(err.Error(), tt.refused) {
				t.Fatalf("err = %v, want %q", err, tt.refused)
			}
		})
	}
	t.Run("OpenSSH client", func(t *testing.T) {
		ssh, err := exec.LookPath("ssh")
		if err != nil {
			t.Skip("no ssh client on PATH")
		}
		block, err := gossh.MarshalPrivateKey(rsaKey, "")
		if err != nil {
			t.Fatal(err)
		}
		keyFile := filepath.Join(t.TempDir(), "id_rsa")
		if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(ts.addr)
		ctx, cancel := context.WithTimeout(context.Background(), 2*waitLimit)
		defer cancel()
		cmd := exec.CommandContext(ctx, ssh, "-F", "/dev/null", "-T",
			"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-i", keyFile, "-p", port, "chat@127.0.0.1")
		cmd.Stdin = strings.NewReader("/quit\n")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ssh: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "You are rsa-user") {
			t.Fatalf("no greeting from OpenSSH session:\n%s", out)
		}
	})
}

// Issue 15.8: a TERM=dumb session gets no escape sequence at all: not in
// arrivals and departures, messages, echo, erasing or window changes.
func TestDumbTerminalGetsNoEscapes(t *testing.T) {
	ts := startServer(t, nil)
	b := ts.join(ts.user("bob"))
	client := ts.connect(ts.user("alice"))
	a := startChatWith(t, client, chatRequest{term: "dumb"})
	screen := a.readUntil("You are alice\r\n")
	b.expect("alice has arrived")

	c := ts.join(ts.user("carol"))
	screen += a.readUntil("carol has arrived\r\n")
	b.expect("carol has arrived")
	b.say("hello dumb terminal")
	screen += a.readUntil("bob: hello dumb terminal\r\n")
	if err := a.session.WindowChange(24, 40); err != nil {
		t.Fatal(err)
	}
	a.typeKeys("hellp\x7fo there\x08\x08\x08\x08\x08\x08\r")
	b.expect("alice: hello")
	screen += a.readUntil("\b \b\r\n")
	c.leave()
	screen += a.readUntil("carol has left\r\n")
	if i := strings.IndexByte(screen, 0x1b); i >= 0 {
		t.Fatalf("ESC at byte %d of the dumb terminal's output: %q", i, screen)
	}
	for _, want := range []string{"bob: hello dumb terminal\r\n", "\b \b"} {
		if !strings.Contains(screen, want) {
			t.Errorf("output lacks %q: %q", want, screen)
		}
	}
	t.Log(strconv.Quote(screen))
}
