package sshchat

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gossh "golang.org/x/crypto/ssh"
)

// Adversarial tests: hostile input, refused requests, limits, slow and
// vanishing clients.

func TestRefusedRequests(t *testing.T) {
	ts := startServer(t, nil)
	client := ts.connect(ts.user("mallory"))

	session := func(t *testing.T) *gossh.Session {
		s, err := client.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	tests := []struct {
		name   string
		refuse func(t *testing.T) error
	}{
		{"subsystem sftp", func(t *testing.T) error { return session(t).RequestSubsystem("sftp") }},
		{"env other than TERM, LANG, NO_COLOR", func(t *testing.T) error { return session(t).Setenv("LD_PRELOAD", "/tmp/x.so") }},
		{"agent forwarding", func(t *testing.T) error { return sendRequest(session(t), "auth-agent-req@openssh.com", nil) }},
		{"x11 forwarding", func(t *testing.T) error {
			return sendRequest(session(t), "x11-req", gossh.Marshal(struct {
				Single        bool
				Proto, Cookie string
				Screen        uint32
			}{false, "MIT-MAGIC-COOKIE-1", "00", 0}))
		}},
		{"local port forwarding", func(t *testing.T) error {
			c, err := client.Dial("tcp", "127.0.0.1:22")
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"remote port forwarding", func(t *testing.T) error {
			l, err := client.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				l.Close()
			}
			return err
		}},
		{"second pty", func(t *testing.T) error {
			s := session(t)
			if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
				t.Fatal(err)
			}
			return s.RequestPty("xterm", 24, 80, nil)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.refuse(t); err == nil {
				t.Fatal("accepted; want refused")
			}
		})
	}
	// The allowed env vars are accepted, and the connection still chats.
	c := startChatWith(t, client, chatRequest{env: map[string]string{"LANG": "C.UTF-8", "NO_COLOR": "1"}})
	c.expectWelcome("mallory", "mallory")
}

func sendRequest(s *gossh.Session, name string, payload []byte) error {
	ok, err := s.SendRequest(name, true, payload)
	if err == nil && !ok {
		err = fmt.Errorf("%s refused", name)
	}
	return err
}

func TestHostileBytesAreStripped(t *testing.T) {
	ts := startServer(t, nil)
	cs := ts.joinAll("mallory", "victim")
	a, b := cs[0], cs[1]
	payloads := []struct{ in, want string }{
		{"\x1b[2J\x1b[Hcleared your screen", "cleared your screen"},
		{"copy \x1b]52;c;cm0gLXJmIH4K\x07this", "copy this"},
		{"\x1b]0;new title\x1b\\title", "title"},
		{"move\x1b[10A\x1b[2Kup", "moveup"},
		{"bell\x07\x07", "bell"},
		{"\u202eevil.exe\u202c", "evil.exe"},
		{"bad\xff\xfeutf8", "badutf8"},
		{"\r\x1b[Afake: line", "fake: line"},
		{"ad\u200bmin\ufeff says\u2028hi\U000e0041", "admin sayshi"},
	}
	for _, p := range payloads {
		a.say(p.in)
		b.expect("mallory: " + p.want)
	}
	// A line that is nothing but escapes is not sent at all.
	a.say("\x1b[2J\x1b[H")
	a.say("after")
	b.expect("mallory: after")
}

func TestLongLines(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxLine = 64 })
	cs := ts.joinAll("alice", "bob")
	a, b := cs[0], cs[1]

	a.say(strings.Repeat("x", 65))
	a.expect("-!- That line was longer than 64 bytes and was not sent.")
	a.say(strings.Repeat("y", 64))
	b.expect("alice: " + strings.Repeat("y", 64))

	// A megabyte without a newline is discarded as it streams in, not
	// buffered; the line after it is fine.
	a.typeKeys(strings.Repeat("z", 1<<20))
	a.say("")
	a.expect("-!- That line was longer than 64 bytes and was not sent.")
	a.say("still here")
	b.expect("alice: still here")
}

func TestRateLimit(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.Rate, c.Burst = 0.001, 3 })
	cs := ts.joinAll("alice", "bob")
	a, b := cs[0], cs[1]
	for i := range 10 {
		a.say(fmt.Sprint("flood ", i))
	}
	b.expect("alice: flood 0", "alice: flood 1", "alice: flood 2")
	// Told once, not once per dropped line; commands count too, so /names
	// gets no answer.
	a.expect("-!- Slow down: at most 0.001 messages per second; that line was not sent.")
	a.say("/names")
	a.say("/quit")
	a.expectEnd()
	b.expect("alice has left")
}

// A client cycling through keys (an agent full of them, or someone
// guessing) is cut off after -max-auth-tries failures on one connection.
func TestMaxAuthTries(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxAuthTries = 3 })
	good := ts.user("alice")
	withUnknown := func(n int) gossh.AuthMethod {
		var signers []gossh.Signer
		for range n {
			signers = append(signers, newSigner(t))
		}
		return gossh.PublicKeys(append(signers, good)...)
	}
	c, err := ts.dial(withUnknown(2))
	if err != nil {
		t.Fatalf("2 unknown keys before the right one: %v", err)
	}
	c.Close()
	c, err = ts.dial(withUnknown(10))
	if err == nil {
		c.Close()
		t.Fatal("10 unknown keys before the right one: logged in")
	}
	if !strings.Contains(err.Error(), "too many authentication failures") {
		t.Fatalf("err = %v, want too many authentication failures", err)
	}
}

func TestConnectionLimits(t *testing.T) {
	t.Run("per IP", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.MaxConnsPerIP = 2 })
		alice := ts.user("alice")
		ts.join(alice)
		ts.join(alice)
		if c, err := ts.dial(gossh.PublicKeys(alice)); err == nil {
			c.Close()
			t.Fatal("third connection from one IP accepted")
		}
	})
	t.Run("in total, unauthenticated count", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.MaxConns = 1 })
		ts.rawConn() // holds the only slot without authenticating
		if c, err := ts.dial(gossh.PublicKeys(ts.user("alice"))); err == nil {
			c.Close()
			t.Fatal("connection over the limit accepted")
		}
	})
	t.Run("sessions per connection", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.MaxSessionsPerConn = 1 })
		client := ts.connect(ts.user("alice"))
		startLineChat(t, client).expectWelcome("alice", "alice")
		if s, err := client.NewSession(); err == nil {
			s.Close()
			t.Fatal("second session accepted")
		}
	})
	t.Run("sessions per user", func(t *testing.T) {
		ts := startServer(t, func(c *Config) { c.MaxSessionsPerUser = 1 })
		alice := ts.user("alice")
		ts.join(alice)
		ts.openLine(alice).expectEnd("-!- Too many sessions for alice (at most 1).")
	})
}

func TestLoginGrace(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.LoginGrace = 200 * time.Millisecond })
	t.Run("silent TCP connection", func(t *testing.T) {
		expectClosed(t, ts.in(t).rawConn())
	})
	t.Run("half a handshake", func(t *testing.T) {
		conn := ts.in(t).rawConn()
		io.WriteString(conn, "SSH-2.0-slowloris\r\n")
		expectClosed(t, conn)
	})
	t.Run("authenticated but no shell", func(t *testing.T) {
		ts := ts.in(t)
		client, err := ts.dial(gossh.PublicKeys(ts.user("idler")))
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		waitClosed := make(chan error, 1)
		go func() { waitClosed <- client.Wait() }()
		select {
		case <-waitClosed:
		case <-time.After(waitLimit):
			t.Fatal("connection without a shell still open")
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	a := ts.join(ts.user("alice"))
	a.expectEnd("-!- Disconnected after 300ms without a message.")
}

// floodLine is near the default line limit, so a few thousand fill an SSH
// channel window (2 MiB for x/crypto clients) quickly.
var floodLine = strings.Repeat("f", 1000)

// flood has sender send n lines and checks that each reader receives all of
// them, in order, while reading concurrently. The sender stays at most
// window lines ahead of the slowest reader, so only a client that does not
// read at all can fall a whole queue behind. It returns the other lines the
// first reader saw meanwhile.
func flood(t *testing.T, sender *chatter, n, window int, readers ...*chatter) (others []string) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, len(readers))
	acks := make([]chan struct{}, len(readers))
	for ri, r := range readers {
		acks[ri] = make(chan struct{}, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			timeout := time.After(4 * waitLimit)
			for i := 0; i < n; {
				select {
				case line, ok := <-r.lines:
					if !ok {
						errs <- fmt.Errorf("reader ended after %d lines", i)
						return
					}
					if !strings.HasPrefix(line, "sender: ") {
						if ri == 0 {
							others = append(others, line)
						}
						continue
					}
					if want := fmt.Sprintf("%s: %d %s", "sender", i, floodLine); line != want {
						errs <- fmt.Errorf("line %d: got %.40q", i, line)
						return
					}
					i++
					acks[ri] <- struct{}{}
				case <-timeout:
					errs <- fmt.Errorf("only %d of %d lines", i, n)
					return
				}
			}
		}()
	}
	acked := make([]int, len(readers))
	for i := range n {
		for ri := range readers {
			for ; acked[ri] < i-window; acked[ri]++ {
				select {
				case <-acks[ri]:
				case <-time.After(waitLimit):
					t.Fatalf("reader %d stalled at line %d", ri, acked[ri])
				}
			}
		}
		sender.say(fmt.Sprintf("%d %s", i, floodLine))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	return others
}

// A client that never reads is dropped when its queue fills; everyone else
// gets every message.
func TestSlowClientIsDropped(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.QueueLen, c.History = 64, 0
		c.WriteTimeout = 500 * time.Millisecond
	})
	cs := ts.joinAll("slow", "reader1", "reader2", "sender")
	slow, r1, r2, sender := cs[0], cs[1], cs[2], cs[3]
	slow.stopReading()
	if others := flood(t, sender, 3000, 32, r1, r2); !slices.Contains(others, "slow has left") {
		t.Fatalf("slow client not dropped; reader saw %q", others)
	}
}

// A client that vanishes (stops reading without closing) while its queue
// is roomy is freed by the write timeout.
func TestVanishedClientIsFreed(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.QueueLen, c.History = 4000, 0
		c.WriteTimeout = 300 * time.Millisecond
	})
	cs := ts.joinAll("gone", "reader", "sender")
	gone, r, sender := cs[0], cs[1], cs[2]
	gone.stopReading()
	flood(t, sender, 3000, 1000, r)
	r.skipUntil("gone has left")
}

// Like `echo hi | ssh -T host`: send, then EOF. The line is delivered,
// before the departure, and the session ends cleanly with whatever was
// queued for it. With a store, lines reach the others only once stored,
// and what follows them (the departure, a private message) waits for them.
func TestHalfCloseStillDelivers(t *testing.T) {
	for _, stored := range []bool{false, true} {
		t.Run(map[bool]string{false: "memory", true: "stored"}[stored], func(t *testing.T) {
			var ts *testServer
			if stored {
				ts = startWithHistory(t, openHistory(t, t.TempDir()).DB, nil)
			} else {
				ts = startServer(t, nil)
			}
			b := ts.joinAll("bob")[0]
			for _, name := range []string{"alice", "carol", "dave"} {
				a := ts.joinAll(name)[0]
				b.expect(name + " has arrived")
				a.say("hi")
				a.say("/msg bob psst")
				a.stdin.Close()
				b.expect(name+": hi", "[PM from "+name+"] psst", name+" has left")
				a.expect("-!- [PM to bob] psst")
				a.expectEnd()
				if err := a.session.Wait(); err != nil {
					t.Fatalf("%s's exit status: %v", name, err)
				}
			}
		})
	}
}

func TestDroppedMidLine(t *testing.T) {
	ts := startServer(t, nil)
	cs := ts.joinAll("bob", "alice")
	b, a := cs[0], cs[1]
	a.typeKeys("half a li")
	a.client.Close()
	b.skipUntil("alice has left")
}

func TestShutdownWithManyUsers(t *testing.T) {
	ts := startServer(t, func(c *Config) {
		c.MaxConnsPerIP = 0
		c.LoginGrace = time.Minute // 100 handshakes under -race on a busy machine take a while
	})
	const n = 100
	clients := make([]*gossh.Client, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		signer := ts.user(fmt.Sprintf("user%03d", i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			clients[i], errs[i] = ts.dial(gossh.PublicKeys(signer))
		}()
	}
	wg.Wait()
	var cs []*chatter
	for i, client := range clients {
		if errs[i] != nil {
			t.Fatalf("dial %d: %v", i, errs[i])
		}
		t.Cleanup(func() { client.Close() })
		cs = append(cs, startLineChat(t, client))
	}
	for _, c := range cs {
		c.skipUntil("-!- You are ")
	}
	start := time.Now()
	ctx, cancel := contextWithTimeout(waitLimit)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	for _, c := range cs {
		c.skipUntil("-!- The server is shutting down.")
		c.expectEnd()
	}
	t.Logf("shutdown with %d users took %v", n, time.Since(start))
}
