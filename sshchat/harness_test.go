package sshchat

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	gossh "golang.org/x/crypto/ssh"
)

// The integration tests run a real Server on a loopback listener and talk to
// it with real x/crypto/ssh clients.

const waitLimit = 5 * time.Second

// allowList is an Authorizer the tests can change while the server runs.
type allowList struct {
	mu    sync.Mutex
	names map[string]string // key wire bytes -> name
}

func (a *allowList) Lookup(key gossh.PublicKey) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	name, ok := a.names[string(key.Marshal())]
	return name, ok
}

func (a *allowList) set(key gossh.PublicKey, name string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if name == "" {
		delete(a.names, string(key.Marshal()))
	} else {
		a.names[string(key.Marshal())] = name
	}
}

type testServer struct {
	*Server
	addr  string
	allow *allowList
	t     *testing.T
}

func newSigner(t testing.TB) gossh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := gossh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// startServer runs a server with the default config, changed by tweak.
// Its cleanup shuts the server down and checks that every goroutine started
// since has ended (clients are closed first: cleanups run last-in first-out).
func startServer(t *testing.T, tweak func(*Config)) *testServer {
	t.Helper()
	preexisting := goleak.IgnoreCurrent()
	cfg := DefaultConfig()
	cfg.HostKey = newSigner(t)
	allow := &allowList{names: map[string]string{}}
	cfg.Auth = allow
	cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Rate = 0 // tests send quickly; the rate test turns it on
	if tweak != nil {
		tweak(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		goleak.VerifyNone(t, preexisting)
	})
	return &testServer{Server: srv, addr: l.Addr().String(), allow: allow, t: t}
}

// testWriter sends server logs to the test log, shown on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("server: %s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// user registers a new key under name and returns its signer.
func (ts *testServer) user(name string) gossh.Signer {
	s := newSigner(ts.t)
	ts.allow.set(s.PublicKey(), name)
	return s
}

// dial connects and authenticates with the given auth methods.
func (ts *testServer) dial(auth ...gossh.AuthMethod) (*gossh.Client, error) {
	return ts.dialConfig(&gossh.ClientConfig{Auth: auth})
}

// dialConfig connects with cfg, filling in what every test needs.
func (ts *testServer) dialConfig(cfg *gossh.ClientConfig) (*gossh.Client, error) {
	cfg.User = "ignored"
	cfg.HostKeyCallback = gossh.FixedHostKey(ts.cfg.HostKey.PublicKey())
	cfg.Timeout = waitLimit
	return gossh.Dial("tcp", ts.addr, cfg)
}

// chatter is one chat session seen from the client side.
type chatter struct {
	t       *testing.T
	client  *gossh.Client
	session *gossh.Session
	stdin   io.WriteCloser
	lines   chan string   // what the server sends, line by line, closed at EOF
	raw     chan []byte   // for PTY sessions: raw output chunks
	pending string        // raw output read but not yet matched
	reading chan struct{} // closed when the client starts reading
	started sync.Once     // closes reading
	stop    chan struct{} // closed when the client stops reading
}

// startReading makes a client that asked for an unread session start
// reading its output. The test's cleanup calls it too, so that the reader
// ends with the connection.
func (c *chatter) startReading() { c.started.Do(func() { close(c.reading) }) }

// stopReading makes the client stop reading its session output, as a stuck
// or vanished peer would: the server's writes then block once the SSH
// window is full.
func (c *chatter) stopReading() { close(c.stop) }

// join connects signer in line mode (no PTY) and waits for the greeting.
func (ts *testServer) join(signer gossh.Signer) *chatter {
	ts.t.Helper()
	c := ts.openLine(signer)
	c.skipUntil("-!- You are ")
	return c
}

// joinAll registers and joins each name in order, in line mode, and reads
// the arrival notices, so every session returned is caught up.
func (ts *testServer) joinAll(names ...string) []*chatter {
	ts.t.Helper()
	var cs []*chatter
	for _, name := range names {
		c := ts.join(ts.user(name))
		for _, earlier := range cs {
			earlier.expect(name + " has arrived")
		}
		cs = append(cs, c)
	}
	return cs
}

// openLine connects signer and starts a line-mode session (no PTY), like
// ssh -T.
func (ts *testServer) openLine(signer gossh.Signer) *chatter {
	ts.t.Helper()
	return startLineChat(ts.t, ts.connect(signer))
}

// openTerminal connects signer and starts a PTY session on an
// xterm-256color terminal.
func (ts *testServer) openTerminal(signer gossh.Signer) *chatter {
	ts.t.Helper()
	return startTerminalChat(ts.t, ts.connect(signer))
}

// connect dials and authenticates as signer; the connection is closed when
// the test ends.
func (ts *testServer) connect(signer gossh.Signer) *gossh.Client {
	t := ts.t
	t.Helper()
	client, err := ts.dial(gossh.PublicKeys(signer))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { client.Close() })
	return client
}

// in returns ts bound to the subtest t, so that helpers fail and clean up
// the subtest, not its parent.
func (ts *testServer) in(t *testing.T) *testServer {
	sub := *ts
	sub.t = t
	return &sub
}

// chatRequest is what a client asks for before it starts its shell.
type chatRequest struct {
	term   string // request a PTY with this TERM; "" for a line-mode session
	env    map[string]string
	unread bool // do not read the output until startReading
}

// startLineChat starts a line-mode session on client.
func startLineChat(t *testing.T, client *gossh.Client) *chatter {
	t.Helper()
	return startChatWith(t, client, chatRequest{})
}

// startTerminalChat starts a PTY session on client, on an xterm-256color
// terminal.
func startTerminalChat(t *testing.T, client *gossh.Client) *chatter {
	t.Helper()
	return startChatWith(t, client, chatRequest{term: "xterm-256color"})
}

// startChatWith starts a chat session as req asks.
func startChatWith(t *testing.T, client *gossh.Client, req chatRequest) *chatter {
	t.Helper()
	sess, err := client.NewSession()
	if err != nil {
		t.Fatalf("new session: %v", err)
	}
	for k, v := range req.env {
		if err := sess.Setenv(k, v); err != nil {
			t.Fatalf("env %s refused: %v", k, err)
		}
	}
	stdin, err := sess.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := sess.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	pty := req.term != ""
	if pty {
		if err := sess.RequestPty(req.term, 24, 80, gossh.TerminalModes{}); err != nil {
			t.Fatalf("pty: %v", err)
		}
	}
	if err := sess.Shell(); err != nil {
		t.Fatalf("shell: %v", err)
	}
	c := &chatter{
		t: t, client: client, session: sess, stdin: stdin,
		lines: make(chan string, 1024), raw: make(chan []byte, 1024),
		reading: make(chan struct{}), stop: make(chan struct{}),
	}
	if req.unread {
		t.Cleanup(c.startReading)
	} else {
		c.startReading()
	}
	go c.read(stdout, pty)
	return c
}

// read reads the session's output into c.raw (PTY sessions) or c.lines
// until EOF or stopReading, once startReading has been called.
func (c *chatter) read(stdout io.Reader, pty bool) {
	defer close(c.lines)
	select {
	case <-c.reading:
	case <-c.stop:
		return
	}
	if pty {
		defer close(c.raw)
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			if n > 0 && !deliver(c, c.raw, append([]byte(nil), buf[:n]...)) {
				return
			}
			if err != nil {
				return
			}
		}
	}
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if !deliver(c, c.lines, sc.Text()) {
			return
		}
	}
}

// deliver sends v on ch unless the client has stopped reading, which it
// checks first so that it reads nothing more once stopped.
func deliver[T any](c *chatter, ch chan<- T, v T) bool {
	select {
	case <-c.stop:
		return false
	default:
	}
	select {
	case ch <- v:
		return true
	case <-c.stop:
		return false
	}
}

func (c *chatter) say(text string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, text+"\n"); err != nil {
		c.t.Fatalf("say %q: %v", text, err)
	}
}

// next returns the next line the server sent, failing the test after
// waitLimit.
func (c *chatter) next() string {
	c.t.Helper()
	select {
	case line, ok := <-c.lines:
		if !ok {
			c.t.Fatalf("session ended while waiting for a line")
		}
		return line
	case <-time.After(waitLimit):
		c.t.Fatalf("no line within %v", waitLimit)
	}
	return ""
}

// expectWelcome fails unless the next lines are the greeting of a session
// of name, with the users online.
func (c *chatter) expectWelcome(name string, online ...string) {
	c.t.Helper()
	c.expect(fmt.Sprintf("-!- %d online: %s", len(online), strings.Join(online, ", ")), "-!- Type /help for commands.", "-!- You are "+name)
}

// expect fails unless the next lines are exactly want, in order.
func (c *chatter) expect(want ...string) {
	c.t.Helper()
	for _, w := range want {
		if got := c.next(); got != w {
			c.t.Fatalf("got line %q, want %q", got, w)
		}
	}
}

// skipUntil reads lines until one starts with prefix and returns it.
func (c *chatter) skipUntil(prefix string) string {
	c.t.Helper()
	for {
		if line := c.next(); strings.HasPrefix(line, prefix) {
			return line
		}
	}
}

// expectEnd fails unless the server ends the session, after any lines in
// want.
func (c *chatter) expectEnd(want ...string) {
	c.t.Helper()
	c.expect(want...)
	select {
	case line, ok := <-c.lines:
		if ok {
			c.t.Fatalf("got line %q, want the session to end", line)
		}
	case <-time.After(waitLimit):
		c.t.Fatalf("session still open after %v", waitLimit)
	}
}

// leave ends the session from the client side (EOF on its input).
func (c *chatter) leave() {
	c.t.Helper()
	c.stdin.Close()
	for range c.lines {
	}
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// readUntil reads a PTY session's raw output until it contains want, and
// returns everything read since the previous call.
func (c *chatter) readUntil(want string) string {
	c.t.Helper()
	timeout := time.After(waitLimit)
	for !strings.Contains(c.pending, want) {
		select {
		case chunk, ok := <-c.raw:
			if !ok {
				c.t.Fatalf("session ended before %q; got %q", want, c.pending)
			}
			c.pending += string(chunk)
		case <-timeout:
			c.t.Fatalf("no %q within %v; got %q", want, waitLimit, c.pending)
		}
	}
	i := strings.Index(c.pending, want) + len(want)
	out := c.pending[:i]
	c.pending = c.pending[i:]
	return out
}

// skipPast discards a PTY session's raw output up to and including the
// first want, however much comes before it.
func (c *chatter) skipPast(want string) {
	c.t.Helper()
	timeout := time.After(waitLimit)
	for !strings.Contains(c.pending, want) {
		// Keep only what could be the start of want.
		c.pending = c.pending[max(0, len(c.pending)-len(want)+1):]
		select {
		case chunk, ok := <-c.raw:
			if !ok {
				c.t.Fatalf("session ended before %q", want)
			}
			c.pending += string(chunk)
		case <-timeout:
			c.t.Fatalf("no %q within %v", want, waitLimit)
		}
	}
	c.pending = c.pending[strings.Index(c.pending, want)+len(want):]
}

// typeKeys sends keystrokes as they are, without a newline.
func (c *chatter) typeKeys(keys string) {
	c.t.Helper()
	if _, err := io.WriteString(c.stdin, keys); err != nil {
		c.t.Fatalf("type %q: %v", keys, err)
	}
}
